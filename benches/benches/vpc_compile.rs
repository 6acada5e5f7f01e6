//! Flow compiler benchmarks (issue 4): compile 1,000 security groups x 20 rules for 2,000 ports
//! (time and flow count), and a one-rule change (time and flows touched) three ways: the
//! incremental fast path `Compiler::set_group`, `Compiler::update` with a whole new state
//! (change detection over everything), and the naive full recompile + diff.
//! Targets: full compile < 100 ms; one-rule diff < 1 ms; flows within 2x of rules + ports.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use hive_vpc::compile::{Compiler, LocalPort, NodeState, SubnetSpec, VpcSpec, compile};
use hive_vpc::model::{
    Direction, MacAddr, NetworkInterfaceId, Peer, PortRange, Protocol, SecurityGroup,
    SecurityGroupId, SecurityGroupRule, SecurityGroupRuleId, SubnetId, VpcId,
};

const VPCS: u32 = 4;
const GROUPS: u32 = 1_000;
const RULES: u32 = 20;
const PORTS: u32 = 2_000;

fn sg(n: u32) -> SecurityGroupId {
    SecurityGroupId::new_unchecked(format!("sg-{n:017x}"))
}

fn rule(id: u32, direction: Direction, protocol: Protocol, peer: Peer) -> SecurityGroupRule {
    SecurityGroupRule {
        id: SecurityGroupRuleId::new_unchecked(format!("sgr-{id:017x}")),
        direction,
        protocol,
        peer,
        description: None,
    }
}

fn tcp(from: u16, to: u16) -> Protocol {
    Protocol::Tcp(PortRange { from, to })
}

fn net(s: String) -> Peer {
    Peer::Cidr(s.parse().expect("bench CIDR"))
}

/// A realistic mix: group-to-group rules, CIDR rules, port ranges, ICMP, allow-all egress.
fn group_rules(g: u32) -> Vec<SecurityGroupRule> {
    use Direction::*;
    let vpc = g % VPCS;
    let per_vpc = GROUPS / VPCS;
    // Another group of the same VPC.
    let peer = |k: u32| Peer::Group(sg(vpc + VPCS * ((g / VPCS + 1 + k * 37) % per_vpc)));
    let base = g * 100;
    let mut r = Vec::new();
    for k in 0..5 {
        r.push(rule(
            base + k,
            Ingress,
            tcp(8000 + k as u16 * 10, 8000 + k as u16 * 10),
            peer(k),
        ));
    }
    for k in 0..3 {
        let p = 9000 + (g % 50) as u16 * 10 + k as u16 * 1000;
        r.push(rule(
            base + 5 + k,
            Ingress,
            tcp(p, p + 9),
            net(format!("10.{vpc}.{}.0/24", (g + k) % 250)),
        ));
    }
    r.push(rule(
        base + 8,
        Ingress,
        Protocol::Udp(PortRange { from: 53, to: 53 }),
        net(format!("10.{vpc}.0.0/16")),
    ));
    r.push(rule(
        base + 9,
        Ingress,
        Protocol::Udp(PortRange {
            from: 5000,
            to: 5100,
        }),
        net("192.0.2.0/24".into()),
    ));
    r.push(rule(
        base + 10,
        Ingress,
        Protocol::Icmp {
            icmp_type: Some(8),
            code: None,
        },
        net(format!("10.{vpc}.0.0/16")),
    ));
    r.push(rule(
        base + 11,
        Ingress,
        Protocol::Icmp {
            icmp_type: Some(3),
            code: Some(4),
        },
        net("0.0.0.0/0".into()),
    ));
    r.push(rule(base + 12, Ingress, Protocol::All, Peer::Group(sg(g))));
    r.push(rule(
        base + 13,
        Ingress,
        tcp(22, 22),
        net(format!("198.51.{}.0/24", g % 200)),
    ));
    r.push(rule(
        base + 14,
        Egress,
        Protocol::All,
        net("0.0.0.0/0".into()),
    ));
    r.push(rule(
        base + 15,
        Egress,
        tcp(443, 443),
        net("203.0.113.0/24".into()),
    ));
    r.push(rule(base + 16, Egress, tcp(5432, 5432), peer(7)));
    r.push(rule(
        base + 17,
        Egress,
        Protocol::Udp(PortRange { from: 123, to: 123 }),
        net("0.0.0.0/0".into()),
    ));
    r.push(rule(
        base + 18,
        Egress,
        Protocol::Number(47),
        net(format!("10.{vpc}.0.0/16")),
    ));
    r.push(rule(base + 19, Ingress, tcp(1024, 65535), peer(9)));
    assert_eq!(r.len(), RULES as usize);
    r
}

fn state() -> NodeState {
    let vpcs = (0..VPCS)
        .map(|v| VpcSpec {
            id: VpcId::new_unchecked(format!("vpc-{v:017x}")),
            vlan: v as u16 + 1,
            cidrs: vec![format!("10.{v}.0.0/16").parse().expect("cidr")],
        })
        .collect();
    let subnets = (0..VPCS)
        .map(|v| SubnetSpec {
            id: SubnetId::new_unchecked(format!("subnet-{v:017x}")),
            vpc: VpcId::new_unchecked(format!("vpc-{v:017x}")),
            cidr: format!("10.{v}.0.0/16").parse().expect("cidr"),
            gateway: Ipv4Addr::new(10, v as u8, 0, 1),
        })
        .collect();
    let security_groups = (0..GROUPS)
        .map(|g| SecurityGroup {
            id: sg(g),
            vpc_id: VpcId::new_unchecked(format!("vpc-{:017x}", g % VPCS)),
            name: format!("g{g}"),
            description: String::new(),
            rules: group_rules(g),
            tags: Vec::new(),
        })
        .collect();
    let ports = (0..PORTS)
        .map(|i| {
            let v = i % VPCS;
            let k = i / VPCS;
            // Groups of VPC v are v, v+4, v+8, ...: every port in one, a third in two.
            let mut groups = vec![sg(v + VPCS * (k % (GROUPS / VPCS)))];
            if i % 3 == 0 {
                groups.push(sg(v + VPCS * ((k * 7 + 3) % (GROUPS / VPCS))));
            }
            groups.dedup();
            LocalPort {
                ofport: i + 1,
                eni: NetworkInterfaceId::new_unchecked(format!("eni-{i:017x}")),
                mac: MacAddr([2, 0x42, 0, 0, (i >> 8) as u8, i as u8]),
                ip: Ipv4Addr::new(10, v as u8, 1 + (k / 250) as u8, 2 + (k % 250) as u8),
                vpc: VpcId::new_unchecked(format!("vpc-{v:017x}")),
                subnet: SubnetId::new_unchecked(format!("subnet-{v:017x}")),
                groups,
            }
        })
        .collect();
    NodeState {
        vpcs,
        subnets,
        security_groups,
        ports,
        remotes: Vec::new(),
        gateway: None,
        metadata: false,
    }
}

fn bench(c: &mut Criterion) {
    let s = state();
    let full = compile(&s).expect("bench state is valid");
    let rules = GROUPS * RULES;
    println!(
        "vpc_compile: {} groups x {} rules, {} ports -> {} flows ({:.2}x rules + ports = {})",
        GROUPS,
        RULES,
        PORTS,
        full.len(),
        full.len() as f64 / f64::from(rules + PORTS),
        rules + PORTS
    );

    let mut g = c.benchmark_group("vpc_compile");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("full_compile_1000x20_2000_ports", |b| {
        b.iter(|| black_box(compile(black_box(&s))))
    });

    // One rule added to / removed from group 0, alternately.
    let mut with_rule = s.clone();
    with_rule.security_groups[0].rules.push(rule(
        999_999,
        Direction::Ingress,
        tcp(3306, 3306),
        net("10.0.7.0/24".into()),
    ));
    let g0 = s.security_groups[0].clone();
    let g0_plus = with_rule.security_groups[0].clone();

    let mut compiler = Compiler::new(&s).expect("valid");
    let d = compiler.set_group(g0_plus.clone()).expect("valid");
    println!(
        "vpc_compile: one-rule change touches {} flows ({} add, {} modify, {} delete)",
        d.len(),
        d.add.len(),
        d.modify.len(),
        d.delete.len()
    );
    let d = compiler.set_group(g0.clone()).expect("valid");
    println!("vpc_compile: revoking it touches {} flows", d.len());
    g.sample_size(100).measurement_time(Duration::from_secs(3));
    let mut toggle = false;
    g.bench_function("one_rule_diff_set_group", |b| {
        b.iter(|| {
            toggle = !toggle;
            let group = if toggle { g0_plus.clone() } else { g0.clone() };
            black_box(compiler.set_group(group).expect("valid"))
        })
    });
    let mut compiler = Compiler::new(&s).expect("valid");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut toggle = false;
    g.bench_function("one_rule_diff_update_whole_state", |b| {
        b.iter(|| {
            toggle = !toggle;
            let next = if toggle { &with_rule } else { &s };
            black_box(compiler.update(next).expect("valid"))
        })
    });
    let after = compile(&with_rule).expect("valid");
    println!(
        "vpc_compile: full recompile + diff finds {} flows changed",
        full.diff(&after).len()
    );
    g.bench_function("one_rule_diff_full_recompile", |b| {
        b.iter(|| black_box(full.diff(&compile(black_box(&with_rule)).expect("valid"))))
    });
    g.finish();
}

/// The benchmark group (in a module because `criterion_group!` makes an undocumented `pub fn`).
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
