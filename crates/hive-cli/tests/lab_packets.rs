//! Proof with real packets (issue 10, items 1 to 3): `hive-cli lab` as root, the real aws CLI,
//! VMs as namespaces, and every connection judged against hive-vpc's reference model.
//!
//! - one node: a table of real TCP, UDP, ICMP, spoofing, ARP and metadata probes whose outcome
//!   must equal `hive_vpc::reference::decide` on the first packet, evaluated on the node state
//!   built from the lab's own store;
//! - three nodes: the same scenario and table, every sender and receiver on different nodes;
//! - live changes: 100 authorize/revoke trials, local and cross-node, while a prober makes a
//!   new connection every 5 ms; p50/p99/max of the time from the API's answer to the first
//!   connection that obeys the new rule.
//!
//! Needs root, iproute2, ethtool, iptables, iputils-ping, nats-server, openvswitch-switch,
//! python3, and the venv's aws CLI and boto3 (`HIVE_AWS`, as `scripts/test` sets it). A
//! missing piece fails the test with the install command; nothing skips.

mod lab_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hive_kv::nats::{NatsOptions, NatsStore};
use hive_vpc::compile::{NodeState, ROUTER_MAC};
use hive_vpc::model::{MacAddr, NetworkInterfaceId, SecurityGroupId, SecurityGroupRuleId};
use hive_vpc::reference::{self, CtState, L3, Packet, Reason, Transport};
use hive_vpc_store::{GatewayBinding, NodeBindings, RepoOptions, VpcRepo};
use serde_json::{Value, json};

use lab_support::{
    Aws, Lab, Up, create_eni, create_group, create_vpc, require_machine, text, venv_python,
    wait_for_file,
};

/// Fake OpenFlow port of the gateway in the reference's node states.
const GATEWAY_OFPORT: u32 = 2;
/// Fake OpenFlow port of the tunnel towards node `n`: `TUNNEL_OFPORT + n`.
const TUNNEL_OFPORT: u32 = 100;
/// The metadata address.
const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// A MAC no interface has, for the MAC-spoofing probe.
const SPOOFED_MAC: &str = "02:00:00:00:99:01";
/// An unowned address inside VPC A (allowed by the CIDR rules it is sent towards).
const SPOOFED_IP: Ipv4Addr = Ipv4Addr::new(10, 30, 1, 250);

/// Servers of a VM: TCP listeners that greet and close, UDP echo. Args: ready file, then
/// `tcp:P,P,...` and `udp:P,...` and an optional `bind:IP` (the address to listen on).
const SERVER: &str = r#"
import socket, sys, threading
ready, tcp, udp = sys.argv[1], sys.argv[2], sys.argv[3]
host = sys.argv[4] if len(sys.argv) > 4 else "0.0.0.0"
def ports(spec):
    body = spec.split(":", 1)[1]
    return [int(p) for p in body.split(",") if p]
def serve_tcp(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(512)
    return s
def accept(s):
    while True:
        try:
            c, _ = s.accept()
            c.sendall(b"hello\n")
            c.close()
        except OSError:
            pass
def echo(s):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
threads = []
for p in ports(tcp):
    threads.append(threading.Thread(target=accept, args=(serve_tcp(p),), daemon=True))
for p in ports(udp):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((host, p))
    threads.append(threading.Thread(target=echo, args=(u,), daemon=True))
for t in threads:
    t.start()
open(ready, "w").close()
threading.Event().wait()
"#;

/// One probe from inside a VM; exit 0 when the connection worked, 3 when not. The argument is
/// JSON: kind (tcp, udp, icmp8, icmp13, arp), dst, port, and optionally src (a spoofed
/// source address, added to eth0 for the probe) or mac (a spoofed MAC, restored after); for
/// arp: victim_ip, victim_mac, claim_ip, my_mac.
const PROBE: &str = r#"
import json, os, socket, struct, subprocess, sys, time
p = json.loads(sys.argv[1])
def tcp():
    src = (p["src"], 0) if p.get("src") else None
    try:
        c = socket.create_connection((p["dst"], p["port"]), timeout=1.5, source_address=src)
        c.settimeout(1.5)
        return c.recv(16).startswith(b"hello")
    except OSError:
        return False
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if p.get("src"):
        u.bind((p["src"], 0))
    u.settimeout(0.5)
    for _ in range(3):
        u.sendto(b"ping", (p["dst"], p["port"]))
        try:
            data, _ = u.recvfrom(64)
            if data == b"ping":
                return True
        except OSError:
            pass
    return False
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
def icmp13():
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    r.settimeout(0.5)
    body = struct.pack("!HHIII", 0x4856, 1, 0, 0, 0)
    msg = struct.pack("!BBH", 13, 0, 0) + body
    msg = struct.pack("!BBH", 13, 0, csum(msg)) + body
    deadline = time.time() + 1.5
    r.sendto(msg, (p["dst"], 0))
    while time.time() < deadline:
        try:
            data, peer = r.recvfrom(256)
        except OSError:
            r.sendto(msg, (p["dst"], 0))
            continue
        ihl = (data[0] & 15) * 4
        if peer[0] == p["dst"] and data[ihl] == 14:
            return True
    return False
def icmp8():
    return subprocess.run(["ping", "-c1", "-W1", p["dst"]], stdout=subprocess.DEVNULL).returncode == 0
def arp():
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    ip = lambda a: socket.inet_aton(a)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    frame = mac(p["victim_mac"]) + mac(p["my_mac"]) + b"\x08\x06"
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
    frame += mac(p["my_mac"]) + ip(p["claim_ip"]) + mac(p["victim_mac"]) + ip(p["victim_ip"])
    for _ in range(3):
        s.send(frame)
        time.sleep(0.1)
    return True
def ip_cmd(*args):
    subprocess.run(["ip"] + list(args), check=True, stdout=subprocess.DEVNULL)
kind = p["kind"]
if p.get("src"):
    ip_cmd("addr", "add", p["src"] + "/32", "dev", "eth0")
orig = None
if p.get("mac"):
    orig = open("/sys/class/net/eth0/address").read().strip()
    ip_cmd("link", "set", "eth0", "address", p["mac"])
try:
    ok = {"tcp": tcp, "udp": udp, "icmp8": icmp8, "icmp13": icmp13, "arp": arp}[kind]()
finally:
    if orig:
        ip_cmd("link", "set", "eth0", "address", orig)
    if p.get("src"):
        ip_cmd("addr", "del", p["src"] + "/32", "dev", "eth0")
sys.exit(0 if ok else 3)
"#;

/// What a probe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Tcp,
    Udp,
    /// ICMP of a type (8 echo request, 13 timestamp request).
    Icmp(u8),
    /// TCP to 169.254.169.254:80 (a listener in the sender's node namespace).
    Metadata,
    /// ARP reply claiming `claim`'s address, sent to `to` (learned or not).
    Arp,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Probe {
    what: &'static str,
    kind: Kind,
    from: &'static str,
    /// The destination VM (for ARP: the victim; for metadata: unused).
    to: &'static str,
    port: u16,
    /// Send from this address instead of the VM's own.
    spoof_ip: Option<Ipv4Addr>,
    /// Send from this MAC instead of the VM's own.
    spoof_mac: Option<&'static str>,
    /// For ARP: the VM whose address the reply claims.
    claim: Option<&'static str>,
}

fn probe(what: &'static str, kind: Kind, from: &'static str, to: &'static str, port: u16) -> Probe {
    Probe {
        what,
        kind,
        from,
        to,
        port,
        spoof_ip: None,
        spoof_mac: None,
        claim: None,
    }
}

/// The table: at least 25 real connections covering every rule kind of the issue.
fn probes() -> Vec<Probe> {
    use Kind::*;
    let mut p = vec![
        probe("group ref: web tcp/80 from app", Tcp, "a1", "a2", 80),
        probe("group ref: non-member refused", Tcp, "a4", "a2", 80),
        probe("port range 8000-8010, low end", Tcp, "a1", "a2", 8000),
        probe("port range 8000-8010, high end", Tcp, "a1", "a2", 8010),
        probe("port range, one past the end", Tcp, "a1", "a2", 8011),
        probe("CIDR rule 10.30.0.0/16", Tcp, "a4", "a2", 8005),
        probe("CIDR rule 10.30.1.0/24 tcp/22", Tcp, "a4", "a1", 22),
        probe("no rule for tcp/23", Tcp, "a4", "a1", 23),
        probe("icmp echo allowed (type 8)", Icmp(8), "a1", "a2", 0),
        probe("icmp echo vs type-13-only group", Icmp(8), "a1", "a3", 0),
        probe("icmp timestamp (type 13) allowed", Icmp(13), "a1", "a3", 0),
        probe(
            "reply via conntrack (db: no egress back)",
            Tcp,
            "a1",
            "a3",
            5432,
        ),
        probe("group ref: db from non-app refused", Tcp, "a5", "a3", 5432),
        probe("restricted egress: tcp/8000 out", Tcp, "a3", "a2", 8000),
        probe("restricted egress: tcp/443 out", Tcp, "a3", "a2", 443),
        probe("restricted egress: icmp out", Icmp(8), "a3", "a2", 0),
        probe("udp range 7000-7005", Udp, "a1", "a5", 7000),
        probe("udp one past the range", Udp, "a1", "a5", 7006),
        probe("udp reply via conntrack (db)", Udp, "a1", "a3", 6000),
        probe("udp: restricted egress", Udp, "a3", "a5", 7001),
        probe("udp: receiver has no udp rule", Udp, "a1", "a2", 7000),
        probe("default group: member to member", Tcp, "a5", "a4", 8080),
        probe("default group: non-member refused", Tcp, "a1", "a4", 8080),
        probe("default group: udp member", Udp, "a4", "a5", 7006),
        probe("default group: icmp member", Icmp(8), "a4", "a5", 0),
        probe("VPC B -> A (rule allows 10.31/16)", Tcp, "b1", "a5", 9000),
        probe("VPC A -> B (B allows all)", Tcp, "a1", "b1", 9000),
        probe("VPC A -> B icmp", Icmp(8), "a1", "b1", 0),
        probe("metadata from the default subnet", Metadata, "d1", "d1", 80),
        probe("metadata from VPC A", Metadata, "a1", "a1", 80),
        probe("metadata from VPC B", Metadata, "b1", "b1", 80),
    ];
    p.push(Probe {
        spoof_ip: Some(SPOOFED_IP),
        ..probe("IP spoof (CIDR rule would allow)", Tcp, "a4", "a2", 8005)
    });
    p.push(Probe {
        spoof_ip: Some(SPOOFED_IP),
        ..probe("IP spoof, udp", Udp, "a4", "a5", 7000)
    });
    p.push(Probe {
        spoof_mac: Some(SPOOFED_MAC),
        ..probe("MAC spoof (group rule would allow)", Tcp, "a1", "a2", 80)
    });
    p.push(Probe {
        claim: Some("a2"),
        ..probe("ARP spoof: a4 claims a2's IP to a1", Arp, "a4", "a1", 0)
    });
    p.push(Probe {
        claim: Some("a4"),
        ..probe("ARP: a4 announces its own IP to a1", Arp, "a4", "a1", 0)
    });
    p
}

/// Where each VM runs: all on node 1, or (3 nodes) a colouring of the probe graph so that every
/// sender and receiver are on different nodes.
fn placement(nodes: usize, vm: &str) -> usize {
    if nodes == 1 {
        return 1;
    }
    match vm {
        "a1" | "d1" => 1,
        "a2" | "a5" => 2,
        _ => 3,
    }
}

/// A VM of the scenario.
#[derive(Debug, Clone)]
struct Vm {
    eni: String,
    ip: Ipv4Addr,
    mac: String,
    node: usize,
}

/// The scenario as built through the aws CLI.
struct Scenario {
    vms: BTreeMap<&'static str, Vm>,
}

impl Scenario {
    fn vm(&self, name: &str) -> &Vm {
        self.vms.get(name).unwrap_or_else(|| panic!("no VM {name}"))
    }
}

/// An ingress or egress rule as `--ip-permissions` JSON: protocol, ports (ICMP: type and
/// code), and a CIDR or group peer.
fn permission(proto: &str, from: i32, to: i32, peer: &str) -> String {
    let mut p = json!({"IpProtocol": proto});
    if proto != "-1" {
        p["FromPort"] = json!(from);
        p["ToPort"] = json!(to);
    }
    if peer.starts_with("sg-") {
        p["UserIdGroupPairs"] = json!([{"GroupId": peer}]);
    } else {
        p["IpRanges"] = json!([{"CidrIp": peer}]);
    }
    json!([p]).to_string()
}

fn authorize(aws: &Aws, direction: &str, group: &str, perm: &str) {
    aws.call(&[
        "ec2",
        &format!("authorize-security-group-{direction}"),
        "--group-id",
        group,
        "--ip-permissions",
        perm,
    ]);
}

fn default_group(aws: &Aws, vpc: &str) -> String {
    let v = aws.call(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "Name=group-name,Values=default",
    ]);
    text(&v["SecurityGroups"][0], &["GroupId"])
}

/// Build the scenario of the table through the aws CLI and plug its VMs on `nodes` nodes.
fn build_scenario(lab: &Lab, aws: &Aws, nodes: usize) -> Scenario {
    let (vpc_a, sub_a) = create_vpc(aws, "10.30.0.0/16", "10.30.1.0/24");
    let (vpc_b, sub_b) = create_vpc(aws, "10.31.0.0/16", "10.31.1.0/24");
    let app = create_group(aws, &vpc_a, "app");
    let web = create_group(aws, &vpc_a, "web");
    let db = create_group(aws, &vpc_a, "db");
    let udp = create_group(aws, &vpc_a, "udp");
    let open = create_group(aws, &vpc_b, "open");
    let default_a = default_group(aws, &vpc_a);

    // Independent calls run side by side (each aws CLI run costs most of a second); the db
    // group's egress is replaced in order: revoke the default allow-all, then allow tcp/443.
    let ingress = [
        (&app, permission("tcp", 22, 22, "10.30.1.0/24")),
        (&web, permission("tcp", 80, 80, &app)),
        (&web, permission("tcp", 8000, 8010, "10.30.0.0/16")),
        (&web, permission("tcp", 443, 443, "10.30.0.0/16")),
        (&web, permission("icmp", 8, -1, "10.30.0.0/16")),
        (&db, permission("tcp", 5432, 5432, &app)),
        (&db, permission("udp", 6000, 6000, &app)),
        (&db, permission("icmp", 13, -1, "0.0.0.0/0")),
        (&udp, permission("udp", 7000, 7005, "10.30.0.0/16")),
        (&udp, permission("tcp", 9000, 9000, "10.31.0.0/16")),
        (&open, permission("-1", 0, 0, "0.0.0.0/0")),
    ];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            aws.call(&[
                "ec2",
                "revoke-security-group-egress",
                "--group-id",
                &db,
                "--ip-permissions",
                &permission("-1", 0, 0, "0.0.0.0/0"),
            ]);
            authorize(
                aws,
                "egress",
                &db,
                &permission("tcp", 443, 443, "0.0.0.0/0"),
            );
        });
        for (group, perm) in &ingress {
            scope.spawn(move || authorize(aws, "ingress", group, perm));
        }
    });

    let default_vpc = aws.call(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
    ]);
    let sub_d = text(&default_vpc["Subnets"][0], &["SubnetId"]);

    let plan: [(&'static str, &str, Vec<&str>); 7] = [
        ("a1", &sub_a, vec![&app]),
        ("a2", &sub_a, vec![&web]),
        ("a3", &sub_a, vec![&db]),
        ("a4", &sub_a, vec![]),
        ("a5", &sub_a, vec![&udp, &default_a]),
        ("b1", &sub_b, vec![&open]),
        ("d1", &sub_d, vec![]),
    ];
    let enis: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .iter()
            .map(|(name, subnet, groups)| {
                scope.spawn(move || (*name, create_eni(aws, subnet, groups)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("create-network-interface"))
            .collect()
    });
    // One at a time: `vm create` records the VM in the lab's state file.
    let mut vms = BTreeMap::new();
    for (name, (eni, ip, mac)) in enis {
        let node = placement(nodes, name);
        lab.vm_create(&eni, node);
        vms.insert(name, Vm { eni, ip, mac, node });
    }
    Scenario { vms }
}

/// The reference model's node states: per node, its VMs on distinct fake ports, the others
/// behind a fake tunnel port per node, the gateway, and the metadata switch.
fn reference_states(up: &Up, s: &Scenario, nodes: usize, metadata: bool) -> Vec<NodeState> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let store = NatsStore::connect(&up.nats_urls, NatsOptions::default())
            .await
            .expect("connect to the lab's NATS");
        let options = RepoOptions {
            replicas: 3,
            ..RepoOptions::default()
        };
        let repo = VpcRepo::open(&store, &options)
            .await
            .expect("open the lab's VPC store");
        let mut states = Vec::new();
        for node in 1..=nodes {
            let mut bindings = NodeBindings {
                gateway: Some(GatewayBinding {
                    ofport: GATEWAY_OFPORT,
                    mac: None,
                }),
                metadata,
                ..NodeBindings::default()
            };
            for (k, vm) in s.vms.values().enumerate() {
                let id = NetworkInterfaceId::parse(&vm.eni).expect("an ENI id");
                if vm.node == node {
                    bindings
                        .ports
                        .insert(id, 10 + u32::try_from(k).expect("few VMs"));
                } else {
                    let tunnel = TUNNEL_OFPORT + u32::try_from(vm.node).expect("few nodes");
                    bindings.remotes.insert(id, tunnel);
                }
            }
            let state = repo.node_state(&bindings).await.expect("node state");
            assert_eq!(
                state.ports.len() + state.remotes.len(),
                s.vms.len(),
                "every ENI is bound in the reference state of node {node}"
            );
            states.push(state);
        }
        states
    })
}

fn mac(text: &str) -> MacAddr {
    text.parse().expect("a MAC address")
}

/// The first packet of `p` as it leaves the sender.
fn first_packet(s: &Scenario, state: &NodeState, p: &Probe) -> Packet {
    let from = s.vm(p.from);
    let to = s.vm(p.to);
    let in_port = state
        .ports
        .iter()
        .find(|l| l.eni.as_str() == from.eni)
        .map(|l| l.ofport)
        .expect("the sender is local on its node");
    let eth_src = mac(p.spoof_mac.unwrap_or(&from.mac));
    let same_subnet = |a: Ipv4Addr, b: Ipv4Addr| a.octets()[..3] == b.octets()[..3];
    if p.kind == Kind::Arp {
        let claim = s.vm(p.claim.expect("an ARP probe claims an address"));
        return Packet {
            in_port,
            tun_id: None,
            eth_src,
            eth_dst: mac(&to.mac),
            vlan: None,
            l3: L3::Arp {
                op: 2,
                sha: eth_src,
                spa: claim.ip,
                tha: mac(&to.mac),
                tpa: to.ip,
            },
        };
    }
    let dst = if p.kind == Kind::Metadata {
        METADATA
    } else {
        to.ip
    };
    let transport = match p.kind {
        Kind::Tcp | Kind::Metadata => Transport::Tcp {
            src: 40000,
            dst: p.port,
        },
        Kind::Udp => Transport::Udp {
            src: 40000,
            dst: p.port,
        },
        Kind::Icmp(t) => Transport::Icmp {
            icmp_type: t,
            code: 0,
        },
        Kind::Arp => unreachable!("handled above"),
    };
    Packet {
        in_port,
        tun_id: None,
        eth_src,
        eth_dst: if p.kind != Kind::Metadata && same_subnet(from.ip, dst) {
            mac(&to.mac)
        } else {
            ROUTER_MAC
        },
        vlan: None,
        l3: L3::Ipv4 {
            src: p.spoof_ip.unwrap_or(from.ip),
            dst,
            transport,
            ct: CtState::New,
        },
    }
}

/// The reference verdict: the sender's node decides; a packet sent into a tunnel is decided
/// again by the receiver's node as it arrives there.
fn expected(s: &Scenario, states: &[NodeState], p: &Probe) -> (bool, String) {
    let from = s.vm(p.from);
    let state = &states[from.node - 1];
    let packet = first_packet(s, state, p);
    let first = reference::decide(state, &packet);
    let Some(out) = first.output.filter(|o| o.tun_id.is_some()) else {
        return (first.allowed(), reason(&first.reason));
    };
    let node = out.port - TUNNEL_OFPORT;
    let there = &states[usize::try_from(node).expect("a node") - 1];
    let arrived = Packet {
        in_port: TUNNEL_OFPORT + u32::try_from(from.node).expect("a node"),
        tun_id: out.tun_id,
        eth_dst: out.eth_dst,
        ..packet
    };
    let second = reference::decide(there, &arrived);
    (
        second.allowed(),
        format!(
            "n{}: {} / n{node}: {}",
            from.node,
            reason(&first.reason),
            reason(&second.reason)
        ),
    )
}

/// A reason, short: the rules that allowed a new connection by id.
fn reason(r: &Reason) -> String {
    let rule = |side: &Option<(SecurityGroupId, SecurityGroupRuleId)>| {
        side.as_ref()
            .map_or("-".to_owned(), |(_, id)| id.as_str().to_owned())
    };
    match r {
        Reason::NewConnection { egress, ingress } => {
            format!("new (egress {}, ingress {})", rule(egress), rule(ingress))
        }
        other => format!("{other:?}"),
    }
}

/// Start the servers every probe needs and the metadata listeners; wait until they listen.
fn start_servers(lab: &Lab, up: &Up, s: &Scenario, probes: &[Probe]) -> Vec<Child> {
    let mut children = Vec::new();
    let mut ports: BTreeMap<&str, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
    for p in probes {
        match p.kind {
            Kind::Tcp => {
                ports.entry(p.to).or_default().0.insert(p.port);
            }
            Kind::Udp => {
                ports.entry(p.to).or_default().1.insert(p.port);
            }
            _ => {}
        }
    }
    let join = |set: &BTreeSet<u16>| set.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    for (vm, (tcp, udp)) in &ports {
        let ready = lab.scratch.path().join(format!("ready-{vm}"));
        let ready_s = ready.to_str().expect("utf-8 path");
        let (t, u) = (format!("tcp:{}", join(tcp)), format!("udp:{}", join(udp)));
        children.push(lab.spawn(&s.vm(vm).eni, &["python3", "-c", SERVER, ready_s, &t, &u]));
        wait_for_file(&ready, &format!("the servers of {vm}"));
    }
    // The metadata address served in every node namespace, as the host would.
    for (i, ns) in up.node_namespaces.iter().enumerate() {
        let ip = |args: &[&str]| {
            lab_support::run(Command::new("ip").args(["-n", ns]).args(args)).ok();
        };
        ip(&["addr", "add", "169.254.169.254/32", "dev", "hive-int0"]);
        let ready = lab.scratch.path().join(format!("ready-md{i}"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", SERVER])
            .arg(&ready)
            .args(["tcp:80", "udp:", "169.254.169.254"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the metadata listener");
        children.push(child);
        wait_for_file(&ready, "the metadata listener");
    }
    // They run until `lab down` clears the namespaces.
    children
}

/// Stop the `lab vm exec` processes of servers (what they run inside the VMs goes with `lab
/// down`).
fn reap(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Run one probe for real; true when the connection worked (ARP: the victim learned the
/// attacker's MAC for the claimed address).
fn run_probe(lab: &Lab, s: &Scenario, p: &Probe) -> bool {
    let from = s.vm(p.from);
    let to = s.vm(p.to);
    let mut spec = json!({"dst": to.ip.to_string(), "port": p.port});
    spec["kind"] = json!(match p.kind {
        Kind::Tcp | Kind::Metadata => "tcp".to_owned(),
        Kind::Udp => "udp".to_owned(),
        Kind::Icmp(t) => format!("icmp{t}"),
        Kind::Arp => "arp".to_owned(),
    });
    if p.kind == Kind::Metadata {
        spec["dst"] = json!(METADATA.to_string());
    }
    if let Some(ip) = p.spoof_ip {
        spec["src"] = json!(ip.to_string());
    }
    if let Some(m) = p.spoof_mac {
        spec["mac"] = json!(m);
    }
    if p.kind == Kind::Arp {
        let claim = s.vm(p.claim.expect("an ARP probe claims an address"));
        let claim_ip = claim.ip.to_string();
        // The victim accepts unsolicited replies (so that a delivered lie would be learned)
        // and forgets what it knew about the claimed address.
        lab.exec(
            &to.eni,
            &["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"],
        )
        .ok();
        lab.exec(
            &to.eni,
            &["ip", "neigh", "flush", "to", &claim_ip, "dev", "eth0"],
        )
        .ok();
        spec["victim_ip"] = json!(to.ip.to_string());
        spec["victim_mac"] = json!(to.mac);
        spec["claim_ip"] = json!(claim_ip);
        spec["my_mac"] = json!(from.mac);
        lab.exec(&from.eni, &["python3", "-c", PROBE, &spec.to_string()])
            .ok();
        std::thread::sleep(Duration::from_millis(200));
        let neigh = lab
            .exec(
                &to.eni,
                &["ip", "neigh", "show", "to", &claim_ip, "dev", "eth0"],
            )
            .ok();
        return neigh
            .stdout
            .to_lowercase()
            .contains(&from.mac.to_lowercase());
    }
    let r = lab.exec(&from.eni, &["python3", "-c", PROBE, &spec.to_string()]);
    assert!(
        r.code == 0 || r.code == 3,
        "probe {} crashed: {}{}",
        p.what,
        r.stdout,
        r.stderr
    );
    r.code == 0
}

/// Run the probes: plain ones concurrently (a few at a time), those that change a VM's
/// interface (spoofing, ARP) one after the other.
fn run_probes(lab: &Lab, s: &Scenario, probes: &[Probe]) -> Vec<bool> {
    let exclusive =
        |p: &Probe| p.spoof_mac.is_some() || p.spoof_ip.is_some() || p.kind == Kind::Arp;
    let mut got = vec![false; probes.len()];
    let plain: Vec<usize> = (0..probes.len())
        .filter(|&i| !exclusive(&probes[i]))
        .collect();
    for chunk in plain.chunks(8) {
        let results: Vec<(usize, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&i| scope.spawn(move || (i, run_probe(lab, s, &probes[i]))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread"))
                .collect()
        });
        for (i, ok) in results {
            got[i] = ok;
        }
    }
    for i in (0..probes.len()).filter(|&i| exclusive(&probes[i])) {
        got[i] = run_probe(lab, s, &probes[i]);
    }
    got
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Tcp => "tcp",
        Kind::Udp => "udp",
        Kind::Icmp(_) => "icmp",
        Kind::Metadata => "metadata",
        Kind::Arp => "arp",
    }
}

/// Build the scenario on a lab of `nodes` nodes, run the table, and check it against the
/// reference model.
fn connection_table(name: &str, nodes: usize, metadata: bool) {
    require_machine();
    let started = Instant::now();
    let lab = Lab::new(name);
    let _logs = KeepLogs(&lab);
    let up = lab.up(nodes, metadata);
    let aws = Aws::new(&up);
    let s = build_scenario(&lab, &aws, nodes);
    let probes = probes();
    assert!(probes.len() >= 25, "at least 25 probes");
    if nodes > 1 {
        for p in &probes {
            if !matches!(p.kind, Kind::Metadata) {
                assert_ne!(
                    s.vm(p.from).node,
                    s.vm(p.to).node,
                    "{}: sender and receiver on one node",
                    p.what
                );
            }
        }
    }
    let states = reference_states(&up, &s, nodes, metadata);
    let want: Vec<(bool, String)> = probes.iter().map(|p| expected(&s, &states, p)).collect();
    let servers = start_servers(&lab, &up, &s, &probes);
    eprintln!("scenario ready after {:?}", started.elapsed());

    // Remote bindings reach other nodes through the store's watch: a table that disagrees
    // is run again (at most twice) before it counts, and the retries are reported.
    let mut got = run_probes(&lab, &s, &probes);
    for round in 1..=2 {
        if got.iter().zip(&want).all(|(g, (w, _))| g == w) {
            break;
        }
        eprintln!("round {round}: the table disagrees, running it again in 2 s");
        std::thread::sleep(Duration::from_secs(2));
        got = run_probes(&lab, &s, &probes);
    }

    let mut table = String::from(
        "\n  # | probe                                      | from -> to       | kind        | expected | got   | reference reason\n",
    );
    let mut mismatches = 0;
    for (i, (p, (g, (w, why)))) in probes.iter().zip(got.iter().zip(&want)).enumerate() {
        let verdict = |b: bool| if b { "allow" } else { "drop" };
        let mark = if g == w { "" } else { "  <-- MISMATCH" };
        mismatches += usize::from(g != w);
        let ends = format!(
            "{}@n{} -> {}@n{}",
            p.from,
            s.vm(p.from).node,
            if p.kind == Kind::Metadata { "md" } else { p.to },
            if p.kind == Kind::Metadata {
                s.vm(p.from).node
            } else {
                s.vm(p.to).node
            }
        );
        let port = if p.port != 0 {
            format!("/{}", p.port)
        } else {
            String::new()
        };
        table.push_str(&format!(
            "{:>3} | {:<42} | {:<16} | {:<11} | {:<8} | {:<5} | {why}{mark}\n",
            i + 1,
            p.what,
            ends,
            format!("{}{port}", kind_name(p.kind)),
            verdict(*w),
            verdict(*g),
        ));
    }
    reap(servers);
    eprintln!("{table}");
    eprintln!(
        "{} probes, {mismatches} mismatch(es), whole test {:?}",
        probes.len(),
        started.elapsed()
    );
    assert_eq!(
        mismatches, 0,
        "real packets disagree with the reference model:{table}"
    );
    // Both verdicts of every protocol kind, so the table proves something each way.
    for k in ["tcp", "udp", "icmp", "arp"] {
        for verdict in [true, false] {
            assert!(
                probes
                    .iter()
                    .zip(&want)
                    .any(|(p, (w, _))| kind_name(p.kind) == k && *w == verdict),
                "the table has no {k} row expected to {}",
                if verdict { "pass" } else { "drop" }
            );
        }
    }
    if metadata {
        for verdict in [true, false] {
            assert!(
                probes
                    .iter()
                    .zip(&want)
                    .any(|(p, (w, _))| p.kind == Kind::Metadata && *w == verdict),
                "metadata rows of both verdicts"
            );
        }
    }
}

#[test]
fn one_node_connection_table_matches_the_reference_model() {
    connection_table("pk1", 1, true);
}

#[test]
fn three_node_connection_table_over_the_tunnel() {
    connection_table("pk3", 3, false);
}

/// A new TCP connection to every target every 5 ms, each abandoned after 200 ms; one line per
/// outcome: `target start ok|fail|err` (err: refused, i.e. the SYN got through). Args: log
/// file, stop file, then `name:ip:port`...
const PROBER: &str = r#"
import os, selectors, socket, struct, sys, time
out = open(sys.argv[1], "w", buffering=1)
stop = sys.argv[2]
targets = [(t.split(":")[0], t.split(":")[1], int(t.split(":")[2])) for t in sys.argv[3:]]
sel = selectors.DefaultSelector()
pending = {}
TICK, TIMEOUT = 0.005, 0.2
next_tick = time.time()
checked = 0
while True:
    now = time.time()
    if now >= next_tick:
        for name, ip, port in targets:
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.connect_ex((ip, port))
            sel.register(s, selectors.EVENT_WRITE)
            pending[s] = (name, now)
        next_tick = max(next_tick + TICK, now)
        if now - checked > 0.1:
            checked = now
            if os.path.exists(stop):
                break
    for key, _ in sel.select(max(0.0, next_tick - time.time())):
        s = key.fileobj
        name, start = pending.pop(s)
        sel.unregister(s)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        out.write("%s %.6f %s\n" % (name, start, "ok" if err == 0 else "err"))
        s.close()
    now = time.time()
    for s, (name, start) in list(pending.items()):
        if now - start > TIMEOUT:
            del pending[s]
            sel.unregister(s)
            s.close()
            out.write("%s %.6f fail\n" % (name, start))
"#;

/// The API side of the live-change trials, in one boto3 process: per case (a thread each),
/// `trials` times authorize then revoke one ingress rule, each time waiting until the prober's
/// log shows a connection that obeys the new rule. Prints the latencies as JSON.
const TRIALS: &str = r#"
import json, sys, threading, time
import boto3
cfg = json.loads(sys.argv[1])
session = boto3.Session(profile_name=cfg["profile"], region_name="us-east-1")
records = {c["name"]: [] for c in cfg["cases"]}
lock = threading.Lock()
done = threading.Event()
def tail():
    with open(cfg["log"]) as f:
        buf = ""
        while not done.is_set():
            chunk = f.read()
            if not chunk:
                time.sleep(0.002)
                continue
            buf += chunk
            *lines, buf = buf.split("\n")
            with lock:
                for line in lines:
                    name, start, outcome = line.split()
                    if name in records:
                        records[name].append((float(start), outcome))
def seen(name, since, outcome):
    with lock:
        return any(s >= since and o == outcome for s, o in records[name])
def wait_for(name, since, outcome, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        if seen(name, since, outcome):
            return True
        time.sleep(0.002)
    return False
results = {}
def run(case, client):
    perm = [{"IpProtocol": "tcp", "FromPort": case["port"], "ToPort": case["port"],
             "UserIdGroupPairs": [{"GroupId": case["source_group"]}]}]
    marks, api = [], []
    for _ in range(cfg["trials"]):
        t0 = time.time()
        client.authorize_security_group_ingress(GroupId=case["group"], IpPermissions=perm)
        a = time.time()
        wait_for(case["name"], a, "ok", 5.0)
        t1 = time.time()
        client.revoke_security_group_ingress(GroupId=case["group"], IpPermissions=perm)
        r = time.time()
        wait_for(case["name"], r, "fail", 5.5)
        marks.append((a, r))
        api += [a - t0, r - t1]
    results[case["name"]] = (marks, api)
tailer = threading.Thread(target=tail, daemon=True)
tailer.start()
clients = [session.client("ec2", endpoint_url=cfg["endpoint"]) for _ in cfg["cases"]]
threads = [threading.Thread(target=run, args=(c, k)) for c, k in zip(cfg["cases"], clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
time.sleep(0.4)
done.set()
out = {}
for name, (marks, api) in results.items():
    with lock:
        recs = sorted(records[name])
    auth, rev, errs, stuck = [], [], 0, []
    for i, (a, r) in enumerate(marks):
        nxt = marks[i + 1][0] if i + 1 < len(marks) else float("inf")
        ok = [s for s, o in recs if a <= s < r and o == "ok"]
        fail = [s for s, o in recs if r <= s < nxt and o == "fail"]
        errs += sum(1 for s, o in recs if a <= s < nxt and o == "err")
        auth.append(min(ok) - a if ok else None)
        rev.append(min(fail) - r if fail else None)
        # A trial that never flipped: when did the rule show up at all, if ever?
        if not ok:
            later = [s - a for s, o in recs if s >= a and o == "ok"]
            stuck.append({"trial": i, "change": "authorize", "at": a, "window": r - a,
                          "first_ok_after": min(later) if later else None})
        if not fail:
            later = [s - r for s, o in recs if s >= r and o == "fail"]
            stuck.append({"trial": i, "change": "revoke", "at": r, "window": nxt - r,
                          "first_fail_after": min(later) if later else None})
    out[name] = {"authorize": auth, "revoke": rev, "api": api, "refused": errs, "stuck": stuck,
                 "attempts": sum(1 for s, _ in recs if s >= marks[0][0])}
print(json.dumps(out))
"#;

/// On failure, the lab's logs are copied to `/tmp/hive-lab-logs-<name>` before `lab down`
/// removes them (declared after the lab, so dropped first).
struct KeepLogs<'a>(&'a Lab);

impl Drop for KeepLogs<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let to = std::env::temp_dir().join(format!("hive-lab-logs-{}", self.0.name));
            let _ = Command::new("cp")
                .args(["-r", "--no-preserve=mode"])
                .arg(&self.0.dir)
                .arg(&to)
                .status();
            eprintln!("lab files kept in {}", to.display());
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[test]
fn live_rule_changes_take_effect_within_measured_latency() {
    require_machine();
    let python = venv_python();
    let started = Instant::now();
    let lab = Lab::new("pkl");
    let _logs = KeepLogs(&lab);
    let up = lab.up(3, false);
    let aws = Aws::new(&up);
    let (vpc, subnet) = create_vpc(&aws, "10.40.0.0/16", "10.40.1.0/24");
    let sender_group = create_group(&aws, &vpc, "sender");
    let local_group = create_group(&aws, &vpc, "local");
    let cross_group = create_group(&aws, &vpc, "cross");
    let (sender, _, _) = create_eni(&aws, &subnet, &[&sender_group]);
    let (local, local_ip, _) = create_eni(&aws, &subnet, &[&local_group]);
    let (cross, cross_ip, _) = create_eni(&aws, &subnet, &[&cross_group]);
    lab.vm_create(&sender, 1);
    lab.vm_create(&local, 1);
    lab.vm_create(&cross, 2);
    let mut servers = Vec::new();
    for (name, eni) in [("local", &local), ("cross", &cross)] {
        let ready = lab.scratch.path().join(format!("ready-{name}"));
        let ready_s = ready.to_str().expect("utf-8 path");
        servers.push(lab.spawn(eni, &["python3", "-c", SERVER, ready_s, "tcp:7100", "udp:"]));
        wait_for_file(&ready, "the listener");
    }
    let log = lab.scratch.path().join("prober.log");
    let stop = lab.scratch.path().join("prober.stop");
    std::fs::write(&log, "").expect("create the log");
    let mut prober = lab.spawn(
        &sender,
        &[
            "python3",
            "-c",
            PROBER,
            log.to_str().expect("utf-8 path"),
            stop.to_str().expect("utf-8 path"),
            &format!("local:{local_ip}:7100"),
            &format!("cross:{cross_ip}:7100"),
        ],
    );
    // Let the prober run into the closed door first.
    std::thread::sleep(Duration::from_millis(500));
    let trials = 100;
    let cfg = json!({
        "endpoint": up.endpoints[0],
        "profile": lab_support::PROFILE,
        "log": log,
        "trials": trials,
        "cases": [
            {"name": "local", "group": local_group, "source_group": sender_group, "port": 7100},
            {"name": "cross", "group": cross_group, "source_group": sender_group, "port": 7100},
        ],
    });
    let home = tempfile::tempdir().expect("tempdir");
    let measured_at = Instant::now();
    let out = lab_support::run(
        Command::new(&python)
            .args(["-c", TRIALS, &cfg.to_string()])
            .env("AWS_SHARED_CREDENTIALS_FILE", &up.credentials)
            .env("AWS_CONFIG_FILE", home.path().join("config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", home.path()),
    )
    .ok();
    let measured = measured_at.elapsed();
    std::fs::write(&stop, "").expect("stop the prober");
    let _ = prober.wait();
    reap(servers);
    let result: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("trial output is not JSON ({e}):\n{}", out.stdout));

    let mut report = format!(
        "\nlive rule changes: {trials} trials per case, prober every 5 ms, measured in {measured:?}\n  case  | change    |   p50 ms |   p99 ms |   max ms | API p50 ms\n"
    );
    let mut flips = Vec::new();
    for case in ["local", "cross"] {
        let r = &result[case];
        let mut api: Vec<f64> = r["api"]
            .as_array()
            .expect("api times")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        api.sort_by(f64::total_cmp);
        for change in ["authorize", "revoke"] {
            let all: Vec<Option<f64>> = r[change]
                .as_array()
                .expect("latencies")
                .iter()
                .map(Value::as_f64)
                .collect();
            assert_eq!(all.len(), trials, "{case} {change}: one latency per trial");
            let missing = all.iter().filter(|l| l.is_none()).count();
            let mut lat: Vec<f64> = all.into_iter().flatten().collect();
            lat.sort_by(f64::total_cmp);
            if lat.is_empty() {
                lat.push(f64::INFINITY);
            }
            report.push_str(&format!(
                "  {case:<5} | {change:<9} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1}\n",
                percentile(&lat, 0.5) * 1e3,
                percentile(&lat, 0.99) * 1e3,
                lat[lat.len() - 1] * 1e3,
                percentile(&api, 0.5) * 1e3,
            ));
            flips.push((case, change, missing, lat[lat.len() - 1]));
        }
        report.push_str(&format!(
            "  {case:<5} | {} attempts, {} refused (SYN reached the VM while the rule was off)\n",
            r["attempts"], r["refused"]
        ));
        if r["stuck"].as_array().is_some_and(|a| !a.is_empty()) {
            report.push_str(&format!("  {case:<5} | never flipped: {}\n", r["stuck"]));
        }
    }
    eprintln!("{report}");
    eprintln!("whole test {:?}", started.elapsed());
    for (case, change, missing, max) in flips {
        assert_eq!(
            missing, 0,
            "{case} {change}: some trials never flipped{report}"
        );
        assert!(
            max < 5.0,
            "{case} {change}: a trial took {max} s to flip{report}"
        );
    }
}
