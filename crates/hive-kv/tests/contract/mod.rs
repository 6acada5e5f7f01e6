//! The contract every adapter honours. Each adapter's test file instantiates these functions
//! with `contract_tests!`, so the memory, SQLite and JetStream adapters are held to exactly the
//! same observable behaviour.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hive_kv::{
    Bucket, BucketConfig, DEFAULT_MAX_VALUE_SIZE, Entry, KvError, KvStore, Operation, WatchFrom,
    encode_key_segment,
};

/// Time we allow a watch to deliver a change (SQLite polls; JetStream is remote).
const WATCH_WAIT: Duration = Duration::from_secs(5);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn bucket(store: &dyn KvStore, config: BucketConfig) -> Arc<dyn Bucket> {
    store.create_or_open(&config).await.unwrap()
}

/// Writes a probe and returns its revision: the next free revision of the bucket.
async fn next_revision(bucket: &dyn Bucket) -> u64 {
    bucket.put("probe", b("p")).await.unwrap()
}

async fn next(stream: &mut futures::stream::BoxStream<'static, hive_kv::Result<Entry>>) -> Entry {
    tokio::time::timeout(WATCH_WAIT, stream.next())
        .await
        .expect("watch delivered nothing in time")
        .expect("watch ended")
        .unwrap()
}

async fn nothing_more(stream: &mut futures::stream::BoxStream<'static, hive_kv::Result<Entry>>) {
    let got = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
    assert!(got.is_err(), "unexpected watch event: {got:?}");
}

pub async fn bucket_lifecycle(store: &dyn KvStore) {
    assert!(matches!(
        store.open("missing").await.err(),
        Some(KvError::BucketNotFound(_))
    ));
    let created = bucket(store, BucketConfig::new("life").with_history(3)).await;
    created.put("a", b("1")).await.unwrap();
    let opened = store.open("life").await.unwrap();
    assert_eq!(opened.name(), "life");
    assert_eq!(opened.get("a").await.unwrap().unwrap().value, b("1"));
    // Opening again with create_or_open keeps the data.
    let again = bucket(store, BucketConfig::new("life").with_history(3)).await;
    assert_eq!(again.get("a").await.unwrap().unwrap().value, b("1"));
    // The store reports the configuration the bucket was created with, not the one asked for
    // later.
    let reported = store.bucket_config("life").await.unwrap();
    assert_eq!((reported.history, reported.ttl), (3, None));
    bucket(store, BucketConfig::new("life").with_history(7)).await;
    assert_eq!(store.bucket_config("life").await.unwrap().history, 3);
    let ttl = std::time::Duration::from_secs(3600);
    bucket(
        store,
        BucketConfig::new("ttl").with_history(5).with_ttl(ttl),
    )
    .await;
    let reported = store.bucket_config("ttl").await.unwrap();
    assert_eq!((reported.history, reported.ttl), (5, Some(ttl)));
    store.delete_bucket("ttl").await.unwrap();
    store.delete_bucket("life").await.unwrap();
    assert!(matches!(
        store.bucket_config("life").await.err(),
        Some(KvError::BucketNotFound(_))
    ));
    assert!(matches!(
        store.open("life").await.err(),
        Some(KvError::BucketNotFound(_))
    ));
    assert!(matches!(
        created.put("a", b("2")).await,
        Err(KvError::BucketNotFound(_))
    ));
    assert!(matches!(
        store.delete_bucket("life").await,
        Err(KvError::BucketNotFound(_))
    ));
    // Bad configurations are typed errors.
    for config in [
        BucketConfig::new("bad.name"),
        BucketConfig::new(""),
        BucketConfig::new("h").with_history(0),
        BucketConfig::new("h").with_history(65),
    ] {
        assert!(matches!(
            store.create_or_open(&config).await.err(),
            Some(KvError::InvalidConfig(_))
        ));
    }
}

pub async fn create_exists(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("create")).await;
    let rev = bk.create("k", b("v1")).await.unwrap();
    assert!(rev > 0);
    let err = bk.create("k", b("v2")).await.unwrap_err();
    assert!(
        matches!(err, KvError::AlreadyExists { ref key, .. } if key == "k"),
        "{err:?}"
    );
    let entry = bk.get("k").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.revision), (b("v1"), rev));
    assert_eq!(entry.operation, Operation::Put);
    assert_eq!(entry.key, "k");
    assert!(bk.get("absent").await.unwrap().is_none());
}

pub async fn cas(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("cas").with_history(5)).await;
    let r1 = bk.put("k", b("1")).await.unwrap();
    let r2 = bk.update("k", b("2"), r1).await.unwrap();
    assert!(r2 > r1);
    let err = bk.update("k", b("stale"), r1).await.unwrap_err();
    match err {
        KvError::RevisionConflict { key, expected, .. } => {
            assert_eq!((key.as_str(), expected), ("k", r1));
        }
        other => panic!("expected a revision conflict, got {other:?}"),
    }
    assert_eq!(bk.get("k").await.unwrap().unwrap().value, b("2"));
    // Updating an absent key at a non-zero revision conflicts; at revision 0 it creates.
    assert!(matches!(
        bk.update("new", b("x"), 99).await,
        Err(KvError::RevisionConflict { .. })
    ));
    let r3 = bk.update("new", b("x"), 0).await.unwrap();
    assert!(r3 > r2);
    assert!(matches!(
        bk.update("new", b("y"), 0).await,
        Err(KvError::RevisionConflict { .. })
    ));
    // A failed CAS wrote nothing and consumed no revision.
    assert_eq!(bk.entry_history("k").await.unwrap().len(), 2);
    assert_eq!(next_revision(bk.as_ref()).await, r3 + 1);
}

pub async fn delete_then_create(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("del").with_history(5)).await;
    let r1 = bk.create("k", b("1")).await.unwrap();
    // A delete at the wrong revision conflicts and leaves the value.
    assert!(matches!(
        bk.delete("k", Some(r1 + 100)).await,
        Err(KvError::RevisionConflict { .. })
    ));
    assert!(bk.get("k").await.unwrap().is_some());
    bk.delete("k", Some(r1)).await.unwrap();
    assert!(bk.get("k").await.unwrap().is_none());
    assert!(bk.keys(None).await.unwrap().is_empty());
    let hist = bk.entry_history("k").await.unwrap();
    assert_eq!(
        hist.iter().map(|e| e.operation).collect::<Vec<_>>(),
        [Operation::Put, Operation::Delete]
    );
    assert!(hist[1].value.is_empty());
    let r3 = bk.create("k", b("again")).await.unwrap();
    assert!(r3 > hist[1].revision);
    assert_eq!(bk.get("k").await.unwrap().unwrap().value, b("again"));
    // Purge drops the history and leaves one marker.
    bk.purge("k", Some(r3)).await.unwrap();
    let hist = bk.entry_history("k").await.unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].operation, Operation::Purge);
    assert!(bk.get("k").await.unwrap().is_none());
    bk.create("k", b("third")).await.unwrap();
    assert!(matches!(
        bk.purge("k", Some(1)).await,
        Err(KvError::RevisionConflict { .. })
    ));
    bk.purge("k", None).await.unwrap();
    assert!(bk.get("k").await.unwrap().is_none());
}

pub async fn history_depth(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("hist").with_history(3)).await;
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(bk.put("k", b(&i.to_string())).await.unwrap());
    }
    let hist = bk.entry_history("k").await.unwrap();
    assert_eq!(
        hist.iter().map(|e| e.revision).collect::<Vec<_>>(),
        revs[2..].to_vec()
    );
    assert_eq!(
        hist.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        [b("2"), b("3"), b("4")]
    );
    // Deletes count towards the depth.
    bk.delete("k", None).await.unwrap();
    let hist = bk.entry_history("k").await.unwrap();
    assert_eq!(hist.len(), 3);
    assert_eq!(hist[2].operation, Operation::Delete);
    assert_eq!(hist[0].value, b("3"));
    // Other keys keep their own history.
    bk.put("other", b("x")).await.unwrap();
    assert_eq!(bk.entry_history("other").await.unwrap().len(), 1);
    assert!(bk.entry_history("never").await.unwrap().is_empty());
}

pub async fn ttl_expiry(store: &dyn KvStore) {
    let bk = bucket(
        store,
        BucketConfig::new("ttl")
            .with_history(2)
            .with_ttl(Duration::from_secs(1)),
    )
    .await;
    let r1 = bk.create("k", b("v")).await.unwrap();
    assert!(bk.get("k").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(bk.get("k").await.unwrap().is_none());
    assert!(bk.keys(None).await.unwrap().is_empty());
    assert!(bk.entry_history("k").await.unwrap().is_empty());
    // Expired keys can be created again; revisions keep counting.
    let r2 = bk.create("k", b("v2")).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(bk.get("k").await.unwrap().unwrap().value, b("v2"));
}

/// A key that expired is left out of a listing that also holds keys written after it (the
/// listing has seen the expired key before).
pub async fn ttl_expiry_among_live_keys(store: &dyn KvStore) {
    let bk = bucket(
        store,
        BucketConfig::new("ttl-mixed").with_ttl(Duration::from_secs(1)),
    )
    .await;
    bk.put("old", b("v")).await.unwrap();
    assert_eq!(bk.keys(None).await.unwrap(), ["old"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while bk.get("old").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "\"old\" never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bk.put("new", b("v")).await.unwrap();
    assert_eq!(bk.keys(None).await.unwrap(), ["new"]);
}

pub async fn keys_with_prefix(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("keys")).await;
    for key in [
        "users.bob",
        "users.alice",
        "roles.admin",
        "users2.x",
        "users.carol",
    ] {
        bk.put(key, b("v")).await.unwrap();
    }
    bk.delete("users.carol", None).await.unwrap();
    assert_eq!(
        bk.keys(Some("users.")).await.unwrap(),
        ["users.alice", "users.bob"]
    );
    assert_eq!(
        bk.keys(Some("users")).await.unwrap(),
        ["users.alice", "users.bob", "users2.x"]
    );
    assert_eq!(
        bk.keys(None).await.unwrap(),
        ["roles.admin", "users.alice", "users.bob", "users2.x"]
    );
    assert!(bk.keys(Some("nothing")).await.unwrap().is_empty());
    // A prefix that is not a valid key simply matches nothing.
    assert!(bk.keys(Some("ü")).await.unwrap().is_empty());
}

pub async fn watch_ordering(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("watch").with_history(10)).await;
    let ra1 = bk.put("a", b("1")).await.unwrap();
    bk.put("b", b("1")).await.unwrap();
    let ra2 = bk.put("a", b("2")).await.unwrap();
    bk.delete("b", None).await.unwrap();
    bk.put("x.c", b("1")).await.unwrap();

    // LastValues: the last revision of every key (deletes included), in revision order.
    let mut last = bk.watch(None, WatchFrom::LastValues).await.unwrap();
    let got: Vec<_> = [
        next(&mut last).await,
        next(&mut last).await,
        next(&mut last).await,
    ]
    .into_iter()
    .map(|e| (e.key, e.operation))
    .collect();
    assert_eq!(
        got,
        [
            ("a".to_owned(), Operation::Put),
            ("b".to_owned(), Operation::Delete),
            ("x.c".to_owned(), Operation::Put)
        ]
    );
    // Now: only later changes; with a prefix filter.
    let mut now = bk.watch(None, WatchFrom::Now).await.unwrap();
    let mut only_x = bk.watch(Some("x."), WatchFrom::Now).await.unwrap();
    let mut rest = Vec::new();
    for i in 0..5 {
        rest.push(bk.put("a", b(&format!("n{i}"))).await.unwrap());
        rest.push(bk.put("x.d", b(&format!("n{i}"))).await.unwrap());
    }
    for rev in &rest {
        assert_eq!(next(&mut now).await.revision, *rev);
        assert_eq!(next(&mut last).await.revision, *rev);
    }
    for rev in rest.iter().skip(1).step_by(2) {
        let e = next(&mut only_x).await;
        assert_eq!((e.key.as_str(), e.revision), ("x.d", *rev));
    }
    nothing_more(&mut now).await;
    nothing_more(&mut only_x).await;

    // Revision: every kept change from that revision on, in order.
    let mut from = bk.watch(Some("a"), WatchFrom::Revision(ra2)).await.unwrap();
    let e = next(&mut from).await;
    assert_eq!((e.revision, e.value), (ra2, b("2")));
    for rev in rest.iter().step_by(2) {
        assert_eq!(next(&mut from).await.revision, *rev);
    }
    assert!(ra1 < ra2);
}

pub async fn large_values(store: &dyn KvStore) {
    let bk = bucket(
        store,
        BucketConfig::new("large").with_max_value_size(64 * 1024),
    )
    .await;
    let at_limit = Bytes::from(vec![7u8; 64 * 1024]);
    let r1 = bk.put("k", at_limit.clone()).await.unwrap();
    assert_eq!(bk.get("k").await.unwrap().unwrap().value, at_limit);
    let over = Bytes::from(vec![8u8; 64 * 1024 + 1]);
    for result in [
        bk.put("k", over.clone()).await,
        bk.update("k", over.clone(), r1).await,
        bk.create("k2", over.clone()).await,
    ] {
        assert!(
            matches!(result, Err(KvError::ValueTooLarge { size, limit }) if size == 64 * 1024 + 1 && limit == 64 * 1024),
            "{result:?}"
        );
    }
    // Nothing was written.
    assert_eq!(bk.get("k").await.unwrap().unwrap().revision, r1);
    assert_eq!(bk.keys(None).await.unwrap(), ["k"]);
    assert_eq!(next_revision(bk.as_ref()).await, r1 + 1);

    // The default limit is the same on every adapter.
    let dflt = bucket(store, BucketConfig::new("large-default")).await;
    let big = Bytes::from(vec![1u8; DEFAULT_MAX_VALUE_SIZE]);
    let r = dflt.put("big", big.clone()).await.unwrap();
    assert_eq!(dflt.get("big").await.unwrap().unwrap().value, big);
    // With a CAS header too.
    dflt.update("big", big.clone(), r).await.unwrap();
    assert!(matches!(
        dflt.put("big", Bytes::from(vec![1u8; DEFAULT_MAX_VALUE_SIZE + 1]))
            .await,
        Err(KvError::ValueTooLarge { .. })
    ));
}

pub async fn unicode_and_invalid_keys(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("keysyntax").with_history(2)).await;
    let r0 = next_revision(bk.as_ref()).await;
    for key in [
        "", ".a", "a.", "a..b", "a.*", "a.>", "a b", "ключ", "名前", "a@b", "tab\t",
    ] {
        let invalid = |r: &hive_kv::Result<_>| matches!(r, Err(KvError::InvalidKey { .. }));
        assert!(invalid(&bk.put(key, b("v")).await), "put {key:?}");
        assert!(invalid(&bk.create(key, b("v")).await), "create {key:?}");
        assert!(invalid(&bk.update(key, b("v"), 0).await), "update {key:?}");
        assert!(
            invalid(&bk.delete(key, None).await.map(|()| 0)),
            "delete {key:?}"
        );
        assert!(
            invalid(&bk.purge(key, None).await.map(|()| 0)),
            "purge {key:?}"
        );
        assert!(invalid(&bk.get(key).await.map(|_| 0)), "get {key:?}");
        assert!(
            invalid(&bk.entry_history(key).await.map(|_| 0)),
            "history {key:?}"
        );
    }
    // Nothing was written.
    assert_eq!(bk.keys(None).await.unwrap(), ["probe"]);
    assert_eq!(next_revision(bk.as_ref()).await, r0 + 1);

    // Every character JetStream allows, and unicode through the reversible escaping.
    let allowed = "Az09-/_=.x";
    bk.put(allowed, b("ok")).await.unwrap();
    let name = "Jürgen@例え.com";
    let key = format!("users.{}", encode_key_segment(name));
    bk.create(&key, b("unicode")).await.unwrap();
    assert_eq!(bk.get(&key).await.unwrap().unwrap().value, b("unicode"));
    let listed = bk.keys(Some("users.")).await.unwrap();
    assert_eq!(listed, vec![key.clone()]);
    let decoded = hive_kv::decode_key_segment(listed[0].strip_prefix("users.").unwrap()).unwrap();
    assert_eq!(decoded, name);
}

pub async fn revision_monotonicity(store: &dyn KvStore) {
    let bk = bucket(store, BucketConfig::new("mono").with_history(4)).await;
    let mut last = 0;
    for i in 0..30u64 {
        let key = format!("k{}", i % 4);
        let rev = match i % 3 {
            0 => bk.put(&key, b("v")).await.unwrap(),
            1 => {
                let cur = bk.entry_history(&key).await.unwrap();
                let at = cur.last().map_or(0, |e| e.revision);
                bk.update(&key, b("u"), at).await.unwrap()
            }
            _ => {
                bk.delete(&key, None).await.unwrap();
                bk.entry_history(&key)
                    .await
                    .unwrap()
                    .last()
                    .unwrap()
                    .revision
            }
        };
        // Strictly increasing across the whole bucket, one per successful write.
        assert_eq!(rev, last + 1, "write {i}");
        last = rev;
    }
    // Revisions are never reused after purges either.
    bk.purge("k0", None).await.unwrap();
    assert_eq!(next_revision(bk.as_ref()).await, last + 2);
}

/// Read-CAS-retry increments from 16 tasks: the final count equals the successful updates.
pub async fn concurrent_increments(store: Arc<dyn KvStore>) {
    let bk = store
        .create_or_open(&BucketConfig::new("counter").with_history(1))
        .await
        .unwrap();
    bk.create("n", b("0")).await.unwrap();
    let per_task = 10;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let bk = bk.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            let mut conflicts = 0u64;
            while ok < per_task {
                let cur = bk.get("n").await.unwrap().unwrap();
                let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                match bk
                    .update("n", Bytes::from((n + 1).to_string()), cur.revision)
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(KvError::RevisionConflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
            (ok, conflicts)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap().0;
    }
    let last = bk.get("n").await.unwrap().unwrap();
    let n: u64 = std::str::from_utf8(&last.value).unwrap().parse().unwrap();
    assert_eq!(n, total);
    assert_eq!(total, 16 * per_task);
}

/// Instantiates the whole contract for one adapter. `$fixture` is an async expression giving
/// `(Arc<dyn KvStore>, guard)`; the guard lives until the test ends.
#[macro_export]
macro_rules! contract_tests {
    ($fixture:expr) => {
        $crate::contract_tests!(@one $fixture;
            bucket_lifecycle, create_exists, cas, delete_then_create, history_depth,
            ttl_expiry, ttl_expiry_among_live_keys, keys_with_prefix, watch_ordering, large_values,
            unicode_and_invalid_keys, revision_monotonicity);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_increments() {
            let (store, _guard) = $fixture.await;
            contract::concurrent_increments(store).await;
        }
    };
    (@one $fixture:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fixture.await;
                contract::$name(store.as_ref()).await;
            }
        )*
    };
}
