//! The reference decision function: what AWS would do with one packet, written straight from
//! the semantics (security groups, port security, VPC isolation), independently of the flow
//! compiler. The compiled program, run by [`crate::interp`] or by a real switch, must decide
//! exactly as [`decide`] does; `hive-cli vpc trace` uses it to explain decisions.
//!
//! The model, in order:
//! 1. **Source.** A bound local port may send untagged IPv4 from its own MAC and IP, or ARP with
//!    its own MAC as `sha` and its IP as `spa`. The gateway port may send untagged IPv4 from any
//!    address (from its MAC if known) and ARP for its own address. A tunnel port delivers only
//!    the remote interfaces behind it, with their VPC's key, MAC and IP. Anything else drops.
//! 2. **Destination** inside the source's VPC: multicast/broadcast (`224.0.0.0/3`) drops;
//!    `169.254.169.254:80/tcp` goes to the gateway when metadata is on and the VPC is the
//!    gateway's, and the rest of link-local drops; the owner of the address (local or remote
//!    interface, or the gateway's own address); otherwise an address inside the VPC's CIDRs
//!    drops, and any other goes to the gateway when the VPC has one. ARP goes to the owner of
//!    the target address; an ARP request from a local interface for a subnet gateway (other than
//!    the gateway port's own address) is answered by the VPC router ([`crate::compile::ROUTER_MAC`]).
//!    Tunnel and gateway traffic reaches local interfaces only.
//! 3. **Connection state.** Invalid drops; established and related pass (even if the rule that
//!    allowed the connection is gone: AWS keeps tracked connections); new connections need an
//!    egress rule of one of the sender's groups (when the sender is a local interface) and an
//!    ingress rule of one of the receiver's groups (when the receiver is a local interface),
//!    then are committed to the VPC's conntrack zone. Metadata traffic needs no rule.
//! 4. **Delivery.** Nothing is sent back out of the port it came in on.

use std::net::Ipv4Addr;

use crate::compile::{METADATA_IP, NodeState};
use crate::model::{
    Direction, MacAddr, NetworkInterfaceId, Peer, Protocol, SecurityGroupId, SecurityGroupRuleId,
    VpcId,
};

/// Conntrack state of a packet, as `ofproto/trace --ct-next` would feed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    /// First packet of a connection.
    New,
    /// Packet of a tracked connection (either direction).
    Established,
    /// Packet related to a tracked connection (e.g. an ICMP error).
    Related,
    /// Packet conntrack could not make sense of.
    Invalid,
}

impl CtState {
    /// The `--ct-next` flags for this state.
    pub fn trace_flags(self) -> &'static str {
        match self {
            CtState::New => "trk,new",
            CtState::Established => "trk,est",
            CtState::Related => "trk,rel",
            CtState::Invalid => "trk,inv",
        }
    }
}

/// The transport part of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// UDP.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
    },
    /// Another IP protocol (not 1, 6 or 17).
    Other(u8),
}

impl Transport {
    /// The IP protocol number.
    pub fn proto(&self) -> u8 {
        match self {
            Transport::Tcp { .. } => 6,
            Transport::Udp { .. } => 17,
            Transport::Icmp { .. } => 1,
            Transport::Other(n) => *n,
        }
    }
}

/// The layer-3 part of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3 {
    /// IPv4.
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// Transport.
        transport: Transport,
        /// Conntrack state.
        ct: CtState,
    },
    /// ARP.
    Arp {
        /// Operation (1 request, 2 reply).
        op: u16,
        /// Sender hardware address.
        sha: MacAddr,
        /// Sender protocol address.
        spa: Ipv4Addr,
        /// Target hardware address.
        tha: MacAddr,
        /// Target protocol address.
        tpa: Ipv4Addr,
    },
    /// Any other ethertype (IPv6 included).
    Other {
        /// The ethertype.
        ethertype: u16,
    },
}

/// A packet arriving at the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    /// OpenFlow port it arrives on.
    pub in_port: u32,
    /// Tunnel key, for packets arriving over a tunnel.
    pub tun_id: Option<u64>,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// 802.1Q VLAN id, if the frame is tagged.
    pub vlan: Option<u16>,
    /// Layer 3.
    pub l3: L3,
}

impl Packet {
    /// The packet in `ovs-appctl ofproto/trace` syntax, to ask the switch the same question
    /// the reference model answers.
    pub fn trace_flow(&self) -> String {
        let mut s = format!(
            "in_port={},dl_src={},dl_dst={}",
            self.in_port, self.eth_src, self.eth_dst
        );
        if let Some(t) = self.tun_id {
            s.push_str(&format!(",tun_id={t:#x}"));
        }
        if let Some(v) = self.vlan {
            s.push_str(&format!(",dl_vlan={v}"));
        }
        match self.l3 {
            L3::Ipv4 {
                src,
                dst,
                transport,
                ..
            } => {
                let ip = format!("nw_src={src},nw_dst={dst},nw_ttl=64");
                match transport {
                    Transport::Tcp { src, dst } => {
                        s.push_str(&format!(",tcp,{ip},tcp_src={src},tcp_dst={dst}"))
                    }
                    Transport::Udp { src, dst } => {
                        s.push_str(&format!(",udp,{ip},udp_src={src},udp_dst={dst}"))
                    }
                    Transport::Icmp { icmp_type, code } => s.push_str(&format!(
                        ",icmp,{ip},icmp_type={icmp_type},icmp_code={code}"
                    )),
                    Transport::Other(n) => s.push_str(&format!(",ip,{ip},nw_proto={n}")),
                }
            }
            L3::Arp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                s.push_str(&format!(
                    ",arp,arp_op={op},arp_sha={sha},arp_spa={spa},arp_tha={tha},arp_tpa={tpa}"
                ));
            }
            L3::Other { ethertype } => s.push_str(&format!(",dl_type={ethertype:#06x}")),
        }
        s
    }
}

/// Where an allowed packet leaves the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Output {
    /// OpenFlow port.
    pub port: u32,
    /// Tunnel key set on the way out (remote interfaces).
    pub tun_id: Option<u64>,
    /// Ethernet destination on the way out.
    pub eth_dst: MacAddr,
}

/// Why a packet was allowed or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Allowed: a new connection, by these rules (egress rule of the sender, ingress rule of
    /// the receiver; `None` where that side is not checked on this node).
    NewConnection {
        /// The egress rule that allowed it.
        egress: Option<(SecurityGroupId, SecurityGroupRuleId)>,
        /// The ingress rule that allowed it.
        ingress: Option<(SecurityGroupId, SecurityGroupRuleId)>,
    },
    /// Allowed: part of a tracked connection.
    Tracked,
    /// Allowed: ARP inside the VPC.
    Arp,
    /// Answered: an ARP request for a subnet gateway, answered by the VPC router.
    ArpReply,
    /// Allowed: instance metadata.
    Metadata,
    /// Dropped: the in_port is not bound, or the frame is tagged, or not IPv4/ARP.
    UnboundOrMalformed,
    /// Dropped: source MAC or IP (or ARP sender) is not the port's own.
    Spoofed,
    /// Dropped: no destination in the VPC for this address.
    NoRoute,
    /// Dropped: the destination may not be reached from where the packet came from.
    NotDeliverable,
    /// Dropped: conntrack says invalid.
    Invalid,
    /// Dropped: no egress rule of the sender allows it.
    EgressDenied,
    /// Dropped: no ingress rule of the receiver allows it.
    IngressDenied,
}

/// The reference decision for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Where it goes; `None` when dropped.
    pub output: Option<Output>,
    /// The conntrack zone a new connection is committed to.
    pub commit_zone: Option<u16>,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    fn drop(reason: Reason) -> Self {
        Decision {
            output: None,
            commit_zone: None,
            reason,
        }
    }

    /// Whether the packet is delivered.
    pub fn allowed(&self) -> bool {
        self.output.is_some()
    }
}

/// Who is at one end of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End<'a> {
    Local(&'a crate::compile::LocalPort),
    Remote(&'a crate::compile::RemoteInterface),
    Gateway,
}

struct Iface<'a> {
    eni: &'a NetworkInterfaceId,
    vpc: &'a VpcId,
    ip: Ipv4Addr,
    mac: MacAddr,
    groups: &'a [SecurityGroupId],
}

fn iface<'a>(e: End<'a>) -> Option<Iface<'a>> {
    match e {
        End::Local(p) => Some(Iface {
            eni: &p.eni,
            vpc: &p.vpc,
            ip: p.ip,
            mac: p.mac,
            groups: &p.groups,
        }),
        End::Remote(r) => Some(Iface {
            eni: &r.eni,
            vpc: &r.vpc,
            ip: r.ip,
            mac: r.mac,
            groups: &r.groups,
        }),
        End::Gateway => None,
    }
}

/// Does `proto` of a rule cover this transport?
fn protocol_covers(proto: &Protocol, t: &Transport) -> bool {
    match (proto, t) {
        (Protocol::All, _) => true,
        (Protocol::Tcp(r), Transport::Tcp { dst, .. })
        | (Protocol::Udp(r), Transport::Udp { dst, .. }) => r.from <= *dst && *dst <= r.to,
        (
            Protocol::Icmp { icmp_type, code },
            Transport::Icmp {
                icmp_type: t,
                code: c,
            },
        ) => match icmp_type {
            None => true,
            Some(want) => want == t && code.is_none_or(|cw| cw == *c),
        },
        (Protocol::Number(n), t) => *n == t.proto(),
        _ => false,
    }
}

/// The first rule (in group order, then rule order) of `own` groups in `direction` that allows
/// traffic with `peer_ip` at the other end, which is interface `peer` (if any).
fn find_rule(
    state: &NodeState,
    own: &[SecurityGroupId],
    direction: Direction,
    peer_ip: Ipv4Addr,
    peer: Option<&Iface<'_>>,
    t: &Transport,
) -> Option<(SecurityGroupId, SecurityGroupRuleId)> {
    for gid in own {
        let Some(group) = state.security_groups.iter().find(|g| &g.id == gid) else {
            continue;
        };
        for rule in &group.rules {
            if rule.direction != direction || !protocol_covers(&rule.protocol, t) {
                continue;
            }
            let peer_ok = match &rule.peer {
                Peer::Cidr(net) => net.contains(peer_ip),
                // Members of a group: interfaces of the group's VPC that list it.
                Peer::Group(h) => peer.is_some_and(|p| {
                    p.groups.contains(h)
                        && state
                            .security_groups
                            .iter()
                            .any(|g| &g.id == h && &g.vpc_id == p.vpc)
                }),
            };
            if peer_ok {
                return Some((gid.clone(), rule.id.clone()));
            }
        }
    }
    None
}

/// Decide what happens to `packet` on a node in `state`.
pub fn decide(state: &NodeState, packet: &Packet) -> Decision {
    // 1. Source.
    if packet.vlan.is_some() {
        return Decision::drop(Reason::UnboundOrMalformed);
    }
    let (src_ip, arp) = match packet.l3 {
        L3::Ipv4 { src, .. } => (src, None),
        L3::Arp { sha, spa, tpa, .. } => (spa, Some((sha, tpa))),
        L3::Other { .. } => return Decision::drop(Reason::UnboundOrMalformed),
    };
    let source: End<'_>;
    let vpc: &VpcId;
    if let Some(p) = state.ports.iter().find(|p| p.ofport == packet.in_port) {
        if packet.eth_src != p.mac || src_ip != p.ip || arp.is_some_and(|(sha, _)| sha != p.mac) {
            return Decision::drop(Reason::Spoofed);
        }
        source = End::Local(p);
        vpc = &p.vpc;
    } else if let Some(gw) = state
        .gateway
        .as_ref()
        .filter(|g| g.ofport == packet.in_port)
    {
        if gw.mac.is_some_and(|m| m != packet.eth_src) {
            return Decision::drop(Reason::Spoofed);
        }
        if let Some((sha, _)) = arp
            && (src_ip != gw.ip || gw.mac.is_some_and(|m| m != sha))
        {
            return Decision::drop(Reason::Spoofed);
        }
        source = End::Gateway;
        vpc = &gw.vpc;
    } else if state
        .remotes
        .iter()
        .any(|r| r.tunnel_ofport == packet.in_port)
    {
        let found = state.remotes.iter().find(|r| {
            r.tunnel_ofport == packet.in_port
                && state
                    .vpcs
                    .iter()
                    .any(|v| v.id == r.vpc && Some(u64::from(v.vlan)) == packet.tun_id)
                && r.mac == packet.eth_src
                && r.ip == src_ip
                && arp.is_none_or(|(sha, _)| sha == r.mac)
        });
        match found {
            Some(r) => {
                source = End::Remote(r);
                vpc = &r.vpc;
            }
            None => return Decision::drop(Reason::Spoofed),
        }
    } else {
        return Decision::drop(Reason::UnboundOrMalformed);
    }
    let Some(vpc_spec) = state.vpcs.iter().find(|v| &v.id == vpc) else {
        return Decision::drop(Reason::UnboundOrMalformed);
    };
    let gateway = state.gateway.as_ref().filter(|g| &g.vpc == vpc);

    // 2. Destination.
    let owner = |ip: Ipv4Addr| -> Option<End<'_>> {
        if let Some(p) = state.ports.iter().find(|p| &p.vpc == vpc && p.ip == ip) {
            return Some(End::Local(p));
        }
        if let Some(r) = state.remotes.iter().find(|r| &r.vpc == vpc && r.ip == ip) {
            return Some(End::Remote(r));
        }
        gateway.filter(|g| g.ip == ip).map(|_| End::Gateway)
    };
    let mut metadata = false;
    let dest = match packet.l3 {
        L3::Arp { op, tpa, .. } => {
            let router = state
                .subnets
                .iter()
                .any(|s| &s.vpc == vpc && s.gateway == tpa && gateway.is_none_or(|g| g.ip != tpa));
            if router && op == 1 && matches!(source, End::Local(_)) && owner(tpa).is_none() {
                // The VPC router answers, back out of the asking port.
                let output = Output {
                    port: packet.in_port,
                    tun_id: None,
                    eth_dst: packet.eth_src,
                };
                return Decision {
                    output: Some(output),
                    commit_zone: None,
                    reason: Reason::ArpReply,
                };
            }
            owner(tpa)
        }
        L3::Ipv4 { dst, transport, .. } => {
            if dst.octets()[0] >= 224 {
                None
            } else if dst == METADATA_IP
                && state.metadata
                && gateway.is_some()
                && matches!(transport, Transport::Tcp { dst: 80, .. })
            {
                metadata = true;
                Some(End::Gateway)
            } else if dst.is_link_local() {
                None
            } else if let Some(e) = owner(dst) {
                Some(e)
            } else if vpc_spec.cidrs.iter().any(|c| c.contains(dst)) {
                None
            } else {
                gateway.map(|_| End::Gateway)
            }
        }
        L3::Other { .. } => None,
    };
    let Some(dest) = dest else {
        return Decision::drop(Reason::NoRoute);
    };
    if !matches!(source, End::Local(_)) && !matches!(dest, End::Local(_)) {
        return Decision::drop(Reason::NotDeliverable);
    }
    let output = match dest {
        End::Local(p) => Output {
            port: p.ofport,
            tun_id: None,
            eth_dst: p.mac,
        },
        End::Remote(r) => Output {
            port: r.tunnel_ofport,
            tun_id: Some(u64::from(vpc_spec.vlan)),
            eth_dst: r.mac,
        },
        End::Gateway => {
            let Some(gw) = gateway else {
                return Decision::drop(Reason::NoRoute);
            };
            Output {
                port: gw.ofport,
                tun_id: None,
                eth_dst: gw.mac.unwrap_or(packet.eth_dst),
            }
        }
    };
    // A switch never sends a packet back where it came from.
    let deliver = |d: Decision| {
        if d.output.is_some_and(|o| o.port == packet.in_port) {
            Decision::drop(Reason::NotDeliverable)
        } else {
            d
        }
    };
    let L3::Ipv4 {
        dst, transport, ct, ..
    } = packet.l3
    else {
        return deliver(Decision {
            output: Some(output),
            commit_zone: None,
            reason: Reason::Arp,
        });
    };

    // 3. Connection state.
    let zone = vpc_spec.vlan;
    match ct {
        CtState::Invalid => return Decision::drop(Reason::Invalid),
        CtState::Established | CtState::Related => {
            return deliver(Decision {
                output: Some(output),
                commit_zone: None,
                reason: Reason::Tracked,
            });
        }
        CtState::New => {}
    }
    if metadata {
        return deliver(Decision {
            output: Some(output),
            commit_zone: Some(zone),
            reason: Reason::Metadata,
        });
    }
    let src_iface = iface(source);
    let dst_iface = iface(dest);
    let egress = match source {
        End::Local(p) => match find_rule(
            state,
            &p.groups,
            Direction::Egress,
            dst,
            dst_iface.as_ref(),
            &transport,
        ) {
            Some(r) => Some(r),
            None => return Decision::drop(Reason::EgressDenied),
        },
        _ => None,
    };
    let ingress = match dest {
        End::Local(p) => match find_rule(
            state,
            &p.groups,
            Direction::Ingress,
            src_ip,
            src_iface.as_ref(),
            &transport,
        ) {
            Some(r) => Some(r),
            None => return Decision::drop(Reason::IngressDenied),
        },
        _ => None,
    };
    let _ = src_iface.map(|i| (i.eni, i.mac, i.ip));
    deliver(Decision {
        output: Some(output),
        commit_zone: Some(zone),
        reason: Reason::NewConnection { egress, ingress },
    })
}
