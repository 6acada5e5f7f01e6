//! The storage contract, run against NATS JetStream KV on a real `nats-server -js` that the
//! harness starts on a free loopback port (and kills when the test ends).

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod contract;

use std::sync::Arc;

use hive_kv::KvStore;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::NatsServer;

async fn fixture() -> (Arc<dyn KvStore>, NatsServer) {
    let server = NatsServer::start();
    let store = NatsStore::connect(&server.url(), NatsOptions::default())
        .await
        .unwrap();
    (Arc::new(store), server)
}

contract_tests!(fixture());

use std::time::{Duration, Instant};

use bytes::Bytes;
use hive_kv::{BucketConfig, KvError};

/// A server that goes away makes operations fail with `Unavailable` within the configured
/// timeout (never hang); once it is back the client reconnects and work resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_are_bounded_and_reconnects_resume() {
    let mut server = NatsServer::start();
    let options = NatsOptions {
        op_timeout: Duration::from_millis(500),
        ..NatsOptions::default()
    };
    let store = NatsStore::connect(&server.url(), options).await.unwrap();
    let bucket = store
        .create_or_open(&BucketConfig::new("outage"))
        .await
        .unwrap();
    let rev = bucket
        .put("k", Bytes::from_static(b"before"))
        .await
        .unwrap();

    server.stop();
    let started = Instant::now();
    let err = bucket.get("k").await.unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
    let err = bucket.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let entry = loop {
        match bucket.get("k").await {
            Ok(entry) => break entry.unwrap(),
            Err(e) if Instant::now() < deadline => {
                eprintln!("not reconnected yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    // File storage kept the entry. The put that timed out may still have been applied (the
    // client flushes what it buffered once reconnected): a timeout means "outcome unknown".
    assert!(
        (entry.revision == rev && entry.value == "before")
            || (entry.revision == rev + 1 && entry.value == "x"),
        "{entry:?}"
    );
    bucket
        .update("k", Bytes::from_static(b"after"), entry.revision)
        .await
        .unwrap();
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = NatsOptions {
        connect_timeout: Duration::from_millis(500),
        ..NatsOptions::default()
    };
    let err = NatsStore::connect(&format!("nats://127.0.0.1:{port}"), options)
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        NatsStore::connect("not a url::", NatsOptions::default()).await,
        Err(KvError::InvalidConfig(_))
    ));
}

#[test]
fn a_missing_server_names_the_install_command() {
    let message = hive_kv::testing::HarnessError::NotInstalled.to_string();
    assert!(
        message.contains("apt-get install -y nats-server"),
        "{message}"
    );
}
