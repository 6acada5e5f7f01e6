//! Shared helpers for the compiler tests: a realistic layout, packet builders, and the check
//! that the interpreter running the compiled program decides as the reference does.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use hive_vpc::compile::{GatewayPort, LocalPort, NodeState, RemoteInterface, SubnetSpec, VpcSpec};
use hive_vpc::flow::FlowProgram;
use hive_vpc::interp::Interpreter;
use hive_vpc::model::{
    Direction, MacAddr, NetworkInterfaceId, Peer, PortRange, Protocol, SecurityGroup,
    SecurityGroupId, SecurityGroupRule, SecurityGroupRuleId, SubnetId, VpcId,
};
use hive_vpc::reference::{CtState, Decision, L3, Packet, Transport, decide};

pub fn mac(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0x42, b[0], b[1], b[2], b[3]])
}

pub fn vpc_id(n: u32) -> VpcId {
    VpcId::new_unchecked(format!("vpc-{n:017x}"))
}
pub fn subnet_id(n: u32) -> SubnetId {
    SubnetId::new_unchecked(format!("subnet-{n:017x}"))
}
pub fn sg(n: u32) -> SecurityGroupId {
    SecurityGroupId::new_unchecked(format!("sg-{n:017x}"))
}
pub fn eni(n: u32) -> NetworkInterfaceId {
    NetworkInterfaceId::new_unchecked(format!("eni-{n:017x}"))
}
pub fn sgr(n: u32) -> SecurityGroupRuleId {
    SecurityGroupRuleId::new_unchecked(format!("sgr-{n:017x}"))
}

pub fn rule(id: u32, direction: Direction, protocol: Protocol, peer: Peer) -> SecurityGroupRule {
    SecurityGroupRule {
        id: sgr(id),
        direction,
        protocol,
        peer,
        description: None,
    }
}

pub fn tcp_ports(from: u16, to: u16) -> Protocol {
    Protocol::Tcp(PortRange { from, to })
}

pub fn cidr(s: &str) -> Peer {
    Peer::Cidr(s.parse().expect("test CIDR"))
}

pub fn group(id: u32, vpc: u32, rules: Vec<SecurityGroupRule>) -> SecurityGroup {
    SecurityGroup {
        id: sg(id),
        vpc_id: vpc_id(vpc),
        name: format!("g{id}"),
        description: String::new(),
        rules,
        tags: Vec::new(),
    }
}

pub const GW_PORT: u32 = 100;
pub const TUNNEL_PORT: u32 = 50;

/// The realistic layout: VPC 1 (VLAN 1, 10.0.0.0/16, gateway 10.0.1.1 on port 100) with groups
/// web(1), admin(2), db(3); VPC 2 (VLAN 7, 10.5.0.0/16) with group 4 (AWS default-like);
/// ports 1 web, 2 admin, 3 db+web, 4 and 5 in VPC 2, 6 with no group; a remote web member
/// 10.0.1.20 behind tunnel port 50.
pub fn layout() -> NodeState {
    use Direction::*;
    let vpcs = vec![
        VpcSpec {
            id: vpc_id(1),
            vlan: 1,
            cidrs: vec!["10.0.0.0/16".parse().expect("cidr")],
        },
        VpcSpec {
            id: vpc_id(2),
            vlan: 7,
            cidrs: vec!["10.5.0.0/16".parse().expect("cidr")],
        },
    ];
    let subnets = vec![
        SubnetSpec {
            id: subnet_id(1),
            vpc: vpc_id(1),
            cidr: "10.0.1.0/24".parse().expect("cidr"),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
        },
        SubnetSpec {
            id: subnet_id(2),
            vpc: vpc_id(1),
            cidr: "10.0.2.0/24".parse().expect("cidr"),
            gateway: Ipv4Addr::new(10, 0, 2, 1),
        },
        SubnetSpec {
            id: subnet_id(3),
            vpc: vpc_id(2),
            cidr: "10.5.1.0/24".parse().expect("cidr"),
            gateway: Ipv4Addr::new(10, 5, 1, 1),
        },
    ];
    let groups = vec![
        group(
            1,
            1,
            vec![
                rule(1, Ingress, tcp_ports(80, 80), cidr("0.0.0.0/0")),
                rule(2, Ingress, tcp_ports(22, 22), Peer::Group(sg(2))),
                rule(3, Egress, Protocol::All, cidr("0.0.0.0/0")),
            ],
        ),
        group(
            2,
            1,
            vec![rule(4, Egress, Protocol::All, cidr("0.0.0.0/0"))],
        ),
        group(
            3,
            1,
            vec![
                rule(5, Ingress, tcp_ports(5432, 5432), Peer::Group(sg(1))),
                rule(
                    6,
                    Ingress,
                    Protocol::Icmp {
                        icmp_type: Some(8),
                        code: None,
                    },
                    cidr("10.0.0.0/16"),
                ),
                rule(
                    7,
                    Egress,
                    Protocol::Udp(PortRange { from: 53, to: 53 }),
                    cidr("10.0.1.0/24"),
                ),
            ],
        ),
        group(
            4,
            2,
            vec![
                rule(8, Ingress, Protocol::All, Peer::Group(sg(4))),
                rule(9, Egress, Protocol::All, cidr("0.0.0.0/0")),
            ],
        ),
    ];
    let port = |n: u32, ip: [u8; 4], vpc: u32, subnet: u32, groups: Vec<u32>| LocalPort {
        ofport: n,
        eni: eni(n),
        mac: mac(n),
        ip: Ipv4Addr::from(ip),
        vpc: vpc_id(vpc),
        subnet: subnet_id(subnet),
        groups: groups.into_iter().map(sg).collect(),
    };
    NodeState {
        vpcs,
        subnets,
        security_groups: groups,
        ports: vec![
            port(1, [10, 0, 1, 10], 1, 1, vec![1]),
            port(2, [10, 0, 1, 11], 1, 1, vec![2]),
            port(3, [10, 0, 2, 12], 1, 2, vec![3, 1]),
            port(4, [10, 5, 1, 10], 2, 3, vec![4]),
            port(5, [10, 5, 1, 11], 2, 3, vec![4]),
            port(6, [10, 0, 1, 13], 1, 1, vec![]),
        ],
        remotes: vec![RemoteInterface {
            eni: eni(20),
            mac: mac(20),
            ip: Ipv4Addr::new(10, 0, 1, 20),
            vpc: vpc_id(1),
            groups: vec![sg(1)],
            tunnel_ofport: TUNNEL_PORT,
        }],
        gateway: Some(GatewayPort {
            ofport: GW_PORT,
            vpc: vpc_id(1),
            ip: Ipv4Addr::new(10, 0, 1, 1),
            mac: Some(mac(100)),
        }),
        metadata: true,
    }
}

/// An IPv4 packet from local port `from` (its own MAC and IP) to `dst`.
pub fn ip_from(
    state: &NodeState,
    from: u32,
    dst: Ipv4Addr,
    transport: Transport,
    ct: CtState,
) -> Packet {
    let p = state
        .ports
        .iter()
        .find(|p| p.ofport == from)
        .expect("port in layout");
    Packet {
        in_port: from,
        tun_id: None,
        eth_src: p.mac,
        eth_dst: MacAddr([0xff; 6]),
        vlan: None,
        l3: L3::Ipv4 {
            src: p.ip,
            dst,
            transport,
            ct,
        },
    }
}

pub fn tcp(dst: u16) -> Transport {
    Transport::Tcp { src: 40000, dst }
}

/// Compile, interpret and compare with the reference; returns the reference decision.
pub fn agree_with(program: &FlowProgram, state: &NodeState, packet: &Packet) -> Decision {
    let interp = Interpreter::new(program).expect("the compiled program parses");
    agree_interp(&interp, state, packet)
}

pub fn agree_interp(interp: &Interpreter, state: &NodeState, packet: &Packet) -> Decision {
    let expected = decide(state, packet);
    let got = interp
        .run(packet)
        .unwrap_or_else(|e| panic!("interpreter failed on {packet:?}: {e}"));
    let got_out = match got.outputs.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => panic!("several outputs {many:?} for {packet:?}"),
    };
    assert_eq!(
        got_out, expected.output,
        "output differs for {packet:?}\nreference: {expected:?}\nsteps: {:?}",
        got.steps
    );
    if expected.allowed() {
        assert_eq!(
            got.commit_zone, expected.commit_zone,
            "commit differs for {packet:?}"
        );
    }
    if let (Some(c), Some(z)) = (got.commit_zone, got.ct_zone) {
        assert_eq!(c, z, "committed to a zone other than the one looked up");
    }
    expected
}
