//! Criterion benchmarks of the storage adapters that run in-process: `get`, `put` and a
//! compare-and-swap `update` on the in-memory and the embedded SQLite stores, with a 256-byte
//! JSON-like value. (JetStream is measured by the `kv_nats` bench.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_main};
use hive_kv::memory::MemoryStore;
use hive_kv::sqlite::SqliteStore;
use hive_kv::{BucketConfig, KvStore};

fn value() -> Bytes {
    let mut v =
        br#"{"username":"alice","arn":"arn:aws:iam::000000000000:user/alice","groups":["#.to_vec();
    v.resize(255, b'x');
    v.push(b'}');
    Bytes::from(v)
}

fn adapters(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = rt
        .block_on(SqliteStore::open(dir.path()))
        .expect("sqlite store");
    let stores: [(&str, Arc<dyn KvStore>); 2] = [
        ("memory", Arc::new(MemoryStore::new())),
        ("sqlite", Arc::new(sqlite)),
    ];
    let value = value();
    let mut group = c.benchmark_group("kv");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (name, store) in stores {
        let bucket = rt
            .block_on(store.create_or_open(&BucketConfig::new("bench").with_history(10)))
            .expect("bucket");
        let first = rt
            .block_on(bucket.put("users.alice", value.clone()))
            .expect("seed");
        group.bench_function(format!("{name}/get"), |b| {
            b.to_async(&rt).iter(|| async {
                bucket.get("users.alice").await.expect("get");
            });
        });
        group.bench_function(format!("{name}/put"), |b| {
            b.to_async(&rt).iter(|| async {
                bucket.put("users.bob", value.clone()).await.expect("put");
            });
        });
        // The revision the next CAS expects; each iteration advances it.
        let revision = AtomicU64::new(first);
        group.bench_function(format!("{name}/cas_update"), |b| {
            b.to_async(&rt).iter(|| async {
                let rev = bucket
                    .update(
                        "users.alice",
                        value.clone(),
                        revision.load(Ordering::Relaxed),
                    )
                    .await
                    .expect("cas");
                revision.store(rev, Ordering::Relaxed);
            });
        });
    }
    group.finish();
}

/// Criterion's generated group function carries no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::adapters);
}
criterion_main!(group::benches);
