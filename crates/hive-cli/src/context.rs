//! What every command starts from: the configuration (same sources and precedence as
//! `hive-api`), the store, and repositories over it.

use std::sync::Arc;

use hive_iam_store::IamRepo;
use hive_kv::KvStore;
use hive_node::config::{Config, Overrides};

use crate::cli::Global;
use crate::error::CliError;
use crate::output::Printer;

/// The configuration and output of one invocation; opens the store on demand.
pub struct Context {
    /// The effective configuration.
    pub config: Config,
    /// Where results go.
    pub printer: Printer,
    /// The account commands act in.
    pub account: String,
}

impl Context {
    /// Load the configuration: defaults < `hive.toml` < `HIVE_*` < secret files < flags.
    pub fn load(global: &Global) -> Result<Self, CliError> {
        let flags = Overrides {
            data_dir: global.data_dir.clone(),
            listen: None,
            nats_url: global.nats_url.clone(),
        };
        let config = Config::load(global.config.as_deref(), |k| std::env::var(k).ok(), &flags)?;
        hive_iam::identity::validate_account_id(&global.account)?;
        Ok(Self {
            config,
            printer: Printer::new(global.output),
            account: global.account.clone(),
        })
    }

    /// Open the configured store (the embedded one in the data directory, or JetStream).
    pub async fn store(&self) -> Result<Arc<dyn KvStore>, CliError> {
        Ok(hive_node::storage::open(&self.config.storage).await?.0)
    }

    /// The identity repository over the guide's buckets (created when missing, with the
    /// configured history, TTL and replicas), sealing with the node's key.
    pub async fn iam(&self) -> Result<IamRepo, CliError> {
        let store = self.store().await?;
        self.iam_on(store.as_ref()).await
    }

    /// [`Context::iam`] over an already opened store.
    pub async fn iam_on(&self, store: &dyn KvStore) -> Result<IamRepo, CliError> {
        let keyring = hive_node::bootstrap::load_keyring(&self.config)?;
        let buckets = self
            .config
            .iam
            .bucket_names()
            .open_all(store, self.config.storage.replicas)
            .await?;
        Ok(IamRepo::new(buckets, keyring))
    }
}
