//! The storage contract, run against the embedded SQLite adapter; plus restarts and several
//! processes on one data directory.

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod contract;

use std::sync::Arc;

use hive_kv::KvStore;
use hive_kv::sqlite::SqliteStore;
use tempfile::TempDir;

async fn fixture() -> (Arc<dyn KvStore>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    (Arc::new(store), dir)
}

contract_tests!(fixture());

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hive_kv::{BucketConfig, KvError, WatchFrom};

#[tokio::test]
async fn survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BucketConfig::new("durable").with_history(3);
    let rev = {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let bucket = store.create_or_open(&config).await.unwrap();
        bucket.put("k", Bytes::from_static(b"1")).await.unwrap();
        bucket.put("k", Bytes::from_static(b"2")).await.unwrap()
    };
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let bucket = store.open("durable").await.unwrap();
    let entry = bucket.get("k").await.unwrap().unwrap();
    assert_eq!(
        (entry.value, entry.revision),
        (Bytes::from_static(b"2"), rev)
    );
    assert_eq!(bucket.entry_history("k").await.unwrap().len(), 2);
    // The revision counter continues where it stopped.
    assert_eq!(
        bucket.put("k", Bytes::from_static(b"3")).await.unwrap(),
        rev + 1
    );
    assert!(store.path().ends_with("hive-kv.sqlite3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_sees_writes_and_watches_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = SqliteStore::open(dir.path()).await.unwrap();
    let cli = SqliteStore::open(dir.path()).await.unwrap();
    let config = BucketConfig::new("shared").with_history(2);
    let a = server.create_or_open(&config).await.unwrap();
    let b = cli.create_or_open(&config).await.unwrap();
    let mut watch = b.watch(None, WatchFrom::Now).await.unwrap();
    let r1 = a.create("k", Bytes::from_static(b"from-a")).await.unwrap();
    // The other connection's watch sees it within its poll interval.
    let seen = tokio::time::timeout(Duration::from_secs(2), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.revision, r1);
    assert!(matches!(
        b.create("k", Bytes::from_static(b"from-b")).await,
        Err(KvError::AlreadyExists { .. })
    ));
    let r2 = b
        .update("k", Bytes::from_static(b"from-b"), r1)
        .await
        .unwrap();
    assert!(matches!(
        a.update("k", Bytes::from_static(b"stale"), r1).await,
        Err(KvError::RevisionConflict { .. })
    ));
    assert_eq!(a.get("k").await.unwrap().unwrap().revision, r2);
    // A deleted bucket ends the other connection's watch with a typed error.
    server.delete_bucket("shared").await.unwrap();
    let mut ended = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(2), watch.next()).await {
        if let Err(e) = item {
            assert!(matches!(e, KvError::BucketNotFound(_)), "{e}");
            ended = true;
            break;
        }
    }
    assert!(ended, "watch did not report the deleted bucket");
}

/// Environment variable that turns this test binary into one of the writer processes.
const CHILD_DIR: &str = "HIVE_KV_TEST_CHILD_DIR";
const INCREMENTS_PER_TASK: u64 = 15;
const TASKS_PER_PROCESS: usize = 8;

/// Two OS processes (this test binary, re-executed) each run 8 tasks doing read-CAS-retry
/// increments on one key of one data directory: no increment is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_increment_one_counter() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let ok = increment_as_child(&dir).await;
        let out = std::path::Path::new(&dir).join(format!("child-{}", std::process::id()));
        std::fs::write(out, ok.to_string()).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let bucket = store
            .create_or_open(&BucketConfig::new("counter"))
            .await
            .unwrap();
        bucket.create("n", Bytes::from_static(b"0")).await.unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            tokio::process::Command::new(&exe)
                .args([
                    "two_processes_increment_one_counter",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .kill_on_drop(true)
                .output()
        })
        .collect();
    for out in futures::future::join_all(children).await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut reported = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("child-") {
            reported.push(
                std::fs::read_to_string(entry.path())
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
    }
    assert_eq!(reported.len(), 2, "both children must report");
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let bucket = store.open("counter").await.unwrap();
    let value = bucket.get("n").await.unwrap().unwrap().value;
    let n: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
    assert_eq!(n, reported.iter().sum::<u64>());
    assert_eq!(n, 2 * TASKS_PER_PROCESS as u64 * INCREMENTS_PER_TASK);
}

async fn increment_as_child(dir: &str) -> u64 {
    let store = SqliteStore::open(dir).await.unwrap();
    let bucket = store.open("counter").await.unwrap();
    let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
        .map(|_| {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                while ok < INCREMENTS_PER_TASK {
                    let cur = bucket.get("n").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    match bucket
                        .update("n", Bytes::from((n + 1).to_string()), cur.revision)
                        .await
                    {
                        Ok(_) => ok += 1,
                        Err(KvError::RevisionConflict { .. }) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                ok
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}
