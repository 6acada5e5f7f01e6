//! # hive-kv — the storage port of Hive
//!
//! Every Hive record (users, access keys, policies, sessions, VPCs, subnets, security groups,
//! allocations) lives in a key-value *bucket* with NATS JetStream KV semantics. This crate owns
//! the port ([`KvStore`], [`Bucket`]), its adapters and the typed JSON view over them. It knows
//! nothing about IAM records, VPCs, HTTP or Open vSwitch, nor any bucket's name.
//!
//! ## Semantics (identical on every adapter; one contract suite proves it)
//! - **Revisions** are per bucket, strictly increasing, one per successful write (puts,
//!   deletes and purges alike), never reused — the JetStream stream sequence. A failed write
//!   (conflict, invalid key, oversized value) consumes none and writes nothing.
//! - [`Bucket::create`] succeeds only when the key has no live value (absent, deleted, purged
//!   or expired); otherwise [`KvError::AlreadyExists`].
//! - [`Bucket::update`] is compare-and-swap on the key's *last* revision (tombstones count;
//!   `0` means "no revision kept at all"); a stale one is [`KvError::RevisionConflict`]. `delete`
//!   and `purge` take the same optional expectation.
//! - **History**: each key keeps its newest `history` revisions, tombstones included; a purge
//!   leaves only its marker. **TTL** is bucket-wide (JetStream 2.9 `max_age`): older entries
//!   vanish from every read; expiry emits no watch event.
//! - **Watch** delivers in revision order: [`WatchFrom::LastValues`] (last revision of each
//!   key, tombstones included, then changes), [`WatchFrom::Now`], [`WatchFrom::Revision`].
//! - **Keys** follow the JetStream client's rules (`[-/_=.a-zA-Z0-9]`, no leading/trailing or
//!   double `.`); anything else is [`KvError::InvalidKey`]. Store unicode or IAM names through
//!   [`encode_key_segment`]. Values above the bucket limit (default
//!   [`DEFAULT_MAX_VALUE_SIZE`]) are [`KvError::ValueTooLarge`].
//! - An existing bucket keeps its stored configuration when opened with another one.
//!
//! ## Adapters and their guarantees
//! - [`memory::MemoryStore`]: one process; watches are pushed synchronously and never miss a
//!   change.
//! - [`sqlite::SqliteStore`] (the default, no server): one file in the data directory, WAL mode,
//!   `BEGIN IMMEDIATE` transactions, so CAS is atomic across threads *and* processes (server and
//!   CLI may share a data directory). Survives restarts; survives process crashes for every
//!   committed write. Watches poll every 50 ms for other processes' writes (immediate for writes
//!   through the same store); a revision pruned before a poll saw it is skipped.
//! - [`nats::NatsStore`]: JetStream KV via `async-nats`, buckets compatible with `nats kv`;
//!   replicas for clusters; every operation bounded by a timeout ([`KvError::Unavailable`]);
//!   reconnects handled by the client.
//! - `testing` (crate feature): a `nats-server` harness (single node and cluster) for tests.
//!
//! ```
//! use hive_kv::{BucketConfig, KvStore, TypedBucket, memory::MemoryStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let bucket = store.create_or_open(&BucketConfig::new("demo").with_history(5)).await?;
//! let rev = bucket.create("users.alice", "v1".into()).await?;
//! bucket.update("users.alice", "v2".into(), rev).await?;
//! assert!(bucket.update("users.alice", "v3".into(), rev).await.is_err()); // stale revision
//!
//! let counters: TypedBucket<u64> = TypedBucket::new(bucket);
//! counters.update_with::<hive_kv::KvError, _>("n", |n| Ok(n.unwrap_or(0) + 1)).await?;
//! assert_eq!(counters.get("n").await?.map(|v| v.value), Some(1));
//! # Ok::<(), hive_kv::KvError>(())
//! # }).unwrap();
//! ```

pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
mod port;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod typed;
pub mod validate;

pub use port::*;
pub use typed::{TypedBucket, Versioned};
pub use validate::{DEFAULT_MAX_VALUE_SIZE, decode_key_segment, encode_key_segment, validate_key};
