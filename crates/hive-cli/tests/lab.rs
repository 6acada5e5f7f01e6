//! `hive-cli lab` for real, as root: namespaces, Open vSwitch on the userspace datapath, a
//! 3-node NATS cluster, `hive-api` processes, and the real aws CLI.
//!
//! - a non-root run is refused at once, with the hint;
//! - `lab up --nodes 1`, a VPC, subnet, security group and two ENIs made with the aws CLI, two
//!   VMs plugged with `lab vm create`: a TCP connection between them is dropped, then
//!   accepted once `authorize-security-group-ingress` allows it; `lab down` leaves no
//!   namespace, process or directory behind;
//! - a failed `up` (`--hive-api /bin/false`) leaves nothing behind either.
//!
//! Needs root, iproute2, ethtool, iptables, nats-server, openvswitch-switch and the aws CLI
//! (`HIVE_AWS`, `.venv/bin/aws` as `scripts/test` makes it, or `aws` on PATH). A missing
//! piece is a failure naming the install command, never a skip. Each test uses its own lab
//! name, so they run in parallel.
//!
//! Also the NAT and fault items: guide section 1.5 (a default-subnet VM reaches the
//! outside through `hive-int0`, masqueraded; nothing does without NAT), a NATS server killed
//! while rules change, a node's `hive-api` killed and restarted, a node stopped.

mod lab_support;

use std::process::Command;
use std::time::{Duration, Instant};

use lab_support::{
    Aws, Lab, create_eni, create_group, create_vpc, find, hive_cli, require_machine, run, text,
    wait_until,
};

impl Lab {
    fn namespaces(&self) -> Vec<String> {
        run(Command::new(find("ip").expect("ip")).args(["netns", "list"]))
            .stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&format!("hl{}", self.name)))
            .map(str::to_owned)
            .collect()
    }

    /// Live processes whose command line names a path in the lab directory.
    fn processes(&self) -> Vec<String> {
        let needle = format!("{}/", self.dir.display());
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                line.contains(&needle).then(|| format!("{pid}: {line}"))
            })
            .collect()
    }

    fn assert_gone(&self) {
        assert_eq!(self.namespaces(), Vec::<String>::new(), "namespaces left");
        assert_eq!(self.processes(), Vec::<String>::new(), "processes left");
        assert!(!self.dir.exists(), "{} left", self.dir.display());
    }

    /// Plug ENI `eni` into node `node`; returns the VM's namespace.
    fn vm(&self, eni: &str, node: usize) -> String {
        text(&self.vm_create(eni, node), &["namespace"])
    }
}

#[test]
fn a_non_root_run_is_refused_with_the_hint() {
    require_machine();
    // A copy nobody-readable wherever the build lives (the target dir may be private).
    let tmp = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = tmp.path().join("hive-cli");
    std::fs::copy(hive_cli(), &bin).expect("copy hive-cli");
    let out = run(Command::new(find("setpriv").expect("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["lab", "up", "--name", "tln", "--dir"])
        .arg(tmp.path().join("lab")));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("must run as root"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: run as root"), "{}", out.stderr);
    assert!(!tmp.path().join("lab").exists());
}

#[test]
fn a_failed_up_leaves_nothing_behind() {
    require_machine();
    let lab = Lab::new("tlf");
    let out = lab.cli(&["lab", "up", "--nodes", "2", "--hive-api", "/bin/false"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("hive-api of node 1") && out.stderr.contains("did not start"),
        "{}",
        out.stderr
    );
    lab.assert_gone();
    // And the name is free again.
    assert!(
        lab.cli(&["lab", "status"])
            .stderr
            .contains("no lab named tlf")
    );
}

#[test]
fn one_node_lab_enforces_a_security_group_with_real_packets_and_goes_away() {
    require_machine();
    let lab = Lab::new("tl1");
    let started = Instant::now();
    let up = lab.up(1, false);
    let aws = Aws::new(&up);
    assert_eq!(up.node_namespaces, ["hltl1n1"]);
    // Everything through the real aws CLI.
    let (sg, enis) = network(&aws, "10.20", 2);
    let [(client, _), (server, server_ip)] = &enis[..] else {
        unreachable!("two interfaces")
    };
    lab.vm(client, 1);
    let server_ns = lab.vm(server, 1);
    let _listener = lab.listen(&server_ns, "0.0.0.0", 8080);
    // No ingress rule: the switch drops the SYN; the exit code comes through `vm exec`.
    assert_eq!(lab.connect(client, server_ip, 8080), None);
    allow_tcp(&aws, &sg, 8080);
    let allowed_at = Instant::now();
    let took = wait_until(Duration::from_secs(10), "8080 allowed", || {
        lab.connect(client, server_ip, 8080).is_some()
    });
    eprintln!("allowed {took:?} after the API answered");
    let status = lab.cli(&["lab", "status", "-o", "json"]).ok().json();
    assert_eq!(status["nodes"][0]["health"], true, "{status}");
    assert_eq!(status["vms"].as_array().map(Vec::len), Some(2), "{status}");
    assert!(status["nats"].as_array().is_some_and(|n| n.len() == 3));
    let _ = allowed_at;
    lab.cli(&["lab", "down"]).ok();
    lab.assert_gone();
    // Down again: nothing to do, still fine.
    lab.cli(&["lab", "down"]).ok();
    eprintln!("whole test took {:?}", started.elapsed());
}

/// A VPC `cidr` with one /24 subnet, a group `sg` (no ingress yet) and `n` interfaces in it;
/// returns (group id, [(eni id, private address)]).
fn network(aws: &Aws, cidr_prefix: &str, n: usize) -> (String, Vec<(String, String)>) {
    let (vpc, subnet) = create_vpc(
        aws,
        &format!("{cidr_prefix}.0.0/16"),
        &format!("{cidr_prefix}.1.0/24"),
    );
    let sg = create_group(aws, &vpc, "sg");
    let enis = (0..n)
        .map(|_| {
            let (id, ip, _) = create_eni(aws, &subnet, &[&sg]);
            (id, ip.to_string())
        })
        .collect();
    (sg, enis)
}

fn allow_tcp(aws: &Aws, sg: &str, port: u16) {
    aws.call(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        sg,
        "--protocol",
        "tcp",
        "--port",
        &port.to_string(),
        "--source-group",
        sg,
    ]);
}

/// Guide section 1.5: a VM in the default subnet reaches the outside namespace through
/// `hive-int0`, masqueraded as the node's uplink address; with `nat_enabled = false` it does
/// not reach it at all.
fn outside_through_the_gateway(name: &str, nat: bool) {
    require_machine();
    let lab = Lab::new(name);
    let up = lab.up_with(1, if nat { &[] } else { &["--no-nat"] });
    let aws = Aws::new(&up);
    let subnets = aws.call(&[
        "ec2",
        "describe-subnets",
        "--filters",
        "Name=default-for-az,Values=true",
    ]);
    let subnet = text(&subnets["Subnets"][0], &["SubnetId"]);
    assert_eq!(text(&subnets["Subnets"][0], &["CidrBlock"]), "10.0.1.0/24");
    // The default group allows all egress, as on AWS.
    let eni = aws.call(&["ec2", "create-network-interface", "--subnet-id", &subnet]);
    let eni = text(&eni, &["NetworkInterface", "NetworkInterfaceId"]);
    lab.vm(&eni, 1);
    let outside = format!("hl{name}out");
    let _listener = lab.listen(&outside, "203.0.113.1", 80);
    let got = lab.connect(&eni, "203.0.113.1", 80);
    if nat {
        let uplink = text(&up.summary["nodes"][0], &["uplink_ip"]);
        assert_eq!(
            got.as_deref(),
            Some(format!("seen {uplink}").as_str()),
            "the outside sees the node's uplink address"
        );
    } else {
        assert_eq!(got, None, "without NAT nothing reaches the outside");
    }
    lab.cli(&["lab", "down"]).ok();
}

#[test]
fn a_default_subnet_vm_reaches_the_outside_masqueraded_through_hive_int0() {
    outside_through_the_gateway("tlnt", true);
}

#[test]
fn without_nat_no_vm_reaches_the_outside() {
    outside_through_the_gateway("tlnn", false);
}

/// A NATS server is killed while rules change: every change the API acknowledged is kept, and
/// every node's switch ends up with it (`diff-flows` against the compiled program is clean).
#[test]
fn a_nats_server_killed_while_rules_change_loses_no_change() {
    require_machine();
    let lab = Lab::new("tlkn");
    let up = lab.up_with(3, &[]);
    let aws = Aws::new(&up);
    let (sg, enis) = network(&aws, "10.60", 2);
    lab.vm(&enis[0].0, 1);
    let server_ns = lab.vm(&enis[1].0, 2);
    let ports: Vec<u16> = (7000..7020).collect();
    for (k, port) in ports.iter().enumerate() {
        if k == 6 {
            lab.cli(&["lab", "nats", "kill", "1"]).ok();
        }
        if k == 14 {
            lab.cli(&["lab", "nats", "start", "1"]).ok();
        }
        // The aws CLI retries what the server says is retryable; a call that still fails was
        // not acknowledged, and is tried again (a duplicate then means it had landed).
        let p = port.to_string();
        let mut attempts = 0;
        loop {
            let answer = aws.try_call(&[
                "ec2",
                "authorize-security-group-ingress",
                "--group-id",
                &sg,
                "--protocol",
                "tcp",
                "--port",
                &p,
                "--source-group",
                &sg,
            ]);
            match answer {
                Ok(_) => break,
                Err(e) if e.contains("InvalidPermission.Duplicate") => break,
                Err(e) => {
                    attempts += 1;
                    assert!(attempts < 10, "authorize {port} never acknowledged: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }
    // Every acknowledged rule is there, read through every node.
    for i in 1..=3 {
        let groups =
            Aws::on_node(&up, i).call(&["ec2", "describe-security-groups", "--group-ids", &sg]);
        let mut have: Vec<u64> = groups["SecurityGroups"][0]["IpPermissions"]
            .as_array()
            .expect("permissions")
            .iter()
            .filter_map(|p| p["FromPort"].as_u64())
            .collect();
        have.sort_unstable();
        let want: Vec<u64> = ports.iter().map(|p| u64::from(*p)).collect();
        assert_eq!(have, want, "rules seen through node {i}");
    }
    // And every switch holds exactly its compiled program, the new rules included.
    for i in 1..=3 {
        wait_until(
            Duration::from_secs(20),
            &format!("node {i} in sync"),
            || lab.node_cli(&up, i, &["vpc", "flows", "--diff"]).code == 0,
        );
    }
    let _listener = lab.listen(&server_ns, "0.0.0.0", 7019);
    assert!(
        lab.connect(&enis[0].0, &enis[1].1, 7019).is_some(),
        "the last rule works across nodes"
    );
    lab.cli(&["lab", "down"]).ok();
}

/// A node's `hive-api` is killed: its switch keeps enforcing the last program (allowed stays
/// allowed, refused stays refused, also for a change made meanwhile on another node); after a
/// restart it catches up and `diff-flows` against the compiled program is clean.
#[test]
fn a_killed_hive_api_leaves_its_vms_protected_and_catches_up_on_restart() {
    require_machine();
    let lab = Lab::new("tlka");
    let up = lab.up_with(2, &[]);
    let aws = Aws::new(&up);
    let (sg, enis) = network(&aws, "10.61", 2);
    lab.vm(&enis[0].0, 1);
    let server_ns = lab.vm(&enis[1].0, 1);
    allow_tcp(&aws, &sg, 8080);
    let _l1 = lab.listen(&server_ns, "0.0.0.0", 8080);
    let _l2 = lab.listen(&server_ns, "0.0.0.0", 9090);
    let (client, server_ip) = (&enis[0].0, &enis[1].1);
    wait_until(Duration::from_secs(10), "8080 allowed", || {
        lab.connect(client, server_ip, 8080).is_some()
    });
    assert_eq!(lab.connect(client, server_ip, 9090), None);

    lab.cli(&["lab", "node", "kill-api", "1"]).ok();
    assert!(
        lab.connect(client, server_ip, 8080).is_some(),
        "still allowed"
    );
    assert_eq!(lab.connect(client, server_ip, 9090), None, "still refused");
    // A change made through node 2 while node 1 has no hive-api: node 1's switch keeps its
    // last program (nobody programs it), so the new rule is not in force there yet.
    allow_tcp(&Aws::on_node(&up, 2), &sg, 9090);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lab.connect(client, server_ip, 9090),
        None,
        "a switch without its hive-api keeps its last program"
    );
    assert_ne!(
        lab.node_cli(&up, 1, &["vpc", "flows", "--diff"]).code,
        0,
        "the store moved on without node 1"
    );

    lab.cli(&["lab", "node", "start", "1"]).ok();
    let took = wait_until(
        Duration::from_secs(20),
        "9090 allowed after restart",
        || lab.connect(client, server_ip, 9090).is_some(),
    );
    eprintln!("node 1 caught up {took:?} after its hive-api answered /health");
    let diff = lab.node_cli(&up, 1, &["vpc", "flows", "--diff"]);
    assert_eq!(diff.code, 0, "{}{}", diff.stdout, diff.stderr);
    assert!(lab.connect(client, server_ip, 8080).is_some());
    lab.cli(&["lab", "down"]).ok();
}

/// A node stops (its hive-api and Open vSwitch): the other nodes drop its tunnel port within
/// the node TTL plus a heartbeat, and traffic between the remaining nodes goes on.
#[test]
fn a_stopped_node_loses_its_tunnel_on_the_others_within_the_heartbeat() {
    require_machine();
    let lab = Lab::new("tlst");
    let up = lab.up_with(3, &[]);
    let aws = Aws::new(&up);
    let (sg, enis) = network(&aws, "10.62", 2);
    allow_tcp(&aws, &sg, 8080);
    lab.vm(&enis[0].0, 1);
    let server_ns = lab.vm(&enis[1].0, 2);
    let _listener = lab.listen(&server_ns, "0.0.0.0", 8080);
    for i in 1..=3 {
        wait_until(
            Duration::from_secs(15),
            &format!("node {i} tunnels"),
            || lab.tunnels(&up, i).len() == 2,
        );
    }
    let nodes = lab
        .node_cli(&up, 1, &["vpc", "nodes", "-o", "json"])
        .ok()
        .json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");
    let to_node3 = nodes
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == "node3"))
        .map(|n| text(n, &["tunnel_port"]))
        .expect("node3 listed");

    lab.cli(&["lab", "node", "stop", "3"]).ok();
    let stopped = Instant::now();
    // TTL 5 s + heartbeat 1 s, with room for a loaded machine.
    let limit = Duration::from_secs(9);
    for i in 1..=2 {
        wait_until(limit, &format!("node {i} drops node3's tunnel"), || {
            !lab.tunnels(&up, i).contains(&to_node3)
        });
    }
    eprintln!(
        "node 3 stopped; nodes 1 and 2 dropped its tunnel after {:?}",
        stopped.elapsed()
    );
    let nodes = lab
        .node_cli(&up, 1, &["vpc", "nodes", "-o", "json"])
        .ok()
        .json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes}");
    assert!(
        lab.connect(&enis[0].0, &enis[1].1, 8080).is_some(),
        "node 1 still reaches node 2"
    );
    lab.cli(&["lab", "down"]).ok();
}
