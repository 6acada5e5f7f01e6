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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PROFILE: &str = "hive-admin";

fn hive_cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hive-cli"))
}

fn euid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Root and every program the lab runs, or a failure that says how to get them.
fn require_machine() {
    assert_eq!(
        euid(),
        Some(0),
        "the lab tests need root (network namespaces): run them as root, e.g. sudo -E cargo nextest run -p hive-cli --test lab"
    );
    let tools = [
        ("ip", "iproute2"),
        ("ethtool", "ethtool"),
        ("iptables", "iptables"),
        ("nats-server", "nats-server"),
        ("ovs-vswitchd", "openvswitch-switch"),
        ("ovsdb-server", "openvswitch-switch"),
        ("setpriv", "util-linux"),
        ("python3", "python3"),
    ];
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(p, _)| find(p).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    assert!(
        missing.is_empty(),
        "missing programs: install them with apt-get install -y {}",
        missing.join(" ")
    );
}

/// Newest modification time of the sources `hive-api` is built from.
fn newest_source() -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(m);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for krate in ["hive-api", "hive-kv", "hive-iam", "hive-vpc", "hive-ovs"] {
        walk(&root.join("crates").join(krate).join("src"), &mut newest);
    }
    if let Ok(m) = std::fs::metadata(root.join("Cargo.lock")).and_then(|m| m.modified()) {
        newest = newest.max(m);
    }
    newest
}

/// The `hive-api` binary next to `hive-cli`: used as is when newer than every source it is
/// built from (a workspace test run builds it), else built (with the features this test
/// build already compiled, so only the binary is linked).
fn hive_api() -> PathBuf {
    let cli = hive_cli();
    let profile_dir = cli.parent().expect("target dir");
    let api = profile_dir.join("hive-api");
    let fresh = std::fs::metadata(&api)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built > newest_source());
    if !fresh {
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "hive-api", "--bin", "hive-api"]);
        build.args(["--features", "hive-kv/testing"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p hive-api");
        assert!(status.success(), "cargo build -p hive-api failed");
    }
    assert!(api.is_file(), "no hive-api at {}", api.display());
    api
}

fn aws_cli() -> PathBuf {
    std::env::var_os("HIVE_AWS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/aws");
            venv.exists().then_some(venv)
        })
        .or_else(|| find("aws"))
        .expect("no aws CLI: run scripts/test (it builds the venv), or set HIVE_AWS=/path/to/aws")
}

/// One finished `hive-cli` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "hive-cli failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().expect("hive-cli starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A lab under test: taken down on drop, also when the test fails.
struct Lab {
    name: &'static str,
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Lab {
    fn new(name: &'static str) -> Self {
        let parent = tempfile::tempdir().expect("tempdir");
        let lab = Self {
            name,
            dir: parent.path().join("lab"),
            _parent: parent,
        };
        // A lab of the same name left by an aborted run would make `up` refuse.
        lab.cli(&["lab", "down"]);
        lab
    }

    fn cli(&self, args: &[&str]) -> Run {
        // The lab's flags go before a `--` (after it, everything is the VM's command).
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut cmd = Command::new(hive_cli());
        cmd.args(&args[..split])
            .args(["--name", self.name])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[split..]);
        run(&mut cmd)
    }

    fn namespaces(&self) -> Vec<String> {
        let out = Command::new(find("ip").expect("ip"))
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
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
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cli(&["lab", "down"]);
    }
}

/// The aws CLI against one endpoint with the lab's admin credentials.
struct Aws {
    endpoint: String,
    credentials: PathBuf,
    home: tempfile::TempDir,
}

impl Aws {
    fn call(&self, args: &[&str]) -> Value {
        let out = Command::new(aws_cli())
            .args(["--endpoint-url", &self.endpoint, "--region", "us-east-1"])
            .args(["--output", "json", "--profile", PROFILE])
            .args(args)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", self.home.path())
            .output()
            .expect("run aws");
        assert!(
            out.status.success(),
            "aws {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
        .to_owned()
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

const LISTENER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen()
open(sys.argv[1], "w").close()
while True:
    c, _ = s.accept()
    c.sendall(b"hello from the far side\n")
    c.close()
"#;

const CONNECT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 8080), timeout=1)
    print(c.recv(64).decode().strip())
except OSError as e:
    print("no connection:", e)
    sys.exit(3)
"#;

#[test]
fn one_node_lab_enforces_a_security_group_with_real_packets_and_goes_away() {
    require_machine();
    let api = hive_api();
    let lab = Lab::new("tl1");
    let started = Instant::now();
    let up = lab
        .cli(&[
            "lab",
            "up",
            "--nodes",
            "1",
            "--hive-api",
            api.to_str().expect("utf-8 path"),
            "-o",
            "json",
        ])
        .ok()
        .json();
    eprintln!("lab up took {:?}", started.elapsed());
    let aws = Aws {
        endpoint: up["endpoints"][0].as_str().expect("endpoint").to_owned(),
        credentials: PathBuf::from(text(&up, &["credentials_file"])),
        home: tempfile::tempdir().expect("tempdir"),
    };
    assert_eq!(up["nodes"][0]["namespace"], "hltl1n1");
    // Everything through the real aws CLI.
    let vpc = text(
        &aws.call(&["ec2", "create-vpc", "--cidr-block", "10.20.0.0/16"]),
        &["Vpc", "VpcId"],
    );
    let subnet = text(
        &aws.call(&[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            "10.20.1.0/24",
        ]),
        &["Subnet", "SubnetId"],
    );
    let sg = text(
        &aws.call(&[
            "ec2",
            "create-security-group",
            "--vpc-id",
            &vpc,
            "--group-name",
            "web",
            "--description",
            "lab test",
        ]),
        &["GroupId"],
    );
    let eni = |_: u8| {
        let v = aws.call(&[
            "ec2",
            "create-network-interface",
            "--subnet-id",
            &subnet,
            "--groups",
            &sg,
        ]);
        (
            text(&v, &["NetworkInterface", "NetworkInterfaceId"]),
            text(&v, &["NetworkInterface", "PrivateIpAddress"]),
        )
    };
    let (client, _) = eni(1);
    let (server, server_ip) = eni(2);
    for e in [&client, &server] {
        let vm = lab
            .cli(&[
                "lab", "vm", "create", "--eni", e, "--node", "1", "-o", "json",
            ])
            .ok()
            .json();
        assert_eq!(vm["programmed"], true, "{vm}");
    }
    // A listener in the server VM (it stays until `lab down` clears the namespace).
    let ready = lab._parent.path().join("listening");
    let mut listener = Command::new(hive_cli())
        .args(["lab", "vm", "exec", "--name", lab.name, "--dir"])
        .arg(&lab.dir)
        .args([&server, "--", "python3", "-c", LISTENER])
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the listener");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the listener did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let connect = || {
        lab.cli(&[
            "lab", "vm", "exec", &client, "--", "python3", "-c", CONNECT, &server_ip,
        ])
    };
    // No ingress rule: the switch drops the SYN; the exit code comes through.
    let refused = connect();
    assert_eq!(refused.code, 3, "{}{}", refused.stdout, refused.stderr);
    aws.call(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--source-group",
        &sg,
    ]);
    let allowed_at = Instant::now();
    let allowed = loop {
        let r = connect();
        if r.code == 0 || allowed_at.elapsed() > Duration::from_secs(10) {
            break r;
        }
    };
    assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
    assert!(
        allowed.stdout.contains("hello from the far side"),
        "{}",
        allowed.stdout
    );
    eprintln!("allowed {:?} after the API answered", allowed_at.elapsed());
    let status = lab.cli(&["lab", "status", "-o", "json"]).ok().json();
    assert_eq!(status["nodes"][0]["health"], true, "{status}");
    assert_eq!(status["vms"].as_array().map(Vec::len), Some(2), "{status}");
    assert!(status["nats"].as_array().is_some_and(|n| n.len() == 3));
    lab.cli(&["lab", "down"]).ok();
    let _ = listener.wait();
    lab.assert_gone();
    // Down again: nothing to do, still fine.
    lab.cli(&["lab", "down"]).ok();
    eprintln!("whole test took {:?}", started.elapsed());
}

/// A TCP listener on `argv[2]:argv[3]` that writes `argv[1]` when listening and answers every
/// connection with the address it came from (so the outside can say whom it saw).
const PEER_LISTENER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], int(sys.argv[3])))
s.listen()
open(sys.argv[1], "w").close()
while True:
    c, peer = s.accept()
    c.sendall(("seen " + peer[0] + "\n").encode())
    c.close()
"#;

/// Connect to `argv[1]:argv[2]` and print what the far side says; exit 3 when no connection.
const PEER_CONNECT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(c.recv(64).decode().strip())
except OSError as e:
    print("no connection:", e)
    sys.exit(3)
"#;

/// A listener process, stopped when dropped.
struct Listener(std::process::Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    /// `lab up --nodes N` plus `extra` flags; the summary and the aws CLI on node 1.
    fn up(&self, nodes: usize, extra: &[&str]) -> (Value, Aws) {
        let api = hive_api();
        let n = nodes.to_string();
        let mut args = vec!["lab", "up", "--nodes", &n, "-o", "json"];
        args.extend(extra);
        args.extend(["--hive-api", api.to_str().expect("utf-8 path")]);
        let up = self.cli(&args).ok().json();
        let aws = self.aws(&up, 1);
        (up, aws)
    }

    /// The aws CLI on node `i`'s endpoint.
    fn aws(&self, up: &Value, i: usize) -> Aws {
        Aws {
            endpoint: up["endpoints"][i - 1]
                .as_str()
                .expect("endpoint")
                .to_owned(),
            credentials: PathBuf::from(text(up, &["credentials_file"])),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Plug ENI `eni` into node `node`; returns the VM's namespace.
    fn vm(&self, eni: &str, node: usize) -> String {
        let n = node.to_string();
        let vm = self
            .cli(&[
                "lab", "vm", "create", "--eni", eni, "--node", &n, "-o", "json",
            ])
            .ok()
            .json();
        text(&vm, &["namespace"])
    }

    /// A [`PEER_LISTENER`] on `addr:port` inside namespace `ns`, running until the namespace
    /// goes (or the child is killed); returns once it listens.
    fn listen(&self, ns: &str, addr: &str, port: u16) -> Listener {
        let ready = self._parent.path().join(format!("listening-{ns}-{port}"));
        let child = Command::new(find("ip").expect("ip"))
            .args(["netns", "exec", ns, "python3", "-c", PEER_LISTENER])
            .arg(&ready)
            .args([addr, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the listener");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "the listener in {ns} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Listener(child)
    }

    /// A new TCP connection from ENI `from`'s VM: `Some(what the far side said)` or `None`.
    fn connect(&self, from: &str, addr: &str, port: u16) -> Option<String> {
        let p = port.to_string();
        let r = self.cli(&[
            "lab",
            "vm",
            "exec",
            from,
            "--",
            "python3",
            "-c",
            PEER_CONNECT,
            addr,
            &p,
        ]);
        match r.code {
            0 => Some(r.stdout.trim().to_owned()),
            3 => None,
            _ => panic!("connect failed to run: {}{}", r.stdout, r.stderr),
        }
    }

    /// `hive-cli` as an operator on node `i` runs it: that node's switch (`OVS_RUNDIR`), the
    /// lab's NATS, the node's name (for its tunnels' remote interfaces).
    fn node_cli(&self, up: &Value, i: usize, args: &[&str]) -> Run {
        let node = &up["nodes"][i - 1];
        let mut cmd = Command::new(hive_cli());
        cmd.args(["--nats-url", up["nats_urls"].as_str().expect("urls")])
            .args(args)
            .env("OVS_RUNDIR", text(node, &["ovs_rundir"]))
            .env("HIVE_NODE_NAME", format!("node{i}"))
            .env("HIVE_NODE_TUNNEL_IP", text(node, &["tunnel_ip"]))
            .env("HIVE_REPLICAS", "3")
            .env(
                "HIVE_VPC_METADATA_ENABLED",
                up["metadata"].as_bool().unwrap_or(false).to_string(),
            );
        run(&mut cmd)
    }

    /// Tunnel ports (`hvt-*`) on node `i`'s bridge.
    fn tunnels(&self, up: &Value, i: usize) -> Vec<String> {
        let node = &up["nodes"][i - 1];
        let out = Command::new(find("ovs-vsctl").expect("ovs-vsctl"))
            .args(["list-ports", "hive-vpc0"])
            .env("OVS_RUNDIR", text(node, &["ovs_rundir"]))
            .output()
            .expect("ovs-vsctl list-ports");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|p| p.starts_with("hvt-"))
            .map(str::to_owned)
            .collect()
    }

    /// Wait until `check` holds (polling every 100 ms) or panic with `why` after `limit`;
    /// returns how long it took.
    fn wait(&self, limit: Duration, why: &str, mut check: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < limit, "{why}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        started.elapsed()
    }
}

/// A VPC `cidr` with one /24 subnet, a group `sg` (no ingress yet) and `n` interfaces in it;
/// returns (group id, [(eni id, private address)]).
fn network(aws: &Aws, cidr_prefix: &str, n: usize) -> (String, Vec<(String, String)>) {
    let vpc = text(
        &aws.call(&[
            "ec2",
            "create-vpc",
            "--cidr-block",
            &format!("{cidr_prefix}.0.0/16"),
        ]),
        &["Vpc", "VpcId"],
    );
    let subnet = text(
        &aws.call(&[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            &format!("{cidr_prefix}.1.0/24"),
        ]),
        &["Subnet", "SubnetId"],
    );
    let sg = text(
        &aws.call(&[
            "ec2",
            "create-security-group",
            "--vpc-id",
            &vpc,
            "--group-name",
            "sg",
            "--description",
            "lab faults",
        ]),
        &["GroupId"],
    );
    let enis = (0..n)
        .map(|_| {
            let v = aws.call(&[
                "ec2",
                "create-network-interface",
                "--subnet-id",
                &subnet,
                "--groups",
                &sg,
            ]);
            (
                text(&v, &["NetworkInterface", "NetworkInterfaceId"]),
                text(&v, &["NetworkInterface", "PrivateIpAddress"]),
            )
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
fn outside_through_the_gateway(name: &'static str, nat: bool) {
    require_machine();
    let lab = Lab::new(name);
    let (up, aws) = lab.up(1, if nat { &[] } else { &["--no-nat"] });
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
        let uplink = text(&up["nodes"][0], &["uplink_ip"]);
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
    let (up, aws) = lab.up(3, &[]);
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
            let out = Command::new(aws_cli())
                .args(["--endpoint-url", &aws.endpoint, "--region", "us-east-1"])
                .args([
                    "--profile",
                    PROFILE,
                    "ec2",
                    "authorize-security-group-ingress",
                ])
                .args(["--group-id", &sg, "--protocol", "tcp", "--port", &p])
                .args(["--source-group", &sg])
                .env("AWS_SHARED_CREDENTIALS_FILE", &aws.credentials)
                .env("AWS_CONFIG_FILE", aws.home.path().join("config"))
                .env("HOME", aws.home.path())
                .output()
                .expect("run aws");
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || err.contains("InvalidPermission.Duplicate") {
                break;
            }
            attempts += 1;
            assert!(attempts < 10, "authorize {port} never acknowledged: {err}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Every acknowledged rule is there, read through every node.
    for i in 1..=3 {
        let groups = lab
            .aws(&up, i)
            .call(&["ec2", "describe-security-groups", "--group-ids", &sg]);
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
        lab.wait(
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
    let (up, aws) = lab.up(2, &[]);
    let (sg, enis) = network(&aws, "10.61", 2);
    lab.vm(&enis[0].0, 1);
    let server_ns = lab.vm(&enis[1].0, 1);
    allow_tcp(&aws, &sg, 8080);
    let _l1 = lab.listen(&server_ns, "0.0.0.0", 8080);
    let _l2 = lab.listen(&server_ns, "0.0.0.0", 9090);
    let (client, server_ip) = (&enis[0].0, &enis[1].1);
    lab.wait(Duration::from_secs(10), "8080 allowed", || {
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
    allow_tcp(&lab.aws(&up, 2), &sg, 9090);
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
    let took = lab.wait(
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
    let (up, aws) = lab.up(3, &[]);
    let (sg, enis) = network(&aws, "10.62", 2);
    allow_tcp(&aws, &sg, 8080);
    lab.vm(&enis[0].0, 1);
    let server_ns = lab.vm(&enis[1].0, 2);
    let _listener = lab.listen(&server_ns, "0.0.0.0", 8080);
    for i in 1..=3 {
        lab.wait(
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
        lab.wait(limit, &format!("node {i} drops node3's tunnel"), || {
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
