//! The port: what Hive needs from a switch, the configuration of the bridge, and the exact
//! command lines that realise each step (shared by [`crate::OvsSwitch`], which runs them, and
//! [`crate::DryRunSwitch`], which records them).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use hive_vpc::flow::{Flow, FlowDiff, FlowProgram};

use crate::error::OvsError;
use crate::exec::{INPUT_FILE, OvsCommand, Runner, Tool};

/// Which datapath the bridge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DatapathType {
    /// The kernel module (production on a node).
    #[default]
    System,
    /// The userspace datapath (no kernel module; real packets through AF_PACKET / taps).
    Netdev,
    /// The dummy datapath of a sandbox (`ovs-vswitchd --enable-dummy`): traces and injected
    /// packets only.
    Dummy,
}

impl DatapathType {
    /// The value of the bridge's `datapath_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DatapathType::System => "system",
            DatapathType::Netdev => "netdev",
            DatapathType::Dummy => "dummy",
        }
    }
}

/// OpenFlow versions the bridge speaks. 1.3 is what we send (`-O OpenFlow13`); bundles use the
/// OF1.3 ONF extension or OF1.4 natively. OpenFlow 1.0 is not needed: verified on OVS 3.1,
/// `ovs-ofctl` negotiates 1.3 with such a bridge even without `-O`.
pub const PROTOCOLS: &str = "OpenFlow13,OpenFlow14,OpenFlow15";

/// How to reach and shape the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsConfig {
    /// The integration bridge (`hive-vpc0` in the setup guide, `[vpc] bridge_name`).
    pub bridge: String,
    /// The internal port that holds the gateway address (`hive-int0`).
    pub internal_port: String,
    /// The bridge's datapath.
    pub datapath_type: DatapathType,
    /// `OVS_RUNDIR` for the tools; `None` inherits the environment like the OVS tools do.
    pub rundir: Option<PathBuf>,
    /// Database for `ovs-vsctl` (`unix:/path/db.sock`); `None` uses its default
    /// (`$OVS_RUNDIR/db.sock`).
    pub db: Option<String>,
    /// A directory searched first for the `ovs-*` programs.
    pub bin_dir: Option<PathBuf>,
    /// Time limit of each ordinary command.
    pub timeout: Duration,
    /// Time limit of a whole-table install or bundle (large programs take seconds).
    pub install_timeout: Duration,
}

impl Default for OvsConfig {
    fn default() -> Self {
        Self {
            bridge: "hive-vpc0".into(),
            internal_port: "hive-int0".into(),
            datapath_type: DatapathType::System,
            rundir: None,
            db: None,
            bin_dir: None,
            timeout: Duration::from_secs(10),
            install_timeout: Duration::from_secs(120),
        }
    }
}

/// Check a bridge, port or interface name: Linux limits device names to 15 bytes, and we only
/// pass names that need no quoting anywhere (no leading `-`, which a tool would take for an option).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), OvsError> {
    let invalid = |why| {
        Err(OvsError::Invalid {
            what,
            value: name.to_string(),
            why,
        })
    };
    if name.is_empty() || name.len() > 15 {
        return invalid("must be 1 to 15 characters");
    }
    if name.starts_with('-') || name.starts_with('.') {
        return invalid("must not start with '-' or '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return invalid("only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Tunnel encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// VXLAN (UDP 4789).
    Vxlan,
    /// Geneve (UDP 6081).
    Geneve,
}

impl TunnelKind {
    /// The interface `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
        }
    }

    /// `vxlan` or `geneve` (as in `[node] tunnel_type` and the interface table).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "vxlan" => Some(TunnelKind::Vxlan),
            "geneve" => Some(TunnelKind::Geneve),
            _ => None,
        }
    }
}

/// The tunnel key (VNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKey {
    /// Set per packet by the flows (`set_field:N->tun_id`): one port carries every VPC.
    Flow,
    /// One fixed key.
    Fixed(u32),
}

impl fmt::Display for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelKey::Flow => f.write_str("flow"),
            TunnelKey::Fixed(k) => write!(f, "{k}"),
        }
    }
}

/// A tunnel port to one remote node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TunnelSpec {
    /// Port name (≤ 15 characters), e.g. `vx-node2`.
    pub name: String,
    /// Encapsulation.
    pub kind: TunnelKind,
    /// The remote node's underlay address.
    pub remote_ip: IpAddr,
    /// The key.
    pub key: TunnelKey,
}

/// A tunnel port as found on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelPort {
    /// What the port is configured as.
    pub spec: TunnelSpec,
    /// Its OpenFlow port number, once `ovs-vswitchd` assigned one.
    pub ofport: Option<u32>,
}

/// A port bound to a network interface (`external_ids:iface-id=<eni-id>`, the OVN convention).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundPort {
    /// OpenFlow port number.
    pub ofport: u32,
    /// Port (interface) name, e.g. the VM's tap.
    pub name: String,
    /// The ENI id in `external_ids:iface-id`.
    pub iface_id: String,
    /// The VM's MAC from `external_ids:attached-mac`, if the hypervisor set it.
    pub mac: Option<String>,
}

/// The bridge as read back from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeState {
    /// Bridge name.
    pub name: String,
    /// Database row id (unchanged by an idempotent setup).
    pub uuid: String,
    /// `datapath_type`.
    pub datapath_type: String,
    /// `fail_mode` (`secure`: no traffic without flows).
    pub fail_mode: String,
    /// `stp_enable`.
    pub stp_enable: bool,
    /// `protocols`.
    pub protocols: Vec<String>,
    /// OpenFlow port of the internal port.
    pub internal_ofport: Option<u32>,
}

/// A flow whose actions or cookie on the switch differ from the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowChange {
    /// The flow as the program wants it (as OVS prints it).
    pub desired: String,
    /// The flow as it was on the switch.
    pub live: String,
}

/// What a reconcile found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Program flows that were missing from the switch (restored).
    pub missing: Vec<String>,
    /// Flows on the switch that the program does not have (removed).
    pub rogue: Vec<String>,
    /// Flows present with other actions or cookie (rewritten).
    pub changed: Vec<FlowChange>,
}

impl ReconcileReport {
    /// Whether the switch already matched the program.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.rogue.is_empty() && self.changed.is_empty()
    }

    /// Number of flows repaired.
    pub fn len(&self) -> usize {
        self.missing.len() + self.rogue.len() + self.changed.len()
    }

    /// Whether nothing was repaired (same as [`ReconcileReport::is_clean`]).
    pub fn is_empty(&self) -> bool {
        self.is_clean()
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("flow table matches the program");
        }
        write!(f, "repaired {} flow(s):", self.len())?;
        for m in &self.missing {
            write!(f, "\n  restored missing: {m}")?;
        }
        for r in &self.rogue {
            write!(f, "\n  removed rogue:    {r}")?;
        }
        for c in &self.changed {
            write!(f, "\n  rewrote changed:  {} (was {})", c.desired, c.live)?;
        }
        Ok(())
    }
}

/// What Hive needs from the switch on one node.
///
/// Implementations are blocking (every call bounded by a time limit); async callers use
/// `spawn_blocking`.
pub trait Switch: Send + Sync {
    /// Check that the database server and the switch daemon answer.
    fn check(&self) -> Result<(), OvsError>;
    /// Create or converge the bridge (secure fail mode, no STP, OpenFlow 1.3+, datapath type)
    /// and its internal port; idempotent. A bridge without flows gets the fail-closed drop.
    fn ensure_bridge(&self) -> Result<BridgeState, OvsError>;
    /// Ports on the bridge bound to an ENI (`external_ids:iface-id`), by OpenFlow port.
    /// Unbound ports are left out: the program gives them nothing but the drop.
    fn bound_ports(&self) -> Result<Vec<BoundPort>, OvsError>;
    /// Replace the whole flow table with `program` in one atomic bundle; returns the flow count.
    /// If the switch rejects any flow, nothing changes.
    fn install(&self, program: &FlowProgram) -> Result<usize, OvsError>;
    /// Apply `diff` in one atomic bundle; returns the number of flows touched.
    fn apply_diff(&self, diff: &FlowDiff) -> Result<usize, OvsError>;
    /// The live flow table (statistics stripped; matches as OVS canonicalises them).
    fn dump_flows(&self) -> Result<Vec<Flow>, OvsError>;
    /// Compare the live table with `desired` (through the switch's own parser), repair any
    /// drift with one bundle, verify, and report what was fixed.
    fn reconcile(&self, desired: &FlowProgram) -> Result<ReconcileReport, OvsError>;
    /// Create or converge a tunnel port; idempotent.
    fn ensure_tunnel(&self, tunnel: &TunnelSpec) -> Result<(), OvsError>;
    /// Remove a tunnel port (no error if absent).
    fn remove_tunnel(&self, name: &str) -> Result<(), OvsError>;
    /// The tunnel ports on the bridge.
    fn tunnels(&self) -> Result<Vec<TunnelPort>, OvsError>;
    /// Forget tracked connections: of one conntrack zone (a VPC's VLAN id) or all of them.
    /// Revoking a rule does not do this on its own (see the crate docs on revocation); an
    /// operator who wants revocation to cut existing connections calls it.
    fn flush_conntrack(&self, zone: Option<u16>) -> Result<(), OvsError>;
}

/// `table=T,priority=P[,MATCH]`: a flow's identity in `ovs-ofctl` syntax.
fn flow_identity(flow: &Flow) -> String {
    let mut out = format!("table={},priority={}", flow.table, flow.priority);
    if !flow.matches.is_empty() {
        out.push(',');
        out.push_str(&flow.matches);
    }
    out
}

/// A diff as `ovs-ofctl --bundle add-flows` input.
///
/// Deletes are `delete_strict` by identity. Changed flows are sent as `add`: an OpenFlow add
/// with the identity of an existing flow replaces it whole, cookie included, whereas
/// `modify_strict` leaves the cookie unchanged under OpenFlow 1.1+ (verified on OVS 3.1), which
/// would leave a changed cookie as drift. Inside the bundle it is all one atomic commit.
pub fn bundle_text(diff: &FlowDiff) -> String {
    let mut out = String::new();
    for flow in &diff.delete {
        out.push_str("delete_strict ");
        out.push_str(&flow_identity(flow));
        out.push('\n');
    }
    for flow in diff.modify.iter().chain(&diff.add) {
        out.push_str("add ");
        out.push_str(&flow.to_string());
        out.push('\n');
    }
    out
}

impl OvsConfig {
    /// The runner for this configuration.
    pub fn runner(&self) -> Runner {
        Runner {
            rundir: self.rundir.clone(),
            bin_dir: self.bin_dir.clone(),
            timeout: self.timeout,
        }
    }

    /// Check the names before any command is built from them.
    pub fn validate(&self) -> Result<(), OvsError> {
        validate_name("bridge name", &self.bridge)?;
        validate_name("internal port name", &self.internal_port)
    }

    /// `ovs-vsctl` with the time limit and database of this configuration.
    pub fn vsctl<I, S>(&self, args: I) -> OvsCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all = vec![format!("--timeout={}", self.timeout.as_secs().max(1))];
        if let Some(db) = &self.db {
            all.push(format!("--db={db}"));
        }
        all.extend(args.into_iter().map(Into::into));
        OvsCommand::new(Tool::Vsctl, all)
    }

    /// `ovs-ofctl -O OpenFlow13 ...` (port numbers, never names, in its output).
    pub fn ofctl<I, S>(&self, args: I) -> OvsCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all = vec!["-O".to_string(), "OpenFlow13".into(), "--no-names".into()];
        all.extend(args.into_iter().map(Into::into));
        OvsCommand::new(Tool::Ofctl, all)
    }

    /// Daemon liveness: the database and the switch daemon.
    pub fn check_cmds(&self) -> Vec<OvsCommand> {
        let t = format!("--timeout={}", self.timeout.as_secs().max(1));
        vec![
            self.vsctl(["show"]),
            OvsCommand::new(
                Tool::Appctl,
                [t, "-t".into(), "ovs-vswitchd".into(), "version".into()],
            ),
        ]
    }

    /// The bridge with its settings and the internal port, in one database transaction (a new
    /// bridge is born in secure fail mode: no moment in which it forwards without our flows).
    pub fn ensure_bridge_cmd(&self) -> OvsCommand {
        let (b, i) = (self.bridge.as_str(), self.internal_port.as_str());
        self.vsctl([
            "--may-exist",
            "add-br",
            b,
            "--",
            "set",
            "bridge",
            b,
            "fail_mode=secure",
            "stp_enable=false",
            &format!("protocols={PROTOCOLS}"),
            &format!("datapath_type={}", self.datapath_type.as_str()),
            "--",
            "--may-exist",
            "add-port",
            b,
            i,
            "--",
            "set",
            "interface",
            i,
            "type=internal",
        ])
    }

    /// Read the bridge row back.
    pub fn bridge_state_cmd(&self) -> OvsCommand {
        self.vsctl([
            "-f",
            "json",
            "--columns=_uuid,name,datapath_type,fail_mode,stp_enable,protocols",
            "list",
            "bridge",
            &self.bridge,
        ])
    }

    /// The OpenFlow port of one interface.
    pub fn interface_ofport_cmd(&self, name: &str) -> OvsCommand {
        self.vsctl(["-f", "json", "--columns=ofport", "list", "interface", name])
    }

    /// The fail-closed drop for a bridge without flows.
    pub fn fail_closed_cmd(&self) -> OvsCommand {
        self.ofctl(["add-flow", &self.bridge, "table=0,priority=0,actions=drop"])
    }

    /// Interface names on the bridge.
    pub fn list_ifaces_cmd(&self) -> OvsCommand {
        self.vsctl(["list-ifaces", &self.bridge])
    }

    /// The interface table with the columns we read.
    pub fn interfaces_cmd(&self) -> OvsCommand {
        self.vsctl([
            "-f",
            "json",
            "--columns=name,type,ofport,options,external_ids",
            "list",
            "interface",
        ])
    }

    /// Atomic whole-table replacement.
    pub fn install_cmd(&self, program: &FlowProgram) -> OvsCommand {
        self.ofctl(["--bundle", "replace-flows", &self.bridge, INPUT_FILE])
            .with_input(program.to_ofctl())
    }

    /// Atomic diff application.
    pub fn diff_cmd(&self, diff: &FlowDiff) -> OvsCommand {
        self.ofctl(["--bundle", "add-flows", &self.bridge, INPUT_FILE])
            .with_input(bundle_text(diff))
    }

    /// The live table without statistics.
    pub fn dump_cmd(&self) -> OvsCommand {
        self.ofctl(["--no-stats", "dump-flows", &self.bridge])
    }

    /// The program as the switch will store it (see [`crate::parse::canonical_from_parse_flows`]).
    pub fn parse_flows_cmd(&self, desired: &FlowProgram) -> OvsCommand {
        self.ofctl(["parse-flows", INPUT_FILE])
            .with_input(desired.to_ofctl())
    }

    /// Flow text (canonical, from `parse-flows`) against the live table (exit 2 = differ).
    pub fn diff_flows_cmd(&self, flows: String) -> OvsCommand {
        self.ofctl(["diff-flows", INPUT_FILE, &self.bridge])
            .with_input(flows)
            .accepting(2)
    }

    /// Atomic whole-table replacement with flow text (canonical, from `parse-flows`).
    pub fn replace_cmd(&self, flows: String) -> OvsCommand {
        self.ofctl(["--bundle", "replace-flows", &self.bridge, INPUT_FILE])
            .with_input(flows)
    }

    /// Create or converge a tunnel port (its options replaced whole, so no stale option stays).
    pub fn tunnel_cmd(&self, t: &TunnelSpec) -> Result<OvsCommand, OvsError> {
        validate_name("tunnel port name", &t.name)?;
        let n = t.name.as_str();
        Ok(self.vsctl([
            "--may-exist",
            "add-port",
            &self.bridge,
            n,
            "--",
            "clear",
            "interface",
            n,
            "options",
            "--",
            "set",
            "interface",
            n,
            &format!("type={}", t.kind.as_str()),
            &format!("options:remote_ip={}", t.remote_ip),
            &format!("options:key={}", t.key),
        ]))
    }

    /// Flush conntrack entries (of one zone, or all).
    pub fn flush_conntrack_cmd(&self, zone: Option<u16>) -> OvsCommand {
        let mut args = vec![
            format!("--timeout={}", self.timeout.as_secs().max(1)),
            "dpctl/flush-conntrack".to_string(),
        ];
        args.extend(zone.map(|z| format!("zone={z}")));
        OvsCommand::new(Tool::Appctl, args)
    }

    /// Remove a tunnel port.
    pub fn remove_tunnel_cmd(&self, name: &str) -> Result<OvsCommand, OvsError> {
        validate_name("tunnel port name", name)?;
        Ok(self.vsctl(["--if-exists", "del-port", &self.bridge, name]))
    }
}

/// Parse the interface table into bound ports and tunnels, limited to `names` (the bridge's).
pub(crate) fn interfaces_of(
    json: &str,
    names: &[String],
) -> Result<(Vec<BoundPort>, Vec<TunnelPort>), OvsError> {
    let rows = crate::parse::parse_db_table(json)?;
    let (mut bound, mut tunnels) = (Vec::new(), Vec::new());
    for row in rows {
        let get = |k: &str| row.get(k);
        let Some(name) = get("name").and_then(|v| v.as_str()).map(str::to_string) else {
            continue;
        };
        if !names.contains(&name) {
            continue;
        }
        // ofport is -1 on error and unset before assignment: such a port is not usable yet.
        let ofport = get("ofport")
            .and_then(|v| v.as_int())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0);
        let kind = get("type")
            .and_then(|v| v.as_str())
            .and_then(TunnelKind::parse);
        let ids = get("external_ids").map(|v| v.map()).unwrap_or_default();
        if let Some(kind) = kind {
            let options = get("options").map(|v| v.map()).unwrap_or_default();
            let Some(remote_ip) = options.get("remote_ip").and_then(|ip| ip.parse().ok()) else {
                continue;
            };
            let key = match options.get("key").map(String::as_str) {
                Some("flow") => TunnelKey::Flow,
                Some(k) => TunnelKey::Fixed(k.parse().unwrap_or(0)),
                None => TunnelKey::Fixed(0),
            };
            tunnels.push(TunnelPort {
                spec: TunnelSpec {
                    name,
                    kind,
                    remote_ip,
                    key,
                },
                ofport,
            });
        } else if let (Some(ofport), Some(iface_id)) = (ofport, ids.get("iface-id")) {
            bound.push(BoundPort {
                ofport,
                name,
                iface_id: iface_id.clone(),
                mac: ids.get("attached-mac").cloned(),
            });
        }
    }
    bound.sort();
    tunnels.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok((bound, tunnels))
}

/// Turn `diff-flows` output into a report.
pub(crate) fn report_from_diff(text: &str) -> Result<ReconcileReport, OvsError> {
    let lines = crate::parse::parse_diff_flows(text)?;
    let mut report = ReconcileReport::default();
    for line in &lines {
        let partner = lines
            .iter()
            .find(|o| o.key == line.key && o.only_in_first != line.only_in_first);
        match (line.only_in_first, partner) {
            (true, Some(live)) => report.changed.push(FlowChange {
                desired: line.text.clone(),
                live: live.text.clone(),
            }),
            (true, None) => report.missing.push(line.text.clone()),
            (false, None) => report.rogue.push(line.text.clone()),
            (false, Some(_)) => {}
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(table: u8, priority: u16, cookie: u64, matches: &str, actions: &str) -> Flow {
        Flow {
            table,
            priority,
            cookie,
            matches: matches.into(),
            actions: actions.into(),
        }
    }

    #[test]
    fn bundles_replace_changed_flows_whole() {
        let diff = FlowDiff {
            add: vec![flow(1, 20, 4, "udp", "normal")],
            modify: vec![flow(0, 100, 7, "ip", "ct(table=1)")],
            delete: vec![
                flow(1, 10, 3, "tcp,tp_dst=22", "output:1"),
                flow(0, 0, 1, "", "drop"),
            ],
        };
        assert_eq!(
            bundle_text(&diff),
            "delete_strict table=1,priority=10,tcp,tp_dst=22\ndelete_strict table=0,priority=0\n\
             add table=0,priority=100,cookie=0x7,ip,actions=ct(table=1)\nadd table=1,priority=20,cookie=0x4,udp,actions=normal\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("x", "hive-vpc0").is_ok());
        for bad in ["", "-x", "a b", "waytoolongname16", "a;b", "ä"] {
            assert!(validate_name("x", bad).is_err(), "{bad:?}");
        }
        let cfg = OvsConfig::default();
        let t = TunnelSpec {
            name: "--evil".into(),
            kind: TunnelKind::Vxlan,
            remote_ip: "192.0.2.1".parse().expect("ip"),
            key: TunnelKey::Flow,
        };
        assert!(cfg.tunnel_cmd(&t).is_err());
    }

    #[test]
    fn reports_pair_changes() {
        let r = report_from_diff(
            "-priority=100,ip cookie=0x2 actions=ct(table=1)\n+priority=100,ip cookie=0x2 actions=drop\n-priority=0 cookie=0x1 actions=drop\n+table=1 priority=5,arp cookie=0x0 actions=NORMAL\n",
        )
        .expect("parses");
        assert_eq!(r.changed.len(), 1);
        assert_eq!(
            r.missing,
            vec!["priority=0 cookie=0x1 actions=drop".to_string()]
        );
        assert_eq!(
            r.rogue,
            vec!["table=1 priority=5,arp cookie=0x0 actions=NORMAL".to_string()]
        );
        assert_eq!(r.len(), 3);
        assert!(r.to_string().contains("removed rogue"));
    }

    #[test]
    fn interfaces_split_into_bound_ports_and_tunnels() {
        let json = r#"{"data":[
            ["p1","",1,["map",[]],["map",[["iface-id","eni-1"],["attached-mac","02:00:00:00:00:01"]]]],
            ["p2","",-1,["map",[]],["map",[["iface-id","eni-2"]]]],
            ["p3","",3,["map",[]],["map",[]]],
            ["other","",4,["map",[]],["map",[["iface-id","eni-x"]]]],
            ["vx-n2","vxlan",5,["map",[["key","flow"],["remote_ip","192.0.2.2"]]],["map",[]]]],
            "headings":["name","type","ofport","options","external_ids"]}"#;
        let names: Vec<String> = ["p1", "p2", "p3", "vx-n2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (bound, tunnels) = interfaces_of(json, &names).expect("parses");
        assert_eq!(
            bound,
            vec![BoundPort {
                ofport: 1,
                name: "p1".into(),
                iface_id: "eni-1".into(),
                mac: Some("02:00:00:00:00:01".into())
            }]
        );
        assert_eq!(tunnels.len(), 1);
        assert_eq!(tunnels[0].spec.key, TunnelKey::Flow);
        assert_eq!(tunnels[0].ofport, Some(5));
    }
}
