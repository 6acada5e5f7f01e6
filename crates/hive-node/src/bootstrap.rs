//! First start: the sealing key and the account's administrator.
//!
//! # Encryption key
//! Stored secrets (access keys, sessions) are sealed with a 32-byte key ([`load_keyring`]):
//! `[iam] encryption_key` / `HIVE_ENCRYPTION_KEY` / `HIVE_ENCRYPTION_KEY_FILE` when configured;
//! otherwise `<data-dir>/encryption-key` (64 hex characters, mode 0600), generated on first start
//! and reused afterwards. Several processes sharing one store (one NATS JetStream, or one data
//! directory) must use the same key: give them the same key file.
//!
//! # Administrator
//! Without a setup token, [`bootstrap_admin`] runs at every start: on an empty store it creates
//! the setup guide's account `000000000000` (policy `AdministratorAccess`, group
//! `administrators`, user `admin`, one access key) and writes the key to
//! `<data-dir>/admin-credentials` in AWS shared-credentials format under profile `hive-admin`
//! (created exclusively, mode 0600; the secret never reaches the log), *before* the bootstrap
//! is recorded as done: a crash at any point leaves either that file or a bootstrap that the
//! next start finishes.
//!
//! Concurrent and interrupted starts go through the repository's claim
//! ([`IamRepo::bootstrap_step`]): the first process claims the bootstrap, which records the
//! access key id the administrator will get; the others wait for it ([`claim_bootstrap`]). A
//! claim whose revision has not moved for [`CLAIM_LEASE`], as this process's own clock
//! measures it (no clocks are compared across hosts), is taken over: its owner died or hangs.
//! The taker creates what is missing, makes the claimed key or opens it with the shared sealing
//! key when the dead owner had made it, writes the credentials file in its own data directory
//! and completes the bootstrap. However many processes start or die, there is one
//! administrator with one key. Should `admin-credentials` hold another key (a leftover of an
//! earlier store), the new key goes to `admin-credentials.<unix time>` and the log names that
//! file; a file already holding this very key (an attempt that died before completing) is
//! kept as it is.
//!
//! # Setup token
//! With `[server] setup_token` (`HIVE_SETUP_TOKEN`, `HIVE_SETUP_TOKEN_FILE`), the server does not
//! bootstrap by itself. The operator bootstraps once through the API:
//!
//! ```text
//! curl -X POST -H "X-Hive-Setup-Token: $TOKEN" http://127.0.0.1:8700/bootstrap
//! {"AccountId":"000000000000","UserName":"admin","Arn":"arn:aws:iam::000000000000:user/admin",
//!  "AccessKeyId":"AKIA...","SecretAccessKey":"..."}
//! ```
//!
//! The token is compared in constant time; a wrong token is `403 AccessDenied` (and counts
//! towards the authentication-failure throttle). A valid request claims the bootstrap under
//! the same rules, records the token as spent in the KV bucket `hive_setup` (key
//! `setup-token-spent`), completes the bootstrap and returns the key: once, in the response,
//! written nowhere. While another request or process holds the claim the answer is `503
//! ServiceUnavailable` with `Retry-After`; once the bootstrap is done (also by other means, such
//! as `hive-cli init`) it is `409 SetupTokenSpent`. A request whose server died before answering
//! leaves a claim that a request with the token takes over after [`CLAIM_LEASE`], getting the
//! same key; only a server that dies after completing, before the answer reaches the client,
//! loses the key (make another with `hive-cli iam access-key create admin`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hive_iam::error::IamError;
use hive_iam::seal::{Keyring, SealError, SealKey};
use hive_iam_store::{BootstrapClaim, BootstrapStep, IamRepo, NewAccessKey};

use crate::config::Config;

/// File name of the generated sealing key in the data directory.
/// The account the setup guide bootstraps.
pub const ACCOUNT_ID: &str = hive_iam::identity::DEFAULT_ACCOUNT_ID;
/// File name of the generated sealing key in the data directory.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";
/// File name of the administrator's credentials in the data directory.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials";
/// Profile name in `admin-credentials`.
pub const ADMIN_PROFILE: &str = "hive-admin";
/// Header carrying the setup token.
pub const SETUP_TOKEN_HEADER: &str = "x-hive-setup-token";
/// Path of the setup-token bootstrap endpoint.
pub const BOOTSTRAP_PATH: &str = "/bootstrap";
/// Bucket recording that the setup token was spent.
pub const SETUP_BUCKET: &str = "hive_setup";
/// Key of the spent-token marker.
pub const SETUP_SPENT_KEY: &str = "setup-token-spent";
/// How long another process's bootstrap claim may stand still before it is taken over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How often a waiting process looks at another's claim.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// Why first-start preparation failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The configured or stored key is unusable.
    #[error("encryption key: {0}")]
    Key(#[from] SealError),
    /// A file in the data directory could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The identity repository failed.
    #[error("bootstrap: {0}")]
    Iam(#[from] IamError),
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::File {
        path: path.to_owned(),
        source,
    }
}

/// The keyring sealing stored secrets: the configured key, else `<data-dir>/encryption-key`
/// (generated on first start). See the module docs.
pub fn load_keyring(config: &Config) -> Result<Keyring, BootstrapError> {
    if let Some(hex) = &config.iam.encryption_key {
        return Ok(Keyring::new(SealKey::from_hex(hex.expose())?));
    }
    let path = config.storage.data_dir.join(ENCRYPTION_KEY_FILE);
    if !path.exists() {
        let (key, hex) = SealKey::generate(&mut rand::rngs::OsRng);
        let mut text = zeroize::Zeroizing::new(hex.expose().to_owned());
        text.push('\n');
        match write_exclusive(&path, text.as_bytes()) {
            Ok(()) => {
                tracing::warn!(
                    path = %path.display(),
                    key_id = key.id(),
                    "generated the key sealing stored secrets; every hive-api process sharing \
                     this store must use this same key (HIVE_ENCRYPTION_KEY_FILE)"
                );
                return Ok(Keyring::new(key));
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(file_err(&path)(e)),
        }
    }
    let key = SealKey::from_file(&path)?;
    tracing::info!(path = %path.display(), key_id = key.id(), "using the sealing key from the data directory");
    Ok(Keyring::new(key))
}

/// Write `contents` to `path` with mode 0600, failing with `AlreadyExists` when the file is
/// there. The file appears complete or not at all: written under a temporary name first, then
/// hard-linked into place (a link never replaces an existing file).
pub fn write_exclusive(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The shared-credentials text of the administrator's key.
fn credentials_text(key: &NewAccessKey) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(format!(
        "[{ADMIN_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.record.access_key_id,
        key.secret_access_key.expose()
    ))
}

/// What [`bootstrap_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// This process completed the bootstrap and wrote the administrator's key to this file.
    Created {
        /// The credentials file.
        path: PathBuf,
        /// The access key id (not secret).
        access_key_id: String,
    },
    /// The account was bootstrapped already (possibly by another process just now).
    AlreadyDone,
}

/// This process's part in bootstrapping: the owner name of its claims (unique to the process,
/// the same for every attempt it makes) and the lease it grants other owners' claims.
#[derive(Debug, Clone)]
pub struct Claimant {
    owner: String,
    lease: Duration,
}

impl Claimant {
    /// A claimant for this process on node `node`: owner `node/pid/random`, lease
    /// [`CLAIM_LEASE`].
    pub fn new(node: &str) -> Self {
        Self {
            owner: format!(
                "{node}/{}/{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            lease: CLAIM_LEASE,
        }
    }

    /// A claimant for this process named after `config`'s node (`[node] name` or the host).
    pub fn for_node(config: &Config) -> Self {
        let name = config.node.resolved_name(&crate::config::host_name());
        Self::new(name.as_deref().unwrap_or("hive-api"))
    }

    /// The same claimant granting other owners `lease` instead.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The owner name its claims carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// Judges another owner's claim: stale once its revision has stood still for the lease, on
/// this process's clock.
#[derive(Debug, Default)]
pub struct ClaimWatch {
    seen: Option<(u64, Instant)>,
}

impl ClaimWatch {
    fn stale(&mut self, revision: u64, lease: Duration) -> bool {
        match self.seen {
            Some((seen, since)) if seen == revision => since.elapsed() >= lease,
            _ => {
                self.seen = Some((revision, Instant::now()));
                false
            }
        }
    }
}

/// One step of `account_id`'s bootstrap for `claimant` ([`IamRepo::bootstrap_step`]), taking
/// over another owner's claim once `watch` finds it stale.
pub async fn step(
    iam: &IamRepo,
    account_id: &str,
    claimant: &Claimant,
    watch: &mut ClaimWatch,
) -> Result<BootstrapStep, IamError> {
    let step = iam
        .bootstrap_step(account_id, &claimant.owner, None)
        .await?;
    let BootstrapStep::Busy { owner, revision } = &step else {
        return Ok(step);
    };
    if !watch.stale(*revision, claimant.lease) {
        return Ok(step);
    }
    tracing::warn!(
        %owner,
        lease_secs = claimant.lease.as_secs(),
        "taking over the bootstrap of account {account_id}: its claim made no progress within the lease"
    );
    iam.bootstrap_step(account_id, &claimant.owner, Some(*revision))
        .await
}

/// Claims `account_id`'s bootstrap for `claimant`, waiting while another process works on it
/// and taking over a claim that stood still for the lease (see the module docs): the claim,
/// holding the administrator's key, or `None` once the bootstrap is done.
pub async fn claim_bootstrap(
    iam: &IamRepo,
    account_id: &str,
    claimant: &Claimant,
) -> Result<Option<Box<BootstrapClaim>>, BootstrapError> {
    let mut watch = ClaimWatch::default();
    let mut waiting = false;
    loop {
        match step(iam, account_id, claimant, &mut watch).await? {
            BootstrapStep::Done => return Ok(None),
            BootstrapStep::Claimed(claim) => return Ok(Some(claim)),
            BootstrapStep::Busy { owner, .. } => {
                if !waiting {
                    tracing::info!(%owner, "another process is bootstrapping account {account_id}; waiting for it");
                    waiting = true;
                }
                tokio::time::sleep(CLAIM_POLL).await;
            }
        }
    }
}

/// Bootstraps `account_id`: claims it ([`claim_bootstrap`]), has `persist` store the
/// administrator's key where the operator finds it, and only then records the bootstrap as
/// done. `None` when it was done already.
pub async fn bootstrap_account<T, E>(
    iam: &IamRepo,
    account_id: &str,
    claimant: &Claimant,
    persist: impl FnOnce(&NewAccessKey) -> Result<T, E>,
) -> Result<Option<T>, E>
where
    E: From<BootstrapError>,
{
    let Some(claim) = claim_bootstrap(iam, account_id, claimant).await? else {
        return Ok(None);
    };
    let persisted = persist(&claim.key)?;
    if !iam
        .bootstrap_complete(&claim)
        .await
        .map_err(BootstrapError::from)?
    {
        // Judged dead while storing the key: the taker completes with this same key.
        tracing::warn!(
            access_key_id = %claim.key.record.access_key_id,
            "another process took the bootstrap over meanwhile; it holds the same key"
        );
    }
    Ok(Some(persisted))
}

/// Bootstraps the account and writes the administrator's credentials file (see the module
/// docs).
pub async fn bootstrap_admin(
    iam: &IamRepo,
    data_dir: &Path,
    claimant: &Claimant,
) -> Result<AdminBootstrap, BootstrapError> {
    let written = bootstrap_account(iam, ACCOUNT_ID, claimant, |key| {
        write_admin_credentials(data_dir, key)
    })
    .await?;
    let Some((path, access_key_id)) = written else {
        return Ok(AdminBootstrap::AlreadyDone);
    };
    tracing::info!(
        path = %path.display(),
        %access_key_id,
        "bootstrapped account {ACCOUNT_ID}: administrator credentials written (profile {ADMIN_PROFILE})"
    );
    Ok(AdminBootstrap::Created {
        path,
        access_key_id,
    })
}

/// Writes `key` as `<data_dir>/admin-credentials` (see the module docs): the file and the
/// key id.
fn write_admin_credentials(
    data_dir: &Path,
    key: &NewAccessKey,
) -> Result<(PathBuf, String), BootstrapError> {
    let text = credentials_text(key);
    let id = key.record.access_key_id.clone();
    if let Some(path) = copy_of(data_dir, text.as_bytes()) {
        return Ok((path, id));
    }
    let path = data_dir.join(ADMIN_CREDENTIALS_FILE);
    match write_exclusive(&path, text.as_bytes()) {
        Ok(()) => return Ok((path, id)),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(file_err(&path)(e));
        }
        Err(_) => {}
    }
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let other = data_dir.join(format!("{ADMIN_CREDENTIALS_FILE}.{stamp}"));
    tracing::warn!(
        existing = %path.display(),
        "an older admin-credentials file exists; writing the new one beside it"
    );
    write_exclusive(&other, text.as_bytes()).map_err(file_err(&other))?;
    Ok((other, id))
}

/// An `admin-credentials*` file in `data_dir` holding exactly `text`.
fn copy_of(data_dir: &Path, text: &[u8]) -> Option<PathBuf> {
    std::fs::read_dir(data_dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(ADMIN_CREDENTIALS_FILE))
        })
        .find(|p| {
            std::fs::read(p)
                .map(zeroize::Zeroizing::new)
                .is_ok_and(|existing| existing.as_slice() == text)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn exclusive_write_is_private_and_never_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        write_exclusive(&p, b"one").expect("first write");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let e = write_exclusive(&p, b"two").expect_err("second write refused");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).expect("read"), b"one");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temporary file left behind"
        );
    }

    #[test]
    fn generated_key_is_reused_and_configured_key_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::default();
        config.storage.data_dir = dir.path().to_owned();
        let first = load_keyring(&config).expect("generate");
        let second = load_keyring(&config).expect("reuse");
        assert_eq!(first.active_id(), second.active_id());
        let path = dir.path().join(ENCRYPTION_KEY_FILE);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        config.iam.encryption_key = Some(Secret::new("ab".repeat(32)));
        let configured = load_keyring(&config).expect("configured");
        assert_ne!(configured.active_id(), first.active_id());
        // A key file others can read is refused rather than used.
        config.iam.encryption_key = None;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load_keyring(&config).is_err());
    }
}
