//! The flow compiler: one node's desired network state in, the complete OpenFlow program for
//! `hive-vpc0` out (OpenFlow 1.3, the text form `ovs-ofctl -O OpenFlow13` reads).
//!
//! # Design decisions
//! - **No `NORMAL`, no port `tag=`.** Every packet is forwarded by an explicit `output:`. A
//!   local port's VPC is known from its `in_port`, a tunnel packet's VPC from its `tun_id`
//!   (= the VPC's VLAN id, used as VNI). Frames stay untagged on local ports; a frame that
//!   arrives *with* an 802.1Q header is dropped. OVS `tag=` on a port is harmless (it only
//!   affects `NORMAL`) but not needed. Nothing crosses VPCs: every lookup is keyed by the VPC.
//! - **Delivery by address.** IPv4 goes to the interface (local port or remote interface
//!   behind a tunnel) that owns the destination address in the sender's VPC, with the
//!   destination MAC rewritten to that interface's MAC, whatever MAC the sender used (so a VM
//!   may send to the VPC router's MAC, [`ROUTER_MAC`], to reach another subnet). ARP is
//!   unicast to the owner of `arp_tpa` in the same VPC; ARP requests from local interfaces for
//!   a subnet gateway address are answered by the switch with [`ROUTER_MAC`] (except the
//!   gateway port's own address, which `hive-int0` answers). Destinations in the gateway's VPC
//!   outside every VPC CIDR go to the gateway port, whose MAC should be given
//!   ([`GatewayPort::mac`]) so that routed packets are rewritten to it.
//! - **Port security.** A local port may send only untagged IPv4 from its own MAC and IP and
//!   ARP with its own `arp_sha`/`arp_spa`; everything else (IPv6, DHCP from 0.0.0.0, other
//!   ethertypes, other ports) hits the fail-closed `priority=0 drop`. There is no DHCP: Hive
//!   configures addresses statically. A remote interface may only arrive over the tunnel port
//!   of its node, with its VPC's `tun_id`, its MAC and its IP. The gateway (`hive-int0`, the
//!   host side of the default subnet) may send from any IPv4 source (it routes for the
//!   outside) but only ARP for its own address; it reaches local interfaces only, subject to
//!   their ingress rules. Tunnel packets reach local interfaces only.
//! - **Security groups, AWS semantics.** A new connection needs the *sender's* egress rules
//!   (checked on the sender's node) and the *receiver's* ingress rules (checked on the
//!   receiver's node); an interface in several groups gets the union. The gateway and the
//!   outside have no groups; traffic to the gateway is subject to the sender's egress rules.
//!   Replies of tracked connections (`+est`, `+rel`) pass; `+inv` is dropped.
//! - **Metadata.** When [`NodeState::metadata`] is on, TCP port 80 to `169.254.169.254` from
//!   interfaces of the gateway's VPC goes to the gateway port without security-group checks
//!   (as on AWS, where the instance metadata service is not filtered by security groups); the
//!   rest of `169.254.0.0/16` and all of `224.0.0.0/3` (multicast, broadcast) is dropped.
//! - **Revocation.** Established connections survive the revocation of the rule that allowed
//!   them: conntrack entries persist and `+est` packets do not look at rules (AWS does the same
//!   for tracked connections). New connections are checked against the new rules at once.
//!
//! # Table layout
//! | table | name | what it does |
//! |---|---|---|
//! | 0 | classify | port security; loads VPC (`reg6`), source interface (`reg0`), flags (`reg3`) |
//! | 10 | ip_l3 | IPv4 destination by VPC + `nw_dst` → `reg1`; drops multicast, link-local, unknown |
//! | 11 | arp_l3 | ARP destination by VPC + `arp_tpa` → `reg1`; router ARP replies (`IN_PORT`) |
//! | 20 | pre_ct | drops tunnel/gateway → non-local; ARP → 60; IPv4 → `ct(table=30,zone=VLAN)` |
//! | 30 | ct_state | `+inv` drop, `+est`/`+rel` → 60, `+new` → egress, ingress, verdict |
//! | 40, 41, 42 | egress | loop over destination's groups (`reg5`), sender's groups (`reg4`), check |
//! | 45, 46, 47 | ingress | loop over source's groups (`reg5`), receiver's groups (`reg4`), check |
//! | 50 | verdict | both checks passed → `ct(commit,zone=VLAN)`, → 60 |
//! | 60 | output | by `reg1`: rewrite `dl_dst`, set `tun_id` for remote interfaces, `output:` |
//!
//! Every table ends in `priority=0,actions=drop`. Registers: `reg0` source interface tag,
//! `reg1` destination tag ([`GATEWAY_TAG`] for the gateway), `reg3` flags ([`FLAG_EGRESS_OK`],
//! [`FLAG_INGRESS_OK`], [`FLAG_FROM_TUNNEL`], [`FLAG_FROM_GATEWAY`]), `reg4` own group tag,
//! `reg5` peer group tag, `reg6` VLAN of the packet's VPC.
//!
//! # Priority bands
//! Flows that can match the same packet never share a priority unless their actions are
//! identical. In the check tables (42, 47): conj_id flows at [`PRIO_CONJ_ID`] (above everything,
//! so the `conj_id` lookup finds them), conjunction clauses at [`PRIO_CONJ`] and the
//! [`CONJ_SHARDS`]` - 1` priorities below it (one per conjunction: [`clause_priority`]), allow-all rules
//! (all protocols to/from `0.0.0.0/0`, which need no conjunction) at [`PRIO_ALLOW_ALL`]. In table
//! 10: multicast drop 500, metadata 450, link-local drop 440, addresses 300, VPC CIDR drop 200,
//! gateway route 100.
//!
//! # Conjunctions: rules + members, not rules × members
//! A rule of group G becomes one conjunction with up to three dimensions: 1/n `reg4=G` (the
//! interface being protected is in G), 2/n the peer (`reg5=H` for a group peer, `nw_dst`/`nw_src`
//! for a CIDR; omitted for `0.0.0.0/0`), 3/n the protocol and ports (`tcp,tp_dst=V/M` …; omitted
//! for all protocols). Group membership is never multiplied into rules: the loop tables load
//! each of an interface's groups into `reg4`/`reg5` in turn and resubmit to the check table. A
//! rule change touches its conj_id flow, its group's clause flow and its shared clause flows;
//! a membership change touches the interface's loop flows.
//!
//! Shared clauses are sharded: a clause flow lists every rule that uses the same clause (say
//! `udp,tp_dst=53`, or one peer group) and each `conjunction` action is 16 bytes on the wire,
//! so one flow_mod (64 KiB) carries about 4,000 of them. Each conjunction therefore lives at
//! one of [`CONJ_SHARDS`] priorities chosen by its id ([`clause_priority`]), and a shared
//! clause becomes one flow per shard that uses it, each listing about 1/8 of the rules: the
//! switch takes ~30,000 rules of one direction sharing a clause (OVS looks for a completed
//! conjunction priority by priority). A group's own clause (`reg4=G`) is then repeated per
//! shard its rules fall in.
//!
//! # Stable identifiers
//! Interface tags, group tags and conjunction ids are 32-bit FNV-1a hashes of the ENI id, the
//! group id, and (rule id, direction); on a collision the later id (in sorted order) probes the
//! next hash. Unchanged objects therefore keep their flows byte for byte across recompiles.
//! A long-lived [`Compiler`] never reassigns an id while it lives; its [`Compiler::update`] and
//! [`Compiler::set_group`] recompile only the objects that changed and return the diff.
//!
//! # Cookies
//! `cookie = kind << 56 | (fnv1a64(id) & 0x00ff_ffff_ffff_ffff)`, kinds in [`CookieKind`]:
//! base program 0 (id part 0), VPC 1, local port 2, remote interface 3, gateway 4, group 5,
//! rule 6, shared conjunction clause 7 (hash of the clause's match); the gateway's id is the
//! string `gateway`. [`explain_cookie`] maps a cookie back to its owner. Cookies are not part
//! of a flow's identity: a cookie change alone is a `modify_strict`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::flow::{Flow, FlowDiff, FlowProgram};
use crate::model::{
    Direction, MacAddr, NetworkInterfaceId, Peer, Protocol, SecurityGroup, SecurityGroupId,
    SecurityGroupRule, SecurityGroupRuleId, SubnetId, VpcId,
};

/// Table 0: port security and classification.
pub const T_CLASSIFY: u8 = 0;
/// Table 10: IPv4 destination lookup.
pub const T_IP_L3: u8 = 10;
/// Table 11: ARP destination lookup.
pub const T_ARP_L3: u8 = 11;
/// Table 20: source/destination sanity, then conntrack.
pub const T_PRE_CT: u8 = 20;
/// Table 30: conntrack state dispatch.
pub const T_CT_STATE: u8 = 30;
/// Table 40: egress loop over the destination's groups (`reg5`).
pub const T_EG_PEER: u8 = 40;
/// Table 41: egress loop over the sender's groups (`reg4`).
pub const T_EG_OWN: u8 = 41;
/// Table 42: egress rule check (conjunctions).
pub const T_EG_CHECK: u8 = 42;
/// Table 45: ingress loop over the source's groups (`reg5`).
pub const T_IN_PEER: u8 = 45;
/// Table 46: ingress loop over the receiver's groups (`reg4`).
pub const T_IN_OWN: u8 = 46;
/// Table 47: ingress rule check (conjunctions).
pub const T_IN_CHECK: u8 = 47;
/// Table 50: verdict and conntrack commit.
pub const T_VERDICT: u8 = 50;
/// Table 60: output.
pub const T_OUTPUT: u8 = 60;

/// Every table the program uses.
pub const TABLES: [u8; 13] = [
    T_CLASSIFY, T_IP_L3, T_ARP_L3, T_PRE_CT, T_CT_STATE, T_EG_PEER, T_EG_OWN, T_EG_CHECK,
    T_IN_PEER, T_IN_OWN, T_IN_CHECK, T_VERDICT, T_OUTPUT,
];

/// Priority of `conj_id=` flows in the check tables (highest in the table).
pub const PRIO_CONJ_ID: u16 = 300;
/// Highest priority of conjunction clause flows in the check tables; a rule's clauses sit at
/// one of [`CONJ_SHARDS`] priorities below it ([`clause_priority`]).
pub const PRIO_CONJ: u16 = 200;
/// Number of priorities conjunctions are spread over, so that a clause shared by many rules
/// (the same peer group or port) is split into that many flows, each listing a fraction of
/// the rules: one flow_mod carries at most ~4,000 `conjunction` actions (64 KiB).
pub const CONJ_SHARDS: u32 = 8;

/// The priority of every clause flow of conjunction `conj_id` (all clauses of one conjunction
/// must share a priority; conjunction ids are hashes, so the shards fill evenly).
pub fn clause_priority(conj_id: u32) -> u16 {
    PRIO_CONJ - (conj_id % CONJ_SHARDS) as u16
}
/// Priority of allow-all rules (no conjunction needed) in the check tables.
pub const PRIO_ALLOW_ALL: u16 = 100;

/// `reg1` value naming the gateway port as destination.
pub const GATEWAY_TAG: u32 = 1;
/// `reg3` bit: egress is allowed (checked, or not ours to check).
pub const FLAG_EGRESS_OK: u32 = 0x1;
/// `reg3` bit: ingress is allowed (checked, or not ours to check).
pub const FLAG_INGRESS_OK: u32 = 0x2;
/// `reg3` bit: the packet came in over a tunnel.
pub const FLAG_FROM_TUNNEL: u32 = 0x4;
/// `reg3` bit: the packet came in from the gateway port.
pub const FLAG_FROM_GATEWAY: u32 = 0x8;

/// The MAC address of the VPC router: the ARP responder answers with it for every subnet
/// gateway address (except the gateway port's own, which `hive-int0` answers itself), and IPv4
/// sent to it is delivered by destination address like any other.
pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0x68, 0x69, 0x76, 0x65, 0x01]);

/// The instance metadata address.
pub const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// A VPC as the compiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcSpec {
    /// VPC id.
    pub id: VpcId,
    /// VLAN id (1..=4094); also the conntrack zone and the tunnel key (VNI).
    pub vlan: u16,
    /// Primary and secondary CIDR blocks.
    pub cidrs: Vec<Ipv4Network>,
}

impl VpcSpec {
    /// The conntrack zone of the VPC: its VLAN id.
    pub fn zone(&self) -> u16 {
        self.vlan
    }
}

/// A subnet as the compiler sees it (used to check interface addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    /// Subnet id.
    pub id: SubnetId,
    /// The VPC it belongs to.
    pub vpc: VpcId,
    /// Its CIDR block.
    pub cidr: Ipv4Network,
    /// Its gateway address (the first host).
    pub gateway: Ipv4Addr,
}

/// A switch port on this node bound to a network interface (`external_ids:iface-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPort {
    /// OpenFlow port number.
    pub ofport: u32,
    /// The interface bound to the port.
    pub eni: NetworkInterfaceId,
    /// The interface's MAC address.
    pub mac: MacAddr,
    /// The interface's private IPv4 address.
    pub ip: Ipv4Addr,
    /// The interface's VPC.
    pub vpc: VpcId,
    /// The interface's subnet.
    pub subnet: SubnetId,
    /// The security groups the interface belongs to.
    pub groups: Vec<SecurityGroupId>,
}

/// A network interface bound on another node, reached through that node's tunnel port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInterface {
    /// Interface id.
    pub eni: NetworkInterfaceId,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its private IPv4 address.
    pub ip: Ipv4Addr,
    /// Its VPC.
    pub vpc: VpcId,
    /// The security groups it belongs to (members count for group-referencing rules here).
    pub groups: Vec<SecurityGroupId>,
    /// OpenFlow port of the tunnel (VXLAN/Geneve, `options:key=flow`) to its node.
    pub tunnel_ofport: u32,
}

/// The gateway port `hive-int0`: the host side of the gateway VPC, the VMs' router outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayPort {
    /// OpenFlow port number of `hive-int0`.
    pub ofport: u32,
    /// The VPC it serves (the default VPC).
    pub vpc: VpcId,
    /// Its address (the default subnet's gateway, e.g. 10.0.1.1).
    pub ip: Ipv4Addr,
    /// Its MAC, when known; then it may send only from that MAC.
    pub mac: Option<MacAddr>,
}

/// The desired network state of one node: everything the compiler needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeState {
    /// VPCs with interfaces on this node (or reachable from it).
    pub vpcs: Vec<VpcSpec>,
    /// Subnets of those VPCs.
    pub subnets: Vec<SubnetSpec>,
    /// Security groups of those VPCs.
    pub security_groups: Vec<SecurityGroup>,
    /// Bound local ports.
    pub ports: Vec<LocalPort>,
    /// Interfaces bound on other nodes.
    pub remotes: Vec<RemoteInterface>,
    /// The gateway port, if the node has one.
    pub gateway: Option<GatewayPort>,
    /// Whether 169.254.169.254:80 is reachable (through the gateway port).
    pub metadata: bool,
}

/// Why a node state cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A VLAN id outside 1..=4094.
    #[error("VPC {vpc} has VLAN {vlan}, outside 1..=4094")]
    VlanOutOfRange {
        /// The VPC.
        vpc: VpcId,
        /// Its VLAN.
        vlan: u16,
    },
    /// Two VPCs with the same id or the same VLAN.
    #[error("VPC {vpc} duplicates another VPC's id or VLAN {vlan}")]
    DuplicateVpc {
        /// The VPC.
        vpc: VpcId,
        /// Its VLAN.
        vlan: u16,
    },
    /// A reference to a VPC that is not in the state.
    #[error("{what} refers to unknown VPC {vpc}")]
    UnknownVpc {
        /// What refers to it.
        what: String,
        /// The VPC.
        vpc: VpcId,
    },
    /// An interface refers to a group that is not in the state or not in its VPC.
    #[error("interface {eni} refers to security group {group}, unknown in its VPC")]
    UnknownGroup {
        /// The interface.
        eni: NetworkInterfaceId,
        /// The group.
        group: SecurityGroupId,
    },
    /// An interface refers to a subnet that is not in the state or does not hold its address.
    #[error("interface {eni} is not inside subnet {subnet}")]
    BadSubnet {
        /// The interface.
        eni: NetworkInterfaceId,
        /// The subnet.
        subnet: SubnetId,
    },
    /// Two interfaces (or an interface and the gateway) share an address in one VPC, or an ENI
    /// appears twice.
    #[error("address {ip} (interface {eni}) is used twice in its VPC")]
    DuplicateAddress {
        /// The interface.
        eni: NetworkInterfaceId,
        /// The address.
        ip: Ipv4Addr,
    },
    /// An OpenFlow port number used twice, or 0, or reserved (>= 0xffffff00).
    #[error("OpenFlow port {ofport} is invalid or used twice")]
    BadOfport {
        /// The port.
        ofport: u32,
    },
    /// Two groups with the same id.
    #[error("security group {group} appears twice")]
    DuplicateGroup {
        /// The group.
        group: SecurityGroupId,
    },
    /// Two rules with the same id.
    #[error("security group rule {rule} appears twice")]
    DuplicateRule {
        /// The rule.
        rule: SecurityGroupRuleId,
    },
    /// A security group that changes VPC (groups never move).
    #[error("security group {group} cannot move to another VPC")]
    GroupMoved {
        /// The group.
        group: SecurityGroupId,
    },
    /// A port range with `from > to`.
    #[error("security group rule {rule} has an empty port range")]
    BadPortRange {
        /// The rule.
        rule: SecurityGroupRuleId,
    },
}

/// What a cookie says produced a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum CookieKind {
    /// The base program (fail-closed drops, conntrack dispatch).
    Base = 0,
    /// A VPC (its conntrack, CIDR and gateway flows).
    Vpc = 1,
    /// A local port (port security, delivery, group loops).
    Port = 2,
    /// A remote interface (tunnel ingress, delivery, group loops).
    Remote = 3,
    /// The gateway port.
    Gateway = 4,
    /// A security group (its conjunction clause for "interface is in this group").
    Group = 5,
    /// A security group rule (its conj_id flow, or its allow-all flow).
    Rule = 6,
    /// A conjunction clause shared by several rules (peer CIDR or group, protocol and ports).
    SharedClause = 7,
}

/// The owner a cookie names, found by [`explain_cookie`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieOwner {
    /// The base program.
    Base,
    /// A VPC.
    Vpc(VpcId),
    /// A local port's interface.
    Port(NetworkInterfaceId),
    /// A remote interface.
    Remote(NetworkInterfaceId),
    /// The gateway port.
    Gateway,
    /// A security group.
    Group(SecurityGroupId),
    /// A security group rule.
    Rule(SecurityGroupId, SecurityGroupRuleId),
    /// A shared conjunction clause (the cookie hashes its match).
    SharedClause,
}

/// FNV-1a as a `Hasher` for the compiler's internal maps (keys are short flow matches; SipHash's
/// DoS resistance is not needed for data we generate ourselves).
#[derive(Default, Clone, Copy)]
struct FnvBuild;

struct Fnv(u64);

impl std::hash::BuildHasher for FnvBuild {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// 64-bit FNV-1a: a fixed, documented hash so identifiers are stable across builds.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cookie for an owner of kind `kind` named `id` (empty for the base program).
pub fn cookie(kind: CookieKind, id: &str) -> u64 {
    let low = if id.is_empty() {
        0
    } else {
        fnv1a64(id.as_bytes()) & 0x00ff_ffff_ffff_ffff
    };
    (u64::from(kind as u8) << 56) | low
}

/// Which object of `state` produced a flow with this cookie, if any.
pub fn explain_cookie(state: &NodeState, value: u64) -> Option<CookieOwner> {
    let kind = (value >> 56) as u8;
    let hit = |k: CookieKind, id: &str| cookie(k, id) == value;
    match kind {
        0 if value == 0 => Some(CookieOwner::Base),
        1 => state
            .vpcs
            .iter()
            .find(|v| hit(CookieKind::Vpc, v.id.as_str()))
            .map(|v| CookieOwner::Vpc(v.id.clone())),
        2 => state
            .ports
            .iter()
            .find(|p| hit(CookieKind::Port, p.eni.as_str()))
            .map(|p| CookieOwner::Port(p.eni.clone())),
        3 => state
            .remotes
            .iter()
            .find(|r| hit(CookieKind::Remote, r.eni.as_str()))
            .map(|r| CookieOwner::Remote(r.eni.clone())),
        4 if value == cookie(CookieKind::Gateway, "gateway") => Some(CookieOwner::Gateway),
        5 => state
            .security_groups
            .iter()
            .find(|g| hit(CookieKind::Group, g.id.as_str()))
            .map(|g| CookieOwner::Group(g.id.clone())),
        6 => state.security_groups.iter().find_map(|g| {
            g.rules
                .iter()
                .find(|r| hit(CookieKind::Rule, r.id.as_str()))
                .map(|r| CookieOwner::Rule(g.id.clone(), r.id.clone()))
        }),
        7 => Some(CookieOwner::SharedClause),
        _ => None,
    }
}

/// A space of 32-bit tags: FNV-1a of the id folded to 32 bits, probing with a salt on
/// collision. Tags are sticky: once given, an id keeps its tag for the life of the space.
#[derive(Debug, Clone, Default)]
struct TagSpace {
    by_id: HashMap<String, u32>,
    used: HashSet<u32>,
}

impl TagSpace {
    fn with_reserved(reserved: &[u32]) -> Self {
        TagSpace {
            by_id: HashMap::new(),
            used: reserved.iter().copied().collect(),
        }
    }

    fn get(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Give tags to the ids that have none, in sorted order (so a fresh space assigns the same
    /// tags to the same set of ids, whatever order they come in).
    fn assign<'a>(&mut self, ids: impl Iterator<Item = &'a str>) {
        let fresh: BTreeSet<&str> = ids.filter(|id| !self.by_id.contains_key(*id)).collect();
        for id in fresh {
            let mut salt = 0u32;
            loop {
                let h = if salt == 0 {
                    fnv1a64(id.as_bytes())
                } else {
                    fnv1a64(format!("{id}#{salt}").as_bytes())
                };
                let tag = ((h >> 32) ^ h) as u32;
                if self.used.insert(tag) {
                    self.by_id.insert(id.to_string(), tag);
                    break;
                }
                salt += 1;
            }
        }
    }
}

fn dir_str(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    }
}

fn conj_key(rule: &SecurityGroupRule) -> String {
    format!("{}/{}", rule.id, dir_str(rule.direction))
}

/// The stable identifiers of a compiler: interface tags, group tags, conjunction ids.
#[derive(Debug, Clone)]
struct Tags {
    iface: TagSpace,
    group: TagSpace,
    conj: TagSpace,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            iface: TagSpace::with_reserved(&[0, GATEWAY_TAG]),
            group: TagSpace::with_reserved(&[0]),
            conj: TagSpace::with_reserved(&[0]),
        }
    }
}

impl Tags {
    fn assign_group(&mut self, g: &SecurityGroup) {
        let peers = g.rules.iter().filter_map(|r| match &r.peer {
            Peer::Group(h) => Some(h.as_str()),
            Peer::Cidr(_) => None,
        });
        // Groups referenced as peers get tags too, even if unknown here (they match nobody).
        self.group
            .assign(std::iter::once(g.id.as_str()).chain(peers));
        let keys: Vec<String> = g.rules.iter().map(conj_key).collect();
        self.conj.assign(keys.iter().map(String::as_str));
    }

    fn assign_state(&mut self, state: &NodeState) {
        self.iface.assign(
            state
                .ports
                .iter()
                .map(|p| p.eni.as_str())
                .chain(state.remotes.iter().map(|r| r.eni.as_str())),
        );
        let groups: Vec<&str> = state
            .security_groups
            .iter()
            .flat_map(|g| {
                std::iter::once(g.id.as_str()).chain(g.rules.iter().filter_map(|r| match &r.peer {
                    Peer::Group(h) => Some(h.as_str()),
                    Peer::Cidr(_) => None,
                }))
            })
            .collect();
        self.group.assign(groups.into_iter());
        let keys: Vec<String> = state
            .security_groups
            .iter()
            .flat_map(|g| g.rules.iter().map(conj_key))
            .collect();
        self.conj.assign(keys.iter().map(String::as_str));
    }

    fn iface(&self, eni: &NetworkInterfaceId) -> Option<u32> {
        self.iface.get(eni.as_str())
    }

    fn group(&self, id: &SecurityGroupId) -> Option<u32> {
        self.group.get(id.as_str())
    }

    fn conj(&self, rule: &SecurityGroupRule) -> Option<u32> {
        self.conj.get(&conj_key(rule))
    }
}

impl NodeState {
    /// Check the state is consistent enough to compile.
    pub fn validate(&self) -> Result<(), CompileError> {
        let mut vlans = HashSet::new();
        let mut vpc_ids = HashSet::new();
        for v in &self.vpcs {
            if v.vlan == 0 || v.vlan > 4094 {
                return Err(CompileError::VlanOutOfRange {
                    vpc: v.id.clone(),
                    vlan: v.vlan,
                });
            }
            if !vlans.insert(v.vlan) || !vpc_ids.insert(v.id.clone()) {
                return Err(CompileError::DuplicateVpc {
                    vpc: v.id.clone(),
                    vlan: v.vlan,
                });
            }
        }
        let known_vpc = |what: String, vpc: &VpcId| {
            if vpc_ids.contains(vpc) {
                Ok(())
            } else {
                Err(CompileError::UnknownVpc {
                    what,
                    vpc: vpc.clone(),
                })
            }
        };
        for s in &self.subnets {
            known_vpc(format!("subnet {}", s.id), &s.vpc)?;
        }
        let mut groups: HashMap<&SecurityGroupId, &VpcId> = HashMap::new();
        let mut rules = HashSet::new();
        for g in &self.security_groups {
            known_vpc(format!("security group {}", g.id), &g.vpc_id)?;
            if groups.insert(&g.id, &g.vpc_id).is_some() {
                return Err(CompileError::DuplicateGroup {
                    group: g.id.clone(),
                });
            }
            for r in &g.rules {
                if !rules.insert(&r.id) {
                    return Err(CompileError::DuplicateRule { rule: r.id.clone() });
                }
                if let Protocol::Tcp(pr) | Protocol::Udp(pr) = r.protocol
                    && pr.from > pr.to
                {
                    return Err(CompileError::BadPortRange { rule: r.id.clone() });
                }
            }
        }
        let mut ofports = HashSet::new();
        let mut check_ofport = |p: u32| {
            if p == 0 || p >= 0xffff_ff00 || !ofports.insert(p) {
                Err(CompileError::BadOfport { ofport: p })
            } else {
                Ok(())
            }
        };
        for p in &self.ports {
            check_ofport(p.ofport)?;
        }
        if let Some(gw) = &self.gateway {
            check_ofport(gw.ofport)?;
            known_vpc("the gateway port".into(), &gw.vpc)?;
        }
        let tunnel_ports: HashSet<u32> = self.remotes.iter().map(|r| r.tunnel_ofport).collect();
        for t in tunnel_ports {
            check_ofport(t)?;
        }
        let mut addrs: HashSet<(VpcId, Ipv4Addr)> = HashSet::new();
        for s in &self.subnets {
            addrs.insert((s.vpc.clone(), s.gateway));
        }
        if let Some(gw) = &self.gateway {
            addrs.insert((gw.vpc.clone(), gw.ip));
        }
        let mut enis = HashSet::new();
        let ifaces = self
            .ports
            .iter()
            .map(|p| (&p.eni, &p.vpc, p.ip, &p.groups))
            .chain(
                self.remotes
                    .iter()
                    .map(|r| (&r.eni, &r.vpc, r.ip, &r.groups)),
            );
        for (eni, vpc, ip, gs) in ifaces {
            known_vpc(format!("interface {eni}"), vpc)?;
            if !enis.insert(eni.clone()) || !addrs.insert((vpc.clone(), ip)) {
                return Err(CompileError::DuplicateAddress {
                    eni: eni.clone(),
                    ip,
                });
            }
            for g in gs {
                if groups.get(g) != Some(&vpc) {
                    return Err(CompileError::UnknownGroup {
                        eni: eni.clone(),
                        group: g.clone(),
                    });
                }
            }
        }
        for p in &self.ports {
            let ok = self
                .subnets
                .iter()
                .any(|s| s.id == p.subnet && s.vpc == p.vpc && s.cidr.contains(p.ip));
            if !ok {
                return Err(CompileError::BadSubnet {
                    eni: p.eni.clone(),
                    subnet: p.subnet.clone(),
                });
            }
        }
        Ok(())
    }
}

/// One piece of a program produced by one owner: a whole flow, or one conjunction clause of a
/// flow whose `conjunction(...)` actions are merged from every owner that contributes one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Hard(Flow),
    Clause {
        table: u8,
        matches: String,
        cookie: u64,
        conj: (u32, u8, u8),
    },
}

type Key = (u8, u16, String);

/// The identities touched by a change, with what they held before it.
type Touched = HashMap<Key, Snapshot, FnvBuild>;

impl Item {
    fn key(&self) -> Key {
        match self {
            Item::Hard(f) => (f.table, f.priority, f.matches.clone()),
            Item::Clause {
                table,
                matches,
                conj,
                ..
            } => (*table, clause_priority(conj.0), matches.clone()),
        }
    }
}

/// Collects the items of one owner.
#[derive(Default)]
struct Emitter {
    items: Vec<Item>,
}

impl Emitter {
    fn flow(&mut self, table: u8, priority: u16, cookie: u64, matches: String, actions: String) {
        self.items.push(Item::Hard(Flow {
            table,
            priority,
            cookie,
            matches,
            actions,
        }));
    }

    fn clause(&mut self, table: u8, cookie: u64, matches: String, conj: (u32, u8, u8)) {
        self.items.push(Item::Clause {
            table,
            matches,
            cookie,
            conj,
        });
    }
}

/// Normalized CIDR text: network address, `/32` written as a plain address.
pub(crate) fn cidr_text(net: &Ipv4Network) -> String {
    let normal = Ipv4Network::new(net.network(), net.prefix()).unwrap_or(*net);
    if normal.prefix() == 32 {
        normal.ip().to_string()
    } else {
        format!("{}/{}", normal.network(), normal.prefix())
    }
}

/// Split an inclusive port range into value/mask pairs (largest aligned blocks first).
pub(crate) fn port_masks(from: u16, to: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start = u32::from(from);
    let end = u32::from(to);
    while start <= end {
        let mut size: u32 = 1;
        while size < 0x1_0000 && start % (size * 2) == 0 && start + size * 2 - 1 <= end {
            size *= 2;
        }
        out.push((start as u16, (!(size - 1) & 0xffff) as u16));
        start += size;
    }
    out
}

/// The protocol clause matches of a rule; empty when the rule covers every protocol.
fn protocol_matches(p: &Protocol) -> Vec<String> {
    let ports = |proto: &str, from: u16, to: u16| -> Vec<String> {
        if from == 0 && to == u16::MAX {
            return vec![proto.to_string()];
        }
        port_masks(from, to)
            .into_iter()
            .map(|(v, m)| {
                if m == 0xffff {
                    format!("{proto},tp_dst={v}")
                } else {
                    format!("{proto},tp_dst={v:#06x}/{m:#06x}")
                }
            })
            .collect()
    };
    match p {
        Protocol::All => Vec::new(),
        Protocol::Tcp(r) => ports("tcp", r.from, r.to),
        Protocol::Udp(r) => ports("udp", r.from, r.to),
        Protocol::Icmp {
            icmp_type: None, ..
        } => vec!["icmp".into()],
        Protocol::Icmp {
            icmp_type: Some(t),
            code: None,
        } => vec![format!("icmp,icmp_type={t}")],
        Protocol::Icmp {
            icmp_type: Some(t),
            code: Some(c),
        } => vec![format!("icmp,icmp_type={t},icmp_code={c}")],
        Protocol::Number(6) => vec!["tcp".into()],
        Protocol::Number(17) => vec!["udp".into()],
        Protocol::Number(1) => vec!["icmp".into()],
        Protocol::Number(n) => vec![format!("ip,nw_proto={n}")],
    }
}

fn mac_text(m: &MacAddr) -> String {
    m.to_string()
}

const NO_VLAN: &str = "vlan_tci=0x0000/0x1000";

/// Compile one node's desired state into its complete OpenFlow program.
///
/// This is the one-shot path (first install, resync): it emits every object's flows and
/// merges them directly, without the bookkeeping a [`Compiler`] keeps for incremental updates.
/// Both paths give the same program (a property test holds them to it).
pub fn compile(state: &NodeState) -> Result<FlowProgram, CompileError> {
    state.validate()?;
    let mut tags = Tags::default();
    tags.assign_state(state);
    let vlan_of: HashMap<&VpcId, u16> = state.vpcs.iter().map(|v| (&v.id, v.vlan)).collect();
    let mut e = Emitter::default();
    base_flows(&mut e);
    for v in &state.vpcs {
        vpc_flows(&mut e, &VpcInput::of(v, state));
    }
    if let Some(gw) = &state.gateway
        && let Some(&v) = vlan_of.get(&gw.vpc)
    {
        gateway_flows(&mut e, gw, v, state.metadata);
    }
    for p in &state.ports {
        if let (Some(&v), Some(tag)) = (vlan_of.get(&p.vpc), tags.iface(&p.eni)) {
            port_flows(&mut e, p, v, tag, &tags);
        }
    }
    for r in &state.remotes {
        if let (Some(&v), Some(tag)) = (vlan_of.get(&r.vpc), tags.iface(&r.eni)) {
            remote_flows(&mut e, r, v, tag, &tags);
        }
    }
    for g in &state.security_groups {
        group_flows(&mut e, g, &tags);
    }
    let mut flows = Vec::with_capacity(e.items.len());
    let mut clauses: HashMap<Key, Slot, FnvBuild> = HashMap::default();
    for item in e.items {
        match item {
            Item::Hard(f) => flows.push(f),
            Item::Clause {
                table,
                matches,
                cookie,
                conj,
            } => {
                let slot = clauses
                    .entry((table, clause_priority(conj.0), matches))
                    .or_default();
                if slot.clauses.is_empty() {
                    slot.clause_cookie = cookie;
                }
                *slot.clauses.entry(conj).or_insert(0) += 1;
            }
        }
    }
    flows.extend(clauses.iter().filter_map(|(k, s)| s.effective(k)));
    Ok(flows.into_iter().collect())
}

/// What produced a set of items (one per object of the state, plus the base program).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Owner {
    Base,
    Vpc(VpcId),
    Gateway,
    Port(NetworkInterfaceId),
    Remote(NetworkInterfaceId),
    Group(SecurityGroupId),
}

/// Everything the program holds at one flow identity.
#[derive(Debug, Default)]
struct Slot {
    /// Whole flows, by owner (the smallest owner's wins if several emit the same identity).
    hard: BTreeMap<Owner, Flow>,
    /// Conjunction clauses with the number of owners contributing each.
    clauses: BTreeMap<(u32, u8, u8), u32>,
    clause_cookie: u64,
}

/// What a slot held before a change, cheap to take: its flow if whole, its clause cookie,
/// whether it was empty, and for each clause whose presence flipped during the change, whether
/// it was there before (so the comparison costs what the change touched, not the slot's size).
#[derive(Debug)]
struct Snapshot {
    hard: Option<Flow>,
    cookie: u64,
    was_empty: bool,
    flipped: HashMap<(u32, u8, u8), bool, FnvBuild>,
}

/// Append `n` in decimal (the conjunction lists of shared clauses are long: avoid `fmt`).
fn push_u32(out: &mut String, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

impl Slot {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            hard: self.hard.values().next().cloned(),
            cookie: self.clause_cookie,
            was_empty: self.hard.is_empty() && self.clauses.is_empty(),
            flipped: HashMap::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.hard.is_empty() && self.clauses.is_empty()
    }

    fn effective(&self, key: &Key) -> Option<Flow> {
        if let Some(f) = self.hard.values().next() {
            return Some(f.clone());
        }
        if self.clauses.is_empty() {
            return None;
        }
        let mut actions = String::with_capacity(self.clauses.len() * 28);
        for &(id, k, n) in self.clauses.keys() {
            if !actions.is_empty() {
                actions.push(',');
            }
            actions.push_str("conjunction(");
            push_u32(&mut actions, id);
            actions.push(',');
            push_u32(&mut actions, u32::from(k));
            actions.push('/');
            push_u32(&mut actions, u32::from(n));
            actions.push(')');
        }
        Some(Flow {
            table: key.0,
            priority: key.1,
            cookie: self.clause_cookie,
            matches: key.2.clone(),
            actions,
        })
    }
}

/// What a VPC's flows depend on: the VPC, its subnets (their gateway addresses are answered
/// by the ARP responder) and the gateway port's address if it serves this VPC (then that
/// address is the port's to answer).
#[derive(Debug, Clone, PartialEq, Eq)]
struct VpcInput {
    spec: VpcSpec,
    subnet_gateways: BTreeSet<Ipv4Addr>,
}

impl VpcInput {
    fn of(v: &VpcSpec, state: &NodeState) -> Self {
        let gw_port_ip = state
            .gateway
            .as_ref()
            .filter(|g| g.vpc == v.id)
            .map(|g| g.ip);
        let subnet_gateways = state
            .subnets
            .iter()
            .filter(|s| s.vpc == v.id && Some(s.gateway) != gw_port_ip)
            .map(|s| s.gateway)
            .collect();
        VpcInput {
            spec: v.clone(),
            subnet_gateways,
        }
    }
}

/// The flow compiler, incremental: it keeps the state it compiled, the flows each object of
/// that state produced and the identifiers it handed out, so that a change recompiles only the
/// objects that changed and yields the [`FlowDiff`] to apply. Identifiers are sticky for the
/// life of the compiler; a fresh [`compile`] of the same state gives the same program unless
/// two ids collided in 32 bits (then only the flows of the colliding objects differ).
#[derive(Debug)]
pub struct Compiler {
    vpcs: BTreeMap<VpcId, VpcInput>,
    groups: BTreeMap<SecurityGroupId, SecurityGroup>,
    ports: BTreeMap<NetworkInterfaceId, LocalPort>,
    remotes: BTreeMap<NetworkInterfaceId, RemoteInterface>,
    gateway: Option<GatewayPort>,
    metadata: bool,
    state: NodeState,
    tags: Tags,
    items: HashMap<Owner, Vec<Item>>,
    slots: HashMap<Key, Slot, FnvBuild>,
}

impl Compiler {
    /// Compile `state` from scratch.
    pub fn new(state: &NodeState) -> Result<Self, CompileError> {
        state.validate()?;
        let mut c = Compiler {
            vpcs: BTreeMap::new(),
            groups: BTreeMap::new(),
            ports: BTreeMap::new(),
            remotes: BTreeMap::new(),
            gateway: None,
            metadata: false,
            state: NodeState::default(),
            tags: Tags::default(),
            items: HashMap::new(),
            slots: HashMap::default(),
        };
        let mut e = Emitter::default();
        base_flows(&mut e);
        c.apply_owner(Owner::Base, e.items, None);
        c.sync(state, false)?;
        Ok(c)
    }

    /// The state last compiled.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// The complete current program.
    pub fn program(&self) -> FlowProgram {
        self.slots
            .iter()
            .filter_map(|(k, s)| s.effective(k))
            .collect()
    }

    /// Number of flows in the current program.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the program is empty (never, once built: the base program is always there).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Recompile for a new desired state: objects equal to the previous state's are not
    /// recompiled. Returns the minimal diff from the previous program. On error nothing changes.
    pub fn update(&mut self, state: &NodeState) -> Result<FlowDiff, CompileError> {
        self.sync(state, true)
    }

    /// [`Compiler::update`], computing the diff only if `want_diff` (not for the first build).
    fn sync(&mut self, state: &NodeState, want_diff: bool) -> Result<FlowDiff, CompileError> {
        state.validate()?;
        self.tags.assign_state(state);
        let vpcs: BTreeMap<VpcId, VpcInput> = state
            .vpcs
            .iter()
            .map(|v| (v.id.clone(), VpcInput::of(v, state)))
            .collect();
        let groups: BTreeMap<SecurityGroupId, SecurityGroup> = state
            .security_groups
            .iter()
            .map(|g| (g.id.clone(), g.clone()))
            .collect();
        let ports: BTreeMap<NetworkInterfaceId, LocalPort> = state
            .ports
            .iter()
            .map(|p| (p.eni.clone(), p.clone()))
            .collect();
        let remotes: BTreeMap<NetworkInterfaceId, RemoteInterface> = state
            .remotes
            .iter()
            .map(|r| (r.eni.clone(), r.clone()))
            .collect();
        let vlan_changed = |vpc: &VpcId| {
            vpcs.get(vpc).map(|v| v.spec.vlan) != self.vpcs.get(vpc).map(|v| v.spec.vlan)
        };
        let mut changed: Vec<Owner> = Vec::new();
        changed_keys(&self.vpcs, &vpcs, |_, _| false, Owner::Vpc, &mut changed);
        changed_keys(
            &self.groups,
            &groups,
            |_, _| false,
            Owner::Group,
            &mut changed,
        );
        changed_keys(
            &self.ports,
            &ports,
            |_, p| vlan_changed(&p.vpc),
            Owner::Port,
            &mut changed,
        );
        changed_keys(
            &self.remotes,
            &remotes,
            |_, r| vlan_changed(&r.vpc),
            Owner::Remote,
            &mut changed,
        );
        let gw_vpc = state.gateway.as_ref().map(|g| &g.vpc);
        if state.gateway != self.gateway
            || state.metadata != self.metadata
            || gw_vpc.is_some_and(vlan_changed)
        {
            changed.push(Owner::Gateway);
        }
        self.vpcs = vpcs;
        self.groups = groups;
        self.ports = ports;
        self.remotes = remotes;
        self.gateway = state.gateway.clone();
        self.metadata = state.metadata;
        self.state = state.clone();
        let mut touched = Touched::default();
        for owner in changed {
            let items = self.emit(&owner);
            self.apply_owner(owner, items, want_diff.then_some(&mut touched));
        }
        Ok(self.finish(touched))
    }

    /// Replace (or add) one security group: the fast path for rule changes, which touches only
    /// that group's flows. The group must stay in its VPC; its rule ids must be unique.
    pub fn set_group(&mut self, group: SecurityGroup) -> Result<FlowDiff, CompileError> {
        if !self.vpcs.contains_key(&group.vpc_id) {
            return Err(CompileError::UnknownVpc {
                what: format!("security group {}", group.id),
                vpc: group.vpc_id,
            });
        }
        if let Some(old) = self.groups.get(&group.id)
            && old.vpc_id != group.vpc_id
        {
            return Err(CompileError::GroupMoved {
                group: group.id.clone(),
            });
        }
        let mut ids = HashSet::new();
        for r in &group.rules {
            if !ids.insert(&r.id) {
                return Err(CompileError::DuplicateRule { rule: r.id.clone() });
            }
            if let Protocol::Tcp(pr) | Protocol::Udp(pr) = r.protocol
                && pr.from > pr.to
            {
                return Err(CompileError::BadPortRange { rule: r.id.clone() });
            }
        }
        self.tags.assign_group(&group);
        match self
            .state
            .security_groups
            .iter_mut()
            .find(|g| g.id == group.id)
        {
            Some(g) => *g = group.clone(),
            None => self.state.security_groups.push(group.clone()),
        }
        let owner = Owner::Group(group.id.clone());
        self.groups.insert(group.id.clone(), group);
        let items = self.emit(&owner);
        let mut touched = Touched::default();
        self.apply_owner(owner, items, Some(&mut touched));
        Ok(self.finish(touched))
    }

    /// The items `owner` produces in the current state (none if it is gone).
    fn emit(&self, owner: &Owner) -> Vec<Item> {
        let mut e = Emitter::default();
        let vlan = |vpc: &VpcId| self.vpcs.get(vpc).map(|v| v.spec.vlan);
        match owner {
            Owner::Base => base_flows(&mut e),
            Owner::Vpc(id) => {
                if let Some(v) = self.vpcs.get(id) {
                    vpc_flows(&mut e, v);
                }
            }
            Owner::Gateway => {
                if let Some(gw) = &self.gateway
                    && let Some(v) = vlan(&gw.vpc)
                {
                    gateway_flows(&mut e, gw, v, self.metadata);
                }
            }
            Owner::Port(id) => {
                if let Some(p) = self.ports.get(id)
                    && let (Some(v), Some(tag)) = (vlan(&p.vpc), self.tags.iface(&p.eni))
                {
                    port_flows(&mut e, p, v, tag, &self.tags);
                }
            }
            Owner::Remote(id) => {
                if let Some(r) = self.remotes.get(id)
                    && let (Some(v), Some(tag)) = (vlan(&r.vpc), self.tags.iface(&r.eni))
                {
                    remote_flows(&mut e, r, v, tag, &self.tags);
                }
            }
            Owner::Group(id) => {
                if let Some(g) = self.groups.get(id) {
                    group_flows(&mut e, g, &self.tags);
                }
            }
        }
        e.items
    }

    /// Replace the items of `owner`, remembering the previous flow at every identity touched.
    fn apply_owner(&mut self, owner: Owner, new: Vec<Item>, mut touched: Option<&mut Touched>) {
        let old = self.items.remove(&owner).unwrap_or_default();
        if old == new {
            if !new.is_empty() {
                self.items.insert(owner, new);
            }
            return;
        }
        for item in &old {
            let key = item.key();
            let slot = self.slots.entry(key.clone()).or_default();
            let snap = touched
                .as_deref_mut()
                .map(|t| t.entry(key).or_insert_with(|| slot.snapshot()));
            match item {
                Item::Hard(_) => {
                    slot.hard.remove(&owner);
                }
                Item::Clause { conj, .. } => {
                    if let Some(n) = slot.clauses.get_mut(conj) {
                        *n -= 1;
                        if *n == 0 {
                            slot.clauses.remove(conj);
                            if let Some(snap) = snap {
                                snap.flipped.entry(*conj).or_insert(true);
                            }
                        }
                    }
                }
            }
        }
        for item in &new {
            let key = item.key();
            let slot = self.slots.entry(key.clone()).or_default();
            let snap = touched
                .as_deref_mut()
                .map(|t| t.entry(key).or_insert_with(|| slot.snapshot()));
            match item {
                Item::Hard(f) => {
                    slot.hard.insert(owner.clone(), f.clone());
                }
                Item::Clause { cookie, conj, .. } => {
                    if slot.clauses.is_empty() {
                        slot.clause_cookie = *cookie;
                    }
                    let n = slot.clauses.entry(*conj).or_insert(0);
                    *n += 1;
                    if *n == 1
                        && let Some(snap) = snap
                    {
                        snap.flipped.entry(*conj).or_insert(false);
                    }
                }
            }
        }
        if !new.is_empty() {
            self.items.insert(owner, new);
        }
    }

    /// The diff over the touched identities; drops emptied slots.
    fn finish(&mut self, touched: Touched) -> FlowDiff {
        let mut diff = FlowDiff::default();
        for (key, before) in touched {
            let Some(slot) = self.slots.get(&key) else {
                continue;
            };
            let changed = before.hard.as_ref() != slot.hard.values().next()
                || (!slot.clauses.is_empty() && before.cookie != slot.clause_cookie)
                || before
                    .flipped
                    .iter()
                    .any(|(c, was)| slot.clauses.contains_key(c) != *was);
            if !changed {
                if slot.is_empty() {
                    self.slots.remove(&key);
                }
                continue;
            }
            let was = !before.was_empty;
            let now = slot.effective(&key);
            match (was, now) {
                (false, Some(a)) => diff.add.push(a),
                (true, None) => {
                    self.slots.remove(&key);
                    let (table, priority, matches) = key;
                    let (cookie, actions) = match before.hard {
                        Some(f) => (f.cookie, f.actions),
                        None => (before.cookie, String::new()),
                    };
                    diff.delete.push(Flow {
                        table,
                        priority,
                        cookie,
                        matches,
                        actions,
                    });
                }
                (true, Some(a)) => {
                    let same = before
                        .hard
                        .as_ref()
                        .is_some_and(|b| b.actions == a.actions && b.cookie == a.cookie);
                    if !same {
                        diff.modify.push(a);
                    }
                }
                (false, None) => {
                    self.slots.remove(&key);
                }
            }
        }
        diff.add.sort();
        diff.modify.sort();
        diff.delete.sort();
        diff
    }
}

/// Push an owner for every key added, removed, or whose value changed (or `also` says so).
fn changed_keys<K: Ord + Clone, V: PartialEq>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    also: impl Fn(&K, &V) -> bool,
    owner: impl Fn(K) -> Owner,
    out: &mut Vec<Owner>,
) {
    for (k, v) in new {
        if old.get(k) != Some(v) || also(k, v) {
            out.push(owner(k.clone()));
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push(owner(k.clone()));
        }
    }
}

fn base_flows(b: &mut Emitter) {
    let c = cookie(CookieKind::Base, "");
    for t in TABLES {
        b.flow(t, 0, c, String::new(), "drop".into());
    }
    b.flow(
        T_IP_L3,
        500,
        c,
        "ip,nw_dst=224.0.0.0/3".into(),
        "drop".into(),
    );
    b.flow(
        T_IP_L3,
        440,
        c,
        "ip,nw_dst=169.254.0.0/16".into(),
        "drop".into(),
    );
    // Tunnel and gateway traffic may only reach local interfaces.
    let tun = FLAG_FROM_TUNNEL | FLAG_INGRESS_OK;
    let gw = FLAG_FROM_GATEWAY | FLAG_INGRESS_OK;
    b.flow(
        T_PRE_CT,
        110,
        c,
        format!("reg3={tun:#x}/{tun:#x}"),
        "drop".into(),
    );
    b.flow(
        T_PRE_CT,
        100,
        c,
        format!("reg3={gw:#x}/{gw:#x}"),
        "drop".into(),
    );
    b.flow(
        T_PRE_CT,
        50,
        c,
        "arp".into(),
        format!("goto_table:{T_OUTPUT}"),
    );
    b.flow(
        T_CT_STATE,
        300,
        c,
        "ct_state=+inv+trk".into(),
        "drop".into(),
    );
    b.flow(
        T_CT_STATE,
        200,
        c,
        "ct_state=+est+trk".into(),
        format!("goto_table:{T_OUTPUT}"),
    );
    b.flow(
        T_CT_STATE,
        190,
        c,
        "ct_state=+rel+trk".into(),
        format!("goto_table:{T_OUTPUT}"),
    );
    b.flow(
        T_CT_STATE,
        100,
        c,
        "ct_state=+new+trk".into(),
        format!("resubmit(,{T_EG_PEER}),resubmit(,{T_IN_PEER}),goto_table:{T_VERDICT}"),
    );
    // Interfaces without groups (and the gateway, the outside) are peers with no group.
    b.flow(
        T_EG_PEER,
        1,
        c,
        String::new(),
        format!("load:0->NXM_NX_REG5[],resubmit(,{T_EG_OWN})"),
    );
    b.flow(
        T_IN_PEER,
        1,
        c,
        String::new(),
        format!("load:0->NXM_NX_REG5[],resubmit(,{T_IN_OWN})"),
    );
}

fn vpc_flows(b: &mut Emitter, input: &VpcInput) {
    let vpc = &input.spec;
    let c = cookie(CookieKind::Vpc, vpc.id.as_str());
    let v = vpc.vlan;
    // ARP responder for subnet gateways (the VPC router), for requests from local ports.
    let remote_or_gw = FLAG_FROM_TUNNEL | FLAG_FROM_GATEWAY;
    for gw in &input.subnet_gateways {
        b.flow(
            T_ARP_L3,
            300,
            c,
            format!("arp,reg3=0/{remote_or_gw:#x},reg6={v},arp_op=1,arp_tpa={gw}"),
            format!(
                "move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:{router}->eth_src,\
                 set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],\
                 move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:{router}->arp_sha,\
                 set_field:{gw}->arp_spa,IN_PORT",
                router = mac_text(&ROUTER_MAC)
            ),
        );
    }
    for net in &vpc.cidrs {
        b.flow(
            T_IP_L3,
            200,
            c,
            format!("ip,reg6={v},nw_dst={}", cidr_text(net)),
            "drop".into(),
        );
    }
    b.flow(
        T_PRE_CT,
        50,
        c,
        format!("ip,reg6={v}"),
        format!("ct(table={T_CT_STATE},zone={})", vpc.zone()),
    );
    let ok = FLAG_EGRESS_OK | FLAG_INGRESS_OK;
    b.flow(
        T_VERDICT,
        100,
        c,
        format!("ip,reg3={ok:#x}/{ok:#x},reg6={v}"),
        format!("ct(commit,zone={}),goto_table:{T_OUTPUT}", vpc.zone()),
    );
}

fn gateway_flows(b: &mut Emitter, gw: &GatewayPort, vlan: u16, metadata: bool) {
    let c = cookie(CookieKind::Gateway, "gateway");
    let p = gw.ofport;
    let flags = FLAG_EGRESS_OK | FLAG_FROM_GATEWAY;
    let (src, arp_src) = match &gw.mac {
        Some(m) => (
            format!(",dl_src={}", mac_text(m)),
            format!(",dl_src={},arp_sha={}", mac_text(m), mac_text(m)),
        ),
        None => (String::new(), String::new()),
    };
    let load = format!("load:{vlan}->NXM_NX_REG6[],load:{flags:#x}->NXM_NX_REG3[]");
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!("ip,in_port={p},{NO_VLAN}{src}"),
        format!("{load},goto_table:{T_IP_L3}"),
    );
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!("arp,in_port={p},{NO_VLAN}{arp_src},arp_spa={}", gw.ip),
        format!("{load},goto_table:{T_ARP_L3}"),
    );
    let to_gw = format!("load:{GATEWAY_TAG:#x}->NXM_NX_REG1[],load:0x1->NXM_NX_REG3[1]");
    b.flow(
        T_IP_L3,
        300,
        c,
        format!("ip,reg6={vlan},nw_dst={}", gw.ip),
        format!("{to_gw},goto_table:{T_PRE_CT}"),
    );
    b.flow(
        T_IP_L3,
        100,
        c,
        format!("ip,reg6={vlan}"),
        format!("{to_gw},goto_table:{T_PRE_CT}"),
    );
    b.flow(
        T_ARP_L3,
        300,
        c,
        format!("arp,reg6={vlan},arp_tpa={}", gw.ip),
        format!("{to_gw},goto_table:{T_PRE_CT}"),
    );
    if metadata {
        b.flow(
            T_IP_L3,
            450,
            c,
            format!("tcp,reg6={vlan},nw_dst={METADATA_IP},tp_dst=80"),
            format!("load:{GATEWAY_TAG:#x}->NXM_NX_REG1[],load:0x3->NXM_NX_REG3[0..1],goto_table:{T_PRE_CT}"),
        );
    }
    let set_dst = gw
        .mac
        .map(|m| format!("mod_dl_dst:{},", mac_text(&m)))
        .unwrap_or_default();
    let nf = FLAG_FROM_GATEWAY;
    b.flow(
        T_OUTPUT,
        100,
        c,
        format!("reg1={GATEWAY_TAG:#x},reg3=0/{nf:#x}"),
        format!("{set_dst}output:{p}"),
    );
}

/// Loop flows: load each group of an interface into `reg` and resubmit to `next`.
fn loop_actions(groups: &[SecurityGroupId], tags: &Tags, reg: u8, next: u8) -> Option<String> {
    let mut seen = BTreeSet::new();
    let mut out = String::new();
    for g in groups {
        let Some(t) = tags.group(g) else { continue };
        if !seen.insert(t) {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "load:{t:#x}->NXM_NX_REG{reg}[],resubmit(,{next})");
    }
    (!out.is_empty()).then_some(out)
}

fn port_flows(b: &mut Emitter, p: &LocalPort, vlan: u16, tag: u32, tags: &Tags) {
    let c = cookie(CookieKind::Port, p.eni.as_str());
    let (o, mac, ip) = (p.ofport, mac_text(&p.mac), p.ip);
    let load = format!("load:{vlan}->NXM_NX_REG6[],load:{tag:#x}->NXM_NX_REG0[]");
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!("ip,in_port={o},{NO_VLAN},dl_src={mac},nw_src={ip}"),
        format!("{load},goto_table:{T_IP_L3}"),
    );
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!("arp,in_port={o},{NO_VLAN},dl_src={mac},arp_spa={ip},arp_sha={mac}"),
        format!("{load},goto_table:{T_ARP_L3}"),
    );
    let to = format!("load:{tag:#x}->NXM_NX_REG1[],goto_table:{T_PRE_CT}");
    b.flow(
        T_IP_L3,
        300,
        c,
        format!("ip,reg6={vlan},nw_dst={ip}"),
        to.clone(),
    );
    b.flow(
        T_ARP_L3,
        300,
        c,
        format!("arp,reg6={vlan},arp_tpa={ip}"),
        to,
    );
    b.flow(
        T_OUTPUT,
        100,
        c,
        format!("reg1={tag:#x}"),
        format!("mod_dl_dst:{mac},output:{o}"),
    );
    // As a destination for egress checks and a source for ingress checks (peer loops), and as
    // the protected interface (own loops).
    if let Some(a) = loop_actions(&p.groups, tags, 5, T_EG_OWN) {
        b.flow(T_EG_PEER, 100, c, format!("reg1={tag:#x}"), a);
    }
    if let Some(a) = loop_actions(&p.groups, tags, 5, T_IN_OWN) {
        b.flow(T_IN_PEER, 100, c, format!("reg0={tag:#x}"), a);
    }
    if let Some(a) = loop_actions(&p.groups, tags, 4, T_EG_CHECK) {
        b.flow(T_EG_OWN, 100, c, format!("reg0={tag:#x}"), a);
    }
    if let Some(a) = loop_actions(&p.groups, tags, 4, T_IN_CHECK) {
        b.flow(T_IN_OWN, 100, c, format!("reg1={tag:#x}"), a);
    }
}

fn remote_flows(b: &mut Emitter, r: &RemoteInterface, vlan: u16, tag: u32, tags: &Tags) {
    let c = cookie(CookieKind::Remote, r.eni.as_str());
    let (t, mac, ip) = (r.tunnel_ofport, mac_text(&r.mac), r.ip);
    let flags = FLAG_EGRESS_OK | FLAG_FROM_TUNNEL;
    let load = format!(
        "load:{vlan}->NXM_NX_REG6[],load:{tag:#x}->NXM_NX_REG0[],load:{flags:#x}->NXM_NX_REG3[]"
    );
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!("ip,in_port={t},tun_id={vlan:#x},{NO_VLAN},dl_src={mac},nw_src={ip}"),
        format!("{load},goto_table:{T_IP_L3}"),
    );
    b.flow(
        T_CLASSIFY,
        100,
        c,
        format!(
            "arp,in_port={t},tun_id={vlan:#x},{NO_VLAN},dl_src={mac},arp_spa={ip},arp_sha={mac}"
        ),
        format!("{load},goto_table:{T_ARP_L3}"),
    );
    // Ingress at a remote interface is its own node's business.
    let to = format!("load:{tag:#x}->NXM_NX_REG1[],load:0x1->NXM_NX_REG3[1],goto_table:{T_PRE_CT}");
    b.flow(
        T_IP_L3,
        300,
        c,
        format!("ip,reg6={vlan},nw_dst={ip}"),
        to.clone(),
    );
    b.flow(
        T_ARP_L3,
        300,
        c,
        format!("arp,reg6={vlan},arp_tpa={ip}"),
        to,
    );
    b.flow(
        T_OUTPUT,
        100,
        c,
        format!("reg1={tag:#x},reg3=0/{FLAG_FROM_TUNNEL:#x}"),
        format!("mod_dl_dst:{mac},set_field:{vlan:#x}->tun_id,output:{t}"),
    );
    if let Some(a) = loop_actions(&r.groups, tags, 5, T_EG_OWN) {
        b.flow(T_EG_PEER, 100, c, format!("reg1={tag:#x}"), a);
    }
    if let Some(a) = loop_actions(&r.groups, tags, 5, T_IN_OWN) {
        b.flow(T_IN_PEER, 100, c, format!("reg0={tag:#x}"), a);
    }
}

fn group_flows(b: &mut Emitter, g: &SecurityGroup, tags: &Tags) {
    let Some(gtag) = tags.group(&g.id) else {
        return;
    };
    let gc = cookie(CookieKind::Group, g.id.as_str());
    let own = format!("reg4={gtag:#x}");
    // At most one allow-all flow per direction (the smallest rule id names it), so that the
    // flow does not depend on rule order.
    let mut allow_all: [Option<&SecurityGroupRule>; 2] = [None, None];
    for r in &g.rules {
        let Some(id) = tags.conj(r) else { continue };
        let rc = cookie(CookieKind::Rule, r.id.as_str());
        let (table, bit, addr) = match r.direction {
            Direction::Egress => (T_EG_CHECK, 0u8, "nw_dst"),
            Direction::Ingress => (T_IN_CHECK, 1u8, "nw_src"),
        };
        let allow = format!("load:0x1->NXM_NX_REG3[{bit}]");
        let peer: Option<String> = match &r.peer {
            Peer::Cidr(net) if net.prefix() == 0 => None,
            Peer::Cidr(net) => Some(format!("ip,{addr}={}", cidr_text(net))),
            Peer::Group(h) => match tags.group(h) {
                Some(h) => Some(format!("reg5={h:#x}")),
                None => continue,
            },
        };
        let protos = protocol_matches(&r.protocol);
        let n = 1 + u8::from(peer.is_some()) + u8::from(!protos.is_empty());
        if n == 1 {
            // All protocols, everywhere: no conjunction; the group's membership decides.
            let best = &mut allow_all[usize::from(bit)];
            if best.is_none_or(|b| r.id < b.id) {
                *best = Some(r);
            }
            continue;
        }
        b.flow(table, PRIO_CONJ_ID, rc, format!("conj_id={id}"), allow);
        b.clause(table, gc, own.clone(), (id, 1, n));
        let mut k = 2;
        if let Some(m) = peer {
            let c = cookie(CookieKind::SharedClause, &m);
            b.clause(table, c, m, (id, k, n));
            k += 1;
        }
        for m in protos {
            let c = cookie(CookieKind::SharedClause, &m);
            b.clause(table, c, m, (id, k, n));
        }
    }
    for (bit, rule) in allow_all.iter().enumerate() {
        if let Some(r) = rule {
            let table = if bit == 0 { T_EG_CHECK } else { T_IN_CHECK };
            b.flow(
                table,
                PRIO_ALLOW_ALL,
                cookie(CookieKind::Rule, r.id.as_str()),
                own.clone(),
                format!("load:0x1->NXM_NX_REG3[{bit}]"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_masks_cover_exactly() {
        for (from, to) in [
            (0u16, 0u16),
            (80, 80),
            (1000, 2000),
            (0, 65535),
            (1, 65534),
            (65535, 65535),
        ] {
            let masks = port_masks(from, to);
            let mut covered = 0u32;
            for p in 0..=65535u16 {
                let hit = masks.iter().filter(|(v, m)| p & m == *v).count();
                assert!(hit <= 1, "overlap at {p}");
                if hit == 1 {
                    covered += 1;
                    assert!(p >= from && p <= to);
                }
            }
            assert_eq!(covered, u32::from(to - from) + 1);
        }
    }

    #[test]
    fn tags_are_stable_and_distinct() {
        let mut a = TagSpace::with_reserved(&[0, 1]);
        a.assign(["x", "y", "z"].into_iter());
        let mut b = TagSpace::with_reserved(&[0, 1]);
        b.assign(["z", "y", "x", "w"].into_iter());
        assert_eq!(a.get("x"), b.get("x"));
        let vals: HashSet<u32> = b.by_id.values().copied().collect();
        assert_eq!(vals.len(), 4);
        // A forced collision probes to another tag.
        let mut c = TagSpace::with_reserved(&[0]);
        c.assign(std::iter::once("x"));
        let x = c.get("x").expect("assigned");
        let mut d = TagSpace::with_reserved(&[0, x]);
        d.assign(std::iter::once("x"));
        assert_ne!(d.get("x"), Some(x));
    }
}
