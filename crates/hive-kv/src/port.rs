//! The storage port: what every adapter implements, with JetStream KV semantics (see the crate
//! docs for the rules every adapter follows).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// Result alias for storage operations.
pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// Errors of the storage port. Typed, never strings, so callers can branch on them.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key has no live value.
    #[error("key {key:?} not found in bucket {bucket:?}")]
    NotFound {
        /// Bucket name.
        bucket: String,
        /// Key.
        key: String,
    },
    /// `create` on a key that already has a live value.
    #[error("key {key:?} already exists in bucket {bucket:?}")]
    AlreadyExists {
        /// Bucket name.
        bucket: String,
        /// Key.
        key: String,
    },
    /// Compare-and-swap lost: the key's last revision is not the expected one.
    #[error("revision conflict on key {key:?}: expected {expected}, found {actual:?}")]
    RevisionConflict {
        /// Key.
        key: String,
        /// The revision the caller expected.
        expected: u64,
        /// The key's current last revision, when known.
        actual: Option<u64>,
    },
    /// The bucket does not exist.
    #[error("bucket {0:?} does not exist")]
    BucketNotFound(String),
    /// The key is not allowed (JetStream key rules).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The bucket name or configuration is not allowed.
    #[error("invalid bucket configuration: {0}")]
    InvalidConfig(String),
    /// The value is larger than the bucket allows.
    #[error("value of {size} bytes exceeds the bucket limit of {limit} bytes")]
    ValueTooLarge {
        /// Size of the rejected value.
        size: usize,
        /// The bucket's limit.
        limit: usize,
    },
    /// The backend cannot be reached or did not answer in time. For a write the outcome is
    /// unknown (it may still be applied, e.g. flushed by a reconnecting NATS client): re-read
    /// before retrying, or retry with compare-and-swap.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// The storage server cannot keep the guarantees the configuration asks for (e.g. a
    /// nats-server that does not enforce compare-and-swap on replicated streams). The message
    /// names the fix.
    #[error("unsupported storage server: {0}")]
    UnsupportedServer(String),
}

/// Configuration of a bucket, as JetStream KV understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// Bucket name: `[A-Za-z0-9_-]+`.
    pub name: String,
    /// How many revisions of each key are kept (1..=64).
    pub history: u8,
    /// Entries older than this expire; `None` keeps them forever.
    pub ttl: Option<Duration>,
    /// Replicas (JetStream clusters); ignored by single-node adapters.
    pub replicas: usize,
    /// Largest accepted value in bytes; `None` means the adapter's default limit.
    pub max_value_size: Option<usize>,
}

impl BucketConfig {
    /// A bucket keeping one revision per key, no TTL, one replica, the default value limit.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            history: 1,
            ttl: None,
            replicas: 1,
            max_value_size: None,
        }
    }

    /// The same configuration keeping `history` revisions per key.
    #[must_use]
    pub fn with_history(mut self, history: u8) -> Self {
        self.history = history;
        self
    }

    /// The same configuration with entries expiring after `ttl`.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The same configuration with `replicas` copies (JetStream clusters).
    #[must_use]
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The same configuration accepting values up to `max` bytes.
    #[must_use]
    pub fn with_max_value_size(mut self, max: usize) -> Self {
        self.max_value_size = Some(max);
        self
    }
}

/// What happened to a key at a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A value was written.
    Put,
    /// The key was deleted (history kept).
    Delete,
    /// The key was purged (history dropped).
    Purge,
}

/// One revision of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Key.
    pub key: String,
    /// Value (empty for deletes and purges).
    pub value: Bytes,
    /// Revision: strictly increasing across the whole bucket.
    pub revision: u64,
    /// When the revision was written.
    pub created: time::OffsetDateTime,
    /// What the revision did.
    pub operation: Operation,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFrom {
    /// The last value of every matching key, then every later change.
    LastValues,
    /// Only changes after the watch starts.
    Now,
    /// Every change from this bucket revision on.
    Revision(u64),
}

/// A store of buckets.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Create the bucket with this configuration, or open it when it exists.
    async fn create_or_open(&self, config: &BucketConfig) -> Result<Arc<dyn Bucket>>;
    /// Open an existing bucket.
    async fn open(&self, name: &str) -> Result<Arc<dyn Bucket>>;
    /// The configuration an existing bucket was created with (history, TTL, replicas), as the
    /// store reports it (`BucketNotFound` when absent): what `hive-cli doctor` checks.
    async fn bucket_config(&self, name: &str) -> Result<BucketConfig>;
    /// Delete a bucket and everything in it.
    async fn delete_bucket(&self, name: &str) -> Result<()>;
}

/// One bucket of entries.
#[async_trait]
pub trait Bucket: Send + Sync + 'static {
    /// The bucket's name.
    fn name(&self) -> &str;
    /// The last live value of a key, or `None` when absent, deleted or expired.
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// Every kept revision of a key, oldest first (deletes included).
    async fn entry_history(&self, key: &str) -> Result<Vec<Entry>>;
    /// Write a value unconditionally; returns the new revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<u64>;
    /// Write a value only when the key has no live value; returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<u64>;
    /// Compare-and-swap: write only when the key's last revision is `expected_revision`.
    async fn update(&self, key: &str, value: Bytes, expected_revision: u64) -> Result<u64>;
    /// Delete a key (a tombstone revision), optionally only at an expected revision.
    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()>;
    /// Delete a key and drop its history, optionally only at an expected revision.
    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()>;
    /// Keys with a live value, optionally only those starting with `prefix`, sorted.
    async fn keys(&self, prefix: Option<&str>) -> Result<Vec<String>>;
    /// A stream of changes to keys starting with `prefix` (all keys when `None`).
    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> Result<BoxStream<'static, Result<Entry>>>;
}
