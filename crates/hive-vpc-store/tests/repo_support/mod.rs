//! Shared by the repository tests: one [`Backend`] per storage adapter (memory, SQLite, a real
//! nats-server), snapshots of every bucket, and small builders.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use hive_kv::memory::MemoryStore;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::sqlite::SqliteStore;
use hive_kv::testing::NatsServer;
use hive_kv::{Bucket, KvStore};
use hive_vpc::eni::CreateInterface;
use hive_vpc::error::VpcError;
use hive_vpc::model::{
    Direction, NetworkInterface, SecurityGroup, SecurityGroupId, Subnet, SubnetId, VpcId,
};
use hive_vpc::security_group::{RuleInput, RuleSpec, parse_rule};
use hive_vpc::vpc::{DefaultNetwork, NewVpc};
use hive_vpc_store::{RepoOptions, VpcRepo};

/// The account most tests act in.
pub const ACCOUNT: &str = "000000000000";
/// Another account, whose resources the first must not see.
pub const OTHER: &str = "111111111111";

enum Kind {
    Memory(MemoryStore),
    Sqlite(tempfile::TempDir),
    Nats(NatsServer),
}

/// A repository over one adapter, with what keeps the adapter alive.
pub struct Backend {
    /// The repository under test.
    pub repo: VpcRepo,
    kind: Kind,
}

impl Backend {
    /// Over a fresh in-memory store.
    pub async fn memory() -> Self {
        let store = MemoryStore::new();
        let repo = open(&store).await;
        Self {
            repo,
            kind: Kind::Memory(store),
        }
    }

    /// Over a fresh SQLite file.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).await.expect("sqlite store");
        let repo = open(&store).await;
        Self {
            repo,
            kind: Kind::Sqlite(dir),
        }
    }

    /// Over a real nats-server with JetStream (fails, naming the install command, when the
    /// binary is missing).
    pub async fn nats() -> Self {
        let server = tokio::task::spawn_blocking(NatsServer::start)
            .await
            .expect("nats-server start task");
        let store = NatsStore::connect(&server.url(), NatsOptions::default())
            .await
            .expect("connect to nats-server");
        let repo = open(&store).await;
        Self {
            repo,
            kind: Kind::Nats(server),
        }
    }

    /// Another repository on the same storage through its own connection, as a second
    /// process would have.
    pub async fn another(&self) -> VpcRepo {
        match &self.kind {
            Kind::Memory(store) => open(store).await,
            Kind::Sqlite(dir) => {
                let store = SqliteStore::open(dir.path()).await.expect("sqlite store");
                open(&store).await
            }
            Kind::Nats(server) => {
                let store = NatsStore::connect(&server.url(), NatsOptions::default())
                    .await
                    .expect("connect to nats-server");
                open(&store).await
            }
        }
    }
}

async fn open(store: &dyn KvStore) -> VpcRepo {
    VpcRepo::open(store, &RepoOptions::default())
        .await
        .expect("open repository")
}

/// Every live key of every bucket with its value.
pub async fn snapshot(repo: &VpcRepo) -> BTreeMap<(String, String), Vec<u8>> {
    let b = repo.buckets();
    let buckets: [&Arc<dyn Bucket>; 5] = [
        &b.vpcs,
        &b.subnets,
        &b.security_groups,
        &b.interfaces,
        &b.allocations,
    ];
    let mut out = BTreeMap::new();
    for bucket in buckets {
        for key in bucket.keys(None).await.expect("keys") {
            if let Some(entry) = bucket.get(&key).await.expect("get") {
                out.insert((bucket.name().to_owned(), key), entry.value.to_vec());
            }
        }
    }
    out
}

/// The account's default network reads back as bootstrapped: its VPC is the default one, and
/// its subnet and default group are stored as returned.
pub async fn assert_default_network_stored(repo: &VpcRepo, n: &DefaultNetwork) {
    assert_eq!(repo.default_vpc(ACCOUNT).await, Ok(Some(n.vpc.clone())));
    assert_eq!(
        repo.get_subnet(ACCOUNT, &n.subnet.id).await,
        Ok(n.subnet.clone())
    );
    assert_eq!(
        repo.get_security_group(ACCOUNT, &n.default_group.id).await,
        Ok(n.default_group.clone())
    );
}

/// The EC2 code of an expected error.
pub fn code<T: Debug>(r: Result<T, VpcError>) -> &'static str {
    r.expect_err("the call should fail").code()
}

/// A tag.
pub fn tag(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

/// A TCP rule for one port from a CIDR.
pub fn tcp_from_cidr(direction: Direction, port: i32, cidr: &str) -> RuleSpec {
    tcp_rule(
        direction,
        port,
        RuleInput {
            cidr_ip: Some(cidr.into()),
            ..RuleInput::default()
        },
    )
}

/// A TCP rule for one port from a group.
pub fn tcp_from_group(direction: Direction, port: i32, group: &SecurityGroupId) -> RuleSpec {
    tcp_rule(
        direction,
        port,
        RuleInput {
            group_id: Some(group.to_string()),
            ..RuleInput::default()
        },
    )
}

/// A TCP rule for one port from the source `from` names.
fn tcp_rule(direction: Direction, port: i32, from: RuleInput) -> RuleSpec {
    let input = RuleInput {
        ip_protocol: "tcp".into(),
        from_port: Some(port),
        to_port: Some(port),
        ..from
    };
    parse_rule(direction, &input).expect("valid rule")
}

/// One-line builders for the untagged resources a test needs in [`ACCOUNT`]; each fails the
/// test, naming the call, when the repository refuses.
#[allow(
    async_fn_in_trait,
    reason = "test helpers, awaited where they are called"
)]
pub trait Build {
    /// `CreateVpc`.
    async fn new_vpc(&self, cidr: &str) -> NewVpc;
    /// `CreateSubnet` without an availability zone.
    async fn new_subnet(&self, vpc: &VpcId, cidr: &str) -> Subnet;
    /// `CreateSecurityGroup`.
    async fn new_group(&self, vpc: &VpcId, name: &str, description: &str) -> SecurityGroup;
    /// `CreateNetworkInterface`.
    async fn new_eni(&self, subnet: &SubnetId, request: &CreateInterface) -> NetworkInterface;
}

impl Build for VpcRepo {
    async fn new_vpc(&self, cidr: &str) -> NewVpc {
        self.create_vpc(ACCOUNT, cidr, &[])
            .await
            .unwrap_or_else(|e| panic!("create_vpc {cidr}: {e:?}"))
    }

    async fn new_subnet(&self, vpc: &VpcId, cidr: &str) -> Subnet {
        self.create_subnet(ACCOUNT, vpc, cidr, None, &[])
            .await
            .unwrap_or_else(|e| panic!("create_subnet {cidr}: {e:?}"))
    }

    async fn new_group(&self, vpc: &VpcId, name: &str, description: &str) -> SecurityGroup {
        self.create_security_group(ACCOUNT, vpc, name, description, &[])
            .await
            .unwrap_or_else(|e| panic!("create_security_group {name}: {e:?}"))
    }

    async fn new_eni(&self, subnet: &SubnetId, request: &CreateInterface) -> NetworkInterface {
        self.create_network_interface(ACCOUNT, subnet, request, &[])
            .await
            .unwrap_or_else(|e| panic!("create_network_interface in {subnet}: {e:?}"))
    }
}

/// Generates one test per adapter for each listed `async fn name(b: Backend)`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::memory().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::sqlite().await).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::nats().await).await;
                }
            )*
        }
    };
}
