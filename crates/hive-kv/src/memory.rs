//! The in-memory adapter: for unit tests and for embedding Hive in one process.
//!
//! Everything lives in the process and disappears with it. Semantics are exactly those of the
//! other adapters (the contract suite proves it): one revision counter per bucket, history kept
//! per key, TTL checked on every access, watches that never miss a change (each watcher has its
//! own unbounded queue, fed under the bucket lock, so changes arrive in revision order).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::port::{Bucket, BucketConfig, Entry, KvError, KvStore, Operation, Result, WatchFrom};
use crate::validate::{matches_prefix, validate_config, validate_key, validate_value};

/// A store of buckets held in memory. Cloning shares the same buckets.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    buckets: Arc<Mutex<HashMap<String, Arc<MemoryBucket>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn buckets(&self) -> MutexGuard<'_, HashMap<String, Arc<MemoryBucket>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still consistent.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn create_or_open(&self, config: &BucketConfig) -> Result<Arc<dyn Bucket>> {
        validate_config(config)?;
        let mut buckets = self.buckets();
        let bucket = buckets
            .entry(config.name.clone())
            .or_insert_with(|| Arc::new(MemoryBucket::new(config.clone())));
        Ok(bucket.clone())
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        match self.buckets().get(name) {
            Some(bucket) => Ok(bucket.clone()),
            None => Err(KvError::BucketNotFound(name.to_owned())),
        }
    }

    async fn bucket_config(&self, name: &str) -> Result<BucketConfig> {
        match self.buckets().get(name) {
            Some(bucket) => Ok(bucket.config.clone()),
            None => Err(KvError::BucketNotFound(name.to_owned())),
        }
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        match self.buckets().remove(name) {
            Some(bucket) => {
                bucket.deleted.store(true, Ordering::SeqCst);
                // Dropping the watchers' senders ends their streams.
                bucket.state().watchers.clear();
                Ok(())
            }
            None => Err(KvError::BucketNotFound(name.to_owned())),
        }
    }
}

/// One in-memory bucket.
#[derive(Debug)]
pub struct MemoryBucket {
    config: BucketConfig,
    deleted: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_revision: u64,
    /// Kept revisions of each key, oldest first.
    keys: BTreeMap<String, VecDeque<Entry>>,
    watchers: Vec<Watcher>,
}

#[derive(Debug)]
struct Watcher {
    prefix: Option<String>,
    tx: mpsc::UnboundedSender<Result<Entry>>,
}

/// What a write requires of the key's current last revision.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    /// `create`: no live value (absent, deleted, purged or expired).
    NoLiveValue,
    Revision(u64),
}

impl MemoryBucket {
    fn new(config: BucketConfig) -> Self {
        Self {
            config,
            deleted: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic (no user code runs under the
        // lock), so a poisoned lock still holds consistent data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state with expired entries dropped, or `BucketNotFound` once the bucket is deleted.
    fn live_state(&self) -> Result<MutexGuard<'_, State>> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(KvError::BucketNotFound(self.config.name.clone()));
        }
        let mut state = self.state();
        if let Some(ttl) = self.config.ttl {
            let cutoff = OffsetDateTime::now_utc() - ttl;
            state.keys.retain(|_, revs| {
                while revs.front().is_some_and(|e| e.created <= cutoff) {
                    revs.pop_front();
                }
                !revs.is_empty()
            });
        }
        Ok(state)
    }

    fn write(&self, key: &str, value: Bytes, op: Operation, expect: Expect) -> Result<u64> {
        validate_key(key)?;
        validate_value(&self.config, &value)?;
        let mut state = self.live_state()?;
        let last = state.keys.get(key).and_then(|revs| revs.back());
        let last_revision = last.map_or(0, |e| e.revision);
        match expect {
            Expect::Any => {}
            Expect::NoLiveValue => {
                if last.is_some_and(|e| e.operation == Operation::Put) {
                    return Err(KvError::AlreadyExists {
                        bucket: self.config.name.clone(),
                        key: key.to_owned(),
                    });
                }
            }
            Expect::Revision(expected) => {
                if expected != last_revision {
                    return Err(KvError::RevisionConflict {
                        key: key.to_owned(),
                        expected,
                        actual: Some(last_revision),
                    });
                }
            }
        }
        state.last_revision += 1;
        let entry = Entry {
            key: key.to_owned(),
            value,
            revision: state.last_revision,
            created: OffsetDateTime::now_utc(),
            operation: op,
        };
        let history = usize::from(self.config.history);
        let revs = state.keys.entry(key.to_owned()).or_default();
        if op == Operation::Purge {
            revs.clear();
        }
        revs.push_back(entry.clone());
        while revs.len() > history {
            revs.pop_front();
        }
        state.watchers.retain(|w| {
            if !matches_prefix(key, w.prefix.as_deref()) {
                return !w.tx.is_closed();
            }
            w.tx.send(Ok(entry.clone())).is_ok()
        });
        Ok(entry.revision)
    }
}

#[async_trait]
impl Bucket for MemoryBucket {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let state = self.live_state()?;
        Ok(state
            .keys
            .get(key)
            .and_then(|revs| revs.back())
            .filter(|e| e.operation == Operation::Put)
            .cloned())
    }

    async fn entry_history(&self, key: &str) -> Result<Vec<Entry>> {
        validate_key(key)?;
        let state = self.live_state()?;
        Ok(state
            .keys
            .get(key)
            .map(|revs| revs.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        self.write(key, value, Operation::Put, Expect::Any)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        self.write(key, value, Operation::Put, Expect::NoLiveValue)
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: u64) -> Result<u64> {
        self.write(
            key,
            value,
            Operation::Put,
            Expect::Revision(expected_revision),
        )
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let expect = expected_revision.map_or(Expect::Any, Expect::Revision);
        self.write(key, Bytes::new(), Operation::Delete, expect)
            .map(drop)
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let expect = expected_revision.map_or(Expect::Any, Expect::Revision);
        self.write(key, Bytes::new(), Operation::Purge, expect)
            .map(drop)
    }

    async fn keys(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let state = self.live_state()?;
        Ok(state
            .keys
            .iter()
            .filter(|(k, revs)| {
                matches_prefix(k, prefix)
                    && revs.back().is_some_and(|e| e.operation == Operation::Put)
            })
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> Result<BoxStream<'static, Result<Entry>>> {
        let mut state = self.live_state()?;
        let mut initial: Vec<Entry> = match from {
            WatchFrom::Now => Vec::new(),
            WatchFrom::LastValues => state
                .keys
                .iter()
                .filter(|(k, _)| matches_prefix(k, prefix))
                .filter_map(|(_, revs)| revs.back().cloned())
                .collect(),
            WatchFrom::Revision(start) => state
                .keys
                .iter()
                .filter(|(k, _)| matches_prefix(k, prefix))
                .flat_map(|(_, revs)| revs.iter().filter(|e| e.revision >= start).cloned())
                .collect(),
        };
        initial.sort_by_key(|e| e.revision);
        // Registered under the same lock as the snapshot: no change is lost or repeated.
        let (tx, rx) = mpsc::unbounded_channel();
        state.watchers.push(Watcher {
            prefix: prefix.map(str::to_owned),
            tx,
        });
        drop(state);
        let live = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        Ok(stream::iter(initial.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}
