//! Specific scenarios of the flow compiler: each packet is decided by the reference model and by
//! the interpreter running the compiled program, which must agree, and the reference's answer
//! is checked against what AWS does.

mod compiler_common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use compiler_common::*;
use hive_vpc::compile::{CookieOwner, TABLES, compile, explain_cookie};
use hive_vpc::interp::Interpreter;
use hive_vpc::model::{Direction, MacAddr, Peer, Protocol};
use hive_vpc::reference::{CtState, L3, Packet, Reason, Transport};

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

struct Case {
    name: &'static str,
    packet: Packet,
    out_port: Option<u32>,
}

fn cases() -> Vec<Case> {
    let s = layout();
    let new = CtState::New;
    let est = CtState::Established;
    let mut v = vec![
        Case {
            name: "web: anyone may reach port 80",
            packet: ip_from(&s, 2, ip(10, 0, 1, 10), tcp(80), new),
            out_port: Some(1),
        },
        Case {
            name: "web: port 81 is closed",
            packet: ip_from(&s, 2, ip(10, 0, 1, 10), tcp(81), new),
            out_port: None,
        },
        Case {
            name: "web: ssh from admin group",
            packet: ip_from(&s, 2, ip(10, 0, 1, 10), tcp(22), new),
            out_port: Some(1),
        },
        Case {
            name: "web: ssh from a non-admin",
            packet: ip_from(&s, 3, ip(10, 0, 1, 10), tcp(22), new),
            out_port: None,
        },
        Case {
            name: "db: 5432 from web member",
            packet: ip_from(&s, 1, ip(10, 0, 2, 12), tcp(5432), new),
            out_port: Some(3),
        },
        Case {
            name: "db: 5432 from admin",
            packet: ip_from(&s, 2, ip(10, 0, 2, 12), tcp(5432), new),
            out_port: None,
        },
        Case {
            name: "db: reply from db to web passes as established",
            packet: ip_from(&s, 3, ip(10, 0, 1, 10), tcp(40000), est),
            out_port: Some(1),
        },
        Case {
            name: "db+web may send, but admin has no ingress rules",
            packet: ip_from(&s, 3, ip(10, 0, 1, 11), tcp(22), new),
            out_port: None,
        },
        Case {
            name: "db: ping from VPC",
            packet: ip_from(
                &s,
                2,
                ip(10, 0, 2, 12),
                Transport::Icmp {
                    icmp_type: 8,
                    code: 0,
                },
                new,
            ),
            out_port: Some(3),
        },
        Case {
            name: "db: icmp type 13 not allowed",
            packet: ip_from(
                &s,
                2,
                ip(10, 0, 2, 12),
                Transport::Icmp {
                    icmp_type: 13,
                    code: 0,
                },
                new,
            ),
            out_port: None,
        },
        Case {
            name: "no group: port 6 may send nothing new",
            packet: ip_from(&s, 6, ip(10, 0, 1, 10), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "no group: port 6 receives nothing new",
            packet: ip_from(&s, 2, ip(10, 0, 1, 13), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "invalid conntrack state drops",
            packet: ip_from(&s, 2, ip(10, 0, 1, 10), tcp(80), CtState::Invalid),
            out_port: None,
        },
        Case {
            name: "VPC 2: default group lets members talk",
            packet: ip_from(&s, 4, ip(10, 5, 1, 11), tcp(9999), new),
            out_port: Some(5),
        },
        Case {
            name: "VPC isolation: VPC 2 cannot reach 10.0.1.10",
            packet: ip_from(&s, 4, ip(10, 0, 1, 10), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "VPC isolation: established does not help either",
            packet: ip_from(&s, 4, ip(10, 0, 1, 10), tcp(80), est),
            out_port: None,
        },
        Case {
            name: "outside via gateway, egress all",
            packet: ip_from(&s, 1, ip(203, 0, 113, 5), tcp(443), new),
            out_port: Some(GW_PORT),
        },
        Case {
            name: "outside: no egress rule, denied",
            packet: ip_from(&s, 6, ip(203, 0, 113, 5), tcp(443), new),
            out_port: None,
        },
        Case {
            name: "VPC 2 has no gateway",
            packet: ip_from(&s, 4, ip(203, 0, 113, 5), tcp(443), new),
            out_port: None,
        },
        Case {
            name: "unknown address in VPC",
            packet: ip_from(&s, 1, ip(10, 0, 9, 9), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "metadata reachable without rules",
            packet: ip_from(&s, 6, ip(169, 254, 169, 254), tcp(80), new),
            out_port: Some(GW_PORT),
        },
        Case {
            name: "metadata: other ports closed",
            packet: ip_from(&s, 1, ip(169, 254, 169, 254), tcp(22), new),
            out_port: None,
        },
        Case {
            name: "metadata: not for VPC 2",
            packet: ip_from(&s, 4, ip(169, 254, 169, 254), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "broadcast dropped",
            packet: ip_from(&s, 1, ip(255, 255, 255, 255), tcp(80), new),
            out_port: None,
        },
        Case {
            name: "to remote web member through the tunnel",
            packet: ip_from(&s, 2, ip(10, 0, 1, 20), tcp(22), new),
            out_port: Some(TUNNEL_PORT),
        },
        Case {
            name: "to own address never loops back",
            packet: ip_from(&s, 1, ip(10, 0, 1, 10), tcp(80), new),
            out_port: None,
        },
    ];
    // Spoofing.
    let mut spoof_ip = ip_from(&s, 1, ip(10, 0, 1, 11), tcp(80), new);
    if let L3::Ipv4 { src, .. } = &mut spoof_ip.l3 {
        *src = ip(10, 0, 1, 11);
    }
    v.push(Case {
        name: "spoofed source IP",
        packet: spoof_ip,
        out_port: None,
    });
    let mut spoof_mac = ip_from(&s, 2, ip(10, 0, 1, 10), tcp(80), new);
    spoof_mac.eth_src = mac(3);
    v.push(Case {
        name: "spoofed source MAC",
        packet: spoof_mac,
        out_port: None,
    });
    let mut tagged = ip_from(&s, 2, ip(10, 0, 1, 10), tcp(80), new);
    tagged.vlan = Some(7);
    v.push(Case {
        name: "802.1Q tagged frame from a VM",
        packet: tagged,
        out_port: None,
    });
    let mut unbound = ip_from(&s, 2, ip(10, 0, 1, 10), tcp(80), new);
    unbound.in_port = 77;
    v.push(Case {
        name: "unbound port",
        packet: unbound,
        out_port: None,
    });
    let arp = |from: u32, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr| Packet {
        in_port: from,
        tun_id: None,
        eth_src: mac(from),
        eth_dst: MacAddr([0xff; 6]),
        vlan: None,
        l3: L3::Arp {
            op: 1,
            sha,
            spa,
            tha: MacAddr([0; 6]),
            tpa,
        },
    };
    v.push(Case {
        name: "ARP request to a VPC neighbour",
        packet: arp(1, mac(1), ip(10, 0, 1, 10), ip(10, 0, 1, 11)),
        out_port: Some(2),
    });
    v.push(Case {
        name: "ARP for the gateway",
        packet: arp(1, mac(1), ip(10, 0, 1, 10), ip(10, 0, 1, 1)),
        out_port: Some(GW_PORT),
    });
    v.push(Case {
        name: "ARP spoofing: wrong spa",
        packet: arp(1, mac(1), ip(10, 0, 1, 11), ip(10, 0, 1, 13)),
        out_port: None,
    });
    v.push(Case {
        name: "ARP spoofing: wrong sha",
        packet: arp(1, mac(2), ip(10, 0, 1, 10), ip(10, 0, 1, 13)),
        out_port: None,
    });
    v.push(Case {
        name: "ARP across VPCs",
        packet: arp(4, mac(4), ip(10, 5, 1, 10), ip(10, 0, 1, 10)),
        out_port: None,
    });
    // From the gateway and from the tunnel.
    let from_gw = |dst: Ipv4Addr, t: Transport, ct: CtState| Packet {
        in_port: GW_PORT,
        tun_id: None,
        eth_src: mac(100),
        eth_dst: mac(1),
        vlan: None,
        l3: L3::Ipv4 {
            src: ip(198, 51, 100, 7),
            dst,
            transport: t,
            ct,
        },
    };
    v.push(Case {
        name: "outside to web:80 via gateway",
        packet: from_gw(ip(10, 0, 1, 10), tcp(80), new),
        out_port: Some(1),
    });
    v.push(Case {
        name: "outside to web:22 via gateway",
        packet: from_gw(ip(10, 0, 1, 10), tcp(22), new),
        out_port: None,
    });
    v.push(Case {
        name: "outside reply via gateway",
        packet: from_gw(ip(10, 0, 1, 10), tcp(40000), est),
        out_port: Some(1),
    });
    v.push(Case {
        name: "gateway cannot reach the remote node",
        packet: from_gw(ip(10, 0, 1, 20), tcp(80), new),
        out_port: None,
    });
    let from_tunnel =
        |src_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, t: Transport, tun: u64| Packet {
            in_port: TUNNEL_PORT,
            tun_id: Some(tun),
            eth_src: src_mac,
            eth_dst: mac(3),
            vlan: None,
            l3: L3::Ipv4 {
                src,
                dst,
                transport: t,
                ct: CtState::New,
            },
        };
    v.push(Case {
        name: "remote web member reaches db:5432 (group rule across nodes)",
        packet: from_tunnel(mac(20), ip(10, 0, 1, 20), ip(10, 0, 2, 12), tcp(5432), 1),
        out_port: Some(3),
    });
    v.push(Case {
        name: "tunnel: spoofed remote address",
        packet: from_tunnel(mac(20), ip(10, 0, 1, 21), ip(10, 0, 2, 12), tcp(5432), 1),
        out_port: None,
    });
    v.push(Case {
        name: "tunnel: wrong VPC key",
        packet: from_tunnel(mac(20), ip(10, 0, 1, 20), ip(10, 0, 2, 12), tcp(5432), 7),
        out_port: None,
    });
    v
}

#[test]
fn scenarios_match_aws_and_the_reference() {
    let state = layout();
    let program = compile(&state).expect("layout compiles");
    let interp = Interpreter::new(&program).expect("program parses");
    for case in cases() {
        let d = agree_interp(&interp, &state, &case.packet);
        assert_eq!(
            d.output.map(|o| o.port),
            case.out_port,
            "{}: {:?}",
            case.name,
            d.reason
        );
    }
}

#[test]
fn reference_names_the_allowing_rules() {
    let s = layout();
    let d = hive_vpc::reference::decide(
        &s,
        &ip_from(&s, 1, Ipv4Addr::new(10, 0, 2, 12), tcp(5432), CtState::New),
    );
    assert_eq!(
        d.reason,
        Reason::NewConnection {
            egress: Some((sg(1), sgr(3))),
            ingress: Some((sg(3), sgr(5)))
        }
    );
}

#[test]
fn program_is_fail_closed_in_every_table() {
    let program = compile(&layout()).expect("compiles");
    for t in TABLES {
        assert!(
            program.flows().any(|f| f.table == t
                && f.priority == 0
                && f.matches.is_empty()
                && f.actions == "drop"),
            "table {t} lacks priority=0 drop"
        );
    }
    let used: BTreeSet<u8> = program.flows().map(|f| f.table).collect();
    assert_eq!(used, TABLES.into_iter().collect());
    assert!(
        !program.to_ofctl().contains("normal"),
        "the program never uses NORMAL"
    );
}

#[test]
fn every_cookie_explains_its_flow() {
    let state = layout();
    let program = compile(&state).expect("compiles");
    for f in program.flows() {
        let owner = explain_cookie(&state, f.cookie);
        assert!(owner.is_some(), "unexplained cookie on {f}");
        if f.matches.starts_with("conj_id=") {
            assert!(matches!(owner, Some(CookieOwner::Rule(..))), "{f}");
        }
    }
}

#[test]
fn recompiling_the_same_state_changes_nothing() {
    let state = layout();
    let a = compile(&state).expect("compiles");
    let mut shuffled = state.clone();
    shuffled.ports.reverse();
    shuffled.security_groups.reverse();
    let b = compile(&shuffled).expect("compiles");
    assert!(a.diff(&b).is_empty());
    assert_eq!(a.to_ofctl(), b.to_ofctl());
}

#[test]
fn one_rule_change_touches_few_flows_and_changes_the_decision() {
    let state = layout();
    let before = compile(&state).expect("compiles");
    let mut after_state = state.clone();
    // Allow tcp/8080 into web from 10.0.1.0/24.
    after_state.security_groups[0].rules.push(rule(
        100,
        Direction::Ingress,
        tcp_ports(8080, 8080),
        cidr("10.0.1.0/24"),
    ));
    let after = compile(&after_state).expect("compiles");
    let diff = before.diff(&after);
    assert!(
        diff.len() <= 4,
        "one rule touched {} flows:\n{}",
        diff.len(),
        diff.to_bundle()
    );
    assert!(diff.delete.is_empty());
    let probe = ip_from(
        &state,
        2,
        Ipv4Addr::new(10, 0, 1, 10),
        tcp(8080),
        CtState::New,
    );
    assert!(!agree_with(&before, &state, &probe).allowed());
    assert!(agree_with(&after, &after_state, &probe).allowed());
    // And revoking it again restores the program exactly.
    assert!(after.diff(&before).len() == diff.len());
    // Membership change: port 2 joins group 3.
    let mut joined = state.clone();
    joined.ports[1].groups.push(sg(3));
    let d = before.diff(&compile(&joined).expect("compiles"));
    assert!(
        d.len() <= 4,
        "membership change touched {}:\n{}",
        d.len(),
        d.to_bundle()
    );
}

#[test]
fn established_connections_survive_revocation() {
    let mut state = layout();
    state.security_groups[0]
        .rules
        .retain(|r| r.protocol != tcp_ports(80, 80));
    let program = compile(&state).expect("compiles");
    let est = ip_from(
        &state,
        2,
        Ipv4Addr::new(10, 0, 1, 10),
        tcp(80),
        CtState::Established,
    );
    assert!(agree_with(&program, &state, &est).allowed());
    let new = ip_from(
        &state,
        2,
        Ipv4Addr::new(10, 0, 1, 10),
        tcp(80),
        CtState::New,
    );
    assert!(!agree_with(&program, &state, &new).allowed());
}

#[test]
fn invalid_states_are_typed_errors() {
    let mut s = layout();
    s.ports[1].ip = s.ports[0].ip;
    assert!(compile(&s).is_err());
    let mut s = layout();
    s.ports[0].groups.push(sg(4)); // a group of another VPC
    assert!(compile(&s).is_err());
    let mut s = layout();
    s.vpcs[1].vlan = 4095;
    assert!(compile(&s).is_err());
    let mut s = layout();
    s.ports[1].ofport = 1;
    assert!(compile(&s).is_err());
    let mut s = layout();
    s.security_groups[0].rules[0].protocol = tcp_ports(90, 80);
    assert!(compile(&s).is_err());
    let mut s = layout();
    s.security_groups[0].rules.push(rule(
        1,
        Direction::Egress,
        Protocol::All,
        Peer::Group(sg(1)),
    ));
    assert!(compile(&s).is_err());
}

#[test]
fn the_vpc_router_answers_arp_for_subnet_gateways() {
    use hive_vpc::compile::ROUTER_MAC;
    let state = layout();
    let program = compile(&state).expect("compiles");
    let interp = Interpreter::new(&program).expect("parses");
    let ask = |port: u32, ip: Ipv4Addr, tpa: Ipv4Addr| Packet {
        in_port: port,
        tun_id: None,
        eth_src: mac(port),
        eth_dst: MacAddr([0xff; 6]),
        vlan: None,
        l3: L3::Arp {
            op: 1,
            sha: mac(port),
            spa: ip,
            tha: MacAddr([0; 6]),
            tpa,
        },
    };
    // Port 3 sits in 10.0.2.0/24, whose gateway 10.0.2.1 is the VPC router.
    let p = ask(3, Ipv4Addr::new(10, 0, 2, 12), Ipv4Addr::new(10, 0, 2, 1));
    let d = agree_interp(&interp, &state, &p);
    assert_eq!(d.reason, Reason::ArpReply);
    let out = interp.run(&p).expect("runs");
    assert_eq!(out.replies.len(), 1);
    let reply = out.replies[0];
    assert_eq!((reply.eth_src, reply.eth_dst), (ROUTER_MAC, mac(3)));
    assert_eq!(
        reply.l3,
        L3::Arp {
            op: 2,
            sha: ROUTER_MAC,
            spa: Ipv4Addr::new(10, 0, 2, 1),
            tha: mac(3),
            tpa: Ipv4Addr::new(10, 0, 2, 12),
        }
    );
    // 10.0.1.1 belongs to hive-int0, which answers for itself: the request is forwarded.
    let p = ask(1, Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(
        agree_interp(&interp, &state, &p).output.map(|o| o.port),
        Some(GW_PORT)
    );
    // Routed through the router MAC to another subnet: delivered by address, MAC rewritten.
    let mut routed = ip_from(
        &state,
        3,
        Ipv4Addr::new(10, 0, 1, 10),
        tcp(80),
        CtState::New,
    );
    routed.eth_dst = ROUTER_MAC;
    let d = agree_interp(&interp, &state, &routed);
    assert_eq!(d.output.map(|o| (o.port, o.eth_dst)), Some((1, mac(1))));
}

/// 6,000 rules that all name one peer group share one clause: it is split over the
/// conjunction shards so that no flow carries more than a flow_mod can (~4,000 conjunction
/// actions), and the program still decides as the reference model.
#[test]
fn a_clause_shared_by_thousands_of_rules_is_sharded_and_still_decides_right() {
    let mut state = layout();
    for g in 0..300u32 {
        let rules = (0..20u32)
            .map(|r| {
                let id = 10_000 + g * 20 + r;
                let port = 2_000 + (g * 20 + r) as u16;
                rule(
                    id,
                    Direction::Ingress,
                    tcp_ports(port, port),
                    Peer::Group(sg(2)),
                )
            })
            .collect();
        state.security_groups.push(group(1_000 + g, 1, rules));
    }
    // Port 1 (web) joins the first bulk group: admin (port 2) may reach it on 2000..=2019.
    state.ports[0].groups.push(sg(1_000));
    let program = compile(&state).expect("compiles");
    let widest = program
        .flows()
        .map(|f| f.actions.matches("conjunction(").count())
        .max()
        .unwrap_or(0);
    assert!(
        widest < 2_000,
        "a clause flow carries {widest} conjunctions"
    );
    let to_web = |port| ip_from(&state, 2, ip(10, 0, 1, 10), tcp(port), CtState::New);
    assert!(agree_with(&program, &state, &to_web(2_005)).allowed());
    assert!(!agree_with(&program, &state, &to_web(2_025)).allowed());
    assert!(!agree_with(&program, &state, &to_web(23)).allowed());
}
