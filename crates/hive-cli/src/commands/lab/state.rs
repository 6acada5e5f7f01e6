//! The lab's record of everything it made (`DIR/state.json`), written after every step so that
//! `down` — and a failed `up` — remove exactly what exists; and the names it gives things.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LabError;
use super::sys::Proc;

/// Where labs are registered by name while the machine runs (cleared at boot, like the
/// namespaces themselves): `<REGISTRY>/<name>` holds the lab's directory.
pub const REGISTRY: &str = "/run/hive-lab";
/// Default parent of lab directories.
pub const DEFAULT_PARENT: &str = "/var/lib/hive/lab";
/// File in a lab directory that marks it as one (never remove a directory without it).
pub const MARKER: &str = ".hive-lab";
/// The state file in a lab directory.
pub const STATE_FILE: &str = "state.json";
/// NATS servers in every lab (the fault tests kill one and the cluster keeps a quorum).
pub const NATS_SERVERS: usize = 3;
/// Underlay network of the nodes (node i is `.i`).
pub const UNDERLAY: [u8; 3] = [100, 100, 0];
/// The outside network (its bridge is `.1`, node i is `.10+i`).
pub const OUTSIDE: [u8; 3] = [203, 0, 113];

/// Names of everything a lab makes: all carry the prefix `hl<NAME>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    name: String,
    prefix: String,
}

impl Names {
    /// Names for lab `name` (1 to 4 characters of `[a-z0-9]`, so every name fits IFNAMSIZ).
    pub fn new(name: &str) -> Result<Self, LabError> {
        if name.is_empty()
            || name.len() > 4
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(LabError::InvalidName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            prefix: format!("hl{name}"),
        })
    }

    /// The lab name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Node `i`'s namespace.
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }
    /// The underlay namespace.
    pub fn underlay_ns(&self) -> String {
        format!("{}ul", self.prefix)
    }
    /// The outside namespace.
    pub fn outside_ns(&self) -> String {
        format!("{}out", self.prefix)
    }
    /// VM `k`'s namespace.
    pub fn vm_ns(&self, k: u32) -> String {
        format!("{}v{k}", self.prefix)
    }
    /// VM `k`'s tap (host end of its veth, in the node namespace).
    pub fn vm_tap(&self, k: u32) -> String {
        format!("{}t{k}", self.prefix)
    }
    /// Node `i`'s underlay veth, node side (in `br-phy`).
    pub fn underlay_node_end(&self, i: usize) -> String {
        format!("{}u{i}", self.prefix)
    }
    /// Node `i`'s underlay veth, bridge side.
    pub fn underlay_bridge_end(&self, i: usize) -> String {
        format!("{}ul{i}", self.prefix)
    }
    /// Node `i`'s uplink veth, outside side (the node side is `up0`).
    pub fn outside_end(&self, i: usize) -> String {
        format!("{}o{i}", self.prefix)
    }

    /// Whether `ns` is a namespace this lab makes: the prefix, then exactly `n<digits>`,
    /// `v<digits>`, `ul` or `out` (so lab `a` never claims lab `ab`'s `hlabn1`).
    pub fn owns_namespace(&self, ns: &str) -> bool {
        let Some(rest) = ns.strip_prefix(&self.prefix) else {
            return false;
        };
        let numbered = |tag: char| {
            rest.strip_prefix(tag)
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        };
        rest == "ul" || rest == "out" || numbered('n') || numbered('v')
    }
}

/// One NATS server of the lab's cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsNode {
    /// 1, 2 or 3.
    pub index: usize,
    /// Client port on 127.0.0.1.
    pub client_port: u16,
    /// Cluster (route) port.
    pub cluster_port: u16,
    /// Monitoring port (`/healthz`).
    pub monitor_port: u16,
    /// JetStream store and log directory.
    pub dir: PathBuf,
    /// The running process, if any.
    pub proc: Option<Proc>,
}

impl NatsNode {
    /// `nats://127.0.0.1:<client_port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }
}

/// One Hive node: a namespace with its own Open vSwitch, and a `hive-api` on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNode {
    /// 1..N.
    pub index: usize,
    /// Its network namespace.
    pub namespace: String,
    /// `OVS_RUNDIR` (also database, logs).
    pub ovs_dir: PathBuf,
    /// `hive-api`'s data directory.
    pub data_dir: PathBuf,
    /// `hive-api`'s log.
    pub api_log: PathBuf,
    /// `hive-api`'s port on 127.0.0.1.
    pub api_port: u16,
    /// The tunnel (underlay) address.
    pub tunnel_ip: Ipv4Addr,
    /// The uplink address in the outside network.
    pub uplink_ip: Ipv4Addr,
    /// `ovsdb-server`.
    pub ovsdb: Option<Proc>,
    /// `ovs-vswitchd`.
    pub vswitchd: Option<Proc>,
    /// `hive-api`.
    pub api: Option<Proc>,
}

impl LabNode {
    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// A VM: a namespace plugged into a node's `hive-vpc0` as an ENI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabVm {
    /// The VM number (names `hl<NAME>v<k>`, `hl<NAME>t<k>`).
    pub index: u32,
    /// The interface id.
    pub eni: String,
    /// The node it is plugged into.
    pub node: usize,
    /// Its namespace.
    pub namespace: String,
    /// The switch port (host end of the veth).
    pub tap: String,
    /// The ENI's MAC.
    pub mac: String,
    /// Address with prefix length.
    pub address: String,
    /// Default gateway.
    pub gateway: Ipv4Addr,
}

/// Everything a lab made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// The lab name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether nodes masquerade 10.0.0.0/8 out of `up0`.
    pub nat: bool,
    /// Whether the metadata address is enabled.
    pub metadata: bool,
    /// The `hive-api` binary.
    pub hive_api: PathBuf,
    /// The `nats-server` binary (restarts use the same one).
    pub nats_server: PathBuf,
    /// The sealing key file shared by every node.
    pub key_file: PathBuf,
    /// The admin's credentials (copied from node 1's bootstrap).
    pub credentials: Option<PathBuf>,
    /// Namespaces created, in order.
    pub namespaces: Vec<String>,
    /// Whether the up finished (a half-made lab is torn down, never used).
    pub complete: bool,
    /// The NATS cluster.
    pub nats: Vec<NatsNode>,
    /// The nodes.
    pub nodes: Vec<LabNode>,
    /// Plugged VMs.
    pub vms: Vec<LabVm>,
    /// Number of the last VM made.
    pub last_vm: u32,
}

impl LabState {
    /// The comma-separated client URLs of the NATS cluster.
    pub fn nats_urls(&self) -> String {
        self.nats
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Write the state (to a temporary file renamed over the old one: never half a file).
    pub fn save(&self) -> Result<(), LabError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::Usage(format!("cannot encode the lab state: {e}")))?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(LabError::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, self.path())
            .map_err(LabError::io(format!("writing {}", self.path().display())))
    }

    /// Read the state of the lab in `dir`.
    pub fn load(dir: &Path) -> Result<Self, LabError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(LabError::io(format!("reading {}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::Usage(format!("{} is not a lab state: {e}", path.display())))
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> Result<&LabNode, LabError> {
        self.nodes
            .iter()
            .find(|n| n.index == i)
            .ok_or_else(|| LabError::Usage(format!("lab {} has no node {i}", self.name)))
    }

    /// Node `i` (1-based), to change.
    pub fn node_mut(&mut self, i: usize) -> Result<&mut LabNode, LabError> {
        let name = self.name.clone();
        self.nodes
            .iter_mut()
            .find(|n| n.index == i)
            .ok_or_else(|| LabError::Usage(format!("lab {name} has no node {i}")))
    }
}

/// The registry entry of lab `name`.
pub fn registry_entry(name: &str) -> PathBuf {
    Path::new(REGISTRY).join(name)
}

/// The directory of lab `name`: `--dir` when given, else the registry's, else the default.
pub fn lab_dir(name: &str, dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_owned();
    }
    match std::fs::read_to_string(registry_entry(name)) {
        Ok(text) if !text.trim().is_empty() => PathBuf::from(text.trim()),
        _ => Path::new(DEFAULT_PARENT).join(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_never_claim_another_lab() {
        let a = Names::new("a").expect("valid");
        let ab = Names::new("ab").expect("valid");
        assert_eq!(a.node_ns(1), "hlan1");
        assert!(a.owns_namespace("hlan1") && a.owns_namespace("hlav12"));
        assert!(a.owns_namespace("hlaul") && a.owns_namespace("hlaout"));
        assert!(!a.owns_namespace(&ab.node_ns(1)) && !a.owns_namespace(&ab.outside_ns()));
        assert!(!a.owns_namespace("hlan") && !a.owns_namespace("hlanx"));
        let long = Names::new("wxyz").expect("valid");
        for name in [
            long.vm_tap(9999),
            long.underlay_bridge_end(99),
            long.vm_ns(9999),
        ] {
            assert!(name.len() <= 15, "{name}");
        }
        for bad in ["", "abcde", "A", "a-b", "a b"] {
            assert!(Names::new(bad).is_err(), "{bad}");
        }
    }
}
