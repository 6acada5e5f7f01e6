//! Opening the store the server runs on: the embedded SQLite store in the data directory by
//! default, NATS JetStream KV when `storage.nats_url` is set (both from `hive-kv`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hive_kv::KvStore;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::sqlite::SqliteStore;

use crate::config::StorageConfig;

/// Which backend [`open`] chose, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file in the data directory.
    Sqlite,
    /// NATS JetStream KV.
    Nats,
    /// A store the caller opened (`hive_api::node::start_on`).
    Given,
}

impl Backend {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Nats => "nats",
            Self::Given => "given",
        }
    }
}

/// Why storage could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created.
    #[error("cannot create data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store refused to open or connect.
    #[error("cannot open {backend} storage: {source}")]
    Open {
        /// `sqlite` or `nats`.
        backend: &'static str,
        /// The store's error.
        source: hive_kv::KvError,
    },
}

/// Open the configured store. The data directory is created (mode 0700) in both cases: it
/// also holds `admin-credentials`.
pub async fn open(config: &StorageConfig) -> Result<(Arc<dyn KvStore>, Backend), StorageError> {
    prepare_data_dir(&config.data_dir)?;
    match &config.nats_url {
        Some(url) => {
            let options = NatsOptions {
                op_timeout: Duration::from_millis(config.op_timeout_ms),
                connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                client_name: "hive-api".to_owned(),
            };
            let store =
                NatsStore::connect(url, options)
                    .await
                    .map_err(|source| StorageError::Open {
                        backend: "nats",
                        source,
                    })?;
            Ok((Arc::new(store), Backend::Nats))
        }
        None => {
            let store = SqliteStore::open(&config.data_dir)
                .await
                .map_err(|source| StorageError::Open {
                    backend: "sqlite",
                    source,
                })?;
            Ok((Arc::new(store), Backend::Sqlite))
        }
    }
}

fn prepare_data_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StorageError::DataDir {
            dir: dir.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_is_the_default_and_is_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StorageConfig {
            data_dir: dir.path().join("nested/data"),
            ..StorageConfig::default()
        };
        let (store, backend) = open(&config).await.expect("open sqlite");
        assert_eq!(backend, Backend::Sqlite);
        assert!(config.data_dir.join(hive_kv::sqlite::DB_FILE).exists());
        assert!(matches!(
            store.bucket_config("absent").await,
            Err(hive_kv::KvError::BucketNotFound(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_nats_is_an_open_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StorageConfig {
            data_dir: dir.path().to_owned(),
            nats_url: Some("nats://127.0.0.1:1".into()),
            connect_timeout_ms: 500,
            ..StorageConfig::default()
        };
        let e = open(&config)
            .await
            .err()
            .expect("nothing listens on port 1");
        assert!(e.to_string().contains("nats"), "{e}");
    }
}
