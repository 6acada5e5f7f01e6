//! Server configuration: `hive.toml`, `HIVE_*` environment variables, secret files and flags.
//!
//! # Precedence (later wins)
//! 1. built-in defaults,
//! 2. `hive.toml` (`--config PATH`; sections `[server]`, `[storage]`, `[vpc]`, `[node]`, `[iam]`; an
//!    unknown section or key is an error naming it),
//! 3. `HIVE_*` environment variables (table below),
//! 4. secret files named by `HIVE_SETUP_TOKEN_FILE` and `HIVE_ENCRYPTION_KEY_FILE` (mode 0600
//!    or stricter, else refused; one trailing newline is ignored),
//! 5. command-line flags (`--data-dir`, `--listen`, `--nats-url`).
//!
//! # Defaults
//! `crates/hive-node/hive.example.toml` lists every key with its default (a test keeps it so).
//! The server listens on **127.0.0.1:8700** (loopback only: exposing it is a deliberate
//! choice), keeps its embedded store in `./hive-data`, and accepts bodies up to 1 MiB.
//!
//! # Environment variables
//! | variable | key |
//! |---|---|
//! | `HIVE_LISTEN` | `server.listen` |
//! | `HIVE_MAX_BODY_BYTES` | `server.max_body_bytes` |
//! | `HIVE_REQUEST_TIMEOUT_MS` | `server.request_timeout_ms` |
//! | `HIVE_HEADER_READ_TIMEOUT_MS` | `server.header_read_timeout_ms` |
//! | `HIVE_SHUTDOWN_GRACE_MS` | `server.shutdown_grace_ms` |
//! | `HIVE_TLS_CERT`, `HIVE_TLS_KEY` | `server.tls_cert`, `server.tls_key` |
//! | `HIVE_LOG_FORMAT` | `server.log_format` (`text` or `json`) |
//! | `HIVE_AUTH_FAILURE_THRESHOLD` | `server.auth_failure_threshold` |
//! | `HIVE_AUTH_FAILURE_WINDOW_SECS` | `server.auth_failure_window_secs` |
//! | `HIVE_AUTH_BAN_SECS` | `server.auth_ban_secs` |
//! | `HIVE_SETUP_TOKEN` | `server.setup_token` (secret) |
//! | `HIVE_REGION` | `server.region` |
//! | `HIVE_DATA_DIR` | `storage.data_dir` |
//! | `HIVE_NATS_URL` | `storage.nats_url` (empty: none) |
//! | `HIVE_REPLICAS` | `storage.replicas` |
//! | `HIVE_STORAGE_CONNECT_TIMEOUT_MS` | `storage.connect_timeout_ms` |
//! | `HIVE_STORAGE_OP_TIMEOUT_MS` | `storage.op_timeout_ms` |
//! | `HIVE_STORAGE_STARTUP_TIMEOUT_SECS` | `storage.startup_timeout_secs` (0: wait forever) |
//! | `HIVE_VPC_ENABLED`, `HIVE_VPC_BRIDGE_NAME`, `HIVE_VPC_DEFAULT_CIDR`, `HIVE_VPC_DEFAULT_SUBNET_CIDR`, `HIVE_VPC_GATEWAY_IP`, `HIVE_VPC_NAT_ENABLED`, `HIVE_VPC_METADATA_ENABLED`, `HIVE_VPC_METADATA_IP`, `HIVE_VPC_DATAPATH_TYPE` | `[vpc]` keys |
//! | `HIVE_NODE_NAME`, `HIVE_NODE_TUNNEL_IP`, `HIVE_NODE_TUNNEL_TYPE`, `HIVE_NODE_HEARTBEAT_MS`, `HIVE_NODE_TTL_MS` | `[node]` keys (`name`, `tunnel_ip`, `tunnel_type`, `heartbeat_ms`, `node_ttl_ms`) |
//! | `HIVE_IAM_ENABLED`, `HIVE_IAM_KV_BUCKET_USERS`, `HIVE_IAM_KV_BUCKET_ROLES`, `HIVE_IAM_KV_BUCKET_POLICIES`, `HIVE_IAM_KV_BUCKET_ACCESS_KEYS`, `HIVE_IAM_KV_BUCKET_SESSIONS` | `[iam]` keys |
//! | `HIVE_ENCRYPTION_KEY` | `iam.encryption_key` (secret: 64 hex characters) |
//!
//! Booleans accept `true/false/1/0/yes/no`. Secrets are held in [`Secret`], whose `Debug`
//! prints `***`; prefer the `*_FILE` variables over putting secrets in `hive.toml` or the
//! environment.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hive_iam_store::buckets as iam_kv;
use ipnetwork::Ipv4Network;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// The default listen address: loopback, port 8700.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8700);

/// The default region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// This host's name (`/proc/sys/kernel/hostname`), empty when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Every environment variable read by [`Config::load`], for documentation and `--help`.
pub const ENV_VARS: &[&str] = &[
    "HIVE_LISTEN",
    "HIVE_MAX_BODY_BYTES",
    "HIVE_REQUEST_TIMEOUT_MS",
    "HIVE_HEADER_READ_TIMEOUT_MS",
    "HIVE_SHUTDOWN_GRACE_MS",
    "HIVE_TLS_CERT",
    "HIVE_TLS_KEY",
    "HIVE_LOG_FORMAT",
    "HIVE_AUTH_FAILURE_THRESHOLD",
    "HIVE_AUTH_FAILURE_WINDOW_SECS",
    "HIVE_AUTH_BAN_SECS",
    "HIVE_SETUP_TOKEN",
    "HIVE_SETUP_TOKEN_FILE",
    "HIVE_REGION",
    "HIVE_DATA_DIR",
    "HIVE_NATS_URL",
    "HIVE_REPLICAS",
    "HIVE_STORAGE_CONNECT_TIMEOUT_MS",
    "HIVE_STORAGE_OP_TIMEOUT_MS",
    "HIVE_STORAGE_STARTUP_TIMEOUT_SECS",
    "HIVE_VPC_ENABLED",
    "HIVE_VPC_BRIDGE_NAME",
    "HIVE_VPC_DEFAULT_CIDR",
    "HIVE_VPC_DEFAULT_SUBNET_CIDR",
    "HIVE_VPC_GATEWAY_IP",
    "HIVE_VPC_NAT_ENABLED",
    "HIVE_VPC_METADATA_ENABLED",
    "HIVE_VPC_METADATA_IP",
    "HIVE_VPC_DATAPATH_TYPE",
    "HIVE_NODE_NAME",
    "HIVE_NODE_TUNNEL_IP",
    "HIVE_NODE_TUNNEL_TYPE",
    "HIVE_NODE_HEARTBEAT_MS",
    "HIVE_NODE_TTL_MS",
    "HIVE_IAM_ENABLED",
    "HIVE_IAM_KV_BUCKET_USERS",
    "HIVE_IAM_KV_BUCKET_ROLES",
    "HIVE_IAM_KV_BUCKET_POLICIES",
    "HIVE_IAM_KV_BUCKET_ACCESS_KEYS",
    "HIVE_IAM_KV_BUCKET_SESSIONS",
    "HIVE_ENCRYPTION_KEY",
    "HIVE_ENCRYPTION_KEY_FILE",
];

/// Why the configuration could not be loaded. Messages name the file, key or variable, never
/// a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML or has unknown/mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key, line and column).
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Why the value is refused (it does not repeat secret values).
        reason: String,
    },
    /// A secret file is missing, unreadable or readable by others.
    #[error("secret file {path} (from {var}): {reason}")]
    SecretFile {
        /// The variable naming the file.
        var: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A value is well-formed but unusable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// A secret string (setup token, encryption key): never printed, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

/// The `[server]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8700).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (default 1 MiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Time allowed for one request, body included, in milliseconds (default 30 000).
    pub request_timeout_ms: u64,
    /// Time allowed for a client to send the request headers, in milliseconds (default 10 000).
    pub header_read_timeout_ms: u64,
    /// Time in-flight requests get to finish at shutdown, in milliseconds (default 10 000).
    pub shutdown_grace_ms: u64,
    /// PEM certificate chain for TLS (optional; with `tls_key`, the server speaks HTTPS only).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (optional, with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// Log format, `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Failed authentications from one source address within the window before it is
    /// throttled (default 20; 0 disables throttling).
    pub auth_failure_threshold: u32,
    /// Window over which failures are counted, in seconds (default 60).
    pub auth_failure_window_secs: u64,
    /// How long a throttled source is refused, in seconds (default 60).
    pub auth_ban_secs: u64,
    /// One-time token guarding bootstrap through the API (optional, secret). When set, the
    /// server does not bootstrap the admin by itself; see `hive_api::bootstrap`.
    pub setup_token: Option<Secret>,
    /// The region this endpoint serves (`aws:RequestedRegion`; default `us-east-1`).
    pub region: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
            auth_failure_threshold: 20,
            auth_failure_window_secs: 60,
            auth_ban_secs: 60,
            setup_token: None,
            region: DEFAULT_REGION.to_owned(),
        }
    }
}

/// The `[storage]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store and of `admin-credentials` (default `./hive-data`).
    pub data_dir: PathBuf,
    /// NATS server URL; when set, JetStream KV is used instead of the embedded store.
    pub nats_url: Option<String>,
    /// JetStream replicas of each bucket (default 1).
    pub replicas: usize,
    /// Time allowed to connect to storage at start, in milliseconds (default 5 000).
    pub connect_timeout_ms: u64,
    /// Time allowed for one storage operation, in milliseconds (default 5 000).
    pub op_timeout_ms: u64,
    /// How long a starting node waits for its store (unreachable, or JetStream without a
    /// leader yet) before it gives up, in seconds (default 300; 0: wait forever).
    pub startup_timeout_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("hive-data"),
            nats_url: None,
            replicas: 1,
            connect_timeout_ms: 5_000,
            op_timeout_ms: 5_000,
            startup_timeout_secs: 300,
        }
    }
}

/// The `[vpc]` section: hive-vpc's own type (the setup guide's keys plus `metadata_enabled`
/// and `metadata_ip`), validated by [`hive_vpc::config::VpcConfig::validate`].
pub use hive_vpc::config::VpcConfig;

/// The `[node]` section: the node's name and tunnel address in a multi-node cluster
/// ([`hive_vpc_store::nodes::NodeConfig`]).
pub use hive_vpc_store::nodes::NodeConfig;

/// The `[iam]` section of the setup guide.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IamConfig {
    /// Whether IAM and STS are served (default true).
    pub enabled: bool,
    /// KV bucket of users (default `hive-iam-users`).
    pub kv_bucket_users: String,
    /// KV bucket of roles (default `hive-iam-roles`).
    pub kv_bucket_roles: String,
    /// KV bucket of managed policies (default `hive-iam-policies`).
    pub kv_bucket_policies: String,
    /// KV bucket of access keys (default `hive-iam-access-keys`).
    pub kv_bucket_access_keys: String,
    /// KV bucket of STS sessions (default `hive-iam-sessions`).
    pub kv_bucket_sessions: String,
    /// Key sealing stored secrets: 64 hex characters (32 bytes). Prefer
    /// `HIVE_ENCRYPTION_KEY_FILE`.
    pub encryption_key: Option<Secret>,
}

impl Default for IamConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            kv_bucket_users: iam_kv::DEFAULT_USERS_BUCKET.into(),
            kv_bucket_roles: iam_kv::DEFAULT_ROLES_BUCKET.into(),
            kv_bucket_policies: iam_kv::DEFAULT_POLICIES_BUCKET.into(),
            kv_bucket_access_keys: iam_kv::DEFAULT_ACCESS_KEYS_BUCKET.into(),
            kv_bucket_sessions: iam_kv::DEFAULT_SESSIONS_BUCKET.into(),
            encryption_key: None,
        }
    }
}

impl IamConfig {
    /// The bucket names in hive-kv's form (which builds the buckets' configurations).
    pub fn bucket_names(&self) -> iam_kv::IamBucketNames {
        iam_kv::IamBucketNames {
            kv_bucket_users: self.kv_bucket_users.clone(),
            kv_bucket_roles: self.kv_bucket_roles.clone(),
            kv_bucket_policies: self.kv_bucket_policies.clone(),
            kv_bucket_access_keys: self.kv_bucket_access_keys.clone(),
            kv_bucket_sessions: self.kv_bucket_sessions.clone(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[vpc]`.
    pub vpc: VpcConfig,
    /// `[node]`.
    pub node: NodeConfig,
    /// `[iam]`.
    pub iam: IamConfig,
}

/// Command-line flags, applied last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--nats-url`.
    pub nats_url: Option<String>,
}

impl Config {
    /// Parse `hive.toml` text (`path` is only used in messages). Absent keys keep their
    /// defaults; unknown sections or keys are an error that names them.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Load the configuration from every source in precedence order: defaults, the file at
    /// `config_path` (if any), the environment (read through `env`, e.g. `|k|
    /// std::env::var(k).ok()`), secret files, then `flags`.
    pub fn load(
        config_path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config = match config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Self::default(),
        };
        config.apply_env(&env)?;
        config.apply_secret_files(&env)?;
        config.apply_flags(flags);
        config.validate()?;
        Ok(config)
    }

    /// Apply `HIVE_*` variables (see the module table).
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        macro_rules! set {
            ($var:literal, $field:expr) => {
                if let Some(raw) = env($var) {
                    $field = FromEnv::from_env($var, &raw)?;
                }
            };
        }
        let s = &mut self.server;
        set!("HIVE_LISTEN", s.listen);
        set!("HIVE_MAX_BODY_BYTES", s.max_body_bytes);
        set!("HIVE_REQUEST_TIMEOUT_MS", s.request_timeout_ms);
        set!("HIVE_HEADER_READ_TIMEOUT_MS", s.header_read_timeout_ms);
        set!("HIVE_SHUTDOWN_GRACE_MS", s.shutdown_grace_ms);
        set!("HIVE_TLS_CERT", s.tls_cert);
        set!("HIVE_TLS_KEY", s.tls_key);
        set!("HIVE_LOG_FORMAT", s.log_format);
        set!("HIVE_AUTH_FAILURE_THRESHOLD", s.auth_failure_threshold);
        set!("HIVE_AUTH_FAILURE_WINDOW_SECS", s.auth_failure_window_secs);
        set!("HIVE_AUTH_BAN_SECS", s.auth_ban_secs);
        set!("HIVE_SETUP_TOKEN", s.setup_token);
        set!("HIVE_REGION", s.region);
        let st = &mut self.storage;
        set!("HIVE_DATA_DIR", st.data_dir);
        set!("HIVE_NATS_URL", st.nats_url);
        set!("HIVE_REPLICAS", st.replicas);
        set!("HIVE_STORAGE_CONNECT_TIMEOUT_MS", st.connect_timeout_ms);
        set!("HIVE_STORAGE_OP_TIMEOUT_MS", st.op_timeout_ms);
        set!("HIVE_STORAGE_STARTUP_TIMEOUT_SECS", st.startup_timeout_secs);
        let v = &mut self.vpc;
        set!("HIVE_VPC_ENABLED", v.enabled);
        set!("HIVE_VPC_BRIDGE_NAME", v.bridge_name);
        set!("HIVE_VPC_DEFAULT_CIDR", v.default_cidr);
        set!("HIVE_VPC_DEFAULT_SUBNET_CIDR", v.default_subnet_cidr);
        set!("HIVE_VPC_GATEWAY_IP", v.gateway_ip);
        set!("HIVE_VPC_NAT_ENABLED", v.nat_enabled);
        set!("HIVE_VPC_METADATA_ENABLED", v.metadata_enabled);
        set!("HIVE_VPC_METADATA_IP", v.metadata_ip);
        set!("HIVE_VPC_DATAPATH_TYPE", v.datapath_type);
        let n = &mut self.node;
        set!("HIVE_NODE_NAME", n.name);
        set!("HIVE_NODE_TUNNEL_IP", n.tunnel_ip);
        set!("HIVE_NODE_TUNNEL_TYPE", n.tunnel_type);
        set!("HIVE_NODE_HEARTBEAT_MS", n.heartbeat_ms);
        set!("HIVE_NODE_TTL_MS", n.node_ttl_ms);
        let i = &mut self.iam;
        set!("HIVE_IAM_ENABLED", i.enabled);
        set!("HIVE_IAM_KV_BUCKET_USERS", i.kv_bucket_users);
        set!("HIVE_IAM_KV_BUCKET_ROLES", i.kv_bucket_roles);
        set!("HIVE_IAM_KV_BUCKET_POLICIES", i.kv_bucket_policies);
        set!("HIVE_IAM_KV_BUCKET_ACCESS_KEYS", i.kv_bucket_access_keys);
        set!("HIVE_IAM_KV_BUCKET_SESSIONS", i.kv_bucket_sessions);
        set!("HIVE_ENCRYPTION_KEY", i.encryption_key);
        Ok(())
    }

    /// Read the secret files named by `HIVE_SETUP_TOKEN_FILE` and `HIVE_ENCRYPTION_KEY_FILE`.
    pub fn apply_secret_files(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(path) = env("HIVE_SETUP_TOKEN_FILE").filter(|p| !p.is_empty()) {
            self.server.setup_token =
                Some(read_secret_file("HIVE_SETUP_TOKEN_FILE", path.as_ref())?);
        }
        if let Some(path) = env("HIVE_ENCRYPTION_KEY_FILE").filter(|p| !p.is_empty()) {
            self.iam.encryption_key =
                Some(read_secret_file("HIVE_ENCRYPTION_KEY_FILE", path.as_ref())?);
        }
        Ok(())
    }

    /// Apply command-line flags.
    pub fn apply_flags(&mut self, flags: &Overrides) {
        if let Some(dir) = &flags.data_dir {
            self.storage.data_dir = dir.clone();
        }
        if let Some(listen) = flags.listen {
            self.server.listen = listen;
        }
        if let Some(url) = &flags.nats_url {
            self.storage.nats_url = Some(url.clone()).filter(|u| !u.is_empty());
        }
    }

    /// Check values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| ConfigError::Invalid {
            key,
            reason: reason.into(),
        };
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be at least 1"));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms", "must be at least 1"));
        }
        if self.server.header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.header_read_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "tls_cert and tls_key must be given together",
            ));
        }
        let region = &self.server.region;
        if region.is_empty()
            || region.len() > 64
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "server.region",
                "must be a region name such as us-east-1 (lower-case letters, digits, '-')",
            ));
        }
        if self.storage.replicas == 0 {
            return Err(invalid("storage.replicas", "must be at least 1"));
        }
        if let Some(key) = &self.iam.encryption_key {
            let k = key.expose();
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "iam.encryption_key",
                    "must be 64 hexadecimal characters",
                ));
            }
        }
        self.vpc.validate().map_err(|e| ConfigError::Invalid {
            key: "vpc",
            reason: e.to_string(),
        })?;
        self.node.validate().map_err(|e| ConfigError::Invalid {
            key: "node",
            reason: e.to_string(),
        })?;
        for (key, name) in [
            ("iam.kv_bucket_users", &self.iam.kv_bucket_users),
            ("iam.kv_bucket_roles", &self.iam.kv_bucket_roles),
            ("iam.kv_bucket_policies", &self.iam.kv_bucket_policies),
            ("iam.kv_bucket_access_keys", &self.iam.kv_bucket_access_keys),
            ("iam.kv_bucket_sessions", &self.iam.kv_bucket_sessions),
        ] {
            hive_kv::validate::validate_bucket_name(name).map_err(|e| ConfigError::Invalid {
                key,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Read a secret from a file that only its owner may read (mode 0600 or stricter).
fn read_secret_file(var: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |reason: String| ConfigError::SecretFile {
        var,
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode is {mode:04o}; it must be 0600 (chmod 600 {})",
            path.display()
        )));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(Secret::new(value))
}

/// Parsing of one environment value into a configuration field.
trait FromEnv: Sized {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError>;
}

fn env_err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Env {
        var,
        reason: reason.into(),
    }
}

macro_rules! from_env_via_fromstr {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
                raw.trim().parse::<$t>().map_err(|e| env_err(var, format!("{e} (got {raw:?})")))
            }
        }
    )*};
}
from_env_via_fromstr!(
    u32,
    u64,
    usize,
    SocketAddr,
    Ipv4Addr,
    std::net::IpAddr,
    Ipv4Network,
    LogFormat
);

impl FromEnv for bool {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(env_err(
                var,
                format!("expected true or false (got {raw:?})"),
            )),
        }
    }
}

impl FromEnv for String {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            return Err(env_err(var, "must not be empty"));
        }
        Ok(raw.to_owned())
    }
}

impl FromEnv for PathBuf {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
        String::from_env(var, raw).map(PathBuf::from)
    }
}

impl FromEnv for Secret {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            return Err(env_err(var, "must not be empty"));
        }
        Ok(Secret::new(raw))
    }
}

/// An empty value clears an optional setting.
impl<T: FromEnv> FromEnv for Option<T> {
    fn from_env(var: &'static str, raw: &str) -> Result<Self, ConfigError> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::from_env(var, raw).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn the_example_file_lists_the_defaults() {
        let text = include_str!("../hive.example.toml");
        let parsed =
            Config::from_toml(text, Path::new("hive.example.toml")).expect("example parses");
        assert_eq!(parsed, Config::default());
        // Every key of every section is spelled out (commented or not) in the example.
        for key in [
            "listen",
            "max_body_bytes",
            "request_timeout_ms",
            "header_read_timeout_ms",
            "shutdown_grace_ms",
            "log_format",
            "auth_failure_threshold",
            "auth_failure_window_secs",
            "auth_ban_secs",
            "tls_cert",
            "tls_key",
            "setup_token",
            "region",
            "data_dir",
            "nats_url",
            "replicas",
            "connect_timeout_ms",
            "op_timeout_ms",
            "startup_timeout_secs",
            "bridge_name",
            "default_cidr",
            "default_subnet_cidr",
            "gateway_ip",
            "nat_enabled",
            "metadata_enabled",
            "metadata_ip",
            "kv_bucket_users",
            "kv_bucket_roles",
            "kv_bucket_policies",
            "kv_bucket_access_keys",
            "kv_bucket_sessions",
            "encryption_key",
        ] {
            assert!(text.contains(key), "{key} missing from hive.example.toml");
        }
    }

    #[test]
    fn defaults_are_loopback_and_documented() {
        let c = Config::load(None, env_of(&[]), &Overrides::default()).expect("defaults load");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8700");
        assert_eq!(c.storage.data_dir, PathBuf::from("hive-data"));
        assert_eq!(c.vpc.bridge_name, "hive-vpc0");
        assert_eq!(c.vpc.default_cidr.to_string(), "10.0.0.0/16");
        assert_eq!(c.iam.kv_bucket_sessions, "hive-iam-sessions");
        assert_eq!(
            c.iam.bucket_names(),
            hive_iam_store::buckets::IamBucketNames::default()
        );
        assert!(c.storage.nats_url.is_none());
    }

    #[test]
    fn file_env_secret_file_and_flags_layer_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = r#"
            [server]
            listen = "127.0.0.1:9001"
            max_body_bytes = 2048
            setup_token = "from-file"
            [storage]
            data_dir = "/from/file"
            nats_url = "nats://file:4222"
            [vpc]
            enabled = false
            nat_enabled = true
            [iam]
            kv_bucket_users = "users_file"
        "#;
        let cfg = write(dir.path(), "hive.toml", toml, 0o644);
        let token = write(dir.path(), "token", "from-secret-file\n", 0o600);
        let key = "ab".repeat(32);
        let keyfile = write(dir.path(), "key", &key, 0o400);
        let env = env_of(&[
            ("HIVE_LISTEN", "127.0.0.1:9002"),
            ("HIVE_DATA_DIR", "/from/env"),
            ("HIVE_VPC_ENABLED", "yes"),
            ("HIVE_SETUP_TOKEN", "from-env"),
            ("HIVE_SETUP_TOKEN_FILE", token.to_str().expect("utf-8 path")),
            (
                "HIVE_ENCRYPTION_KEY_FILE",
                keyfile.to_str().expect("utf-8 path"),
            ),
            ("HIVE_IAM_KV_BUCKET_ROLES", "roles_env"),
        ]);
        let flags = Overrides {
            data_dir: Some("/from/flag".into()),
            listen: None,
            nats_url: Some("nats://flag:4222".into()),
        };
        let c = Config::load(Some(&cfg), env, &flags).expect("layered load");
        assert_eq!(c.server.max_body_bytes, 2048, "file beats default");
        assert_eq!(
            c.server.listen.to_string(),
            "127.0.0.1:9002",
            "env beats file"
        );
        assert!(c.vpc.enabled, "env beats file");
        assert!(c.vpc.nat_enabled, "file value kept when env is silent");
        assert_eq!(c.iam.kv_bucket_users, "users_file");
        assert_eq!(c.iam.kv_bucket_roles, "roles_env");
        assert_eq!(
            c.server.setup_token.as_ref().map(Secret::expose),
            Some("from-secret-file"),
            "secret file beats env and file"
        );
        assert_eq!(
            c.iam.encryption_key.as_ref().map(Secret::expose),
            Some(key.as_str())
        );
        assert_eq!(
            c.storage.data_dir,
            PathBuf::from("/from/flag"),
            "flag beats env"
        );
        assert_eq!(c.storage.nats_url.as_deref(), Some("nats://flag:4222"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = Config::from_toml(
            "[server]\nlisten_adress = \"127.0.0.1:1\"\n",
            Path::new("h.toml"),
        )
        .expect_err("typo");
        assert!(e.to_string().contains("listen_adress"), "{e}");
        let e = Config::from_toml("[nodes]\nx = 1\n", Path::new("h.toml")).expect_err("section");
        assert!(e.to_string().contains("nodes"), "{e}");
        let e = Config::from_toml(
            "[vpc]\ndefault_cidr = \"10.0.0.0/33\"\n",
            Path::new("h.toml"),
        )
        .expect_err("bad cidr");
        assert!(e.to_string().contains("h.toml"), "{e}");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e = Config::load(
            None,
            env_of(&[("HIVE_LISTEN", "nowhere")]),
            &Overrides::default(),
        )
        .expect_err("bad addr");
        assert!(e.to_string().contains("HIVE_LISTEN"), "{e}");
        let e = Config::load(
            None,
            env_of(&[("HIVE_VPC_NAT_ENABLED", "maybe")]),
            &Overrides::default(),
        )
        .expect_err("bad bool");
        assert!(e.to_string().contains("HIVE_VPC_NAT_ENABLED"), "{e}");
        let c = Config::load(
            None,
            env_of(&[("HIVE_NATS_URL", "")]),
            &Overrides::default(),
        )
        .expect("empty clears");
        assert!(c.storage.nats_url.is_none());
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = write(dir.path(), "token", "s3cret-value", 0o644);
        let env = env_of(&[("HIVE_SETUP_TOKEN_FILE", open.to_str().expect("utf-8"))]);
        let e = Config::load(None, env, &Overrides::default()).expect_err("world-readable");
        let msg = e.to_string();
        assert!(
            msg.contains("0644") && msg.contains("HIVE_SETUP_TOKEN_FILE"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret-value"));
        let env = env_of(&[("HIVE_ENCRYPTION_KEY_FILE", "/nonexistent/key")]);
        assert!(Config::load(None, env, &Overrides::default()).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let env = env_of(&[
            ("HIVE_SETUP_TOKEN", "tok-123"),
            ("HIVE_ENCRYPTION_KEY", &"0f".repeat(32)),
        ]);
        let c = Config::load(None, env, &Overrides::default()).expect("load");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("tok-123") && !shown.contains("0f0f0f"),
            "{shown}"
        );
        assert!(shown.contains("***"));
    }

    #[test]
    fn validation_rejects_inconsistent_values() {
        let bad_key = env_of(&[("HIVE_ENCRYPTION_KEY", "short")]);
        let e = Config::load(None, bad_key, &Overrides::default()).expect_err("short key");
        assert!(e.to_string().contains("iam.encryption_key") && !e.to_string().contains("short"));
        let e = Config::load(
            None,
            env_of(&[("HIVE_VPC_DEFAULT_SUBNET_CIDR", "192.168.0.0/24")]),
            &Overrides::default(),
        )
        .expect_err("subnet outside");
        assert!(e.to_string().contains("default_subnet_cidr"), "{e}");
        let e = Config::load(
            None,
            env_of(&[("HIVE_IAM_KV_BUCKET_USERS", "a b")]),
            &Overrides::default(),
        )
        .expect_err("bad bucket name");
        assert!(e.to_string().contains("iam.kv_bucket_users"), "{e}");
        let e = Config::load(
            None,
            env_of(&[("HIVE_TLS_CERT", "/c.pem")]),
            &Overrides::default(),
        )
        .expect_err("cert without key");
        assert!(e.to_string().contains("tls"));
    }

    #[test]
    fn region_defaults_to_us_east_1_and_is_validated() {
        let c = Config::load(None, env_of(&[]), &Overrides::default()).expect("defaults");
        assert_eq!(c.server.region, "us-east-1");
        let c = Config::load(
            None,
            env_of(&[("HIVE_REGION", "eu-west-3")]),
            &Overrides::default(),
        )
        .expect("env region");
        assert_eq!(c.server.region, "eu-west-3");
        let e = Config::load(
            None,
            env_of(&[("HIVE_REGION", "Not A Region")]),
            &Overrides::default(),
        )
        .expect_err("bad region");
        assert!(e.to_string().contains("server.region"), "{e}");
    }

    #[test]
    fn every_documented_variable_is_read() {
        // A value no field accepts for every non-string variable; string variables must still
        // be consulted (checked through a recording getter).
        let seen = std::cell::RefCell::new(Vec::new());
        let getter = |k: &str| {
            seen.borrow_mut().push(k.to_owned());
            None
        };
        let mut c = Config::default();
        c.apply_env(&getter).expect("nothing set");
        c.apply_secret_files(&getter).expect("nothing set");
        let seen = seen.into_inner();
        for var in ENV_VARS {
            assert!(
                seen.iter().any(|s| s == var),
                "{var} is documented but never read"
            );
        }
        assert_eq!(
            seen.len(),
            ENV_VARS.len(),
            "a variable is read but not documented"
        );
    }
}
