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
use hive_vpc::error::VpcError;
use hive_vpc::model::{Direction, SecurityGroupId};
use hive_vpc::repo::{RepoOptions, VpcRepo};
use hive_vpc::security_group::{RuleInput, RuleSpec, parse_rule};

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
    parse_rule(
        direction,
        &RuleInput {
            ip_protocol: "tcp".into(),
            from_port: Some(port),
            to_port: Some(port),
            cidr_ip: Some(cidr.into()),
            ..RuleInput::default()
        },
    )
    .expect("valid rule")
}

/// A TCP rule for one port from a group.
pub fn tcp_from_group(direction: Direction, port: i32, group: &SecurityGroupId) -> RuleSpec {
    parse_rule(
        direction,
        &RuleInput {
            ip_protocol: "tcp".into(),
            from_port: Some(port),
            to_port: Some(port),
            group_id: Some(group.to_string()),
            ..RuleInput::default()
        },
    )
    .expect("valid rule")
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
