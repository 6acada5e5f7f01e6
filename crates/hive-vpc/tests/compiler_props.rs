//! The proof: for random VPCs, groups, rules, ports, remote interfaces and packets, the compiled
//! program run by the interpreter decides exactly as the reference model of AWS semantics
//! (same output port, tunnel key, destination MAC and conntrack commit), in both directions,
//! new and established, across VPCs (with overlapping CIDRs), for spoofed MACs and addresses,
//! ARP spoofing, the gateway, tunnels and the metadata address. And the diff properties:
//! recompiling is a no-op, one rule touches O(1) flows.

mod compiler_common;

use std::net::Ipv4Addr;

use compiler_common::*;
use hive_vpc::compile::{
    Compiler, GatewayPort, LocalPort, NodeState, RemoteInterface, SubnetSpec, VpcSpec, compile,
};
use hive_vpc::interp::Interpreter;
use hive_vpc::model::{Direction, MacAddr, Peer, PortRange, Protocol, SecurityGroupRule};
use hive_vpc::reference::{CtState, L3, Packet, Transport};
use proptest::prelude::*;

const VPC_CIDRS: [&str; 2] = ["10.0.0.0/16", "10.1.0.0/16"];

#[derive(Debug, Clone)]
struct RuleSeed {
    egress: bool,
    proto: u8,
    a: u16,
    b: u16,
    peer: u8,
    peer_idx: u8,
}

#[derive(Debug, Clone)]
struct StateSeed {
    vpc_cidr: Vec<u8>,
    groups: Vec<(u8, Vec<RuleSeed>)>,
    ports: Vec<(u8, Vec<u8>)>,
    remotes: Vec<(u8, Vec<u8>, bool)>,
    gateway: Option<bool>,
    metadata: bool,
}

fn rule_seed() -> impl Strategy<Value = RuleSeed> {
    (
        any::<bool>(),
        0u8..10,
        20u16..30,
        0u16..6,
        0u8..9,
        any::<u8>(),
    )
        .prop_map(|(egress, proto, a, b, peer, peer_idx)| RuleSeed {
            egress,
            proto,
            a,
            b,
            peer,
            peer_idx,
        })
}

fn state_seed() -> impl Strategy<Value = StateSeed> {
    (
        prop::collection::vec(0u8..2, 1..=3),
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(rule_seed(), 0..7)),
            1..6,
        ),
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..4)),
            1..7,
        ),
        prop::collection::vec(
            (
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 0..3),
                any::<bool>(),
            ),
            0..3,
        ),
        prop::option::weighted(0.8, any::<bool>()),
        prop::bool::weighted(0.7),
    )
        .prop_map(
            |(vpc_cidr, groups, ports, remotes, gateway, metadata)| StateSeed {
                vpc_cidr,
                groups,
                ports,
                remotes,
                gateway,
                metadata,
            },
        )
}

fn net_of(vpc: usize, cidrs: &[u8]) -> [u8; 2] {
    if cidrs[vpc] == 0 { [10, 0] } else { [10, 1] }
}

fn build(seed: &StateSeed) -> NodeState {
    let nv = seed.vpc_cidr.len();
    let vpcs: Vec<VpcSpec> = (0..nv)
        .map(|i| VpcSpec {
            id: vpc_id(i as u32),
            vlan: [1, 7, 4094][i],
            cidrs: vec![VPC_CIDRS[seed.vpc_cidr[i] as usize].parse().expect("cidr")],
        })
        .collect();
    let subnets: Vec<SubnetSpec> = (0..nv)
        .map(|i| {
            let [a, b] = net_of(i, &seed.vpc_cidr);
            SubnetSpec {
                id: subnet_id(i as u32),
                vpc: vpc_id(i as u32),
                cidr: format!("{a}.{b}.1.0/24").parse().expect("cidr"),
                gateway: Ipv4Addr::new(a, b, 1, 1),
            }
        })
        .collect();
    let group_vpc: Vec<usize> = seed.groups.iter().map(|(v, _)| *v as usize % nv).collect();
    let groups_of = |vpc: usize| -> Vec<u32> {
        (0..group_vpc.len())
            .filter(|g| group_vpc[*g] == vpc)
            .map(|g| g as u32)
            .collect()
    };
    let port_ip = |vpc: usize, i: usize| {
        let [a, b] = net_of(vpc, &seed.vpc_cidr);
        Ipv4Addr::new(a, b, 1, 10 + i as u8)
    };
    let pick_groups = |vpc: usize, picks: &[u8]| {
        let gs = groups_of(vpc);
        let mut out = Vec::new();
        if !gs.is_empty() {
            for p in picks {
                let g = sg(gs[*p as usize % gs.len()]);
                if !out.contains(&g) {
                    out.push(g);
                }
            }
        }
        out
    };
    let ports: Vec<LocalPort> = seed
        .ports
        .iter()
        .enumerate()
        .map(|(i, (v, picks))| {
            let vpc = *v as usize % nv;
            // Numbered per VPC, so VPCs with the same CIDR reuse addresses.
            let k = seed.ports[..i]
                .iter()
                .filter(|(w, _)| *w as usize % nv == vpc)
                .count();
            LocalPort {
                ofport: i as u32 + 1,
                eni: eni(i as u32 + 1),
                mac: mac(i as u32 + 1),
                ip: port_ip(vpc, k),
                vpc: vpc_id(vpc as u32),
                subnet: subnet_id(vpc as u32),
                groups: pick_groups(vpc, picks),
            }
        })
        .collect();
    let remotes: Vec<RemoteInterface> = seed
        .remotes
        .iter()
        .enumerate()
        .map(|(i, (v, picks, second))| {
            let vpc = *v as usize % nv;
            let k = seed.remotes[..i]
                .iter()
                .filter(|(w, _, _)| *w as usize % nv == vpc)
                .count();
            RemoteInterface {
                eni: eni(100 + i as u32),
                mac: mac(100 + i as u32),
                ip: port_ip(vpc, 100 + k),
                vpc: vpc_id(vpc as u32),
                groups: pick_groups(vpc, picks),
                tunnel_ofport: if *second { 51 } else { 50 },
            }
        })
        .collect();
    let all_ips: Vec<Ipv4Addr> = ports
        .iter()
        .map(|p| p.ip)
        .chain(remotes.iter().map(|r| r.ip))
        .collect();
    let security_groups = seed
        .groups
        .iter()
        .enumerate()
        .map(|(gi, (_, rules))| {
            let vpc = group_vpc[gi];
            let rules = rules
                .iter()
                .enumerate()
                .map(|(ri, r)| {
                    let range = PortRange {
                        from: r.a,
                        to: r.a + r.b,
                    };
                    let protocol = match r.proto {
                        0 | 8 | 9 => Protocol::All,
                        1 | 2 => Protocol::Tcp(range),
                        3 => Protocol::Udp(range),
                        4 => Protocol::Icmp {
                            icmp_type: (!r.a.is_multiple_of(3))
                                .then_some(if r.a.is_multiple_of(2) { 8 } else { 0 }),
                            code: (r.b.is_multiple_of(2)).then_some((r.b % 4) as u8 / 2),
                        },
                        5 => Protocol::Number(47),
                        6 => Protocol::Number(6),
                        _ => Protocol::Tcp(PortRange { from: 0, to: 65535 }),
                    };
                    let [a, b] = net_of(vpc, &seed.vpc_cidr);
                    let peer = match r.peer {
                        0 | 7 => cidr("0.0.0.0/0"),
                        1 => cidr(&format!("{a}.{b}.0.0/16")),
                        2 => cidr(&format!("{a}.{b}.1.0/28")),
                        3 if !all_ips.is_empty() => Peer::Cidr(
                            format!("{}/32", all_ips[r.peer_idx as usize % all_ips.len()])
                                .parse()
                                .expect("cidr"),
                        ),
                        4 => cidr("203.0.113.0/24"),
                        // Any group, possibly of another VPC (which then matches nobody here).
                        _ => Peer::Group(sg(r.peer_idx as u32 % seed.groups.len() as u32)),
                    };
                    SecurityGroupRule {
                        id: sgr((gi * 10 + ri) as u32),
                        direction: if r.egress {
                            Direction::Egress
                        } else {
                            Direction::Ingress
                        },
                        protocol,
                        peer,
                        description: None,
                    }
                })
                .collect();
            group(gi as u32, vpc as u32, rules)
        })
        .collect();
    let gateway = seed.gateway.map(|with_mac| {
        let [a, b] = net_of(0, &seed.vpc_cidr);
        GatewayPort {
            ofport: 100,
            vpc: vpc_id(0),
            ip: Ipv4Addr::new(a, b, 1, 1),
            mac: with_mac.then(|| mac(1000)),
        }
    });
    NodeState {
        vpcs,
        subnets,
        security_groups,
        ports,
        remotes,
        gateway,
        metadata: seed.metadata,
    }
}

/// Random bytes that pick a packet relative to the state.
#[derive(Debug, Clone)]
struct PacketSeed {
    src_kind: u8,
    src_idx: u8,
    spoof: u8,
    kind: u8,
    dst_kind: u8,
    dst_idx: u8,
    port: u16,
    ct: u8,
    tun: u8,
}

fn packet_seed() -> impl Strategy<Value = PacketSeed> {
    (
        0u8..10,
        any::<u8>(),
        0u8..24,
        0u8..11,
        0u8..20,
        any::<u8>(),
        18u16..34,
        0u8..8,
        0u8..4,
    )
        .prop_map(
            |(src_kind, src_idx, spoof, kind, dst_kind, dst_idx, port, ct, tun)| PacketSeed {
                src_kind,
                src_idx,
                spoof,
                kind,
                dst_kind,
                dst_idx,
                port,
                ct,
                tun,
            },
        )
}

fn packet(state: &NodeState, s: &PacketSeed) -> Packet {
    let pick = |n: usize| s.src_idx as usize % n.max(1);
    // Source: (in_port, mac, ip, tun_id).
    let (in_port, mut eth_src, mut src, mut tun_id) = match s.src_kind {
        6 | 7 if !state.remotes.is_empty() => {
            let r = &state.remotes[pick(state.remotes.len())];
            let vlan = state
                .vpcs
                .iter()
                .find(|v| v.id == r.vpc)
                .map_or(0, |v| u64::from(v.vlan));
            (r.tunnel_ofport, r.mac, r.ip, Some(vlan))
        }
        8 if state.gateway.is_some() => {
            let g = state.gateway.as_ref().expect("checked");
            let outside = if s.src_idx.is_multiple_of(2) {
                g.ip
            } else {
                Ipv4Addr::new(198, 51, 100, 7)
            };
            (g.ofport, g.mac.unwrap_or(mac(999)), outside, None)
        }
        9 => (77, mac(77), Ipv4Addr::new(10, 0, 1, 77), None),
        _ => match state.ports.get(pick(state.ports.len())) {
            Some(p) => (p.ofport, p.mac, p.ip, None),
            None => (77, mac(77), Ipv4Addr::new(10, 0, 1, 77), None),
        },
    };
    let other_ip = state
        .ports
        .iter()
        .map(|p| p.ip)
        .nth(s.dst_idx as usize % state.ports.len().max(1));
    let mut vlan = None;
    match s.spoof {
        0 => eth_src = mac(4242),
        1 => src = other_ip.unwrap_or(Ipv4Addr::new(10, 0, 1, 99)),
        2 => vlan = Some(1),
        3 => tun_id = tun_id.map(|t| if t == 1 { 7 } else { 1 }),
        _ => {}
    }
    if s.tun == 0 && tun_id.is_none() && s.src_kind >= 6 {
        tun_id = Some(1);
    }
    let addresses: Vec<Ipv4Addr> = state
        .ports
        .iter()
        .map(|p| p.ip)
        .chain(state.remotes.iter().map(|r| r.ip))
        .chain(state.gateway.iter().map(|g| g.ip))
        .collect();
    let dst = match s.dst_kind {
        0..=14 if !addresses.is_empty() => addresses[s.dst_idx as usize % addresses.len()],
        9 | 15 | 16 => Ipv4Addr::new(169, 254, 169, 254),
        10 => Ipv4Addr::new(203, 0, 113, 5),
        11 => Ipv4Addr::new(10, s.dst_idx % 2, 1, 200),
        12 => Ipv4Addr::new(255, 255, 255, 255),
        17..=19 => Ipv4Addr::new(10, s.dst_idx % 2, 1, 1),
        _ => Ipv4Addr::new(169, 254, 1, 1),
    };
    let ct = match s.ct {
        0..=3 => CtState::New,
        4 | 5 => CtState::Established,
        6 => CtState::Related,
        _ => CtState::Invalid,
    };
    let dport = if matches!(s.dst_kind, 9 | 15 | 16) && !s.port.is_multiple_of(4) {
        80
    } else {
        s.port
    };
    let l3 = match s.kind {
        0..=3 => L3::Ipv4 {
            src,
            dst,
            transport: Transport::Tcp {
                src: 40000,
                dst: dport,
            },
            ct,
        },
        4 | 5 => L3::Ipv4 {
            src,
            dst,
            transport: Transport::Udp {
                src: 40000,
                dst: dport,
            },
            ct,
        },
        6 => L3::Ipv4 {
            src,
            dst,
            transport: Transport::Icmp {
                icmp_type: if s.port.is_multiple_of(2) { 8 } else { 0 },
                code: (s.port % 3) as u8,
            },
            ct,
        },
        7 => L3::Ipv4 {
            src,
            dst,
            transport: Transport::Other(47),
            ct,
        },
        8 | 10 => {
            let sha = if s.spoof == 4 { mac(4242) } else { eth_src };
            L3::Arp {
                op: if s.spoof == 5 { 2 } else { 1 },
                sha,
                spa: src,
                tha: MacAddr([0; 6]),
                tpa: dst,
            }
        }
        _ => L3::Other { ethertype: 0x86dd },
    };
    Packet {
        in_port,
        tun_id,
        eth_src,
        eth_dst: MacAddr([0xff; 6]),
        vlan,
        l3,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// interpreter(compile(state), packet) == reference(state, packet).
    #[test]
    fn compiled_program_decides_as_the_reference(
        seed in state_seed(),
        packets in prop::collection::vec(packet_seed(), 64),
    ) {
        let state = build(&seed);
        let program = compile(&state).expect("generated states are valid");
        let interp = Interpreter::new(&program).expect("compiled program parses");
        for ps in &packets {
            let p = packet(&state, ps);
            agree_interp(&interp, &state, &p);
        }
        // The reply of every connection allowed between two local ports passes as established.
        for ps in &packets {
            let p = packet(&state, ps);
            let from_local = state.ports.iter().any(|q| q.ofport == p.in_port);
            if let (true, Some(out), L3::Ipv4 { src, dst, transport, ct: CtState::New }) =
                (from_local, hive_vpc::reference::decide(&state, &p).output, p.l3)
                && let Some(back) = state.ports.iter().find(|q| q.ofport == out.port)
            {
                let reply_t = match transport {
                    Transport::Tcp { src, dst } => Transport::Tcp { src: dst, dst: src },
                    Transport::Udp { src, dst } => Transport::Udp { src: dst, dst: src },
                    t => t,
                };
                let reply = Packet {
                    in_port: back.ofport,
                    tun_id: None,
                    eth_src: back.mac,
                    eth_dst: p.eth_src,
                    vlan: None,
                    l3: L3::Ipv4 { src: dst, dst: src, transport: reply_t, ct: CtState::Established },
                };
                let d = agree_interp(&interp, &state, &reply);
                prop_assert_eq!(d.output.map(|o| o.port), Some(p.in_port), "reply dropped: {:?}", reply);
            }
        }
    }

    /// Recompiling the same state changes nothing; one rule added or removed touches only the
    /// flows of that rule (its conj_id flow, its group's clause, its peer and port clauses).
    #[test]
    fn diffs_are_minimal(seed in state_seed(), extra in rule_seed()) {
        let state = build(&seed);
        let program = compile(&state).expect("valid");
        prop_assert!(program.diff(&compile(&state).expect("valid")).is_empty());
        let mut seed2 = seed.clone();
        seed2.groups[0].1.push(extra);
        if seed2.groups[0].1.len() > 10 {
            return Ok(());
        }
        let changed = build(&seed2);
        let program2 = compile(&changed).expect("valid");
        let diff = program.diff(&program2);
        // 1 conj_id + 1 group clause + 1 peer clause + at most 4 port-range clauses (ranges of
        // up to 6 ports), or 1 allow-all flow; independent of the size of the state.
        prop_assert!(diff.len() <= 7, "one rule touched {} flows:\n{}", diff.len(), diff.to_bundle());
        prop_assert!(program2.diff(&program).len() == diff.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    /// The incremental compiler's diffs, applied to the previous program, give exactly the
    /// program a fresh compile of the new state gives: for an arbitrary new state (`update`) and
    /// for a one-group change (`set_group`).
    #[test]
    fn incremental_updates_equal_fresh_compiles(seed in state_seed(), seed2 in state_seed(), extra in rule_seed()) {
        let s1 = build(&seed);
        let s2 = build(&seed2);
        let mut compiler = Compiler::new(&s1).expect("valid");
        let mut program = compiler.program();
        prop_assert_eq!(&program, &compile(&s1).expect("valid"));
        let diff = compiler.update(&s2).expect("valid");
        program.apply(&diff);
        prop_assert_eq!(&program, &compiler.program());
        prop_assert_eq!(&program, &compile(&s2).expect("valid"));
        prop_assert!(compiler.update(&s2).expect("valid").is_empty());
        let mut seed3 = seed2.clone();
        seed3.groups[0].1.push(extra);
        let s3 = build(&seed3);
        let diff = compiler.set_group(s3.security_groups[0].clone()).expect("valid");
        prop_assert!(diff.len() <= 7);
        program.apply(&diff);
        prop_assert_eq!(&program, &compile(&s3).expect("valid"));
        prop_assert_eq!(compiler.state(), &s3);
    }
}

#[test]
fn generated_states_cover_interesting_cases() {
    // Sanity check of the generator on a fixed seed: overlapping VPC CIDRs, a gateway, remotes.
    let seed = StateSeed {
        vpc_cidr: vec![0, 0],
        groups: vec![
            (
                0,
                vec![RuleSeed {
                    egress: false,
                    proto: 1,
                    a: 22,
                    b: 0,
                    peer: 6,
                    peer_idx: 0,
                }],
            ),
            (1, vec![]),
        ],
        ports: vec![(0, vec![0]), (1, vec![0])],
        remotes: vec![(0, vec![0], false)],
        gateway: Some(true),
        metadata: true,
    };
    let state = build(&seed);
    assert_eq!(
        state.ports[0].ip, state.ports[1].ip,
        "same address in two VPCs"
    );
    assert_ne!(state.ports[0].vpc, state.ports[1].vpc);
    let program = compile(&state).expect("valid");
    let interp = Interpreter::new(&program).expect("parses");
    // Port 2 (VPC 1) reaching 10.0.1.10 finds itself, never port 1 in VPC 0.
    let p = ip_from(
        &state,
        2,
        Ipv4Addr::new(10, 0, 1, 10),
        tcp(22),
        CtState::New,
    );
    assert!(!agree_interp(&interp, &state, &p).allowed());
}

/// The generators are worth something only if they reach every kind of decision: count the
/// reference's reasons over a few hundred random states and packets.
#[test]
fn generators_reach_every_kind_of_decision() {
    use hive_vpc::reference::{Reason, decide};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        let seed = state_seed().new_tree(&mut runner).expect("tree").current();
        let state = build(&seed);
        for _ in 0..32 {
            let ps = packet_seed().new_tree(&mut runner).expect("tree").current();
            let d = decide(&state, &packet(&state, &ps));
            let key = match &d.reason {
                Reason::NewConnection { egress, ingress } => {
                    format!(
                        "new(egress={},ingress={})",
                        egress.is_some(),
                        ingress.is_some()
                    )
                }
                r => format!("{r:?}"),
            };
            *seen.entry(key).or_default() += 1;
        }
    }
    for want in [
        "new(egress=true,ingress=true)",
        "new(egress=true,ingress=false)",
        "new(egress=false,ingress=true)",
        "Tracked",
        "Arp",
        "ArpReply",
        "Metadata",
        "UnboundOrMalformed",
        "Spoofed",
        "NoRoute",
        "NotDeliverable",
        "Invalid",
        "EgressDenied",
        "IngressDenied",
    ] {
        assert!(
            seen.get(want).copied().unwrap_or(0) >= 20,
            "generator rarely reaches {want}: {seen:?}"
        );
    }
}
