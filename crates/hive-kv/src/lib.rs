//! # hive-kv — the storage port of Hive
//!
//! Every Hive record (users, access keys, policies, sessions, VPCs, subnets, security groups,
//! allocations) lives in a key-value *bucket* with NATS JetStream KV semantics: every write gets
//! a revision, `create` fails when the key exists, `update` is a compare-and-swap on the key's
//! last revision, history keeps old revisions, TTL expires entries and `watch` streams changes.
//!
//! This crate owns the port ([`KvStore`], [`Bucket`]) and its adapters:
//! - an in-memory store for tests and embedding,
//! - an embedded on-disk store (SQLite) that needs no server — the default,
//! - NATS JetStream KV through `async-nats`.
//!
//! One contract test suite runs against every adapter so that they behave the same.
//! It knows nothing about IAM, VPCs, HTTP or Open vSwitch.

mod port;

pub use port::*;
