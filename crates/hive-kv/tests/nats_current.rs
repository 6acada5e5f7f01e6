//! The storage contract on a current nats-server (at least
//! `hive_kv::nats::version::MIN_REPLICATED_VERSION`), beside `nats.rs`, which runs it on the
//! default (Debian's) server: error codes and listing behaviour differ between the two.

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod contract;

use std::sync::Arc;

use hive_kv::KvStore;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::{NatsServer, current_nats_server};

async fn fixture() -> (Arc<dyn KvStore>, NatsServer) {
    let binary = current_nats_server().unwrap_or_else(|e| panic!("{e}"));
    let server = NatsServer::start_with(&binary);
    let store = NatsStore::connect(&server.url(), NatsOptions::default())
        .await
        .unwrap();
    (Arc::new(store), server)
}

contract_tests!(fixture());
