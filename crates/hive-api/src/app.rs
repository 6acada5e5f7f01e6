//! The state every AWS service of the server shares: the IAM repository, the store, the
//! configuration, the authentication cache, and authorization of a caller's action on a
//! resource.
//!
//! Handlers call [`App::authorize`] (or [`App::authorize_with`] for extra condition keys)
//! before they read or change anything: authentication says who is calling, this says
//! whether they may. Any doubt refuses the request, never allows it: a store that is away is a
//! 503 (retry), an unparsable stored policy a 500.
//!
//! # The authentication cache
//! Credentials (by access key id) and compiled policy sets (by principal) are kept in memory so
//! that a request costs no storage read. They are only trusted while a KV watch on the IAM
//! buckets is live:
//! - every change seen by the watch (from this process or any other on the same store) drops
//!   what it may affect: a change to an access key or session drops that credential, a change
//!   to a user, group, role or policy drops everything;
//! - writes made through [`App::iam`] when the app was built with [`App::open`] invalidate
//!   synchronously, before the write returns, so a detach is effective for this process's next
//!   request;
//! - no entry is used after [`AUTH_CACHE_MAX_AGE`] (1 s) even while the watch looks healthy, so
//!   a watch that stalls silently still cannot stretch a revocation past one second;
//! - while no watch is live (before it starts, after it failed, while it reconnects) nothing is
//!   cached and every request reads through: the cache fails closed.
//!
//! A read that races an invalidation is not cached: every invalidation bumps a generation
//! counter, and a value read from storage is only inserted when the generation is unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use hive_iam::error::IamError;
use hive_iam::identity::{Credential, Principal as IamPrincipal, UserRecord};
use hive_iam::policy::RequestContext as PolicyRequest;
use hive_iam::seal::Keyring;
use hive_iam_store::IamRepo;
use hive_iam_store::buckets::IamBuckets;
use hive_kv::{Bucket, Entry, KvStore, WatchFrom};
use time::OffsetDateTime;

use crate::config::Config;
use crate::error::ApiError;
use crate::server::RequestContext;

/// The longest time a cached credential or policy set is used before it is read again, even
/// while the watch is live.
pub const AUTH_CACHE_MAX_AGE: Duration = Duration::from_secs(1);

/// Entries per cache before it is emptied (a bound, not an LRU: refills are cheap).
const AUTH_CACHE_CAPACITY: usize = 16_384;

/// The account Hive serves (the setup guide's account).
pub use hive_node::bootstrap::ACCOUNT_ID;

/// Shared server state; cheap to clone through `Arc<App>`.
pub struct App {
    /// Users, groups, roles, policies, keys and sessions.
    pub iam: Arc<IamRepo>,
    /// The store everything persists in.
    pub store: Arc<dyn KvStore>,
    /// The effective configuration.
    pub config: Arc<Config>,
    cache: Arc<AuthCache>,
    watcher: Option<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("iam", &self.iam)
            .field("region", &self.region())
            .field("auth_cache_live", &self.auth_cache_live())
            .finish_non_exhaustive()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

/// Which IAM bucket a change came from, for invalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BucketKind {
    /// Users and groups, roles, managed policies: anything may depend on them.
    Entities,
    /// Access keys and sessions: keyed by access key id.
    Credentials,
}

/// The compiled policies that decide one principal's requests.
struct CompiledPolicies {
    /// Identity, boundary and session layers.
    layers: hive_iam_store::CompiledEffective,
    /// The principal's tags (`aws:PrincipalTag/...`).
    tags: Vec<(String, String)>,
}

struct Cached<T> {
    value: Arc<T>,
    at: Instant,
}

/// The in-memory authentication cache (see the module docs).
#[derive(Default)]
struct AuthCache {
    generation: AtomicU64,
    live: AtomicBool,
    credentials: Mutex<HashMap<String, Cached<Credential>>>,
    policies: Mutex<HashMap<String, Cached<CompiledPolicies>>>,
    users: Mutex<HashMap<String, Cached<UserRecord>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

impl AuthCache {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // The maps hold plain data; a panic elsewhere leaves them consistent.
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get<T>(&self, map: &Mutex<HashMap<String, Cached<T>>>, key: &str) -> Option<Arc<T>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let guard = Self::lock(map);
        let hit = guard
            .get(key)
            .filter(|c| c.at.elapsed() < AUTH_CACHE_MAX_AGE)
            .map(|c| c.value.clone());
        drop(guard);
        let counter = if hit.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Insert a value read while the generation was `generation`, unless something changed
    /// since (or the watch is not live).
    fn insert<T>(
        &self,
        map: &Mutex<HashMap<String, Cached<T>>>,
        key: String,
        value: Arc<T>,
        generation: u64,
    ) {
        let mut guard = Self::lock(map);
        if !self.live.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation
        {
            return;
        }
        if guard.len() >= AUTH_CACHE_CAPACITY {
            guard.clear();
        }
        guard.insert(
            key,
            Cached {
                value,
                at: Instant::now(),
            },
        );
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Self::lock(&self.credentials).clear();
        Self::lock(&self.policies).clear();
        Self::lock(&self.users).clear();
    }

    fn on_change(&self, kind: BucketKind, key: &str) {
        match kind {
            BucketKind::Credentials => {
                self.invalidations.fetch_add(1, Ordering::Relaxed);
                self.generation.fetch_add(1, Ordering::SeqCst);
                Self::lock(&self.credentials).remove(key);
            }
            BucketKind::Entities => self.clear(),
        }
    }

    fn set_live(&self, live: bool) {
        if live {
            // Anything read before the watch started may be stale.
            self.clear();
            self.live.store(true, Ordering::SeqCst);
        } else {
            self.live.store(false, Ordering::SeqCst);
            self.clear();
        }
    }
}

/// Counters of the authentication cache, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read storage (including all lookups while the watch is not live).
    pub misses: u64,
    /// Whether a KV watch is live (the cache is in use).
    pub live: bool,
    /// Invalidations so far (changes seen, watch state changes).
    pub invalidations: u64,
}

impl App {
    /// State over an opened repository and store. When called inside a tokio runtime, a KV
    /// watch on the IAM buckets is started and the authentication cache is used once it is
    /// live; writes through `iam` are then seen by the cache through that watch (within
    /// milliseconds). Prefer [`App::open`], which also invalidates synchronously on local
    /// writes.
    pub fn new(iam: Arc<IamRepo>, store: Arc<dyn KvStore>, config: Arc<Config>) -> Self {
        let cache = Arc::new(AuthCache::default());
        let watcher = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(watch_loop(store.clone(), config.clone(), cache.clone()))
                .abort_handle()
        });
        Self {
            iam,
            store,
            config,
            cache,
            watcher,
        }
    }

    /// Open the IAM buckets in `store` (creating them as the setup guide describes), build the
    /// repository over them with `keyring`, and start the cache's watch. Writes through the
    /// returned app's repository invalidate the cache before they return.
    pub async fn open(
        store: Arc<dyn KvStore>,
        config: Arc<Config>,
        keyring: Keyring,
    ) -> Result<Self, IamError> {
        let names = config.iam.bucket_names();
        let buckets = names
            .open_all(store.as_ref(), config.storage.replicas)
            .await
            .map_err(hive_iam_store::storage_error)?;
        let cache = Arc::new(AuthCache::default());
        let wrap = |b: Arc<dyn Bucket>, kind| -> Arc<dyn Bucket> {
            Arc::new(InvalidatingBucket {
                inner: b,
                cache: cache.clone(),
                kind,
            })
        };
        let buckets = IamBuckets {
            users: wrap(buckets.users, BucketKind::Entities),
            roles: wrap(buckets.roles, BucketKind::Entities),
            policies: wrap(buckets.policies, BucketKind::Entities),
            access_keys: wrap(buckets.access_keys, BucketKind::Credentials),
            sessions: wrap(buckets.sessions, BucketKind::Credentials),
        };
        let iam = Arc::new(IamRepo::new(buckets, keyring));
        let watcher =
            tokio::spawn(watch_loop(store.clone(), config.clone(), cache.clone())).abort_handle();
        Ok(Self {
            iam,
            store,
            config,
            cache,
            watcher: Some(watcher),
        })
    }

    /// The time requests are judged at.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    /// The region this endpoint serves (`[server] region`, default `us-east-1`).
    pub fn region(&self) -> &str {
        &self.config.server.region
    }

    /// The account this endpoint serves (`000000000000`).
    pub fn account_id(&self) -> &str {
        ACCOUNT_ID
    }

    /// Whether the authentication cache is in use (its KV watch is live).
    pub fn auth_cache_live(&self) -> bool {
        self.cache.live.load(Ordering::SeqCst)
    }

    /// Hit and miss counters of the authentication cache.
    pub fn auth_cache_stats(&self) -> AuthCacheStats {
        AuthCacheStats {
            hits: self.cache.hits.load(Ordering::Relaxed),
            misses: self.cache.misses.load(Ordering::Relaxed),
            live: self.auth_cache_live(),
            invalidations: self.cache.invalidations.load(Ordering::Relaxed),
        }
    }

    /// Wait until the cache's watch is live (tests; the server works either way). `false` when
    /// it did not become live within `timeout`.
    pub async fn wait_auth_cache_live(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.auth_cache_live() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Drop everything the authentication cache holds.
    pub fn invalidate_auth_cache(&self) {
        self.cache.clear();
    }

    /// A user record (cached like credentials and policies, so `GetUser` of oneself costs no
    /// storage read), as [`IamRepo::get_user`] gives it.
    pub async fn user(&self, account_id: &str, name: &str) -> Result<Arc<UserRecord>, IamError> {
        let key = format!("{account_id}/{}", name.to_lowercase());
        if let Some(hit) = self.cache.get(&self.cache.users, &key) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let found = Arc::new(self.iam.get_user(account_id, name).await?);
        self.cache
            .insert(&self.cache.users, key, found.clone(), generation);
        Ok(found)
    }

    /// The credentials of `access_key_id` (cached), as [`IamRepo::lookup_credential`] gives
    /// them: `Ok(None)` for an unknown key, `Err(ExpiredToken)` for expired temporary ones.
    pub async fn credential(
        &self,
        access_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<Credential>>, IamError> {
        if let Some(hit) = self.cache.get(&self.cache.credentials, access_key_id) {
            return Ok(Some(hit));
        }
        let generation = self.cache.generation();
        let Some(found) = self.iam.lookup_credential(access_key_id, now).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        self.cache.insert(
            &self.cache.credentials,
            access_key_id.to_owned(),
            found.clone(),
            generation,
        );
        Ok(Some(found))
    }

    /// What the server knows of `ctx`'s request besides who asks for what (the global
    /// condition keys).
    pub fn environment(&self, ctx: &RequestContext) -> hive_iam::request::Environment<'_> {
        hive_iam::request::Environment::at(self.now())
            .with_source_ip(ctx.client.map(|c| c.ip()))
            .with_secure_transport(self.config.server.tls_cert.is_some())
            .with_region(self.region())
    }

    /// Allow `ctx.caller` to perform `action` (`iam:CreateUser`) on `resource` (an ARN or
    /// `*`), or answer AWS's `AccessDenied` with its message.
    pub async fn authorize(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: &str,
    ) -> Result<(), ApiError> {
        self.authorize_with(ctx, action, resource, |_| {}).await
    }

    /// [`App::authorize`] with extra condition keys set by `extend` (e.g. `ec2:Vpc`,
    /// `aws:ResourceTag/Team`, `iam:PolicyARN`). The global keys are set before `extend` runs:
    /// `aws:CurrentTime`, `aws:EpochTime`, `aws:SourceIp`, `aws:SecureTransport`,
    /// `aws:RequestedRegion`, and the principal's (`aws:username`, `aws:userid`,
    /// `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`,
    /// `aws:PrincipalTag/...`).
    pub async fn authorize_with(
        &self,
        ctx: &RequestContext,
        action: &str,
        resource: &str,
        extend: impl FnOnce(&mut PolicyRequest),
    ) -> Result<(), ApiError> {
        let caller = &ctx.caller;
        if hive_iam::request::is_unrestricted(&caller.identity) {
            return Ok(());
        }
        let compiled = self
            .compiled_policies(&caller.identity, caller.session_policy.as_deref())
            .await?;
        let mut request = hive_iam::request::request_context(
            &caller.identity,
            &compiled.tags,
            action,
            resource,
            &self.environment(ctx),
        );
        extend(&mut request);
        let decision = compiled.layers.authorize(&request);
        match decision.access_denied_message(&caller.arn, action, resource) {
            None => Ok(()),
            Some(message) => Err(ApiError::access_denied(message)),
        }
    }

    /// The compiled policies of `identity` (and its session policy), cached by principal.
    async fn compiled_policies(
        &self,
        identity: &IamPrincipal,
        session_policy: Option<&str>,
    ) -> Result<Arc<CompiledPolicies>, ApiError> {
        let holder = match identity {
            IamPrincipal::Root { account_id } => hive_iam::identity::root_arn(account_id),
            IamPrincipal::User { arn, .. } => arn.clone(),
            IamPrincipal::AssumedRole { role_arn, .. } => role_arn.clone(),
        };
        let key = match session_policy {
            Some(s) => format!("{holder}\n{s}"),
            None => holder,
        };
        if let Some(hit) = self.cache.get(&self.cache.policies, &key) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let compiled = Arc::new(self.load_policies(identity, session_policy).await?);
        self.cache
            .insert(&self.cache.policies, key, compiled.clone(), generation);
        Ok(compiled)
    }

    async fn load_policies(
        &self,
        identity: &IamPrincipal,
        session_policy: Option<&str>,
    ) -> Result<CompiledPolicies, ApiError> {
        let read_failed = |e: IamError| match e {
            // The principal vanished after it authenticated: nothing allows anything.
            IamError::NoSuchEntity(_) => None,
            // Refused, never allowed; `From` logs the cause (503 for a store that is away).
            other => Some(ApiError::from(other)),
        };
        let effective = match self.iam.effective_policies(identity, session_policy).await {
            Ok(e) => e,
            Err(e) => match read_failed(e) {
                None => hive_iam_store::EffectivePolicies::default(),
                Some(err) => return Err(err),
            },
        };
        let tags = match identity {
            IamPrincipal::User {
                account_id,
                username,
                ..
            } => match self.iam.get_user(account_id, username).await {
                Ok(u) => u.tags,
                Err(e) => match read_failed(e) {
                    None => Vec::new(),
                    Some(err) => return Err(err),
                },
            },
            IamPrincipal::AssumedRole {
                account_id,
                role_name,
                ..
            } => match self.iam.get_role(account_id, role_name).await {
                Ok(r) => r.tags,
                Err(e) => match read_failed(e) {
                    None => Vec::new(),
                    Some(err) => return Err(err),
                },
            },
            IamPrincipal::Root { .. } => Vec::new(),
        };
        let layers = effective.compile().map_err(|e| {
            tracing::warn!(policy = %e.source_name, error = %e.error, "stored policy does not parse; denying");
            ApiError::internal()
        })?;
        Ok(CompiledPolicies {
            layers,
            tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
        })
    }
}

/// Watch the IAM buckets and feed the cache, forever; reconnects with back-off. The cache is
/// only live while a watch on all five buckets is.
async fn watch_loop(store: Arc<dyn KvStore>, config: Arc<Config>, cache: Arc<AuthCache>) {
    let mut backoff = crate::retry::Backoff::store();
    loop {
        match open_watches(store.as_ref(), &config).await {
            Ok(mut events) => {
                cache.set_live(true);
                backoff.reset();
                while let Some(event) = events.next().await {
                    match event {
                        Ok((kind, entry)) => cache.on_change(kind, &entry.key),
                        Err(reason) => {
                            tracing::warn!(%reason, "IAM watch failed; authentication reads through until it is back");
                            break;
                        }
                    }
                }
                cache.set_live(false);
            }
            Err(e) => {
                cache.set_live(false);
                tracing::warn!(error = %e, "cannot watch the IAM buckets; authentication reads through");
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

type WatchEvents = BoxStream<'static, Result<(BucketKind, Entry), String>>;

async fn open_watches(
    store: &dyn KvStore,
    config: &Config,
) -> Result<WatchEvents, hive_kv::KvError> {
    let names = config.iam.bucket_names();
    let buckets = names.open_all(store, config.storage.replicas).await?;
    let mut streams: Vec<WatchEvents> = Vec::with_capacity(5);
    for (bucket, kind) in [
        (buckets.users, BucketKind::Entities),
        (buckets.roles, BucketKind::Entities),
        (buckets.policies, BucketKind::Entities),
        (buckets.access_keys, BucketKind::Credentials),
        (buckets.sessions, BucketKind::Credentials),
    ] {
        let name = bucket.name().to_owned();
        let watch = bucket.watch(None, WatchFrom::Now).await?;
        let ended = name.clone();
        streams.push(
            watch
                .map(move |e| {
                    e.map(|entry| (kind, entry))
                        .map_err(|err| format!("{name}: {err}"))
                })
                // A watch that ends is as bad as one that fails: the cache must stop.
                .chain(futures::stream::once(async move {
                    Err(format!("{ended}: watch ended"))
                }))
                .boxed(),
        );
    }
    Ok(futures::stream::select_all(streams).boxed())
}

/// A bucket that tells the cache about every write it makes, after the write succeeded and
/// before it returns (so this process's next request sees it).
struct InvalidatingBucket {
    inner: Arc<dyn Bucket>,
    cache: Arc<AuthCache>,
    kind: BucketKind,
}

impl InvalidatingBucket {
    fn done<T>(&self, key: &str, result: hive_kv::Result<T>) -> hive_kv::Result<T> {
        // A failed write may still have happened (a timeout): invalidate either way.
        self.cache.on_change(self.kind, key);
        result
    }
}

#[async_trait]
impl Bucket for InvalidatingBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> hive_kv::Result<Option<Entry>> {
        self.inner.get(key).await
    }
    async fn entry_history(&self, key: &str) -> hive_kv::Result<Vec<Entry>> {
        self.inner.entry_history(key).await
    }
    async fn put(&self, key: &str, value: Bytes) -> hive_kv::Result<u64> {
        let r = self.inner.put(key, value).await;
        self.done(key, r)
    }
    async fn create(&self, key: &str, value: Bytes) -> hive_kv::Result<u64> {
        let r = self.inner.create(key, value).await;
        self.done(key, r)
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
    ) -> hive_kv::Result<u64> {
        let r = self.inner.update(key, value, expected_revision).await;
        self.done(key, r)
    }
    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> hive_kv::Result<()> {
        let r = self.inner.delete(key, expected_revision).await;
        self.done(key, r)
    }
    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> hive_kv::Result<()> {
        let r = self.inner.purge(key, expected_revision).await;
        self.done(key, r)
    }
    async fn keys(&self, prefix: Option<&str>) -> hive_kv::Result<Vec<String>> {
        self.inner.keys(prefix).await
    }
    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> hive_kv::Result<BoxStream<'static, hive_kv::Result<Entry>>> {
        self.inner.watch(prefix, from).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Principal;
    use crate::wire::ServiceId;
    use hive_iam::seal::SealKey;
    use hive_iam_store::Target;

    fn keyring() -> Keyring {
        Keyring::new(SealKey::from_hex(&"11".repeat(32)).expect("key"))
    }

    fn ctx_for(user: &hive_iam::identity::UserRecord) -> RequestContext {
        RequestContext {
            request_id: "t".into(),
            service: ServiceId::Iam,
            action: "ListUsers",
            caller: Principal {
                account_id: ACCOUNT_ID.into(),
                arn: user.arn.clone(),
                user_id: user.user_id.clone(),
                access_key_id: None,
                identity: IamPrincipal::User {
                    account_id: ACCOUNT_ID.into(),
                    username: user.username.clone(),
                    user_id: user.user_id.clone(),
                    arn: user.arn.clone(),
                },
                session_policy: None,
            },
            client: Some("10.1.2.3:4000".parse().expect("addr")),
        }
    }

    #[test]
    fn stale_reads_and_blind_caches_are_never_kept() {
        let cache = AuthCache::default();
        let v = Arc::new(1u32);
        let map = Mutex::new(HashMap::new());
        // Not live: nothing is stored or served.
        cache.insert(&map, "k".into(), v.clone(), cache.generation());
        cache.set_live(true);
        assert!(cache.get(&map, "k").is_none());
        let g = cache.generation();
        // Something changed while the value was being read: it is not stored.
        cache.on_change(BucketKind::Entities, "x");
        cache.insert(&map, "k".into(), v.clone(), g);
        assert!(cache.get(&map, "k").is_none());
        cache.insert(&map, "k".into(), v.clone(), cache.generation());
        assert_eq!(cache.get(&map, "k").as_deref(), Some(&1));
        // The watch failing drops the entry and stops serving.
        cache.set_live(false);
        assert!(cache.get(&map, "k").is_none());
    }

    /// Two repositories on one store, neither invalidating the other directly: only the KV
    /// watch can tell the reader, and it does so well within the one-second bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watch_alone_revokes_a_detached_policy_quickly() {
        let store: Arc<dyn KvStore> = Arc::new(hive_kv::memory::MemoryStore::new());
        let config = Arc::new(Config::default());
        let names = config.iam.bucket_names();
        let writer = IamRepo::open(store.as_ref(), &names, keyring())
            .await
            .expect("writer repo");
        let reader_repo = IamRepo::open(store.as_ref(), &names, keyring())
            .await
            .expect("reader repo");
        let reader = App::new(Arc::new(reader_repo), store.clone(), config);
        assert!(reader.wait_auth_cache_live(Duration::from_secs(5)).await);
        let user = writer
            .create_user(ACCOUNT_ID, "erin", None, Vec::new())
            .await
            .expect("user");
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:List*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"StringEquals":{"aws:RequestedRegion":"us-east-1","aws:username":"erin"},"Bool":{"aws:SecureTransport":"false"}}}]}"#;
        writer
            .put_inline_policy(ACCOUNT_ID, &Target::User("erin".into()), "list", doc)
            .await
            .expect("inline policy");
        let ctx = ctx_for(&user);
        let start = Instant::now();
        while reader.authorize(&ctx, "iam:ListUsers", "*").await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "policy never seen"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Global condition keys were set: the conditioned allow matched.
        let mut other_ip = ctx.clone();
        other_ip.client = Some("192.0.2.1:1".parse().expect("addr"));
        assert!(
            reader
                .authorize(&other_ip, "iam:ListUsers", "*")
                .await
                .is_err()
        );
        // Once the watch has delivered the policy's own write, repeats come from the cache.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hits = reader.auth_cache_stats().hits;
        for _ in 0..2 {
            reader
                .authorize(&ctx, "iam:ListUsers", "*")
                .await
                .expect("still allowed");
        }
        assert!(
            reader.auth_cache_stats().hits > hits,
            "served from the cache"
        );
        writer
            .delete_inline_policy(ACCOUNT_ID, &Target::User("erin".into()), "list")
            .await
            .expect("delete policy");
        let start = Instant::now();
        while reader.authorize(&ctx, "iam:ListUsers", "*").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = start.elapsed();
        assert!(
            took < AUTH_CACHE_MAX_AGE / 2,
            "revoked by the watch, not by entry age: {took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_writes_invalidate_before_they_return() {
        let store: Arc<dyn KvStore> = Arc::new(hive_kv::memory::MemoryStore::new());
        let app = App::open(store, Arc::new(Config::default()), keyring())
            .await
            .expect("open");
        assert!(app.wait_auth_cache_live(Duration::from_secs(5)).await);
        let user = app
            .iam
            .create_user(ACCOUNT_ID, "frank", None, Vec::new())
            .await
            .expect("user");
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        app.iam
            .put_inline_policy(ACCOUNT_ID, &Target::User("frank".into()), "all", doc)
            .await
            .expect("put");
        let ctx = ctx_for(&user);
        // The watch echoes this app's own writes a moment later (each a clear); once it has,
        // repeats are hits.
        let start = Instant::now();
        loop {
            let hits = app.auth_cache_stats().hits;
            app.authorize(&ctx, "iam:CreateUser", "*")
                .await
                .expect("allowed");
            app.authorize(&ctx, "iam:CreateUser", "*")
                .await
                .expect("allowed");
            if app.auth_cache_stats().hits > hits {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "never a hit");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.iam
            .delete_inline_policy(ACCOUNT_ID, &Target::User("frank".into()), "all")
            .await
            .expect("delete");
        // No waiting: the very next check is denied.
        let e = app
            .authorize(&ctx, "iam:CreateUser", "*")
            .await
            .expect_err("denied at once");
        assert_eq!(e.code(), "AccessDenied");
    }
}
