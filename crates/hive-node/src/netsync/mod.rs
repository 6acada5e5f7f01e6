//! The switch sync: keeps `hive-vpc0` equal to the program compiled from the store.
//!
//! [`NetSync`] runs in the background of a node with `[vpc] enabled`. It
//! - checks that Open vSwitch answers (through `OVS_RUNDIR` like the OVS tools, or an explicit
//!   [`OvsConfig`]); without it, it says so **once** (a warning), keeps the server running,
//!   retries every [`NetSyncOptions::retry_every`], and still compiles the program, which stays
//!   available through [`NetSync::program`] (and [`compiled_program`] for the CLI);
//! - sets up the bridge and its gateway port `hive-int0`, whose `mac_in_use` becomes the
//!   gateway's MAC in the program;
//! - binds interfaces to switch ports by `external_ids:iface-id=<eni-id>`, polling the
//!   database every [`NetSyncOptions::port_poll`] so that ports plugged or unplugged by the
//!   hypervisor are noticed without a restart;
//! - rebuilds the program **from the store only** ([`VpcRepo::node_state`], never from
//!   memory) on every change notification of the store (which also delivers other hive-api
//!   processes' changes on the same JetStream) and every port change, after a short debounce,
//!   and applies it as one atomic diff bundle;
//! - reconciles the bridge against the program at start, after the switch comes back and every
//!   [`NetSyncOptions::reconcile_every`] (drift repair).
//!
//! # Configuration
//! The bridge is `[vpc] bridge_name`, the gateway port `hive-int0`, metadata follows
//! `[vpc] metadata_enabled`, the datapath type `[vpc] datapath_type` (`system`; `netdev` without
//! the kernel module, `dummy` in a sandbox; `HIVE_VPC_DATAPATH_TYPE`). The tools
//! find the switch through `OVS_RUNDIR` (database `$OVS_RUNDIR/db.sock`), as they do by hand.
//!
//! # Failing closed
//! The switch never gets a partial program: diffs and whole programs go in atomic bundles
//! (`hive-ovs`), and a rejected bundle leaves the previous program in place. When the desired
//! state does not compile three times in a row, or the switch rejects the whole program, the
//! bridge gets the base program alone (every table ends in `priority=0 drop`), so doubt never
//! opens traffic. A store that cannot be read leaves the installed program as it is and is
//! retried; one that is away when the sync starts is waited for ([`NetSync::start_when_ready`]:
//! backoff to 5 s, a warning per attempt) before the switch is touched at all.
//!
//! # Metrics and logs
//! [`NetSync::status`] reports program size, bound ports, the duration and size of the last
//! apply, repairs and errors; [`NetSyncStatus::render_prometheus`] gives them as Prometheus
//! text, served by a node at [`METRICS_PATH`]. Nothing here handles secrets; logs name ids, counts and switch errors only.

mod plane;
mod source;

pub use hive_vpc_store::GatewayBinding;
pub use plane::{NodePlane, converge_tunnels, remote_bindings, with_cluster};
pub use source::SwitchFacts;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use hive_ovs::{DatapathType, OvsConfig, OvsError, OvsSwitch, Switch};
use hive_vpc::compile::{CompileError, Compiler, compile};
use hive_vpc::config::VpcConfig;
use hive_vpc::error::VpcError;
use hive_vpc::flow::FlowProgram;
use hive_vpc::model::{MacAddr, NetworkInterfaceId};
use hive_vpc_store::VpcRepo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::retry::{Backoff, retry_while};

/// Consecutive failures to compile the desired state after which the bridge fails closed.
const COMPILE_FAILURES_BEFORE_FAIL_CLOSED: u32 = 3;
/// Delay before a failed rebuild (store read or compile) is tried again.
const REBUILD_RETRY: Duration = Duration::from_millis(250);

/// Why a sync step failed.
#[derive(Debug, thiserror::Error)]
pub enum NetSyncError {
    /// Talking to Open vSwitch failed.
    #[error("switch: {0}")]
    Switch(#[from] OvsError),
    /// The desired state does not compile.
    #[error("cannot compile the desired state: {0}")]
    Compile(#[from] CompileError),
    /// The desired state could not be read from the store.
    #[error("cannot read the desired state: {0}")]
    State(#[from] VpcError),
    /// A blocking switch call could not run to completion.
    #[error("switch task failed: {0}")]
    Task(String),
}

impl NetSyncError {
    /// Whether the configuration is at fault (waiting for the store will not help).
    fn is_config(&self) -> bool {
        matches!(self, Self::State(VpcError::InvalidConfig { .. }))
    }

    /// Whether the error means the switch is not there (rather than refusing one request).
    fn switch_unreachable(&self) -> bool {
        matches!(
            self,
            NetSyncError::Switch(
                OvsError::NotRunning { .. }
                    | OvsError::NotInstalled { .. }
                    | OvsError::Timeout { .. }
                    | OvsError::NoSuchBridge { .. }
            )
        )
    }
}

/// How the sync runs.
#[derive(Debug, Clone)]
pub struct NetSyncOptions {
    /// How to reach and shape the switch (bridge name, datapath, `OVS_RUNDIR`).
    pub ovs: OvsConfig,
    /// How often the bridge's ports are read to notice plugs and unplugs.
    pub port_poll: Duration,
    /// How long a burst of changes is gathered before one rebuild.
    pub debounce: Duration,
    /// How often the bridge is compared with the program and repaired.
    pub reconcile_every: Duration,
    /// How often an unreachable switch is tried again.
    pub retry_every: Duration,
    /// Whether the instance metadata address is reachable (`[vpc] metadata_enabled`).
    pub metadata: bool,
    /// This node's place in a multi-node cluster; `None`: a single node (no heartbeat, no
    /// bindings, no tunnels).
    pub node: Option<NodePlane>,
}

impl NetSyncOptions {
    /// Options for the node's `[vpc]` section: its bridge and datapath type, the tools'
    /// environment (`OVS_RUNDIR`), 500 ms port polling, 50 ms debounce, repair every
    /// 30 s and a retry of a missing switch every 10 s.
    pub fn from_config(vpc: &VpcConfig) -> Self {
        Self {
            ovs: OvsConfig {
                bridge: vpc.bridge_name.clone(),
                // `VpcConfig::validate` admits only the names `parse_datapath` knows.
                datapath_type: parse_datapath(&vpc.datapath_type).unwrap_or(DatapathType::System),
                ..OvsConfig::default()
            },
            port_poll: Duration::from_millis(500),
            debounce: Duration::from_millis(50),
            reconcile_every: Duration::from_secs(30),
            retry_every: Duration::from_secs(10),
            metadata: vpc.metadata_enabled,
            node: None,
        }
    }

    /// The same options for a node of a cluster: it announces itself, publishes its port
    /// bindings and keeps one tunnel port per live remote node.
    pub fn with_node(mut self, plane: NodePlane) -> Self {
        self.node = Some(plane);
        self
    }

    /// The same options with another datapath type (`netdev` on a node without the kernel
    /// module, `dummy` in a sandbox).
    pub fn with_datapath(mut self, datapath: DatapathType) -> Self {
        self.ovs.datapath_type = datapath;
        self
    }
}

/// What the sync has done, for metrics, `doctor` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSyncStatus {
    /// Whether Open vSwitch answered at the last attempt.
    pub switch_online: bool,
    /// Flows in the last compiled program.
    pub program_flows: usize,
    /// Switch ports bound to interfaces (`external_ids:iface-id`).
    pub bound_ports: usize,
    /// Programs (or diffs) applied successfully.
    pub applies: u64,
    /// Flows touched by the last apply.
    pub last_apply_flows: usize,
    /// Duration of the last apply.
    pub last_apply: Option<Duration>,
    /// Flows repaired by reconciles since start.
    pub repaired_flows: u64,
    /// Errors since start (store, compile, switch).
    pub errors: u64,
    /// The last error, as text (no secrets: ids, counts and tool messages only).
    pub last_error: Option<String>,
    /// Times the bridge was failed closed (base program only).
    pub fail_closed: u64,
    /// Increases every time the installed program changes or is confirmed; tests wait on it.
    pub generation: u64,
    /// Whether the program last compiled is what the switch holds.
    pub in_sync: bool,
}

impl NetSyncStatus {
    /// The status as Prometheus text lines (`hive_netsync_*`).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP hive_netsync_{name} {help}\n# TYPE hive_netsync_{name} gauge\nhive_netsync_{name} {value}\n"
            ));
        };
        gauge(
            "switch_online",
            "1 when Open vSwitch answered at the last attempt.",
            u8::from(self.switch_online).to_string(),
        );
        gauge(
            "program_flows",
            "Flows in the compiled program.",
            self.program_flows.to_string(),
        );
        gauge(
            "bound_ports",
            "Switch ports bound to interfaces.",
            self.bound_ports.to_string(),
        );
        gauge(
            "applies_total",
            "Programs or diffs applied.",
            self.applies.to_string(),
        );
        gauge(
            "last_apply_flows",
            "Flows touched by the last apply.",
            self.last_apply_flows.to_string(),
        );
        gauge(
            "last_apply_seconds",
            "Duration of the last apply.",
            format!("{:.6}", self.last_apply.unwrap_or_default().as_secs_f64()),
        );
        gauge(
            "repaired_flows_total",
            "Flows repaired by drift reconciliation.",
            self.repaired_flows.to_string(),
        );
        gauge(
            "errors_total",
            "Sync errors (store, compile, switch).",
            self.errors.to_string(),
        );
        gauge(
            "fail_closed_total",
            "Times the bridge was reduced to the base program.",
            self.fail_closed.to_string(),
        );
        gauge(
            "in_sync",
            "1 when the switch holds the compiled program.",
            u8::from(self.in_sync).to_string(),
        );
        out
    }
}

/// State shared between the background task and its handle.
#[derive(Debug)]
struct Shared {
    program: RwLock<Arc<FlowProgram>>,
    status: Mutex<NetSyncStatus>,
    notify: watch::Sender<u64>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut NetSyncStatus)) {
        let generation = {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut status);
            status.generation
        };
        self.notify.send_replace(generation);
    }

    fn error(&self, e: &NetSyncError) {
        let text = e.to_string();
        self.update(|s| {
            s.errors += 1;
            s.last_error = Some(text);
        });
    }
}

/// The running switch sync; stops when [`NetSync::stop`] is called or the handle is dropped.
#[derive(Debug)]
pub struct NetSync {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl NetSync {
    /// Start syncing the switch described by `options` with the desired state in `repo`.
    /// Must be called within a tokio runtime.
    /// Returns at once; the first program is compiled and applied in the background.
    /// Fails only on a bridge or port name Open vSwitch would not accept.
    pub fn start(repo: VpcRepo, options: NetSyncOptions) -> Result<Self, NetSyncError> {
        Self::start_when_ready(options, move || {
            let repo = repo.clone();
            async move { Ok((repo, None)) }
        })
    }

    /// [`NetSync::start`] with the repository (and, in a cluster, this node's plane, which
    /// then replaces `options.node`) from `open`, which needs the store. Until `open` succeeds
    /// the switch is not touched at all, so the bridge keeps the program it has (fail closed:
    /// flows are never cleared for a store that is away); `open` is retried with
    /// [`Backoff::store`], a warning per failure, for as long as it takes. Only a
    /// configuration error from `open` ends the sync before it starts.
    pub fn start_when_ready<F, Fut>(options: NetSyncOptions, open: F) -> Result<Self, NetSyncError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(VpcRepo, Option<NodePlane>), NetSyncError>>
            + Send
            + 'static,
    {
        let switch = OvsSwitch::new(options.ovs.clone())?;
        let base = compile(&hive_vpc::compile::NodeState::default())?;
        let (notify, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            program: RwLock::new(Arc::new(base.clone())),
            status: Mutex::new(NetSyncStatus {
                program_flows: base.len(),
                ..NetSyncStatus::default()
            }),
            notify,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_when_ready(
            open,
            switch,
            options,
            Arc::clone(&shared),
            base,
            stop_rx,
        ));
        Ok(Self {
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The program last compiled from the store (the base program before the first build).
    pub fn program(&self) -> Arc<FlowProgram> {
        Arc::clone(
            &self
                .shared
                .program
                .read()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// What the sync has done so far.
    pub fn status(&self) -> NetSyncStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wait until `pred` holds for the status, or `limit` passes; returns the last status seen
    /// and whether `pred` held.
    pub async fn wait_for(
        &self,
        limit: Duration,
        pred: impl Fn(&NetSyncStatus) -> bool,
    ) -> (NetSyncStatus, bool) {
        let mut rx = self.shared.notify.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status();
            if pred(&status) {
                return (status, true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    let status = self.status();
                    let held = pred(&status);
                    return (status, held);
                }
            }
        }
    }

    /// A handle on the sync's status that outlives borrows of the sync (what a metrics
    /// endpoint follows for as long as the sync runs).
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle(Arc::clone(&self.shared))
    }

    /// Let the sync run for the rest of the runtime's life without a handle (for a server
    /// whose process ends with it).
    pub fn detach(self) {
        tokio::spawn(async move {
            let _sync = self;
            std::future::pending::<()>().await;
        });
    }

    /// Stop the background task and wait for it (the bridge keeps its program).
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "switch sync task ended abnormally");
        }
    }
}

impl Drop for NetSync {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where a node serves the sync's metrics (Prometheus text, no authentication, like
/// `/metrics`; counts and durations only).
pub const METRICS_PATH: &str = "/metrics/netsync";

/// A clonable view of a running sync's status.
#[derive(Clone)]
pub struct StatusHandle(Arc<Shared>);

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHandle").finish_non_exhaustive()
    }
}

impl StatusHandle {
    /// The status now.
    pub fn status(&self) -> NetSyncStatus {
        self.0
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A datapath type by its `datapath_type` name.
pub fn parse_datapath(text: &str) -> Option<DatapathType> {
    [
        DatapathType::System,
        DatapathType::Netdev,
        DatapathType::Dummy,
    ]
    .into_iter()
    .find(|d| d.as_str() == text.trim())
}

/// The background task of [`NetSync::start_when_ready`]: opens the repository, then runs the
/// worker until stopped.
async fn run_when_ready<F, Fut>(
    mut open: F,
    switch: OvsSwitch,
    mut options: NetSyncOptions,
    shared: Arc<Shared>,
    base: FlowProgram,
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(VpcRepo, Option<NodePlane>), NetSyncError>>,
{
    let attempt = || {
        let opening = open();
        let shared = Arc::clone(&shared);
        async move {
            let opened = opening.await;
            if let Err(e) = &opened {
                shared.error(e);
            }
            opened
        }
    };
    let waited = retry_while(
        "starting the switch sync",
        None,
        Backoff::store(),
        |e: &NetSyncError| !e.is_config(),
        attempt,
    );
    let opened = tokio::select! {
        opened = waited => opened,
        _ = stop.changed() => return,
    };
    let (repo, node) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, "switch sync not started");
            return;
        }
    };
    if node.is_some() {
        options.node = node;
    }
    let plane = options.node.clone().map(plane::PlaneState::new);
    let worker = Worker {
        repo,
        switch: Arc::new(switch),
        options,
        shared,
        base,
        compiler: None,
        installed: None,
        facts: SwitchFacts::default(),
        online: false,
        warned_offline: false,
        compile_failures: 0,
        plane,
    };
    worker.run(stop).await;
}

/// This node's identity (`[node]`, the host name when `name` is empty) and the node registry
/// on `store`, with `[storage] replicas`.
pub async fn node_plane(
    store: &dyn hive_kv::KvStore,
    config: &crate::config::Config,
) -> Result<NodePlane, NetSyncError> {
    let hostname = crate::config::host_name();
    let name = config.node.resolved_name(&hostname).ok_or_else(|| {
        NetSyncError::State(VpcError::InvalidConfig {
            field: "name",
            reason: format!(
                "[node] name is empty and the host name {hostname:?} is not a usable node name; set [node] name or HIVE_NODE_NAME"
            ),
        })
    })?;
    let registry = hive_vpc_store::nodes::NodeRegistry::open(
        store,
        &config.node,
        config.storage.replicas.max(1),
    )
    .await?;
    Ok(NodePlane {
        name,
        config: config.node.clone(),
        registry,
    })
}

/// The program the store asks for on this node, given the bridge's bound ports and gateway,
/// compiled in one shot (for the CLI and for comparisons: `ovs-ofctl diff-flows` against it).
pub async fn compiled_program(
    repo: &VpcRepo,
    facts: &SwitchFacts,
    vpc: &VpcConfig,
) -> Result<FlowProgram, NetSyncError> {
    let state = source::node_state(repo, facts, vpc.metadata_enabled).await?;
    Ok(compile(&state)?)
}

/// Run a blocking switch call on the blocking pool.
async fn blocking<T: Send + 'static>(
    switch: &Arc<OvsSwitch>,
    f: impl FnOnce(&OvsSwitch) -> Result<T, OvsError> + Send + 'static,
) -> Result<T, NetSyncError> {
    let switch = Arc::clone(switch);
    tokio::task::spawn_blocking(move || f(&switch))
        .await
        .map_err(|e| NetSyncError::Task(e.to_string()))?
        .map_err(NetSyncError::from)
}

/// Parse `ovs-vsctl get interface X mac_in_use` output (`"aa:55:aa:55:00:0e"`).
fn parse_mac_in_use(text: &str) -> Option<MacAddr> {
    text.trim().trim_matches('"').parse().ok()
}

/// What the bridge says about this node: the ports bound to interfaces and the gateway port
/// (its OpenFlow port and `mac_in_use`). Blocking; for the CLI and the sync.
pub fn read_switch_facts(switch: &OvsSwitch) -> Result<SwitchFacts, OvsError> {
    let ports = switch.bound_ports()?;
    let gateway = read_gateway(switch)?;
    let tunnels = switch.tunnels()?;
    Ok(SwitchFacts {
        ports,
        gateway,
        tunnels,
        remotes: Default::default(),
    })
}

fn read_gateway(switch: &OvsSwitch) -> Result<Option<GatewayBinding>, OvsError> {
    let state = switch.bridge_state()?;
    let Some(ofport) = state.internal_ofport else {
        return Ok(None);
    };
    let config = switch.config();
    let out = config.runner().run(&config.vsctl([
        "get",
        "interface",
        config.internal_port.as_str(),
        "mac_in_use",
    ]))?;
    Ok(Some(GatewayBinding {
        ofport,
        mac: parse_mac_in_use(&out.stdout),
    }))
}

struct Worker {
    repo: VpcRepo,
    switch: Arc<OvsSwitch>,
    options: NetSyncOptions,
    shared: Arc<Shared>,
    base: FlowProgram,
    /// Long-lived, so interface tags and conjunction ids stay put across rebuilds.
    compiler: Option<Compiler>,
    /// The program the switch holds as far as we know; `None` forces a full reconcile.
    installed: Option<FlowProgram>,
    facts: SwitchFacts,
    online: bool,
    warned_offline: bool,
    compile_failures: u32,
    /// The multi-node plane, when this node is part of a cluster.
    plane: Option<plane::PlaneState>,
}

impl Worker {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut changes = self.subscribe().await;
        self.connect().await;
        let mut dirty = true;
        let mut retry_rebuild: Option<tokio::time::Instant> = None;
        // Consecutive failed rebuilds: retries back off up to `retry_every`.
        let mut failures: u32 = 0;
        let mut ports_tick = tokio::time::interval(self.options.port_poll);
        ports_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconcile_tick = tokio::time::interval(self.options.reconcile_every);
        reconcile_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile_tick.tick().await; // the first tick is immediate; start is reconciled anyway
        let mut retry_tick = tokio::time::interval(self.options.retry_every);
        retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        retry_tick.tick().await;
        let heartbeat_every = self
            .plane
            .as_ref()
            .map(|p| Duration::from_millis(p.plane.config.heartbeat_ms))
            .unwrap_or(Duration::from_secs(3600));
        let mut heartbeat_tick = tokio::time::interval(heartbeat_every);
        heartbeat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if dirty {
                dirty = false;
                if !self.rebuild().await {
                    retry_rebuild = Some(tokio::time::Instant::now() + self.backoff(failures));
                    failures = failures.saturating_add(1);
                } else {
                    retry_rebuild = None;
                    failures = 0;
                }
            }
            let retry_at = retry_rebuild;
            tokio::select! {
                _ = stop.changed() => break,
                item = next_change(&mut changes) => {
                    match item {
                        Some(()) => {
                            self.debounce(&mut changes).await;
                            dirty = true;
                        }
                        None => {
                            // The watch ended (store restarted?): subscribe again, and rebuild
                            // since changes may have been missed meanwhile.
                            tokio::time::sleep(REBUILD_RETRY).await;
                            changes = self.subscribe().await;
                            dirty = true;
                        }
                    }
                }
                _ = async {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => dirty = true,
                _ = ports_tick.tick(), if self.online => {
                    if self.poll_ports().await {
                        dirty = true;
                        self.publish_bindings(false).await;
                    }
                }
                _ = heartbeat_tick.tick(), if self.plane.is_some() => {
                    dirty |= self.heartbeat().await;
                }
                _ = retry_tick.tick() => {
                    if changes.is_none() {
                        changes = self.subscribe().await;
                        dirty |= changes.is_some();
                    }
                    if !self.online && self.connect().await {
                        dirty = true;
                    }
                }
                _ = reconcile_tick.tick() => {
                    // Bindings deleted behind our back come back here.
                    self.publish_bindings(true).await;
                    // A full rebuild from the store catches anything a broken watch missed.
                    if !self.rebuild().await {
                        retry_rebuild = Some(tokio::time::Instant::now() + self.backoff(failures));
                        failures = failures.saturating_add(1);
                    }
                    if self.online {
                        self.reconcile().await;
                    }
                }
            }
        }
    }

    /// Announce this node, learn who else is alive, and give the bridge one tunnel port per
    /// live remote node; true when the program must be rebuilt.
    async fn heartbeat(&mut self) -> bool {
        let Some(plane) = self.plane.as_mut() else {
            return false;
        };
        let membership_changed = plane.heartbeat().await;
        if !self.online {
            return membership_changed;
        }
        let specs = plane::tunnel_specs(
            plane.tunnel_kind(),
            &plane::remote_nodes(&plane.plane.name, &plane.live),
        );
        // Only touch the switch when something is missing: a heartbeat is frequent.
        let ready = specs.len()
            == self
                .facts
                .tunnels
                .iter()
                .filter(|t| t.spec.name.starts_with("hvt-"))
                .count()
            && specs.iter().all(|spec| {
                self.facts
                    .tunnels
                    .iter()
                    .any(|t| &t.spec == spec && t.ofport.is_some())
            });
        if ready && !membership_changed {
            return false;
        }
        match blocking(&self.switch, move |s| plane::converge_tunnels(s, &specs)).await {
            Ok(tunnels) => {
                let changed = tunnels != self.facts.tunnels;
                if changed {
                    tracing::info!(
                        tunnels = ?tunnels.iter().map(|t| (&t.spec.name, t.spec.remote_ip, t.ofport)).collect::<Vec<_>>(),
                        "tunnel ports converged"
                    );
                }
                self.facts.tunnels = tunnels;
                changed || membership_changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up the tunnel ports; will retry");
                self.shared.error(&e);
                membership_changed
            }
        }
    }

    /// Publish the interfaces plugged into this bridge as bound to this node (when they
    /// changed, or always with `force`). Only while the switch is online: an unreachable
    /// switch says nothing about what is plugged in.
    async fn publish_bindings(&mut self, force: bool) {
        if !self.online {
            return;
        }
        let Some(plane) = self.plane.as_mut() else {
            return;
        };
        let local = self
            .facts
            .ports
            .iter()
            .filter_map(|p| NetworkInterfaceId::parse(&p.iface_id).ok())
            .collect();
        if let Err(e) = plane.publish(local, force).await {
            tracing::warn!(error = %e, "cannot publish the port bindings; will retry");
            self.shared.error(&e.into());
        }
    }

    /// Delay before retrying after `failures` consecutive failed rebuilds: 250 ms, doubling,
    /// at most [`NetSyncOptions::retry_every`].
    fn backoff(&self, failures: u32) -> Duration {
        REBUILD_RETRY
            .saturating_mul(1u32 << failures.min(16))
            .min(self.options.retry_every.max(REBUILD_RETRY))
    }

    async fn subscribe(&self) -> Option<BoxStream<'static, ()>> {
        let registry = self.plane.as_ref().map(|p| &p.plane.registry);
        match source::changes(&self.repo, registry).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the store; relying on periodic rebuilds");
                self.shared.error(&e);
                None
            }
        }
    }

    /// Gather a burst of notifications into one rebuild.
    async fn debounce(&self, changes: &mut Option<BoxStream<'static, ()>>) {
        let deadline = tokio::time::Instant::now() + self.options.debounce;
        while let Ok(Some(())) = tokio::time::timeout_at(deadline, next_change(changes)).await {}
    }

    /// Check the switch and set up the bridge; true when it is (back) online.
    async fn connect(&mut self) -> bool {
        let result = async {
            blocking(&self.switch, |s| s.check()).await?;
            let bridge = blocking(&self.switch, |s| s.ensure_bridge()).await?;
            let facts = blocking(&self.switch, read_switch_facts).await?;
            Ok::<_, NetSyncError>((bridge, facts))
        }
        .await;
        match result {
            Ok((bridge, facts)) => {
                tracing::info!(
                    bridge = %bridge.name,
                    datapath = %bridge.datapath_type,
                    bound_ports = facts.ports.len(),
                    gateway_ofport = ?facts.gateway.as_ref().map(|g| g.ofport),
                    "Open vSwitch reachable; bridge ready"
                );
                self.online = true;
                self.warned_offline = false;
                self.installed = None; // reconcile whatever the bridge holds
                let n = facts.ports.len();
                self.facts = facts;
                self.shared.update(|s| {
                    s.switch_online = true;
                    s.bound_ports = n;
                });
                self.publish_bindings(true).await;
                self.heartbeat().await;
                true
            }
            Err(e) => {
                self.shared.error(&e);
                self.go_offline(&e);
                false
            }
        }
    }

    fn go_offline(&mut self, e: &NetSyncError) {
        if !self.warned_offline {
            tracing::warn!(
                error = %e,
                retry_secs = self.options.retry_every.as_secs(),
                "Open vSwitch is not reachable: the switch is not programmed (the program is still compiled; retrying)"
            );
            self.warned_offline = true;
        } else {
            tracing::debug!(error = %e, "Open vSwitch still not reachable");
        }
        self.online = false;
        self.installed = None;
        // Without a switch there are no bound ports: the program the CLI sees is the store's
        // state with nothing plugged in.
        self.facts = SwitchFacts::default();
        self.shared.update(|s| {
            s.switch_online = false;
            s.in_sync = false;
            s.bound_ports = 0;
        });
    }

    /// Read the bridge's ports; true when they changed.
    async fn poll_ports(&mut self) -> bool {
        match blocking(&self.switch, |s| s.bound_ports()).await {
            Ok(ports) if ports != self.facts.ports => {
                tracing::info!(
                    before = self.facts.ports.len(),
                    after = ports.len(),
                    "bound ports changed"
                );
                let n = ports.len();
                self.facts.ports = ports;
                self.shared.update(|s| s.bound_ports = n);
                true
            }
            Ok(_) => false,
            Err(e) => {
                // Whatever the cause (daemon gone, bridge deleted by hand), start over: the
                // reconnection sets the bridge up again and reconciles it.
                self.shared.error(&e);
                self.go_offline(&e);
                false
            }
        }
    }

    /// Rebuild the program from the store and apply it; false when it should be retried.
    async fn rebuild(&mut self) -> bool {
        if let Some(plane) = &self.plane {
            match plane.plane.registry.bindings().await {
                Ok(bindings) => {
                    self.facts.remotes = plane::remote_bindings(
                        &plane.plane.name,
                        &plane.live,
                        &self.facts.tunnels,
                        &bindings,
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the port bindings; will retry");
                    self.shared.error(&NetSyncError::from(e));
                    return false;
                }
            }
        }
        let state = match source::node_state(&self.repo, &self.facts, self.options.metadata).await {
            Ok(state) => state,
            Err(e) => {
                // The installed program stays: it was right for the last state we could read.
                tracing::warn!(error = %e, "cannot read the desired network state; will retry");
                self.shared.error(&e);
                return false;
            }
        };
        let compiled = match self.compiler.as_mut() {
            Some(c) => c.update(&state).map(|_| ()),
            None => Compiler::new(&state).map(|c| {
                self.compiler = Some(c);
            }),
        };
        let program = match compiled {
            Ok(()) => {
                self.compile_failures = 0;
                match &self.compiler {
                    Some(c) => c.program(),
                    None => self.base.clone(),
                }
            }
            Err(e) => {
                self.compile_failures += 1;
                let e = NetSyncError::from(e);
                self.shared.error(&e);
                if self.compile_failures < COMPILE_FAILURES_BEFORE_FAIL_CLOSED {
                    tracing::warn!(error = %e, "desired state does not compile; retrying");
                    return false;
                }
                tracing::error!(error = %e, "desired state does not compile; failing closed");
                self.shared.update(|s| s.fail_closed += 1);
                self.compile_failures = 0;
                // Retry from a fresh compiler next time; meanwhile only the base program.
                self.compiler = None;
                self.base.clone()
            }
        };
        let flows = program.len();
        *self
            .shared
            .program
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(program.clone());
        self.shared.update(|s| {
            s.program_flows = flows;
            s.in_sync = false;
        });
        if self.online {
            self.apply(program).await;
        }
        true
    }

    /// Put `program` on the switch: a diff when we know what it holds, else a reconcile.
    async fn apply(&mut self, program: FlowProgram) {
        let started = Instant::now();
        let result = match self.installed.take() {
            Some(installed) => {
                let diff = installed.diff(&program);
                blocking(&self.switch, move |s| s.apply_diff(&diff))
                    .await
                    .map(|touched| (touched, 0))
            }
            None => {
                let p = program.clone();
                blocking(&self.switch, move |s| s.reconcile(&p))
                    .await
                    .map(|report| {
                        if !report.is_clean() {
                            tracing::info!(repaired = report.len(), "bridge reconciled");
                        }
                        (report.len(), report.len())
                    })
            }
        };
        match result {
            Ok((touched, repaired)) => {
                let took = started.elapsed();
                if touched > 0 {
                    tracing::info!(
                        flows = program.len(),
                        touched,
                        took_ms = took.as_millis() as u64,
                        "switch program updated"
                    );
                }
                self.installed = Some(program);
                self.shared.update(|s| {
                    s.applies += 1;
                    s.repaired_flows += repaired as u64;
                    s.last_apply_flows = touched;
                    s.last_apply = Some(took);
                    s.generation += 1;
                    s.in_sync = true;
                });
            }
            Err(e) => self.apply_failed(e).await,
        }
    }

    async fn apply_failed(&mut self, e: NetSyncError) {
        self.shared.error(&e);
        if e.switch_unreachable() {
            self.go_offline(&e);
            return;
        }
        // The bundle was refused: the previous program is still there, exactly. Replace the
        // whole table with the base program so that doubt never leaves traffic open, and try
        // the full program again at the next rebuild or reconcile.
        tracing::error!(error = %e, "switch refused the program; failing closed");
        let base = self.base.clone();
        match blocking(&self.switch, move |s| s.install(&base)).await {
            Ok(_) => {
                self.installed = Some(self.base.clone());
                self.shared.update(|s| {
                    s.fail_closed += 1;
                    s.in_sync = false;
                    s.generation += 1;
                });
            }
            Err(e2) => {
                // The switch is in no state to take flows: set it up again from scratch.
                tracing::error!(error = %e2, "cannot fail closed either");
                self.shared.error(&e2);
                self.go_offline(&e2);
            }
        }
    }

    /// Drift repair: compare the bridge with the program and fix what differs.
    async fn reconcile(&mut self) {
        // The gateway port may have been recreated (new ofport or MAC): read it again too.
        match blocking(&self.switch, read_switch_facts).await {
            Ok(mut facts) => {
                // Remote interfaces come from the store, not the bridge.
                facts.remotes = std::mem::take(&mut self.facts.remotes);
                if facts != self.facts {
                    self.facts = facts;
                    self.rebuild().await;
                }
            }
            Err(e) => {
                self.shared.error(&e);
                if e.switch_unreachable() {
                    self.go_offline(&e);
                }
                return;
            }
        }
        let program = self
            .shared
            .program
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .clone();
        let p = program.clone();
        let started = Instant::now();
        match blocking(&self.switch, move |s| s.reconcile(&p)).await {
            Ok(report) => {
                if !report.is_clean() {
                    tracing::warn!(repaired = report.len(), "bridge drifted; repaired");
                }
                let took = started.elapsed();
                self.installed = Some(program);
                self.shared.update(|s| {
                    s.repaired_flows += report.len() as u64;
                    if !report.is_clean() {
                        s.last_apply = Some(took);
                        s.last_apply_flows = report.len();
                    }
                    s.generation += 1;
                    s.in_sync = true;
                });
            }
            Err(e) => self.apply_failed(e).await,
        }
    }
}

/// The next notification, or never when there is no watch.
async fn next_change(changes: &mut Option<BoxStream<'static, ()>>) -> Option<()> {
    match changes {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapath_names_parse() {
        assert_eq!(parse_datapath("netdev"), Some(DatapathType::Netdev));
        assert_eq!(parse_datapath(" dummy\n"), Some(DatapathType::Dummy));
        assert_eq!(parse_datapath("system"), Some(DatapathType::System));
        assert_eq!(parse_datapath("kernel"), None);
    }

    #[test]
    fn mac_in_use_parses() {
        assert_eq!(
            parse_mac_in_use("\"aa:55:aa:55:00:0e\"\n"),
            Some(MacAddr([0xaa, 0x55, 0xaa, 0x55, 0x00, 0x0e]))
        );
        assert_eq!(parse_mac_in_use("[]\n"), None);
    }

    #[test]
    fn status_renders_as_prometheus_text() {
        let s = NetSyncStatus {
            switch_online: true,
            program_flows: 42,
            last_apply: Some(Duration::from_millis(3)),
            ..NetSyncStatus::default()
        };
        let text = s.render_prometheus();
        assert!(text.contains("hive_netsync_switch_online 1\n"), "{text}");
        assert!(text.contains("hive_netsync_program_flows 42\n"), "{text}");
        assert!(
            text.contains("hive_netsync_last_apply_seconds 0.003000\n"),
            "{text}"
        );
    }

    #[test]
    fn options_follow_the_vpc_section() {
        let vpc = VpcConfig {
            bridge_name: "br-test".into(),
            ..VpcConfig::default()
        };
        let o = NetSyncOptions::from_config(&vpc).with_datapath(DatapathType::Netdev);
        assert_eq!(o.ovs.bridge, "br-test");
        assert_eq!(o.ovs.internal_port, "hive-int0");
        assert_eq!(o.ovs.datapath_type, DatapathType::Netdev);
        assert_eq!(o.port_poll, Duration::from_millis(500));
    }
}
