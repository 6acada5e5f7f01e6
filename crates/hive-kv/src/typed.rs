//! A typed view of a bucket: values are serde types stored as JSON, so that
//! `nats kv get <bucket> <key>` (or `sqlite3`) shows readable records.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::port::{Bucket, KvError, Result};

/// How many times [`TypedBucket::update_with`] re-reads and retries after losing a
/// compare-and-swap before it gives up with the last [`KvError::RevisionConflict`].
pub const DEFAULT_CAS_RETRIES: u32 = 32;

/// A value together with the revision it was read at (the revision to pass to `update`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The key's revision holding this value.
    pub revision: u64,
}

/// A bucket whose values are JSON documents of type `T`.
pub struct TypedBucket<T> {
    inner: Arc<dyn Bucket>,
    retries: u32,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedBucket<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            retries: self.retries,
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for TypedBucket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedBucket")
            .field("bucket", &self.inner.name())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Encodes a value as JSON bytes.
pub fn encode_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        // serde_json's encode errors come from Serialize impls, never from the data itself.
        .map_err(|e| KvError::Codec(format!("cannot encode value as JSON: {e}")))
}

/// Decodes JSON bytes stored under `key`. The error names where decoding failed but never
/// echoes the stored bytes (records may hold secrets).
pub fn decode_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        KvError::Codec(format!(
            "value of key {key:?} is not a valid record ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

impl<T: Serialize + DeserializeOwned + Send + Sync> TypedBucket<T> {
    /// A typed view of `inner`.
    pub fn new(inner: Arc<dyn Bucket>) -> Self {
        Self {
            inner,
            retries: DEFAULT_CAS_RETRIES,
            _type: PhantomData,
        }
    }

    /// The same view with a different retry bound for [`Self::update_with`].
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The untyped bucket underneath.
    pub fn bucket(&self) -> &Arc<dyn Bucket> {
        &self.inner
    }

    /// The live value of `key` and its revision.
    pub async fn get(&self, key: &str) -> Result<Option<Versioned<T>>> {
        match self.inner.get(key).await? {
            Some(entry) => Ok(Some(Versioned {
                value: decode_json(key, &entry.value)?,
                revision: entry.revision,
            })),
            None => Ok(None),
        }
    }

    /// Writes `value` unconditionally.
    pub async fn put(&self, key: &str, value: &T) -> Result<u64> {
        self.inner.put(key, encode_json(value)?).await
    }

    /// Writes `value` only when `key` has no live value ([`KvError::AlreadyExists`] otherwise).
    pub async fn create(&self, key: &str, value: &T) -> Result<u64> {
        self.inner.create(key, encode_json(value)?).await
    }

    /// Compare-and-swap on the key's revision.
    pub async fn update(&self, key: &str, value: &T, expected_revision: u64) -> Result<u64> {
        self.inner
            .update(key, encode_json(value)?, expected_revision)
            .await
    }

    /// Deletes `key`, optionally only at `expected_revision`.
    pub async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        self.inner.delete(key, expected_revision).await
    }

    /// Live keys starting with `prefix`, sorted.
    pub async fn keys(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        self.inner.keys(prefix).await
    }

    /// Every live value under `prefix`, in key order. A key deleted between listing and
    /// reading is skipped.
    pub async fn list(&self, prefix: Option<&str>) -> Result<Vec<(String, Versioned<T>)>> {
        let mut out = Vec::new();
        for key in self.inner.keys(prefix).await? {
            if let Some(value) = self.get(&key).await? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Read-modify-write with compare-and-swap: reads `key`, calls `change` with the current
    /// value (`None` when absent), and writes the result with `create`/`update` at the revision
    /// read. When another writer got there first it re-reads and calls `change` again, at most
    /// the configured number of times (then the last conflict is returned). An error from
    /// `change` aborts without writing.
    pub async fn update_with<E, F>(&self, key: &str, mut change: F) -> Result<Versioned<T>, E>
    where
        E: From<KvError>,
        F: FnMut(Option<T>) -> Result<T, E> + Send,
    {
        let mut attempt = 0;
        loop {
            let current = self.get(key).await?;
            let revision = current.as_ref().map(|v| v.revision);
            let value = change(current.map(|v| v.value))?;
            let bytes = encode_json(&value)?;
            let written = match revision {
                Some(rev) => self.inner.update(key, bytes, rev).await,
                None => self.inner.create(key, bytes).await,
            };
            match written {
                Ok(revision) => return Ok(Versioned { value, revision }),
                Err(KvError::RevisionConflict { .. } | KvError::AlreadyExists { .. })
                    if attempt < self.retries =>
                {
                    attempt += 1;
                    // A short, growing pause lets the winner's write settle before re-reading.
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(20)))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::port::{BucketConfig, KvStore};
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct User {
        username: String,
        groups: Vec<String>,
    }

    async fn users() -> TypedBucket<User> {
        let store = MemoryStore::new();
        let bucket = store
            .create_or_open(&BucketConfig::new("users").with_history(10))
            .await
            .unwrap();
        TypedBucket::new(bucket)
    }

    #[tokio::test]
    async fn stores_readable_json() {
        let users = users().await;
        let alice = User {
            username: "alice".into(),
            groups: vec!["admins".into()],
        };
        let rev = users.create("alice", &alice).await.unwrap();
        let raw = users.bucket().get("alice").await.unwrap().unwrap();
        assert_eq!(
            std::str::from_utf8(&raw.value).unwrap(),
            r#"{"username":"alice","groups":["admins"]}"#
        );
        assert_eq!(
            users.get("alice").await.unwrap(),
            Some(Versioned {
                value: alice.clone(),
                revision: rev
            })
        );
        assert_eq!(users.list(None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn decode_errors_do_not_echo_the_value() {
        let users = users().await;
        users
            .bucket()
            .put("bad", Bytes::from_static(br#"{"username":"s3cr3t-value"}"#))
            .await
            .unwrap();
        let err = users.get("bad").await.unwrap_err();
        assert!(matches!(err, KvError::Codec(_)));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn update_with_retries_until_it_wins() {
        let users = users().await;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let users = users.clone().with_retries(1000);
            tasks.push(tokio::spawn(async move {
                users
                    .update_with::<KvError, _>("counter", |cur| {
                        let mut u = cur.unwrap_or(User {
                            username: "counter".into(),
                            groups: vec![],
                        });
                        u.groups.push(i.to_string());
                        Ok(u)
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let final_value = users.get("counter").await.unwrap().unwrap().value;
        assert_eq!(final_value.groups.len(), 16);
    }

    #[tokio::test]
    async fn update_with_aborts_on_the_callers_error() {
        #[derive(Debug)]
        enum AppError {
            Kv,
            Refused,
        }
        impl From<KvError> for AppError {
            fn from(_: KvError) -> Self {
                AppError::Kv
            }
        }
        let users = users().await;
        let result = users
            .update_with("x", |_| Err::<User, _>(AppError::Refused))
            .await;
        assert!(matches!(result, Err(AppError::Refused)));
        assert!(users.get("x").await.unwrap().is_none());
        let _ = AppError::Kv;
    }

    #[tokio::test]
    async fn update_with_gives_up_after_the_bound() {
        let users = users().await.with_retries(2);
        users
            .put(
                "k",
                &User {
                    username: "k".into(),
                    groups: vec![],
                },
            )
            .await
            .unwrap();
        let inner = users.bucket().clone();
        // Every attempt is overtaken by another write made from inside the change.
        let mut calls = 0;
        let result = users
            .update_with::<KvError, _>("k", |cur| {
                calls += 1;
                let inner = inner.clone();
                let _ = futures::executor::block_on(inner.put(
                    "k",
                    Bytes::from_static(b"{\"username\":\"k\",\"groups\":[]}"),
                ));
                Ok(cur.unwrap_or(User {
                    username: "k".into(),
                    groups: vec![],
                }))
            })
            .await;
        assert!(
            matches!(result, Err(KvError::RevisionConflict { .. })),
            "{result:?}"
        );
        assert_eq!(calls, 3);
    }
}
