//! `lab up` and `lab down`: build a cluster in one box step by step, recording each step in
//! the state file, and take down exactly what the record (plus a sweep by name) says exists.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::error::LabError;
use super::node;
use super::state::{
    DEFAULT_PARENT, LabNode, LabState, MARKER, NATS_SERVERS, Names, NatsNode, OUTSIDE, REGISTRY,
    STATE_FILE, UNDERLAY, registry_entry,
};
use super::sys::{self, Proc};

/// Most nodes a lab runs (addresses and names have room for more; the machine does not).
pub const MAX_NODES: usize = 16;
/// How long each node's `hive-api` may take to install its first program.
const PROGRAM_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// What `lab up` is asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The lab name.
    pub name: String,
    /// Number of nodes.
    pub nodes: usize,
    /// Its directory (default `/var/lib/hive/lab/NAME`).
    pub dir: Option<PathBuf>,
    /// Masquerade 10.0.0.0/8 out of each node's uplink.
    pub nat: bool,
    /// Enable the metadata address.
    pub metadata: bool,
    /// The `hive-api` binary (default: next to this executable).
    pub hive_api: Option<PathBuf>,
    /// The `nats-server` binary (default: `nats-server` on PATH or in the sbin directories).
    pub nats_server: Option<PathBuf>,
}

fn absolute(path: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(path).map_err(LabError::io(format!("resolving {}", path.display())))
}

/// The `hive-api` binary to run.
fn hive_api_binary(given: Option<&Path>) -> Result<PathBuf, LabError> {
    let path = match given {
        Some(p) => absolute(p)?,
        None => std::env::current_exe()
            .map_err(LabError::io("locating hive-cli"))?
            .with_file_name("hive-api"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::Usage(format!(
            "no hive-api binary at {} (build it: cargo build -p hive-api, or pass --hive-api PATH)",
            path.display()
        )))
    }
}

/// The `nats-server` to run: the lab's buckets have 3 replicas, which need a server that
/// enforces compare-and-swap on replicated streams (see `hive_kv::nats::version`).
fn nats_server_binary(given: Option<&Path>) -> Result<PathBuf, LabError> {
    use hive_kv::nats::version::{MIN_REPLICATED_VERSION, UPGRADE_HINT, binary_version};
    let path = match given {
        Some(p) => absolute(p)?,
        None => sys::find("nats-server")?,
    };
    let version = binary_version(&path).map_err(LabError::io(format!(
        "running {} --version",
        path.display()
    )))?;
    match version {
        Some(v) if v.enforces_replicated_cas() => Ok(path),
        found => Err(LabError::Usage(format!(
            "{} is nats-server {}, which does not enforce compare-and-swap on the lab's \
             3-replica buckets; the lab needs {MIN_REPLICATED_VERSION} or later: {UPGRADE_HINT}, \
             then pass --nats-server PATH (or set HIVE_NATS_SERVER_CURRENT)",
            path.display(),
            found.map_or_else(|| "of unknown version".to_owned(), |v| v.to_string()),
        ))),
    }
}

/// Build the lab; on any failure, remove everything made so far and return the error.
pub fn up(options: &UpOptions) -> Result<LabState, LabError> {
    let names = Names::new(&options.name)?;
    if options.nodes == 0 || options.nodes > MAX_NODES {
        return Err(LabError::Usage(format!(
            "--nodes must be 1 to {MAX_NODES}, not {}",
            options.nodes
        )));
    }
    let dir = absolute(
        &options
            .dir
            .clone()
            .unwrap_or_else(|| Path::new(DEFAULT_PARENT).join(&options.name)),
    )?;
    let registered = super::state::lab_dir(&options.name, None);
    for d in [&dir, &registered] {
        if d.join(STATE_FILE).exists() {
            return Err(LabError::AlreadyUp {
                name: options.name.clone(),
                dir: d.clone(),
            });
        }
    }
    if let Some(ns) = sys::namespaces()
        .into_iter()
        .find(|ns| names.owns_namespace(ns))
    {
        return Err(LabError::Usage(format!(
            "namespace {ns} of lab {} exists already (a lab without state?): run hive-cli lab down --name {}",
            options.name, options.name
        )));
    }
    if dir.exists() && !dir.join(MARKER).exists() {
        let empty = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(LabError::Usage(format!(
                "{} exists and is not a lab directory; choose another --dir",
                dir.display()
            )));
        }
    }
    let hive_api = hive_api_binary(options.hive_api.as_deref())?;
    let nats_server = nats_server_binary(options.nats_server.as_deref())?;
    std::fs::create_dir_all(&dir).map_err(LabError::io(format!("creating {}", dir.display())))?;
    std::fs::write(
        dir.join(MARKER),
        "made by hive-cli lab; removed by hive-cli lab down\n",
    )
    .map_err(LabError::io(format!("writing in {}", dir.display())))?;
    let mut state = LabState {
        name: options.name.clone(),
        dir: dir.clone(),
        nat: options.nat,
        metadata: options.metadata,
        hive_api,
        nats_server,
        key_file: dir.join("encryption-key"),
        credentials: None,
        namespaces: Vec::new(),
        complete: false,
        nats: Vec::new(),
        nodes: Vec::new(),
        vms: Vec::new(),
        last_vm: 0,
    };
    match build(&names, &mut state, options.nodes) {
        Ok(()) => Ok(state),
        Err(e) => {
            tracing::warn!("lab up failed ({e}); removing what it made");
            teardown(&names, Some(&state), &dir);
            Err(e)
        }
    }
}

/// Every step of `up`, recorded as it goes.
fn build(names: &Names, state: &mut LabState, nodes: usize) -> Result<(), LabError> {
    std::fs::create_dir_all(REGISTRY).map_err(LabError::io(format!("creating {REGISTRY}")))?;
    std::fs::write(
        registry_entry(&state.name),
        format!("{}\n", state.dir.display()),
    )
    .map_err(LabError::io(format!("writing {REGISTRY}")))?;
    sys::write_private(&state.key_file, &format!("{}\n", sys::random_key_hex()?))?;
    // Ports and directories first: the state names everything before anything runs.
    for k in 1..=NATS_SERVERS {
        state.nats.push(NatsNode {
            index: k,
            client_port: sys::free_port()?,
            cluster_port: sys::free_port()?,
            monitor_port: sys::free_port()?,
            dir: state.dir.join(format!("nats{k}")),
            proc: None,
        });
    }
    for i in 1..=nodes {
        let node_dir = state.dir.join(format!("node{i}"));
        let host = u8::try_from(i).unwrap_or(u8::MAX);
        state.nodes.push(LabNode {
            index: i,
            namespace: names.node_ns(i),
            ovs_dir: node_dir.join("ovs"),
            data_dir: node_dir.join("data"),
            api_log: node_dir.join("hive-api.log"),
            api_port: sys::free_port()?,
            tunnel_ip: Ipv4Addr::new(UNDERLAY[0], UNDERLAY[1], UNDERLAY[2], host),
            uplink_ip: Ipv4Addr::new(OUTSIDE[0], OUTSIDE[1], OUTSIDE[2], 10 + host),
            ovsdb: None,
            vswitchd: None,
            api: None,
        });
    }
    state.save()?;
    node::start_nats_cluster(state)?;
    let ul = names.underlay_ns();
    let out = names.outside_ns();
    let outside_gw = Ipv4Addr::new(OUTSIDE[0], OUTSIDE[1], OUTSIDE[2], 1);
    add_namespace(state, &ul)?;
    sys::ip(&["-n", &ul, "link", "add", "br0", "type", "bridge"])?;
    sys::ip(&["-n", &ul, "link", "set", "br0", "up"])?;
    add_namespace(state, &out)?;
    sys::ip(&["-n", &out, "link", "add", "br0", "type", "bridge"])?;
    sys::ip(&[
        "-n",
        &out,
        "addr",
        "add",
        &format!("{outside_gw}/24"),
        "dev",
        "br0",
    ])?;
    sys::ip(&["-n", &out, "link", "set", "br0", "up"])?;
    for i in 1..=nodes {
        node_network(names, state, i, &ul, &out, outside_gw)?;
        let mut n = state.node(i)?.clone();
        let started = node::start_ovs(&mut n);
        *state.node_mut(i)? = n.clone();
        state.save()?;
        started?;
        node::wire_switch(names, &n)?;
    }
    // Node 1 first: it bootstraps the admin and writes the credentials.
    node::start_api(state, 1, false)?;
    let made = state
        .node(1)?
        .data_dir
        .join(hive_node::bootstrap::ADMIN_CREDENTIALS_FILE);
    let text = std::fs::read_to_string(&made).map_err(|e| LabError::Start {
        what: "the admin bootstrap".into(),
        detail: format!("node 1 wrote no {} ({e})", made.display()),
    })?;
    let credentials = state.dir.join(hive_node::bootstrap::ADMIN_CREDENTIALS_FILE);
    sys::write_private(&credentials, &text)?;
    state.credentials = Some(credentials);
    for i in 2..=nodes {
        node::start_api(state, i, false)?;
    }
    // Ready means programmed: each switch holds more than the fail-closed drop.
    for n in &state.nodes {
        let deadline = std::time::Instant::now() + PROGRAM_WAIT;
        while node::flow_count(n).unwrap_or(0) <= 1 {
            if std::time::Instant::now() > deadline {
                return Err(LabError::Start {
                    what: format!("the switch program of node {}", n.index),
                    detail: format!(
                        "hive-api installed no flows within {PROGRAM_WAIT:?}; last lines of {}:\n{}",
                        n.api_log.display(),
                        sys::log_tail(&n.api_log, 15)
                    ),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    state.complete = true;
    state.save()
}

fn add_namespace(state: &mut LabState, ns: &str) -> Result<(), LabError> {
    sys::ip(&["netns", "add", ns])?;
    state.namespaces.push(ns.to_owned());
    state.save()?;
    sys::ip(&["-n", ns, "link", "set", "lo", "up"]).map(|_| ())
}

/// Node `i`'s namespace, its underlay and uplink veths, forwarding and NAT.
fn node_network(
    names: &Names,
    state: &mut LabState,
    i: usize,
    ul: &str,
    out: &str,
    outside_gw: Ipv4Addr,
) -> Result<(), LabError> {
    let node = state.node(i)?.clone();
    let ns = node.namespace.as_str();
    add_namespace(state, ns)?;
    let (u_node, u_bridge) = (names.underlay_node_end(i), names.underlay_bridge_end(i));
    // Jumbo frames on the underlay: VXLAN adds 50 bytes, and the VMs keep the usual 1500.
    let mtu = node::UNDERLAY_MTU.to_string();
    sys::ip(&[
        "link", "add", &u_node, "mtu", &mtu, "netns", ns, "type", "veth", "peer", "name",
        &u_bridge, "mtu", &mtu, "netns", ul,
    ])?;
    sys::ip(&["-n", ul, "link", "set", &u_bridge, "master", "br0", "up"])?;
    sys::ip(&["-n", ns, "link", "set", &u_node, "up"])?;
    let o = names.outside_end(i);
    sys::ip(&[
        "link", "add", "up0", "netns", ns, "type", "veth", "peer", "name", &o, "netns", out,
    ])?;
    sys::ip(&["-n", out, "link", "set", &o, "master", "br0", "up"])?;
    sys::ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/24", node.uplink_ip),
        "dev",
        "up0",
    ])?;
    sys::ip(&["-n", ns, "link", "set", "up0", "up"])?;
    sys::default_route(ns, outside_gw)?;
    sys::in_ns(ns, "sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
    if state.nat {
        sys::in_ns(
            ns,
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "10.0.0.0/8",
                "-o",
                "up0",
                "-j",
                "MASQUERADE",
            ],
        )?;
    }
    Ok(())
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct Removed {
    /// Processes stopped.
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Whether the directory was removed.
    pub dir: bool,
}

/// Remove everything of the lab: its processes (recorded, and any whose command line names
/// the lab directory), its namespaces (recorded, and any with its names) with whatever runs
/// inside them, its directory (only if marked as a lab's) and its registry entry.
pub fn teardown(names: &Names, state: Option<&LabState>, dir: &Path) -> Removed {
    let mut removed = Removed::default();
    if let Some(s) = state {
        // The API first (so it does not chase a vanishing switch), then the switches, then NATS.
        let apis: Vec<Proc> = s.nodes.iter().filter_map(|n| n.api).collect();
        let switches: Vec<Proc> = s
            .nodes
            .iter()
            .flat_map(|n| [n.vswitchd, n.ovsdb])
            .flatten()
            .collect();
        let nats: Vec<Proc> = s.nats.iter().filter_map(|n| n.proc).collect();
        for batch in [apis, switches, nats] {
            removed.processes += batch.iter().filter(|p| p.alive()).count();
            sys::terminate(&batch);
        }
    }
    let api_name = state.and_then(|s| s.hive_api.file_name()).map_or_else(
        || "hive-api".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let programs = [
        "hive-api",
        api_name.as_str(),
        "nats-server",
        "ovsdb-server",
        "ovs-vswitchd",
    ];
    let strays = sys::processes_under(dir, &programs);
    removed.processes += strays.len();
    sys::terminate(&strays);
    let mut doomed: Vec<String> = state
        .map(|s| {
            let mut v: Vec<String> = s.vms.iter().map(|vm| vm.namespace.clone()).collect();
            v.extend(s.namespaces.iter().rev().cloned());
            v
        })
        .unwrap_or_default();
    let existing = sys::namespaces();
    for ns in &existing {
        if names.owns_namespace(ns) && !doomed.contains(ns) {
            doomed.push(ns.clone());
        }
    }
    for ns in doomed.iter().filter(|ns| existing.contains(ns)) {
        let inside = sys::processes_in(ns);
        removed.processes += inside.len();
        sys::terminate(&inside);
        match sys::ip(&["netns", "del", ns]) {
            Ok(_) => removed.namespaces.push(ns.clone()),
            Err(e) => tracing::warn!("cannot delete namespace {ns}: {e}"),
        }
    }
    if dir.join(MARKER).exists() {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => removed.dir = true,
            Err(e) => tracing::warn!("cannot remove {}: {e}", dir.display()),
        }
    }
    let entry = registry_entry(names.name());
    if std::fs::read_to_string(&entry).is_ok_and(|d| Path::new(d.trim()) == dir) {
        let _ = std::fs::remove_file(entry);
    }
    removed
}

/// The summary `up` prints (and `--output json` gives).
pub fn summary(state: &LabState) -> (String, Value) {
    let endpoints: Vec<String> = state.nodes.iter().map(LabNode::endpoint).collect();
    let creds = state
        .credentials
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let first = endpoints.first().cloned().unwrap_or_default();
    let export = format!(
        "export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_PROFILE={} AWS_DEFAULT_REGION=us-east-1",
        hive_node::bootstrap::ADMIN_PROFILE
    );
    let example = format!("aws --endpoint-url {first} ec2 describe-vpcs");
    let mut text = format!(
        "lab {} is up in {} ({} node(s), NATS {}, NAT {})\n",
        state.name,
        state.dir.display(),
        state.nodes.len(),
        state.nats_urls(),
        if state.nat { "on" } else { "off" }
    );
    for n in &state.nodes {
        text.push_str(&format!(
            "  node{}: {}  namespace {}  tunnel {}\n",
            n.index,
            n.endpoint(),
            n.namespace,
            n.tunnel_ip
        ));
    }
    text.push_str(&format!(
        "\nUse the admin credentials:\n  {export}\n  {example}\nPlug a VM: hive-cli lab vm create --name {} --eni <eni-id> --node 1\n",
        state.name
    ));
    let json = json!({
        "name": state.name,
        "dir": state.dir,
        "endpoints": endpoints,
        "nats_urls": state.nats_urls(),
        "credentials_file": creds,
        "profile": hive_node::bootstrap::ADMIN_PROFILE,
        "region": "us-east-1",
        "nat": state.nat,
        "metadata": state.metadata,
        "nodes": state.nodes.iter().map(|n| json!({
            "node": n.index,
            "endpoint": n.endpoint(),
            "namespace": n.namespace,
            "tunnel_ip": n.tunnel_ip.to_string(),
            "uplink_ip": n.uplink_ip.to_string(),
            "ovs_rundir": n.ovs_dir,
            "api_log": n.api_log,
            "api_pid": n.api.map(|p| p.pid),
        })).collect::<Vec<_>>(),
        "namespaces": state.namespaces,
        "env": [export, example],
    });
    (text, json)
}
