//! The storage contract, run against the in-memory adapter.

// Test code: helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod contract;

use std::sync::Arc;

use hive_kv::KvStore;
use hive_kv::memory::MemoryStore;

async fn fixture() -> (Arc<dyn KvStore>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

contract_tests!(fixture());
