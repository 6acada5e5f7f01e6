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
//! `administrators`, user `admin`, one access key) and writes the key once to
//! `<data-dir>/admin-credentials` in AWS shared-credentials format under profile `hive-admin`
//! (created exclusively, mode 0600; the secret never reaches the log). Concurrent starts on one
//! store create exactly one administrator: the repository's bootstrap marker is created by one
//! caller only, and only that caller makes the key. Should `admin-credentials` already exist
//! (a leftover of an earlier store), the new key goes to `admin-credentials.<unix time>` instead
//! and the log names that file.
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
//! towards the authentication-failure throttle). The first valid request spends the token: it
//! is recorded in the KV bucket `hive_setup` (key `setup-token-spent`, created exclusively, so
//! two concurrent requests cannot both succeed) and every later request gets
//! `409 SetupTokenSpent`. An account bootstrapped by other means (`hive-cli`) also answers 409.
//! The credentials are returned once, in the response, and written nowhere.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hive_iam::error::IamError;
use hive_iam::repo::{BootstrapOutcome, IamRepo, NewAccessKey};
use hive_iam::seal::{Keyring, SealError, SealKey};
use hive_kv::{BucketConfig, KvError, KvStore};
use hyper::{HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq as _;

use crate::app::ACCOUNT_ID;
use crate::config::{Config, Secret};
use crate::error::ApiError;
use crate::server::{Endpoint, EndpointReply};

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
        let (key, hex) = SealKey::generate();
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
    /// This process created the administrator and wrote its key to this file.
    Created {
        /// The credentials file.
        path: PathBuf,
        /// The new access key id (not secret).
        access_key_id: String,
    },
    /// The account existed already (or another process created it just now).
    AlreadyDone,
}

/// Bootstrap the account on an empty store and write the administrator's credentials file
/// (see the module docs).
pub async fn bootstrap_admin(
    iam: &IamRepo,
    data_dir: &Path,
) -> Result<AdminBootstrap, BootstrapError> {
    match iam.bootstrap(ACCOUNT_ID).await? {
        BootstrapOutcome::AlreadyDone => Ok(AdminBootstrap::AlreadyDone),
        BootstrapOutcome::Created(key) => {
            let text = credentials_text(&key);
            let mut path = data_dir.join(ADMIN_CREDENTIALS_FILE);
            if let Err(e) = write_exclusive(&path, text.as_bytes()) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(file_err(&path)(e));
                }
                let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
                let other = data_dir.join(format!("{ADMIN_CREDENTIALS_FILE}.{stamp}"));
                tracing::warn!(
                    existing = %path.display(),
                    "an older admin-credentials file exists; writing the new one beside it"
                );
                write_exclusive(&other, text.as_bytes()).map_err(file_err(&other))?;
                path = other;
            }
            tracing::info!(
                path = %path.display(),
                access_key_id = %key.record.access_key_id,
                "bootstrapped account {ACCOUNT_ID}: administrator credentials written (profile {ADMIN_PROFILE})"
            );
            Ok(AdminBootstrap::Created {
                path,
                access_key_id: key.record.access_key_id.clone(),
            })
        }
    }
}

/// `POST /bootstrap`: one-time bootstrap guarded by the setup token (see the module docs).
pub struct SetupEndpoint {
    iam: Arc<IamRepo>,
    store: Arc<dyn KvStore>,
    token: Secret,
}

impl std::fmt::Debug for SetupEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupEndpoint").finish_non_exhaustive()
    }
}

impl SetupEndpoint {
    /// The endpoint for `token` over `iam`, recording the spent token in `store`.
    pub fn new(iam: Arc<IamRepo>, store: Arc<dyn KvStore>, token: Secret) -> Self {
        Self { iam, store, token }
    }

    fn token_matches(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(SETUP_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let expected = self.token.expose().as_bytes();
        // Lengths differ only for a wrong token; the comparison of equal lengths is constant-time.
        presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
    }

    async fn run(&self) -> Result<NewAccessKey, ApiError> {
        let bucket = self
            .store
            .create_or_open(&BucketConfig::new(SETUP_BUCKET))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "setup bucket unavailable");
                ApiError::service_unavailable()
            })?;
        let spent = || {
            ApiError::new(
                "SetupTokenSpent",
                "The setup token has been used; the account is bootstrapped.",
                409,
            )
        };
        if self.iam.is_bootstrapped(ACCOUNT_ID).await? {
            return Err(spent());
        }
        let marker = format!(
            r#"{{"spent_at":"{}"}}"#,
            time::OffsetDateTime::now_utc().unix_timestamp()
        );
        match bucket.create(SETUP_SPENT_KEY, Bytes::from(marker)).await {
            Ok(_) => {}
            Err(KvError::AlreadyExists { .. }) => return Err(spent()),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the setup token as spent");
                return Err(ApiError::service_unavailable());
            }
        }
        match self.iam.bootstrap(ACCOUNT_ID).await {
            Ok(BootstrapOutcome::Created(key)) => Ok(*key),
            Ok(BootstrapOutcome::AlreadyDone) => Err(spent()),
            Err(e) => {
                // Nothing usable was handed out: let the operator try again.
                if let Err(undo) = bucket.delete(SETUP_SPENT_KEY, None).await {
                    tracing::error!(error = %undo, "cannot release the setup token after a failed bootstrap");
                }
                Err(e.into())
            }
        }
    }
}

#[async_trait]
impl Endpoint for SetupEndpoint {
    async fn call(&self, method: &Method, headers: &HeaderMap, _body: &[u8]) -> EndpointReply {
        if method != Method::POST {
            return EndpointReply::Error(ApiError::method_not_allowed());
        }
        if !self.token_matches(headers) {
            return EndpointReply::AuthFailure(ApiError::access_denied(
                "The setup token is missing or wrong.",
            ));
        }
        match self.run().await {
            Ok(key) => {
                tracing::info!(
                    access_key_id = %key.record.access_key_id,
                    "bootstrapped account {ACCOUNT_ID} through the setup token"
                );
                let body = zeroize::Zeroizing::new(format!(
                    r#"{{"AccountId":"{ACCOUNT_ID}","UserName":"{}","Arn":"{}","AccessKeyId":"{}","SecretAccessKey":"{}"}}"#,
                    hive_iam::repo::ADMIN_USER,
                    hive_iam::identity::arn(
                        ACCOUNT_ID,
                        hive_iam::identity::EntityKind::User,
                        "/",
                        hive_iam::repo::ADMIN_USER
                    ),
                    key.record.access_key_id,
                    key.secret_access_key.expose()
                ));
                EndpointReply::Ok {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: Bytes::from(body.as_bytes().to_vec()),
                }
            }
            Err(e) => EndpointReply::Error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
