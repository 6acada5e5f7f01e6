//! Composition of a running node: storage, sealing keyring, identity repository, first-start
//! bootstrap, the services (IAM, STS, EC2), readiness and the server with SigV4 authentication.
//!
//! The binary calls [`run`]; integration tests call [`start`] with a temporary data directory
//! and `listen = 127.0.0.1:0`, and get the same node, in process.
//!
//! ```text
//! Config ─► storage::open ─► bootstrap::load_keyring ─► App::open (IamRepo + auth cache watch)
//!        ─► bootstrap_admin (or the setup-token endpoint) ─► Server { SigV4Authenticator,
//!           IamService, StsService, Ec2Service, KvReadiness } ─► serve
//! ```
//!
//! The steps that need the store wait for it: while it cannot be reached or JetStream has no
//! leader yet (processes started together with a fresh NATS cluster), each step is retried
//! with backoff (100 ms doubling to 5 s), every failed attempt logged as a warning with its
//! cause, for at most `[storage] startup_timeout_secs` (0: forever). Configuration errors end
//! start-up at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hive_kv::KvStore;

use crate::app::App;
use crate::auth::SigV4Authenticator;
use crate::bootstrap::{
    self, AdminBootstrap, BOOTSTRAP_PATH, BootstrapError, Claimant, SetupEndpoint,
};
use crate::config::{Config, StorageConfig};
use crate::retry::{Backoff, retry_while};
use crate::server::{KvReadiness, Server};
use crate::storage::{self, Backend, StorageError};

/// Why a node could not start. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The keyring or the bootstrap failed.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The identity repository could not be opened.
    #[error("cannot open the IAM buckets: {0}")]
    Iam(#[from] hive_iam::error::IamError),
    /// TLS configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// The store was still not ready when `[storage] startup_timeout_secs` ran out.
    #[error("storage not ready after {secs} s ([storage] startup_timeout_secs): {source}")]
    StoreNotReady {
        /// The configured limit.
        secs: u64,
        /// The last failure.
        source: Box<NodeError>,
    },
}

impl NodeError {
    /// Whether start-up should wait and try again: the store cannot be reached, JetStream has
    /// no leader yet (no responders, timeouts, a bucket not there yet), or writes of other
    /// processes starting at the same time won a compare-and-swap. Configuration errors (a bad
    /// URL, an unusable key) are not.
    pub fn store_not_ready(&self) -> bool {
        match self {
            Self::Storage(StorageError::Open { source, .. }) => {
                matches!(source, hive_kv::KvError::Unavailable(_))
            }
            Self::Iam(e) | Self::Bootstrap(BootstrapError::Iam(e)) => e.is_transient(),
            _ => false,
        }
    }
}

/// Everything a node is made of, before it listens.
pub struct Prepared {
    /// The shared state.
    pub app: Arc<App>,
    /// The server, with services, authenticator and readiness in place.
    pub server: Server,
    /// Which store it runs on.
    pub backend: Backend,
    /// What the first-start bootstrap did (`None` when a setup token defers it to the API).
    pub bootstrap: Option<AdminBootstrap>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("app", &self.app)
            .field("backend", &self.backend)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

/// How long start-up waits for a store that is not ready (`[storage] startup_timeout_secs`,
/// from the start of [`prepare`]).
struct StoreWait {
    deadline: Option<tokio::time::Instant>,
    limit_secs: u64,
}

impl StoreWait {
    fn new(storage: &StorageConfig) -> Self {
        let limit_secs = storage.startup_timeout_secs;
        Self {
            deadline: (limit_secs > 0)
                .then(|| tokio::time::Instant::now() + Duration::from_secs(limit_secs)),
            limit_secs,
        }
    }

    /// Runs the start-up step `what`, again with backoff while its error says the store is
    /// not ready ([`NodeError::store_not_ready`]); any other error ends start-up at once.
    async fn step<T, Fut>(&self, what: &str, attempt: impl FnMut() -> Fut) -> Result<T, NodeError>
    where
        Fut: Future<Output = Result<T, NodeError>>,
    {
        retry_while(
            what,
            self.deadline,
            Backoff::store(),
            NodeError::store_not_ready,
            attempt,
        )
        .await
        .map_err(|e| {
            if e.store_not_ready() {
                NodeError::StoreNotReady {
                    secs: self.limit_secs,
                    source: Box::new(e),
                }
            } else {
                e
            }
        })
    }
}

/// Open storage, the keyring and the repository, bootstrap, and build the server. Waits for a
/// store that is not ready yet (see [`NodeError::store_not_ready`]), at most
/// `[storage] startup_timeout_secs`.
pub async fn prepare(config: Config) -> Result<Prepared, NodeError> {
    let wait = StoreWait::new(&config.storage);
    let (store, backend) = wait
        .step("opening storage", || async {
            Ok(storage::open(&config.storage).await?)
        })
        .await?;
    prepare_with(config, store, backend, wait).await
}

/// [`prepare`] on a store the caller opened (tests put a fault-injecting store under a real
/// node this way).
pub async fn prepare_on(
    config: Config,
    store: Arc<dyn KvStore>,
    backend: Backend,
) -> Result<Prepared, NodeError> {
    let wait = StoreWait::new(&config.storage);
    prepare_with(config, store, backend, wait).await
}

async fn prepare_with(
    config: Config,
    store: Arc<dyn KvStore>,
    backend: Backend,
    wait: StoreWait,
) -> Result<Prepared, NodeError> {
    let config = Arc::new(config);
    let keyring = bootstrap::load_keyring(&config)?;
    let app = wait
        .step("opening the IAM buckets", || async {
            Ok(App::open(store.clone(), config.clone(), keyring.clone()).await?)
        })
        .await?;
    let app = Arc::new(app);
    // One claimant for every attempt: a retried bootstrap carries on with its own claim.
    let claimant = Claimant::for_node(&config);
    let (bootstrap, setup) = match &config.server.setup_token {
        Some(token) => {
            tracing::info!("setup token configured: bootstrap through POST {BOOTSTRAP_PATH}");
            let endpoint =
                SetupEndpoint::new(app.iam.clone(), store.clone(), token.clone(), claimant);
            (None, Some(endpoint))
        }
        None => {
            let data_dir = &config.storage.data_dir;
            let done = wait
                .step("bootstrapping the administrator", || async {
                    Ok(bootstrap::bootstrap_admin(&app.iam, data_dir, &claimant).await?)
                })
                .await?;
            (Some(done), None)
        }
    };
    let ec2 = Arc::new(crate::ec2::Ec2Service::new(app.clone()));
    // The switch sync runs for the life of the process ([vpc] enabled; OVS via OVS_RUNDIR).
    let netsync = crate::netsync::start_for_node(&ec2, &store, &config);
    let readiness = Arc::new(KvReadiness::new(store));
    let mut server = Server::new(config.server.clone(), readiness)
        .authenticator(Arc::new(SigV4Authenticator::new(app.clone())))
        .service(Arc::new(crate::iam::IamService::new(app.clone())))
        .service(Arc::new(crate::sts::StsService::new(app.clone())))
        .service(ec2);
    if let Some(endpoint) = setup {
        server = server.endpoint(BOOTSTRAP_PATH, Arc::new(endpoint));
    }
    if let Some(sync) = netsync {
        server = server.endpoint(
            crate::netsync::METRICS_PATH,
            crate::netsync::metrics_endpoint(&sync),
        );
        sync.detach();
    }
    let mut scheme = "http";
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        server =
            server.tls(crate::tls::acceptor(cert, key).map_err(|e| NodeError::Tls(e.to_string()))?);
        scheme = "https";
    }
    Ok(Prepared {
        app,
        server,
        backend,
        bootstrap,
        scheme,
    })
}

/// A node serving in the background; stopped gracefully by [`Node::shutdown`] or on drop.
pub struct Node {
    /// The shared state (repository, cache, configuration).
    pub app: Arc<App>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Which store it runs on.
    pub backend: Backend,
    /// What the first-start bootstrap did.
    pub bootstrap: Option<AdminBootstrap>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// `http://<addr>` (or `https://`), the endpoint URL for clients.
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.app.config.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Stop accepting, let in-flight requests finish, and wait for the server to return.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => match task.await {
                Ok(result) => result.map_err(NodeError::Serve),
                Err(e) => Err(NodeError::Serve(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The listener on `[server] listen` and the address it got.
async fn bind(config: &Config) -> Result<(tokio::net::TcpListener, SocketAddr), NodeError> {
    let addr = config.server.listen;
    let listen_err = |source| NodeError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_err)?;
    let local = listener.local_addr().map_err(listen_err)?;
    Ok((listener, local))
}

/// Prepare a node and serve it in the background on `config.server.listen` (use port 0 for a
/// free port; [`Node::addr`] tells which).
pub async fn start(config: Config) -> Result<Node, NodeError> {
    let bound = bind(&config).await?;
    serve_in_background(bound, prepare(config)).await
}

/// [`start`] on a store the caller opened (see [`prepare_on`]).
pub async fn start_on(config: Config, store: Arc<dyn KvStore>) -> Result<Node, NodeError> {
    let bound = bind(&config).await?;
    serve_in_background(bound, prepare_on(config, store, Backend::Given)).await
}

async fn serve_in_background(
    (listener, addr): (tokio::net::TcpListener, SocketAddr),
    prepared: impl Future<Output = Result<Prepared, NodeError>>,
) -> Result<Node, NodeError> {
    let prepared = prepared.await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(prepared.server.serve(listener, async {
        let _ = stopped.await;
    }));
    Ok(Node {
        app: prepared.app,
        addr,
        backend: prepared.backend,
        bootstrap: prepared.bootstrap,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Run a node until `shutdown` completes (the binary passes SIGTERM/Ctrl-C).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    let (listener, local) = bind(&config).await?;
    let data_dir = config.storage.data_dir.clone();
    let prepared = prepare(config).await?;
    tracing::info!(
        listen = %local,
        data_dir = %data_dir.display(),
        storage = prepared.backend.as_str(),
        region = prepared.app.region(),
        "hive-api listening on {}://{local}",
        prepared.scheme
    );
    // Give the cache's watch a moment so the first requests are already served from memory;
    // requests are correct (read through) either way.
    let _ = prepared
        .app
        .wait_auth_cache_live(Duration::from_millis(500))
        .await;
    prepared
        .server
        .serve(listener, shutdown)
        .await
        .map_err(NodeError::Serve)?;
    tracing::info!("hive-api stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_kv::KvError;

    #[test]
    fn only_a_store_that_is_not_ready_is_waited_for() {
        let open = |source| {
            NodeError::Storage(StorageError::Open {
                backend: "nats",
                source,
            })
        };
        let not_ready = [
            open(KvError::Unavailable(
                "nats connect: connection refused".into(),
            )),
            NodeError::Iam(hive_iam_store::storage_error(KvError::Unavailable(
                "nats get bucket: no responders".into(),
            ))),
            NodeError::Iam(hive_iam_store::storage_error(KvError::BucketNotFound(
                "b".into(),
            ))),
            NodeError::Bootstrap(BootstrapError::Iam(hive_iam_store::storage_error(
                KvError::RevisionConflict {
                    key: "k".into(),
                    expected: 1,
                    actual: None,
                },
            ))),
        ];
        for e in &not_ready {
            assert!(e.store_not_ready(), "{e}");
        }
        let at_once = [
            open(KvError::InvalidConfig("bad NATS URL list".into())),
            NodeError::Iam(hive_iam_store::storage_error(KvError::Codec("bad".into()))),
            NodeError::Bootstrap(BootstrapError::File {
                path: "admin-credentials".into(),
                source: std::io::Error::other("read-only"),
            }),
            NodeError::Bootstrap(BootstrapError::Key(hive_iam::seal::SealError::InvalidKey)),
            NodeError::Tls("no certificate".into()),
        ];
        for e in &at_once {
            assert!(!e.store_not_ready(), "{e}");
        }
    }
}
