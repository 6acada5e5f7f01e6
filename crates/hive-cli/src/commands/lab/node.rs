//! Starting (and restarting) a lab's long-lived processes: the NATS servers, each node's
//! `ovsdb-server` + `ovs-vswitchd` inside its namespace with the node's switch wiring, and
//! each node's `hive-api` on the host.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use hive_ovs::exec::{OvsCommand, Tool};
use hive_ovs::{DatapathType, OvsConfig, OvsSwitch, Switch as _};
use hive_vpc::config::VpcConfig;

use super::error::LabError;
use super::state::{LabNode, LabState, Names, NatsNode};
use super::sys::{self, Proc};

/// How long a NATS server may take to be healthy (cluster: a JetStream leader elected).
const NATS_START: Duration = Duration::from_secs(30);
/// How long a `hive-api` may take to answer `/health`.
const API_START: Duration = Duration::from_secs(30);
/// Starts of a `hive-api` that exits at once before giving up.
const API_ATTEMPTS: u32 = 3;
/// The bridge that carries the node's tunnel traffic.
pub const PHYS_BRIDGE: &str = "br-phy";
/// MTU of the underlay (veths and `br-phy`): room for a 1500-byte VM frame plus the 50 bytes
/// of VXLAN (or Geneve) encapsulation, as a real underlay with jumbo frames.
pub const UNDERLAY_MTU: u32 = 9000;

/// The NATS servers' names in the cluster.
fn nats_name(state: &LabState, k: usize) -> String {
    format!("hl{}-nats{k}", state.name)
}

/// Spawn NATS server `k` (1-based) on its recorded ports and store and record its process;
/// the child, its log and its monitoring port, to wait on.
fn spawn_nats(state: &mut LabState, k: usize) -> Result<(Child, PathBuf, u16), LabError> {
    let routes: Vec<String> = state
        .nats
        .iter()
        .filter(|n| n.index != k)
        .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
        .collect();
    let name = nats_name(state, k);
    let cluster = format!("hl{}", state.name);
    let nats_server = state.nats_server.clone();
    let Some(node) = state.nats.iter_mut().find(|n| n.index == k) else {
        return Err(LabError::Usage(format!("no NATS server {k} (1 to 3)")));
    };
    std::fs::create_dir_all(&node.dir)
        .map_err(LabError::io(format!("creating {}", node.dir.display())))?;
    let log = node.dir.join("nats-server.log");
    let args = nats_args(node, &name, &cluster, &routes);
    let (child, proc) = sys::spawn_detached(&nats_server, &args, &base_env(), &log)?;
    node.proc = Some(proc);
    Ok((child, log, node.monitor_port))
}

fn wait_nats(k: usize, child: &mut Child, log: &Path, port: u16) -> Result<(), LabError> {
    sys::wait_ready(&format!("NATS server {k}"), child, log, NATS_START, || {
        sys::http_status(port, "/healthz") == Some(200)
    })
}

/// Start NATS server `k` again unless it runs, and wait until it is healthy.
pub fn start_nats(state: &mut LabState, k: usize) -> Result<(), LabError> {
    let Some(node) = state.nats.iter().find(|n| n.index == k) else {
        return Err(LabError::Usage(format!("no NATS server {k} (1 to 3)")));
    };
    if sys::running(node.proc.as_ref()) {
        return Ok(());
    }
    let (mut child, log, port) = spawn_nats(state, k)?;
    state.save()?;
    wait_nats(k, &mut child, &log, port)
}

/// Start every NATS server, then wait for each to be healthy (a cluster node alone never
/// gets a JetStream leader, so they start together).
pub fn start_nats_cluster(state: &mut LabState) -> Result<(), LabError> {
    let mut children = Vec::new();
    for k in 1..=state.nats.len() {
        children.push((k, spawn_nats(state, k)?));
        state.save()?;
    }
    for (k, (mut child, log, port)) in children {
        wait_nats(k, &mut child, &log, port)?;
    }
    Ok(())
}

fn nats_args(node: &NatsNode, name: &str, cluster: &str, routes: &[String]) -> Vec<String> {
    vec![
        "-js".into(),
        "-sd".into(),
        node.dir.join("jetstream").display().to_string(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        node.client_port.to_string(),
        "-m".into(),
        node.monitor_port.to_string(),
        "-n".into(),
        name.into(),
        "--cluster_name".into(),
        cluster.into(),
        "--cluster".into(),
        format!("nats://127.0.0.1:{}", node.cluster_port),
        "--routes".into(),
        routes.join(","),
    ]
}

/// The environment every started process gets: `PATH` (with the sbin directories) and
/// `RUST_LOG` when set; nothing else leaks in from the caller.
fn base_env() -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut env = vec![(
        "PATH".to_owned(),
        format!("{path}:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"),
    )];
    if let Ok(level) = std::env::var("RUST_LOG") {
        env.push(("RUST_LOG".into(), level));
    }
    env
}

/// The switch adapter of a node (its `hive-vpc0`, netdev datapath, reached through its dir).
pub fn node_switch_config(node: &LabNode) -> OvsConfig {
    OvsConfig {
        datapath_type: DatapathType::Netdev,
        rundir: Some(node.ovs_dir.clone()),
        ..OvsConfig::default()
    }
}

/// Run an OVS tool against node `node`'s switch.
pub fn ovs(node: &LabNode, tool: Tool, args: &[&str]) -> Result<String, LabError> {
    let config = node_switch_config(node);
    let cmd = match tool {
        Tool::Vsctl => config.vsctl(args.iter().copied()),
        _ => OvsCommand::new(tool, args.iter().copied()),
    };
    Ok(config.runner().run(&cmd)?.stdout)
}

fn ovs_env(dir: &Path) -> Vec<(&'static str, &Path)> {
    ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"]
        .into_iter()
        .map(|k| (k, dir))
        .collect()
}

fn schema() -> PathBuf {
    std::env::var_os("OVS_PKGDATADIR")
        .map_or_else(|| PathBuf::from("/usr/share/openvswitch"), PathBuf::from)
        .join("vswitch.ovsschema")
}

/// Start whichever of the node's `ovsdb-server` and `ovs-vswitchd` is not running, inside the
/// node's namespace (the userspace datapath opens the namespace's devices).
pub fn start_ovs(node: &mut LabNode) -> Result<(), LabError> {
    let d = node.ovs_dir.clone();
    std::fs::create_dir_all(&d).map_err(LabError::io(format!("creating {}", d.display())))?;
    let p = |f: &str| d.join(f).display().to_string();
    let env = ovs_env(&d);
    let db = d.join("conf.db");
    if !db.exists() {
        let schema = schema();
        if !schema.is_file() {
            return Err(LabError::MissingTools {
                programs: vec![schema.display().to_string()],
                install: super::error::apt(&["openvswitch-switch"]),
            });
        }
        sys::run_env(
            "ovsdb-tool",
            &["create".into(), p("conf.db"), schema.display().to_string()],
            &env,
        )?;
    }
    let ns_exec = |program: &str, args: Vec<String>| -> Result<(), LabError> {
        let mut all = vec!["netns".to_owned(), "exec".into(), node.namespace.clone()];
        all.push(sys::find(program)?.display().to_string());
        all.extend(args);
        sys::run_env("ip", &all, &env).map(|_| ())
    };
    if !sys::running(node.ovsdb.as_ref()) {
        ns_exec(
            "ovsdb-server",
            vec![
                "--detach".into(),
                "--no-chdir".into(),
                format!("--pidfile={}", p("ovsdb-server.pid")),
                format!("--log-file={}", p("ovsdb-server.log")),
                format!("--remote=punix:{}", p("db.sock")),
                p("conf.db"),
            ],
        )?;
        node.ovsdb = Some(Proc::from_pidfile(&d.join("ovsdb-server.pid"))?);
        ovs(node, Tool::Vsctl, &["--no-wait", "init"])?;
    }
    if !sys::running(node.vswitchd.as_ref()) {
        ns_exec(
            "ovs-vswitchd",
            vec![
                "--detach".into(),
                "--no-chdir".into(),
                format!("--pidfile={}", p("ovs-vswitchd.pid")),
                format!("--log-file={}", p("ovs-vswitchd.log")),
                "--disable-system".into(),
                format!("unix:{}", p("db.sock")),
            ],
        )?;
        node.vswitchd = Some(Proc::from_pidfile(&d.join("ovs-vswitchd.pid"))?);
    }
    Ok(())
}

/// Wait until device `dev` exists in namespace `ns` (taps of internal ports appear shortly
/// after `ovs-vsctl` returns).
fn wait_link(ns: &str, dev: &str) -> Result<(), LabError> {
    let started = Instant::now();
    loop {
        match sys::ip(&["-n", ns, "link", "show", "dev", dev]) {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > Duration::from_secs(10) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The node's switch and its devices, idempotently (after a restart of `ovs-vswitchd` the
/// taps of internal ports come back without addresses, and OVS's route table is empty):
/// `hive-vpc0` with `hive-int0` (gateway address, checksum offload off), `br-phy` holding the
/// underlay veth with the tunnel address on its LOCAL port and OVS's route to the underlay.
pub fn wire_switch(names: &Names, node: &LabNode) -> Result<(), LabError> {
    let config = node_switch_config(node);
    let switch = OvsSwitch::new(config.clone())?;
    switch.ensure_bridge()?;
    let ns = node.namespace.as_str();
    let underlay = names.underlay_node_end(node.index);
    ovs(
        node,
        Tool::Vsctl,
        &[
            "--may-exist",
            "add-br",
            PHYS_BRIDGE,
            "--",
            "set",
            "bridge",
            PHYS_BRIDGE,
            "datapath_type=netdev",
            "--",
            "--may-exist",
            "add-port",
            PHYS_BRIDGE,
            &underlay,
            "--",
            "set",
            "interface",
            PHYS_BRIDGE,
            &format!("mtu_request={UNDERLAY_MTU}"),
        ],
    )?;
    let vpc = VpcConfig::default();
    let gateway = format!("{}/{}", vpc.gateway_ip, vpc.default_subnet_cidr.prefix());
    wait_link(ns, &config.internal_port)?;
    sys::ip(&[
        "-n",
        ns,
        "addr",
        "replace",
        &gateway,
        "dev",
        &config.internal_port,
    ])?;
    sys::ip(&["-n", ns, "link", "set", &config.internal_port, "up"])?;
    // The userspace datapath does not fill in checksums left to offload.
    sys::in_ns(ns, "ethtool", &["-K", &config.internal_port, "tx", "off"])?;
    wait_link(ns, PHYS_BRIDGE)?;
    let tunnel = format!("{}/24", node.tunnel_ip);
    sys::ip(&["-n", ns, "addr", "replace", &tunnel, "dev", PHYS_BRIDGE])?;
    sys::ip(&["-n", ns, "link", "set", PHYS_BRIDGE, "up"])?;
    let net = Ipv4Addr::new(
        super::state::UNDERLAY[0],
        super::state::UNDERLAY[1],
        super::state::UNDERLAY[2],
        0,
    );
    // Userspace tunnels pick their output bridge from OVS's own route table.
    let route = format!("{net}/24");
    let known = ovs(node, Tool::Appctl, &["ovs/route/show"])
        .unwrap_or_default()
        .to_lowercase();
    if !known
        .lines()
        .any(|l| l.contains(&route) && l.contains(PHYS_BRIDGE) && l.contains("user"))
    {
        ovs(node, Tool::Appctl, &["ovs/route/add", &route, PHYS_BRIDGE])?;
    }
    ovs(
        node,
        Tool::Ofctl,
        &["add-flow", PHYS_BRIDGE, "priority=0,actions=normal"],
    )?;
    Ok(())
}

/// `hive-api`'s environment for node `node`.
fn api_env(state: &LabState, node: &LabNode) -> Vec<(String, String)> {
    let mut env = base_env();
    let b = |v: bool| if v { "true" } else { "false" }.to_owned();
    env.extend([
        ("HIVE_NATS_URL".to_owned(), state.nats_urls()),
        ("HIVE_REPLICAS".into(), "3".into()),
        ("HIVE_VPC_DATAPATH_TYPE".into(), "netdev".into()),
        ("HIVE_VPC_NAT_ENABLED".into(), b(state.nat)),
        ("HIVE_VPC_METADATA_ENABLED".into(), b(state.metadata)),
        ("HIVE_NODE_NAME".into(), format!("node{}", node.index)),
        ("HIVE_NODE_TUNNEL_IP".into(), node.tunnel_ip.to_string()),
        (
            "HIVE_ENCRYPTION_KEY_FILE".into(),
            state.key_file.display().to_string(),
        ),
        ("OVS_RUNDIR".into(), node.ovs_dir.display().to_string()),
    ]);
    env
}

/// Start node `i`'s `hive-api` unless it runs, and wait until it answers `/health`; with
/// `retry`, a server that exits at once is started again (up to three times in all).
pub fn start_api(state: &mut LabState, i: usize, retry: bool) -> Result<(), LabError> {
    let mut node = state.node(i)?.clone();
    if sys::running(node.api.as_ref()) {
        return Ok(());
    }
    std::fs::create_dir_all(&node.data_dir).map_err(LabError::io(format!(
        "creating {}",
        node.data_dir.display()
    )))?;
    let mut args = vec![
        "--data-dir".to_owned(),
        node.data_dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{}", node.api_port),
    ];
    let env = api_env(state, &node);
    let what = format!("hive-api of node {i} ({})", state.hive_api.display());
    let mut attempt = 1;
    loop {
        let (mut child, proc) = sys::spawn_detached(&state.hive_api, &args, &env, &node.api_log)?;
        state.node_mut(i)?.api = Some(proc);
        state.save()?;
        let port = node.api_port;
        let result = sys::wait_ready(&what, &mut child, &node.api_log, API_START, || {
            sys::http_status(port, "/health") == Some(200)
        });
        // A store that is electing a JetStream leader (a NATS server just died) makes the
        // server give up at start: try again a little later, as a supervisor would.
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        // Someone took the port meanwhile: another one.
        let port_taken =
            exited && sys::log_tail(&node.api_log, 3).contains("Address already in use");
        match result {
            Err(_) if port_taken && attempt < API_ATTEMPTS => {
                attempt += 1;
                let port = sys::free_port()?;
                state.node_mut(i)?.api_port = port;
                args[3] = format!("127.0.0.1:{port}");
                node.api_port = port;
            }
            Err(_) if retry && exited && attempt < API_ATTEMPTS => {
                tracing::info!(node = i, attempt, "hive-api exited at start; retrying");
                attempt += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Start whatever of node `i` is not running: its Open vSwitch (then its wiring again), then
/// its `hive-api`.
pub fn start_node(state: &mut LabState, i: usize) -> Result<(), LabError> {
    let names = Names::new(&state.name)?;
    let mut node = state.node(i)?.clone();
    let restarted = !sys::running(node.vswitchd.as_ref()) || !sys::running(node.ovsdb.as_ref());
    start_ovs(&mut node)?;
    *state.node_mut(i)? = node.clone();
    state.save()?;
    if restarted {
        wire_switch(&names, &node)?;
    }
    start_api(state, i, true)
}

/// The flow count of node `node`'s `hive-vpc0` (`ovs-ofctl dump-aggregate`).
pub fn flow_count(node: &LabNode) -> Option<u64> {
    let out = ovs(
        node,
        Tool::Ofctl,
        &["-O", "OpenFlow13", "dump-aggregate", "hive-vpc0"],
    )
    .ok()?;
    out.split("flow_count=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
