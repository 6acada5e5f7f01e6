//! The NATS JetStream KV adapter, through the official `async-nats` client — what production
//! runs, on one node or a replicated cluster.
//!
//! A bucket is the stream `KV_<bucket>` with subjects `$KV.<bucket>.>`, created exactly as
//! `nats kv add` would (so `nats kv get` reads Hive's records): `history` is the stream's
//! per-subject limit, the TTL its `max_age` (JetStream 2.9 has no per-message TTL: expiry is
//! bucket-wide), `replicas` its replica count. The revision of an entry is its stream sequence.
//!
//! Writes are published directly with the KV headers so every server answer maps to a typed
//! error: `Nats-Expected-Last-Subject-Sequence` makes `update`, `create` and the expected-revision
//! `delete`/`purge` a compare-and-swap on the server ("wrong last sequence" becomes
//! [`KvError::RevisionConflict`]); a publish nobody answers means the stream is gone
//! ([`KvError::BucketNotFound`]). Every operation is bounded by
//! [`NatsOptions::op_timeout`] and reports [`KvError::Unavailable`] when it runs out; a write
//! that timed out may still be applied later (the client flushes its buffer after a reconnect),
//! so callers re-read or use compare-and-swap rather than blindly repeating it. The client
//! reconnects by itself (to any of the URLs given); watches use ordered consumers, which the
//! client re-creates after a reconnect at the next revision they have not delivered.
//!
//! Values are checked against the bucket's limit *before* publishing; the stream's own message
//! limit is the value limit plus [`HEADER_ROOM`] so that the KV headers always fit.
//!
//! Two guarantees are checked rather than assumed:
//! - **Replicated compare-and-swap.** A bucket with more than one replica is refused
//!   ([`KvError::UnsupportedServer`], naming the fix) on a server older than
//!   [`version::MIN_REPLICATED_VERSION`], whose replicated streams can accept two writers with
//!   the same expectation; the version is the one the connected server reports, checked when a
//!   bucket is bound and before every replicated write (a reconnect may land on another node).
//!   Every server's "wrong last sequence" codes (10071, and 10164 on current servers) are a
//!   [`KvError::RevisionConflict`], never an outage.
//! - **Complete listings without a consumer per call.** [`Bucket::keys`] answers from a
//!   per-bucket index that one long-lived ordered consumer keeps (see `index`), after one
//!   stream-info request tells it how far to catch up.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    context::{PublishError, PublishErrorKind},
    kv,
};
use async_nats::{HeaderMap, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::port::{Bucket, BucketConfig, Entry, KvError, KvStore, Operation, Result, WatchFrom};
use crate::validate::{matches_prefix, validate_bucket_name, validate_config, validate_key};

mod index;
pub mod version;

use index::KeyIndex;

/// Bytes the stream's message limit keeps above the value limit for the KV headers.
pub const HEADER_ROOM: usize = 1024;

const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
const KV_OPERATION: &str = "KV-Operation";
const ROLLUP: &str = "Nats-Rollup";

/// Connection settings.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Upper bound of every storage operation (request plus acknowledgement).
    pub op_timeout: Duration,
    /// Upper bound of establishing the first connection.
    pub connect_timeout: Duration,
    /// Name the connection shows in the server's monitoring.
    pub client_name: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            client_name: "hive".to_owned(),
        }
    }
}

/// Buckets in NATS JetStream.
#[derive(Debug, Clone)]
pub struct NatsStore {
    client: async_nats::Client,
    js: jetstream::Context,
    options: NatsOptions,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Unavailable(format!("nats {what}: {e}"))
}

/// Runs `fut` within `limit`, mapping the timeout to [`KvError::Unavailable`].
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(KvError::Unavailable(format!(
            "nats {what}: timed out after {limit:?}"
        )))
    })
}

fn stream_name(bucket: &str) -> String {
    format!("KV_{bucket}")
}

/// Whether a publish failed its `Nats-Expected-Last-Subject-Sequence`: the client's own kind
/// (code 10071), or the code current servers answer instead (10164, "wrong last sequence"),
/// which the client reports as `Other`.
fn is_wrong_last_sequence(e: &PublishError) -> bool {
    use jetstream::ErrorCode;
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|s| {
                [
                    ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
                    ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
                ]
                .contains(&s.error_code())
            })
}

/// Whether a JetStream API error says the stream does not exist.
fn is_stream_not_found(kind: &jetstream::context::GetStreamErrorKind) -> bool {
    matches!(kind, jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

impl NatsStore {
    /// Connects to `urls` (one URL, or several separated by commas for a cluster).
    pub async fn connect(urls: &str, options: NatsOptions) -> Result<Self> {
        let addrs = urls
            .split(',')
            .map(|u| u.trim().parse::<ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| KvError::InvalidConfig(format!("bad NATS URL list {urls:?}: {e}")))?;
        let connect = async_nats::ConnectOptions::new()
            .name(&options.client_name)
            .connection_timeout(options.connect_timeout)
            .request_timeout(Some(options.op_timeout))
            .connect(addrs);
        let client = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| unavailable("connect", format!("no answer from {urls} in time")))?
            .map_err(|e| unavailable("connect", e))?;
        Ok(Self::from_client(client, options))
    }

    /// Uses an existing client connection.
    pub fn from_client(client: async_nats::Client, options: NatsOptions) -> Self {
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.op_timeout);
        Self {
            client,
            js,
            options,
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn get_stream(&self, bucket: &str) -> Result<jetstream::stream::Stream> {
        let name = bucket.to_owned();
        bounded(self.options.op_timeout, "get bucket", async {
            self.js.get_stream(stream_name(&name)).await.map_err(|e| {
                if is_stream_not_found(&e.kind()) {
                    KvError::BucketNotFound(name.clone())
                } else {
                    unavailable("get bucket", e)
                }
            })
        })
        .await
    }

    /// Waits (at most the operation timeout) until a new stream has a leader, so that the
    /// first reads of a fresh replicated bucket are answered rather than timing out. Writes
    /// retry by themselves while a stream has no leader; reads cannot tell, hence the wait.
    async fn await_leader(&self, mut stream: jetstream::stream::Stream) {
        let deadline = tokio::time::Instant::now() + self.options.op_timeout;
        let mut pause = Duration::from_millis(10);
        while tokio::time::Instant::now() < deadline {
            let led = tokio::time::timeout_at(deadline, stream.info()).await;
            match led {
                Ok(Ok(info)) if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) => {
                    return;
                }
                Err(_) => return,
                Ok(_) => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// The version string of the server this client is connected to.
    pub fn server_version(&self) -> String {
        self.client.server_info().version
    }

    async fn bind(&self, config: BucketConfig) -> Result<Arc<dyn Bucket>> {
        version::check_replication(&self.server_version(), config.replicas)?;
        let name = config.name.clone();
        let store = bounded(self.options.op_timeout, "bind bucket", async {
            self.js
                .get_key_value(&name)
                .await
                .map_err(|e| unavailable("bind bucket", e))
        })
        .await?;
        Ok(Arc::new(NatsBucket {
            subject_prefix: format!("$KV.{}.", config.name),
            store,
            js: self.js.clone(),
            timeout: self.options.op_timeout,
            index: Arc::new(KeyIndex::new()),
            config,
        }))
    }
}

/// Our view of an existing stream's configuration.
fn config_of(bucket: &str, info: &jetstream::stream::Config) -> BucketConfig {
    let limit = usize::try_from(info.max_message_size)
        .ok()
        .and_then(|m| m.checked_sub(HEADER_ROOM))
        .filter(|&m| m > 0);
    BucketConfig {
        name: bucket.to_owned(),
        history: u8::try_from(info.max_messages_per_subject.clamp(1, 64)).unwrap_or(1),
        ttl: (!info.max_age.is_zero()).then_some(info.max_age),
        replicas: info.num_replicas,
        max_value_size: limit.map(|l| l.min(crate::DEFAULT_MAX_VALUE_SIZE)),
    }
}

#[async_trait]
impl KvStore for NatsStore {
    async fn create_or_open(&self, config: &BucketConfig) -> Result<Arc<dyn Bucket>> {
        validate_config(config)?;
        version::check_replication(&self.server_version(), config.replicas)?;
        let limit = crate::validate::value_limit(config);
        let max_payload = self.client.server_info().max_payload;
        if limit + HEADER_ROOM > max_payload {
            return Err(KvError::InvalidConfig(format!(
                "value limit {limit} does not fit the server's max_payload {max_payload}"
            )));
        }
        match self.get_stream(&config.name).await {
            // An existing bucket keeps its configuration.
            Ok(stream) => {
                let existing = config_of(&config.name, &stream.cached_info().config);
                return self.bind(existing).await;
            }
            Err(KvError::BucketNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // The stream `nats kv add` creates. (Created directly rather than through
        // `create_key_value`, whose account query does not parse a 2.9 server's answer.)
        let stream_config = jetstream::stream::Config {
            name: stream_name(&config.name),
            subjects: vec![format!("$KV.{}.>", config.name)],
            max_messages_per_subject: i64::from(config.history),
            max_age: config.ttl.unwrap_or_default(),
            max_message_size: i32::try_from(limit + HEADER_ROOM).unwrap_or(i32::MAX),
            storage: jetstream::stream::StorageType::File,
            num_replicas: config.replicas,
            allow_rollup: true,
            deny_delete: true,
            // Direct gets may be answered by any replica, which can lag behind a write that
            // was just acknowledged (a create followed by a read would miss it). Replicated
            // buckets therefore read through the stream leader.
            allow_direct: config.replicas <= 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        let stream = bounded(self.options.op_timeout, "create bucket", async {
            self.js
                .get_or_create_stream(stream_config)
                .await
                .map_err(|e| unavailable("create bucket", e))
        })
        .await?;
        self.await_leader(stream).await;
        self.bind(config.clone()).await
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        validate_bucket_name(name).map_err(|_| KvError::BucketNotFound(name.to_owned()))?;
        let stream = self.get_stream(name).await?;
        let config = config_of(name, &stream.cached_info().config);
        self.bind(config).await
    }

    async fn bucket_config(&self, name: &str) -> Result<BucketConfig> {
        validate_bucket_name(name).map_err(|_| KvError::BucketNotFound(name.to_owned()))?;
        let stream = self.get_stream(name).await?;
        Ok(config_of(name, &stream.cached_info().config))
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        validate_bucket_name(name).map_err(|_| KvError::BucketNotFound(name.to_owned()))?;
        let owned = name.to_owned();
        bounded(self.options.op_timeout, "delete bucket", async {
            self.js
                .delete_stream(stream_name(&owned))
                .await
                .map(drop)
                .map_err(|e| {
                    if is_stream_not_found(&e.kind()) {
                        KvError::BucketNotFound(owned.clone())
                    } else {
                        unavailable("delete bucket", e)
                    }
                })
        })
        .await
    }
}

/// One JetStream KV bucket.
struct NatsBucket {
    store: kv::Store,
    js: jetstream::Context,
    subject_prefix: String,
    timeout: Duration,
    config: BucketConfig,
    index: Arc<KeyIndex>,
}

impl Drop for NatsBucket {
    fn drop(&mut self) {
        self.index.stop();
    }
}

fn operation(op: kv::Operation) -> Operation {
    match op {
        kv::Operation::Put => Operation::Put,
        kv::Operation::Delete => Operation::Delete,
        kv::Operation::Purge => Operation::Purge,
    }
}

fn entry(e: kv::Entry) -> Entry {
    Entry {
        key: e.key,
        value: e.value,
        revision: e.revision,
        created: e.created,
        operation: operation(e.operation),
    }
}

impl NatsBucket {
    /// Publishes one KV message and returns its revision.
    async fn publish(
        &self,
        key: &str,
        value: Bytes,
        op: Operation,
        expected: Option<u64>,
    ) -> Result<u64> {
        validate_key(key)?;
        crate::validate::validate_value(&self.config, &value)?;
        // A reconnect may have landed on another node of the cluster: check the one we write to.
        version::check_replication(
            &self.js.client().server_info().version,
            self.config.replicas,
        )?;
        let mut headers = HeaderMap::new();
        if let Some(rev) = expected {
            headers.insert(EXPECTED_LAST_SUBJECT_SEQUENCE, rev.to_string().as_str());
        }
        match op {
            Operation::Put => {}
            Operation::Delete => headers.insert(KV_OPERATION, "DEL"),
            Operation::Purge => {
                headers.insert(KV_OPERATION, "PURGE");
                headers.insert(ROLLUP, "sub");
            }
        }
        let subject = format!("{}{key}", self.subject_prefix);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out =
            || KvError::Unavailable(format!("nats publish: timed out after {:?}", self.timeout));
        let mut pause = Duration::from_millis(20);
        loop {
            let attempt = tokio::time::timeout_at(deadline, async {
                let ack = self
                    .js
                    .publish_with_headers(subject.clone(), headers.clone(), value.clone())
                    .await
                    .map_err(|e| self.publish_error(key, expected, &e))?
                    .await
                    .map_err(|e| self.publish_error(key, expected, &e))?;
                Ok(ack.sequence)
            })
            .await;
            match attempt {
                // No responders: nobody received the message, so sending it again cannot
                // write it twice. Either the stream is gone, or it has no leader yet (just
                // created, or failing over): then try again until the deadline.
                Ok(Err(KvError::BucketNotFound(_))) => {
                    let why = tokio::time::timeout_at(
                        deadline,
                        self.read_error("publish", "no responders"),
                    )
                    .await
                    .unwrap_or_else(|_| timed_out());
                    if matches!(why, KvError::BucketNotFound(_))
                        || tokio::time::Instant::now() + pause >= deadline
                    {
                        return Err(why);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Ok(other) => return other,
                Err(_) => return Err(timed_out()),
            }
        }
    }

    fn publish_error(&self, key: &str, expected: Option<u64>, e: &PublishError) -> KvError {
        match e.kind() {
            _ if is_wrong_last_sequence(e) => KvError::RevisionConflict {
                key: key.to_owned(),
                expected: expected.unwrap_or(0),
                actual: None,
            },
            // Nobody answered: the stream is gone, or (in a cluster) has no leader right now.
            // `publish` tells the two apart.
            PublishErrorKind::StreamNotFound => KvError::BucketNotFound(self.config.name.clone()),
            PublishErrorKind::MaxPayloadExceeded => KvError::ValueTooLarge {
                size: 0,
                limit: crate::validate::value_limit(&self.config),
            },
            _ => KvError::Unavailable(format!("nats publish: {e}")),
        }
    }

    /// Turns a failed read into a typed error: a vanished stream is `BucketNotFound`.
    async fn read_error(&self, what: &str, e: impl std::fmt::Display) -> KvError {
        let message = e.to_string();
        let check = tokio::time::timeout(
            self.timeout,
            self.js.get_stream(stream_name(&self.config.name)),
        )
        .await;
        match check {
            Ok(Err(err)) if is_stream_not_found(&err.kind()) => {
                KvError::BucketNotFound(self.config.name.clone())
            }
            _ => KvError::Unavailable(format!("nats {what}: {message}")),
        }
    }

    async fn last_entry(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let got = tokio::time::timeout(self.timeout, self.store.entry(key)).await;
        match got {
            Ok(Ok(e)) => Ok(e.map(entry)),
            Ok(Err(e)) => Err(self.read_error("get", e).await),
            Err(_) => Err(KvError::Unavailable(format!(
                "nats get: timed out after {:?}",
                self.timeout
            ))),
        }
    }
}

impl NatsBucket {
    /// Live keys from the index, caught up to the stream's last sequence at the time of the
    /// call (see `index`).
    async fn indexed_keys(&self, prefix: Option<&str>) -> std::result::Result<Vec<String>, String> {
        let mut stream = self.store.stream.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| e.to_string())?
            .state
            .clone();
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        self.index
            .ensure_following(&stream, &self.subject_prefix, self.js.client().new_inbox());
        self.index.wait_for(state.last_sequence).await?;
        Ok(self.index.live_keys(state.first_sequence, prefix))
    }
}

#[async_trait]
impl Bucket for NatsBucket {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self
            .last_entry(key)
            .await?
            .filter(|e| e.operation == Operation::Put))
    }

    async fn entry_history(&self, key: &str) -> Result<Vec<Entry>> {
        validate_key(key)?;
        let got = tokio::time::timeout(self.timeout, async {
            let history = self.store.history(key).await.map_err(|e| e.to_string())?;
            history
                .map_ok(entry)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match got {
            Ok(Ok(entries)) => Ok(entries),
            Ok(Err(e)) => Err(self.read_error("history", e).await),
            Err(_) => Err(KvError::Unavailable(format!(
                "nats history: timed out after {:?}",
                self.timeout
            ))),
        }
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        self.publish(key, value, Operation::Put, None).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        // Like the official clients: expect "no message for this key"; when there is one and
        // it is a tombstone (delete/purge), expect exactly that tombstone.
        let mut expected = 0;
        for _ in 0..3 {
            match self
                .publish(key, value.clone(), Operation::Put, Some(expected))
                .await
            {
                Err(KvError::RevisionConflict { .. }) => {}
                other => return other,
            }
            match self.last_entry(key).await? {
                Some(e) if e.operation == Operation::Put => break,
                Some(e) => expected = e.revision,
                None => expected = 0,
            }
        }
        Err(KvError::AlreadyExists {
            bucket: self.config.name.clone(),
            key: key.to_owned(),
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: u64) -> Result<u64> {
        self.publish(key, value, Operation::Put, Some(expected_revision))
            .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        self.publish(key, Bytes::new(), Operation::Delete, expected_revision)
            .await
            .map(drop)
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        self.publish(key, Bytes::new(), Operation::Purge, expected_revision)
            .await
            .map(drop)
    }

    async fn keys(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let got = tokio::time::timeout(self.timeout, self.indexed_keys(prefix)).await;
        match got {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(e)) => Err(self.read_error("keys", e).await),
            Err(_) => {
                // A follower that fell silent starts over at the next listing.
                self.index.stop();
                Err(KvError::Unavailable(format!(
                    "nats keys: timed out after {:?}",
                    self.timeout
                )))
            }
        }
    }

    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> Result<BoxStream<'static, Result<Entry>>> {
        // A prefix ending at a token boundary becomes a server-side subject filter; any other
        // prefix is filtered here.
        let filter = match prefix {
            Some(p) if p.ends_with('.') && validate_key(&p[..p.len() - 1]).is_ok() => {
                format!("{p}>")
            }
            _ => ">".to_owned(),
        };
        let watch = tokio::time::timeout(self.timeout, async {
            match from {
                WatchFrom::LastValues => self.store.watch_with_history(&filter).await,
                WatchFrom::Now => self.store.watch(&filter).await,
                WatchFrom::Revision(rev) => {
                    self.store.watch_from_revision(&filter, rev.max(1)).await
                }
            }
        })
        .await;
        let watch = match watch {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => return Err(self.read_error("watch", e).await),
            Err(_) => {
                return Err(KvError::Unavailable(format!(
                    "nats watch: timed out after {:?}",
                    self.timeout
                )));
            }
        };
        let prefix = prefix.map(str::to_owned);
        Ok(watch
            .filter_map(move |item| {
                let out = match item {
                    Ok(e) if matches_prefix(&e.key, prefix.as_deref()) => Some(Ok(entry(e))),
                    Ok(_) => None,
                    Err(e) => Some(Err(unavailable("watch", e))),
                };
                futures::future::ready(out)
            })
            .boxed())
    }
}
