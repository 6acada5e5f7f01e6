//! Replication: a 3-node JetStream cluster on loopback and a bucket with 3 replicas. The node
//! leading the bucket's stream is killed during a stream of writes: every acknowledged write is
//! still readable afterwards, and writes continue once a new leader is elected.

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::NatsCluster;
use hive_kv::{BucketConfig, KvError, KvStore};

/// A bucket with 3 replicas, retried while the JetStream meta group settles after start.
async fn replicated_bucket(store: &NatsStore, name: &str) -> std::sync::Arc<dyn hive_kv::Bucket> {
    let config = BucketConfig::new(name).with_replicas(3);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.create_or_open(&config).await {
            Ok(bucket) => return bucket,
            Err(e) if Instant::now() < deadline => {
                eprintln!("bucket not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("cannot create the replicated bucket: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_losing_the_leader() {
    let mut cluster = NatsCluster::start(3);
    let options = NatsOptions {
        op_timeout: Duration::from_secs(2),
        ..NatsOptions::default()
    };
    let store = NatsStore::connect(&cluster.urls(), options).await.unwrap();
    let bucket = replicated_bucket(&store, "replicated").await;

    let mut acked: BTreeMap<String, (Bytes, u64)> = BTreeMap::new();
    let mut failed = 0usize;
    let mut i = 0u64;
    let mut write = async |acked: &mut BTreeMap<String, (Bytes, u64)>, failed: &mut usize| {
        i += 1;
        let key = format!("k{i}");
        let value = Bytes::from(format!("value-{i}"));
        match bucket.put(&key, value.clone()).await {
            Ok(rev) => {
                acked.insert(key, (value, rev));
            }
            Err(KvError::Unavailable(_)) => {
                *failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("failover must only look like unavailability, got {other:?}"),
        }
    };
    while acked.len() < 100 {
        write(&mut acked, &mut failed).await;
    }
    assert_eq!(failed, 0, "writes failed before any node was lost");

    // Kill the stream's leader: the hardest node to lose.
    let js = async_nats::jetstream::new(store.client().clone());
    let info = js
        .get_stream("KV_replicated")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("stream has a leader");
    let victim = (0..cluster.len())
        .find(|&n| cluster.name(n) == Some(leader.as_str()))
        .expect("leader is one of our nodes");
    cluster.kill(victim);
    let killed_at = Instant::now();
    let before_kill = acked.len();

    // Writes continue once a new leader is elected.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < before_kill + 100 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after losing node {victim}: {} acked after the kill, {failed} failed",
            acked.len() - before_kill
        );
        write(&mut acked, &mut failed).await;
    }
    eprintln!(
        "killed leader {leader}; {failed} writes failed during failover; resumed within {:?}",
        killed_at.elapsed()
    );

    // Every acknowledged write is readable, with its value and revision.
    let check = async |acked: &BTreeMap<String, (Bytes, u64)>| {
        for (key, (value, rev)) in acked {
            let entry = bucket
                .get(key)
                .await
                .unwrap()
                .expect("acknowledged write lost");
            assert_eq!((&entry.value, entry.revision), (value, *rev), "{key}");
        }
    };
    check(&acked).await;

    // The node comes back, catches up, and the data is still all there.
    cluster.restart(victim).unwrap();
    write(&mut acked, &mut failed).await;
    check(&acked).await;
    let keys = bucket.keys(Some("k")).await.unwrap();
    assert_eq!(keys.len(), acked.len());
}

/// On a replicated bucket, a read right after an acknowledged write sees it, every time: reads
/// go through the stream leader (direct gets could be answered by a lagging replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_a_write_sees_it_on_a_replicated_bucket() {
    let cluster = NatsCluster::start(3);
    let store = NatsStore::connect(&cluster.urls(), NatsOptions::default())
        .await
        .unwrap();
    let bucket = replicated_bucket(&store, "read-your-writes").await;
    for i in 0..300u32 {
        let key = format!("k{i}");
        let rev = bucket
            .create(&key, Bytes::from(i.to_string()))
            .await
            .unwrap();
        let got = bucket.get(&key).await.unwrap();
        assert_eq!(
            got.map(|e| e.revision),
            Some(rev),
            "write {i} (revision {rev}) not seen by the next read"
        );
        let rev2 = bucket.put(&key, Bytes::from("again")).await.unwrap();
        let got = bucket.get(&key).await.unwrap();
        assert_eq!(got.map(|e| e.revision), Some(rev2), "update {i} not seen");
    }
}

/// Listing a replicated bucket's keys is complete and leaves deleted keys out, every time (the
/// server's "nothing pending" can come early; the listing reads on to the stream's subject count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_replicated_bucket_finds_every_live_key() {
    let cluster = NatsCluster::start(3);
    let store = NatsStore::connect(&cluster.urls(), NatsOptions::default())
        .await
        .unwrap();
    let bucket = replicated_bucket(&store, "listing").await;
    let mut want = Vec::new();
    for i in 0..400u32 {
        let key = format!("acct.k{i:04}");
        bucket.put(&key, Bytes::from("v")).await.unwrap();
        if i % 7 == 0 {
            bucket.delete(&key, None).await.unwrap();
        } else {
            want.push(key);
        }
    }
    for round in 0..20 {
        let got = bucket.keys(None).await.unwrap();
        assert_eq!(got.len(), want.len(), "round {round}: incomplete listing");
        assert_eq!(got, want, "round {round}");
        let scoped = bucket.keys(Some("acct.k00")).await.unwrap();
        assert_eq!(
            scoped.len(),
            want.iter().filter(|k| k.starts_with("acct.k00")).count()
        );
    }
}
