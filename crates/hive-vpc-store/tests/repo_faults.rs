//! Storage failures in the middle of multi-record changes: a store that refuses writes to one
//! bucket on demand shows that every operation undoes what it had already written, so a failed
//! call leaves every bucket as it was (no VLAN, address, MAC, reservation or record left over).

mod repo_support;
use repo_support as support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use hive_kv::memory::MemoryStore;
use hive_kv::{Bucket, BucketConfig, Entry, KvError, KvStore, WatchFrom};
use hive_vpc::eni::CreateInterface;
use hive_vpc_store::{RepoOptions, VpcRepo};
use support::{ACCOUNT, Build, assert_default_network_stored, code, snapshot};

/// Which writes fail: (bucket name, operation).
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<HashSet<(String, &'static str)>>>);

impl Faults {
    fn set(&self, bucket: &str, op: &'static str) {
        self.0
            .lock()
            .expect("faults lock")
            .insert((bucket.to_owned(), op));
    }

    fn clear(&self) {
        self.0.lock().expect("faults lock").clear();
    }

    fn check(&self, bucket: &str, op: &'static str) -> Result<(), KvError> {
        if self
            .0
            .lock()
            .expect("faults lock")
            .contains(&(bucket.to_owned(), op))
        {
            Err(KvError::Unavailable(format!("injected {op} failure")))
        } else {
            Ok(())
        }
    }
}

struct FaultyStore {
    inner: MemoryStore,
    faults: Faults,
}

struct FaultyBucket {
    inner: Arc<dyn Bucket>,
    faults: Faults,
}

#[async_trait]
impl KvStore for FaultyStore {
    async fn create_or_open(&self, config: &BucketConfig) -> hive_kv::Result<Arc<dyn Bucket>> {
        let inner = self.inner.create_or_open(config).await?;
        Ok(Arc::new(FaultyBucket {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn open(&self, name: &str) -> hive_kv::Result<Arc<dyn Bucket>> {
        let inner = self.inner.open(name).await?;
        Ok(Arc::new(FaultyBucket {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn bucket_config(&self, name: &str) -> hive_kv::Result<BucketConfig> {
        self.inner.bucket_config(name).await
    }

    async fn delete_bucket(&self, name: &str) -> hive_kv::Result<()> {
        self.inner.delete_bucket(name).await
    }
}

#[async_trait]
impl Bucket for FaultyBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> hive_kv::Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn entry_history(&self, key: &str) -> hive_kv::Result<Vec<Entry>> {
        self.inner.entry_history(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> hive_kv::Result<u64> {
        self.faults.check(self.name(), "put")?;
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Bytes) -> hive_kv::Result<u64> {
        self.faults.check(self.name(), "create")?;
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: u64) -> hive_kv::Result<u64> {
        self.faults.check(self.name(), "update")?;
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<u64>) -> hive_kv::Result<()> {
        self.faults.check(self.name(), "delete")?;
        self.inner.delete(key, expected).await
    }
    async fn purge(&self, key: &str, expected: Option<u64>) -> hive_kv::Result<()> {
        self.inner.purge(key, expected).await
    }
    async fn keys(&self, prefix: Option<&str>) -> hive_kv::Result<Vec<String>> {
        self.inner.keys(prefix).await
    }
    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> hive_kv::Result<BoxStream<'static, hive_kv::Result<Entry>>> {
        self.inner.watch(prefix, from).await
    }
}

async fn setup() -> (VpcRepo, Faults) {
    let faults = Faults::default();
    let store = FaultyStore {
        inner: MemoryStore::new(),
        faults: faults.clone(),
    };
    let repo = VpcRepo::open(&store, &RepoOptions::default())
        .await
        .expect("open");
    (repo, faults)
}

const VPCS: &str = "hive-vpc-vpcs";
const SUBNETS: &str = "hive-vpc-subnets";
const GROUPS: &str = "hive-vpc-security-groups";
const INTERFACES: &str = "hive-vpc-interfaces";
const ALLOCATIONS: &str = "hive-vpc-allocations";

#[tokio::test]
async fn failed_creations_undo_every_step() {
    let (r, faults) = setup().await;
    let vpc = r.new_vpc("10.1.0.0/16").await;
    let subnet = r.new_subnet(&vpc.vpc.id, "10.1.1.0/24").await;
    r.create_network_interface(ACCOUNT, &subnet.id, &CreateInterface::default(), &[])
        .await
        .expect("a first interface, so later ones are not the first allocation");

    let cases: [(&str, &'static str); 8] = [
        (ALLOCATIONS, "update"),
        (GROUPS, "create"),
        (VPCS, "create"),
        (VPCS, "update"),
        (SUBNETS, "create"),
        (SUBNETS, "update"),
        (INTERFACES, "create"),
        (ALLOCATIONS, "create"),
    ];
    for (bucket, op) in cases {
        let before = snapshot(&r).await;
        faults.set(bucket, op);
        let vpc_result = r.create_vpc(ACCOUNT, "10.2.0.0/16", &[]).await;
        let subnet_result = r
            .create_subnet(ACCOUNT, &vpc.vpc.id, "10.1.2.0/24", None, &[])
            .await;
        let group_result = r
            .create_security_group(ACCOUNT, &vpc.vpc.id, "web", "w", &[])
            .await;
        let eni_result = r
            .create_network_interface(ACCOUNT, &subnet.id, &CreateInterface::default(), &[])
            .await;
        faults.clear();
        let failed = [
            vpc_result.as_ref().err(),
            subnet_result.as_ref().err(),
            group_result.as_ref().err(),
            eni_result.as_ref().err(),
        ];
        assert!(
            failed.iter().any(Option::is_some),
            "{bucket} {op}: some call must have failed"
        );
        for e in failed.into_iter().flatten() {
            assert_eq!(e.code(), "ServiceUnavailable", "{bucket} {op}: {e}");
        }
        // Undo whatever succeeded, then nothing else may be left.
        if let Ok(v) = vpc_result {
            r.delete_vpc(ACCOUNT, &v.vpc.id).await.expect("undo vpc");
        }
        if let Ok(s) = subnet_result {
            r.delete_subnet(ACCOUNT, &s.id).await.expect("undo subnet");
        }
        if let Ok(g) = group_result {
            r.delete_security_group(ACCOUNT, &g.id)
                .await
                .expect("undo group");
        }
        if let Ok(e) = eni_result {
            r.delete_network_interface(ACCOUNT, &e.id)
                .await
                .expect("undo interface");
        }
        assert_eq!(
            snapshot(&r).await,
            before,
            "{bucket} {op}: a failed call left something behind"
        );
    }
}

#[tokio::test]
async fn failed_deletions_keep_allocations_taken() {
    let (r, faults) = setup().await;
    let vpc = r.new_vpc("10.1.0.0/16").await;
    let subnet = r.new_subnet(&vpc.vpc.id, "10.1.1.0/24").await;
    let eni = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    // The interface record goes first; the address release then fails: the interface is
    // gone but its address stays taken (fail closed), so no one else gets it.
    faults.set(SUBNETS, "update");
    assert_eq!(
        code(r.delete_network_interface(ACCOUNT, &eni.id).await),
        "ServiceUnavailable"
    );
    faults.clear();
    assert_eq!(
        code(r.get_network_interface(ACCOUNT, &eni.id).await),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let stored = r.get_subnet(ACCOUNT, &subnet.id).await.expect("subnet");
    assert!(stored.addresses.is_allocated(eni.private_ip));
    let next = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    assert_ne!(next.private_ip, eni.private_ip);

    // A VPC whose record deletion fails keeps its VLAN and default group.
    let other = r.new_vpc("10.2.0.0/16").await;
    let before = snapshot(&r).await;
    faults.set(VPCS, "delete");
    assert_eq!(
        code(r.delete_vpc(ACCOUNT, &other.vpc.id).await),
        "ServiceUnavailable"
    );
    faults.clear();
    assert_eq!(snapshot(&r).await, before);
}

#[tokio::test]
async fn interrupted_bootstrap_is_finished_by_the_next() {
    let (r, faults) = setup().await;
    let config = hive_vpc::config::VpcConfig::default();
    faults.set(VPCS, "create");
    assert_eq!(
        code(r.bootstrap_default(ACCOUNT, &config).await),
        "ServiceUnavailable"
    );
    faults.clear();
    assert_eq!(r.default_vpc(ACCOUNT).await, Ok(None), "not published yet");
    let done = r.bootstrap_default(ACCOUNT, &config).await.expect("retry");
    assert!(!done.created, "the first call's claim is reused");
    let n = done.network;
    assert_default_network_stored(&r, &n).await;
    assert_eq!(n.vpc.vlan, 1);
    let before = snapshot(&r).await;
    r.bootstrap_default(ACCOUNT, &config).await.expect("again");
    assert_eq!(snapshot(&r).await, before);
}
