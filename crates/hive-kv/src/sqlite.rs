//! The embedded on-disk adapter, Hive's default: one SQLite database file in the data
//! directory, no server needed.
//!
//! **Why SQLite.** It is the most widely deployed embedded database, crash-safe (journaled
//! transactions), and — unlike single-writer embedded stores that take an exclusive file lock —
//! lets several *processes* open the same file at once, so the Hive server and `hive` CLI can both
//! use one data directory. It is compiled in (`rusqlite`'s bundled build): nothing to install.
//!
//! **Concurrency.** The database runs in WAL mode (readers never block the writer) with a busy
//! timeout, so a process waiting for another one's write lock waits instead of failing. Every
//! write is one `BEGIN IMMEDIATE` transaction that takes the write lock first, then reads the
//! key's last revision, checks the expectation (`create` / `update` / expected revision) and
//! writes: compare-and-swap is atomic across threads *and* processes. SQLite is blocking, so each
//! operation runs on tokio's blocking pool; the async API never blocks the runtime.
//!
//! **Revisions.** Each bucket has a counter row; a write increments it inside the same
//! transaction, so revisions are strictly increasing across the bucket, contiguous over
//! successful writes, never reused (not after purges or expiry either) and commit in revision
//! order, across processes too.
//!
//! **History and TTL.** After each write the key keeps its last `history` revisions (tombstones
//! included); a purge keeps only its marker. Entries older than the TTL are invisible to every
//! read at once and physically removed by the next write to the bucket.
//!
//! **Durability.** `synchronous=NORMAL` in WAL mode: a committed write survives a process crash;
//! an operating-system crash or power loss can lose the last few transactions but never corrupts
//! the file (the same class of guarantee as JetStream's default file store, which syncs
//! periodically).
//!
//! **Watch.** Another process may write, so watches poll the database for revisions newer than
//! the last one delivered, every [`SqliteOptions::poll_interval`] (50 ms by default). Writes made
//! through the same [`SqliteStore`] wake the watchers at once. A revision removed (history
//! pruning, purge, TTL) before a poll saw it is not delivered; changes are always delivered in
//! revision order and never twice. Expiry itself produces no event (as in JetStream).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

use crate::port::{Bucket, BucketConfig, Entry, KvError, KvStore, Operation, Result, WatchFrom};
use crate::validate::{matches_prefix, validate_bucket_name, validate_config, validate_key};

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "hive-kv.sqlite3";

/// Tuning of the SQLite adapter.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a write waits for another process's write lock before failing with
    /// [`KvError::Unavailable`].
    pub busy_timeout: Duration,
    /// How often watches look for writes made by other processes.
    pub poll_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// A store of buckets in one SQLite file. Cloning shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    options: SqliteOptions,
    /// The last revision written through this store; wakes this process's watchers.
    written: watch::Sender<u64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn sql_err(e: rusqlite::Error) -> KvError {
    // SQLite messages name the failing operation (busy, I/O, full disk), never stored values.
    KvError::Unavailable(format!("sqlite: {e}"))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv_buckets (
    name           TEXT PRIMARY KEY,
    history        INTEGER NOT NULL,
    ttl_ms         INTEGER,
    replicas       INTEGER NOT NULL,
    max_value_size INTEGER,
    last_revision  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS kv_entries (
    bucket     TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    key        TEXT NOT NULL,
    op         INTEGER NOT NULL,
    value      BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    UNIQUE (bucket, revision)
);
CREATE INDEX IF NOT EXISTS kv_entries_by_key ON kv_entries (bucket, key, revision);
CREATE INDEX IF NOT EXISTS kv_entries_by_age ON kv_entries (bucket, created_ns);
";

impl SqliteStore {
    /// Opens (creating when needed) the store in `dir`, with default options.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, SqliteOptions::default()).await
    }

    /// Opens (creating when needed) the store in `dir`.
    pub async fn open_with(dir: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let busy = options.busy_timeout;
        let (conn, path) = tokio::task::spawn_blocking(move || open_blocking(&dir, busy))
            .await
            .map_err(|e| KvError::Unavailable(format!("sqlite open task failed: {e}")))??;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                options,
                written: watch::channel(0).0,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(|e| KvError::Unavailable(format!("sqlite task failed: {e}")))?
    }

    fn bucket_handle(&self, config: BucketConfig) -> Arc<dyn Bucket> {
        Arc::new(SqliteBucket {
            store: self.clone(),
            config,
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic under the lock leaves at most an open transaction, which rusqlite rolls back
        // on drop: the connection stays usable.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn open_blocking(dir: &Path, busy: Duration) -> Result<(Connection, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| {
        KvError::Unavailable(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(DB_FILE);
    let conn = Connection::open(&path).map_err(sql_err)?;
    conn.busy_timeout(busy).map_err(sql_err)?;
    // Switching to WAL needs a moment of exclusive access; another process opening the same
    // file at the same instant can make it report busy, so retry briefly.
    let mut attempt = 0;
    loop {
        let mode: rusqlite::Result<String> =
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(KvError::Unavailable(format!(
                    "sqlite refused WAL mode (journal mode {mode})"
                )));
            }
            Err(_) if attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(sql_err(e)),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err)?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
        .map_err(sql_err)?;
    Ok((conn, path))
}

fn now_ns() -> i64 {
    // i64 nanoseconds cover the years 1678..2262.
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn op_code(op: Operation) -> i64 {
    match op {
        Operation::Put => 0,
        Operation::Delete => 1,
        Operation::Purge => 2,
    }
}

fn op_from_code(code: i64) -> Operation {
    match code {
        1 => Operation::Delete,
        2 => Operation::Purge,
        _ => Operation::Put,
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A bucket's stored configuration.
struct BucketRow {
    config: BucketConfig,
    last_revision: u64,
}

impl BucketRow {
    /// Entries created at or before this instant have expired.
    fn cutoff_ns(&self, now: i64) -> i64 {
        match self.config.ttl {
            Some(ttl) => now.saturating_sub(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX)),
            None => i64::MIN,
        }
    }
}

fn load_bucket(conn: &Connection, name: &str) -> Result<BucketRow> {
    // Cached statements: these run on every read and write; compiling the SQL each time cost
    // more than executing it.
    conn.prepare_cached(
        "SELECT history, ttl_ms, replicas, max_value_size, last_revision
         FROM kv_buckets WHERE name = ?1",
    )
    .map_err(sql_err)?
    .query_row(params![name], |r| {
        Ok(BucketRow {
            config: BucketConfig {
                name: name.to_owned(),
                history: u8::try_from(r.get::<_, i64>(0)?).unwrap_or(1),
                ttl: r
                    .get::<_, Option<i64>>(1)?
                    .map(|ms| Duration::from_millis(to_u64(ms))),
                replicas: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(1),
                max_value_size: r
                    .get::<_, Option<i64>>(3)?
                    .and_then(|v| usize::try_from(v).ok()),
            },
            last_revision: to_u64(r.get(4)?),
        })
    })
    .optional()
    .map_err(sql_err)?
    .ok_or_else(|| KvError::BucketNotFound(name.to_owned()))
}

const ENTRY_COLUMNS: &str = "key, value, revision, created_ns, op";

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let created_ns: i64 = r.get(3)?;
    Ok(Entry {
        key: r.get(0)?,
        value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
        revision: to_u64(r.get(2)?),
        created: OffsetDateTime::from_unix_timestamp_nanos(i128::from(created_ns))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        operation: op_from_code(r.get(4)?),
    })
}

fn last_of_key(tx: &Connection, bucket: &str, key: &str, cutoff: i64) -> Result<Option<Entry>> {
    tx.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM kv_entries
         WHERE bucket = ?1 AND key = ?2 AND created_ns > ?3
         ORDER BY revision DESC LIMIT 1"
    ))
    .map_err(sql_err)?
    .query_row(params![bucket, key, cutoff], row_to_entry)
    .optional()
    .map_err(sql_err)
}

/// The last revision of every key (tombstones included), in revision order.
fn last_values(conn: &Connection, bucket: &str, cutoff: i64) -> Result<Vec<Entry>> {
    // SQLite takes the bare columns from the row holding MAX(revision).
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, value, MAX(revision), created_ns, op FROM kv_entries
             WHERE bucket = ?1 AND created_ns > ?2 GROUP BY key ORDER BY 3",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![bucket, cutoff], row_to_entry)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

fn entries_after(
    conn: &Connection,
    bucket: &str,
    after: u64,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<Entry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM kv_entries
             WHERE bucket = ?1 AND revision > ?2 AND created_ns > ?3
             ORDER BY revision LIMIT ?4"
        ))
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![bucket, to_i64(after), cutoff, limit], row_to_entry)
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// What a write requires of the key's current state.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoLiveValue,
    Revision(u64),
}

fn write_tx(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    value: &[u8],
    op: Operation,
    expect: Expect,
) -> Result<u64> {
    let row = load_bucket(tx, bucket)?;
    crate::validate::validate_value(&row.config, value)?;
    let now = now_ns();
    let cutoff = row.cutoff_ns(now);
    if row.config.ttl.is_some() {
        tx.execute(
            "DELETE FROM kv_entries WHERE bucket = ?1 AND created_ns <= ?2",
            params![bucket, cutoff],
        )
        .map_err(sql_err)?;
    }
    let last = last_of_key(tx, bucket, key, cutoff)?;
    let last_revision = last.as_ref().map_or(0, |e| e.revision);
    match expect {
        Expect::Any => {}
        Expect::NoLiveValue => {
            if last.as_ref().is_some_and(|e| e.operation == Operation::Put) {
                return Err(KvError::AlreadyExists {
                    bucket: bucket.to_owned(),
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
    let revision = row.last_revision + 1;
    tx.execute(
        "UPDATE kv_buckets SET last_revision = ?2 WHERE name = ?1",
        params![bucket, to_i64(revision)],
    )
    .map_err(sql_err)?;
    if op == Operation::Purge {
        tx.execute(
            "DELETE FROM kv_entries WHERE bucket = ?1 AND key = ?2",
            params![bucket, key],
        )
        .map_err(sql_err)?;
    }
    tx.execute(
        "INSERT INTO kv_entries (bucket, revision, key, op, value, created_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![bucket, to_i64(revision), key, op_code(op), value, now],
    )
    .map_err(sql_err)?;
    // Keep the newest `history` revisions of the key.
    tx.execute(
        "DELETE FROM kv_entries WHERE bucket = ?1 AND key = ?2 AND revision <= (
             SELECT revision FROM kv_entries WHERE bucket = ?1 AND key = ?2
             ORDER BY revision DESC LIMIT 1 OFFSET ?3)",
        params![bucket, key, i64::from(row.config.history)],
    )
    .map_err(sql_err)?;
    Ok(revision)
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn create_or_open(&self, config: &BucketConfig) -> Result<Arc<dyn Bucket>> {
        validate_config(config)?;
        let wanted = config.clone();
        let stored = self
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql_err)?;
                // An existing bucket keeps its configuration (as with JetStream's bind).
                let stored = match load_bucket(&tx, &wanted.name) {
                    Ok(row) => row.config,
                    Err(KvError::BucketNotFound(_)) => {
                        tx.execute(
                            "INSERT INTO kv_buckets
                             (name, history, ttl_ms, replicas, max_value_size, last_revision)
                             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                            params![
                                wanted.name,
                                i64::from(wanted.history),
                                wanted
                                    .ttl
                                    .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
                                i64::try_from(wanted.replicas).unwrap_or(1),
                                wanted
                                    .max_value_size
                                    .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                            ],
                        )
                        .map_err(sql_err)?;
                        wanted
                    }
                    Err(e) => return Err(e),
                };
                tx.commit().map_err(sql_err)?;
                Ok(stored)
            })
            .await?;
        Ok(self.bucket_handle(stored))
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Bucket>> {
        validate_bucket_name(name).map_err(|_| KvError::BucketNotFound(name.to_owned()))?;
        let name = name.to_owned();
        let row = self.run(move |conn| load_bucket(conn, &name)).await?;
        Ok(self.bucket_handle(row.config))
    }

    async fn bucket_config(&self, name: &str) -> Result<BucketConfig> {
        validate_bucket_name(name).map_err(|_| KvError::BucketNotFound(name.to_owned()))?;
        let name = name.to_owned();
        Ok(self.run(move |conn| load_bucket(conn, &name)).await?.config)
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err)?;
            let n = tx
                .execute("DELETE FROM kv_buckets WHERE name = ?1", params![name])
                .map_err(sql_err)?;
            if n == 0 {
                return Err(KvError::BucketNotFound(name));
            }
            tx.execute("DELETE FROM kv_entries WHERE bucket = ?1", params![name])
                .map_err(sql_err)?;
            tx.commit().map_err(sql_err)
        })
        .await
    }
}

/// One bucket of a [`SqliteStore`].
struct SqliteBucket {
    store: SqliteStore,
    config: BucketConfig,
}

impl SqliteBucket {
    async fn write(&self, key: &str, value: Bytes, op: Operation, expect: Expect) -> Result<u64> {
        validate_key(key)?;
        // Checked again inside the transaction against the stored configuration; this early
        // check spares the blocking pool a round trip for an oversized value.
        crate::validate::validate_value(&self.config, &value)?;
        let bucket = self.config.name.clone();
        let key = key.to_owned();
        let revision = self
            .store
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql_err)?;
                let revision = write_tx(&tx, &bucket, &key, &value, op, expect)?;
                tx.commit().map_err(sql_err)?;
                Ok(revision)
            })
            .await?;
        self.store.inner.written.send_replace(revision);
        Ok(revision)
    }

    /// Runs a read in one snapshot, with the bucket's row.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &BucketRow, i64) -> Result<T> + Send + 'static,
    {
        let bucket = self.config.name.clone();
        self.store
            .run(move |conn| {
                let tx = conn.transaction().map_err(sql_err)?;
                let row = load_bucket(&tx, &bucket)?;
                let cutoff = row.cutoff_ns(now_ns());
                let out = f(&tx, &row, cutoff)?;
                tx.commit().map_err(sql_err)?;
                Ok(out)
            })
            .await
    }
}

#[async_trait]
impl Bucket for SqliteBucket {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |conn, row, cutoff| {
            Ok(last_of_key(conn, &row.config.name, &key, cutoff)?
                .filter(|e| e.operation == Operation::Put))
        })
        .await
    }

    async fn entry_history(&self, key: &str) -> Result<Vec<Entry>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |conn, row, cutoff| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM kv_entries
                     WHERE bucket = ?1 AND key = ?2 AND created_ns > ?3 ORDER BY revision"
                ))
                .map_err(sql_err)?;
            let rows = stmt
                .query_map(params![row.config.name, key, cutoff], row_to_entry)
                .map_err(sql_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        self.write(key, value, Operation::Put, Expect::Any).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        self.write(key, value, Operation::Put, Expect::NoLiveValue)
            .await
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: u64) -> Result<u64> {
        self.write(
            key,
            value,
            Operation::Put,
            Expect::Revision(expected_revision),
        )
        .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let expect = expected_revision.map_or(Expect::Any, Expect::Revision);
        self.write(key, Bytes::new(), Operation::Delete, expect)
            .await
            .map(drop)
    }

    async fn purge(&self, key: &str, expected_revision: Option<u64>) -> Result<()> {
        let expect = expected_revision.map_or(Expect::Any, Expect::Revision);
        self.write(key, Bytes::new(), Operation::Purge, expect)
            .await
            .map(drop)
    }

    async fn keys(&self, prefix: Option<&str>) -> Result<Vec<String>> {
        let prefix = prefix.map(str::to_owned);
        self.read(move |conn, row, cutoff| {
            let mut keys: Vec<String> = last_values(conn, &row.config.name, cutoff)?
                .into_iter()
                .filter(|e| {
                    e.operation == Operation::Put && matches_prefix(&e.key, prefix.as_deref())
                })
                .map(|e| e.key)
                .collect();
            keys.sort();
            Ok(keys)
        })
        .await
    }

    async fn watch(
        &self,
        prefix: Option<&str>,
        from: WatchFrom,
    ) -> Result<BoxStream<'static, Result<Entry>>> {
        let (initial, start_after) = self
            .read(move |conn, row, cutoff| {
                let initial = match from {
                    WatchFrom::Now => Vec::new(),
                    WatchFrom::LastValues => last_values(conn, &row.config.name, cutoff)?,
                    WatchFrom::Revision(start) => entries_after(
                        conn,
                        &row.config.name,
                        start.saturating_sub(1),
                        cutoff,
                        i64::MAX,
                    )?,
                };
                Ok((initial, row.last_revision))
            })
            .await?;
        let prefix = prefix.map(str::to_owned);
        let initial: Vec<_> = initial
            .into_iter()
            .filter(|e| matches_prefix(&e.key, prefix.as_deref()))
            .map(Ok)
            .collect();
        // When starting at a revision beyond the current end, deliver from there on.
        let start_after = match from {
            WatchFrom::Revision(start) => start_after.max(start.saturating_sub(1)),
            _ => start_after,
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(poll_changes(
            self.store.clone(),
            self.config.name.clone(),
            prefix,
            start_after,
            tx,
        ));
        let live =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        Ok(futures::stream::iter(initial).chain(live).boxed())
    }
}

/// Most entries one poll reads; a watcher far behind catches up in several polls.
const POLL_BATCH: i64 = 512;

/// Feeds one watcher: delivers every revision after `seen`, polling the database.
async fn poll_changes(
    store: SqliteStore,
    bucket: String,
    prefix: Option<String>,
    mut seen: u64,
    tx: mpsc::Sender<Result<Entry>>,
) {
    let mut wake = store.inner.written.subscribe();
    let interval = store.inner.options.poll_interval;
    loop {
        let name = bucket.clone();
        let batch = store
            .run(move |conn| {
                let txn = conn.transaction().map_err(sql_err)?;
                let row = load_bucket(&txn, &name)?;
                if row.last_revision <= seen {
                    return Ok((Vec::new(), row.last_revision));
                }
                let cutoff = row.cutoff_ns(now_ns());
                let entries = entries_after(&txn, &name, seen, cutoff, POLL_BATCH)?;
                Ok((entries, row.last_revision))
            })
            .await;
        match batch {
            Ok((entries, last_revision)) => {
                let complete = entries.len() < usize::try_from(POLL_BATCH).unwrap_or(usize::MAX);
                for entry in entries {
                    seen = entry.revision;
                    if matches_prefix(&entry.key, prefix.as_deref())
                        && tx.send(Ok(entry)).await.is_err()
                    {
                        return;
                    }
                }
                if complete {
                    // Revisions pruned or expired before we saw them are skipped for good.
                    seen = seen.max(last_revision);
                }
            }
            Err(e) => {
                // The bucket is gone (or the database failed): report it and end the stream.
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            _ = wake.changed() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}
