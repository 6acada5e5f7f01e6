//! Shared harness of the real-packet lab tests: the machine check, the binaries (`hive-cli`,
//! `hive-api`, the aws CLI and its Python), a lab taken down on drop, and the aws CLI bound to
//! the lab's admin credentials.
//!
//! A missing program is a failure naming the package to install, never a skip.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The profile the lab writes the admin's credentials under.
pub const PROFILE: &str = "hive-admin";

/// The `hive-cli` binary under test.
pub fn hive_cli() -> PathBuf {
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

/// `program` on PATH or in the usual system directories.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Root and every program the lab and the probes run, or a failure that says how to get them.
pub fn require_machine() {
    assert_eq!(
        euid(),
        Some(0),
        "the lab packet tests need root (network namespaces): run them as root, e.g. sudo -E cargo nextest run -p hive-cli --test lab_packets"
    );
    let tools = [
        ("ip", "iproute2"),
        ("ethtool", "ethtool"),
        ("iptables", "iptables"),
        ("ping", "iputils-ping"),
        ("nats-server", "nats-server"),
        ("ovs-vswitchd", "openvswitch-switch"),
        ("ovsdb-server", "openvswitch-switch"),
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
    let aws = aws_cli();
    assert!(
        aws.is_file(),
        "no aws CLI at {}: run scripts/test (it builds the venv with awscli and boto3), or set HIVE_AWS",
        aws.display()
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

/// The `hive-api` binary next to `hive-cli`, (re)built with the test features, as the lab
/// tests do, when missing or older than its sources; a failed build fails the test.
pub fn hive_api() -> PathBuf {
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
    assert!(
        api.is_file(),
        "no hive-api at {}: run cargo build -p hive-api --features hive-kv/testing",
        api.display()
    );
    api
}

/// The aws CLI: `HIVE_AWS`, else the repository's `.venv`, else `aws` on PATH.
pub fn aws_cli() -> PathBuf {
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

/// The Python of the aws CLI's venv (it has boto3), as `scripts/test` sets `HIVE_PYTHON`.
pub fn venv_python() -> PathBuf {
    let python = std::env::var_os("HIVE_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| aws_cli().with_file_name("python"));
    let ok = Command::new(&python)
        .args(["-c", "import boto3"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no Python with boto3 at {}: run scripts/test (it builds the venv with awscli and boto3), or set HIVE_PYTHON",
        python.display()
    );
    python
}

/// One finished command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The run, or a failure showing its output.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Run `cmd` to completion with no standard input.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd.stdin(Stdio::null()).output().expect("command starts");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What `lab up -o json` said.
#[derive(Debug, Clone)]
pub struct Up {
    /// Every node's `hive-api` endpoint, node 1 first.
    pub endpoints: Vec<String>,
    /// The NATS cluster's client URLs, comma-separated.
    pub nats_urls: String,
    /// The admin's credentials file.
    pub credentials: PathBuf,
    /// Node namespaces, node 1 first.
    pub node_namespaces: Vec<String>,
    /// The whole summary (per node: `ovs_rundir`, `tunnel_ip`, `uplink_ip`, ...).
    pub summary: Value,
}

/// A lab under test: taken down on drop, also when the test fails.
pub struct Lab {
    /// Its name (1 to 4 characters).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Scratch space for the test (ready files, logs).
    pub scratch: tempfile::TempDir,
}

impl Lab {
    /// A fresh lab named `name` (not up yet); one left by an aborted run is taken down first.
    pub fn new(name: &str) -> Self {
        let scratch = tempfile::tempdir().expect("tempdir");
        let lab = Self {
            name: name.to_owned(),
            dir: scratch.path().join("lab"),
            scratch,
        };
        lab.cli(&["lab", "down"]);
        lab
    }

    /// `hive-cli <args> --name N --dir D [-- command]`.
    pub fn command(&self, args: &[&str]) -> Command {
        // The lab's flags go before a `--` (after it, everything is the VM's command).
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut cmd = Command::new(hive_cli());
        cmd.args(&args[..split])
            .args(["--name", &self.name])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[split..]);
        cmd
    }

    /// Run `hive-cli` on this lab.
    pub fn cli(&self, args: &[&str]) -> Run {
        run(&mut self.command(args))
    }

    /// `lab up` with `nodes` nodes (and the metadata address when `metadata`).
    pub fn up(&self, nodes: usize, metadata: bool) -> Up {
        self.up_with(nodes, if metadata { &["--metadata"] } else { &[] })
    }

    /// `lab up` with `nodes` nodes and `extra` flags (`--no-nat`, `--metadata`).
    pub fn up_with(&self, nodes: usize, extra: &[&str]) -> Up {
        let api = hive_api();
        let n = nodes.to_string();
        let mut args = vec![
            "lab",
            "up",
            "--nodes",
            &n,
            "--hive-api",
            api.to_str().expect("utf-8 path"),
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let v = self.cli(&args).ok().json();
        eprintln!(
            "lab {} up ({nodes} node(s)) took {:?}",
            self.name,
            started.elapsed()
        );
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let node_namespaces = v["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["namespace"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Up {
            endpoints: strings(&v["endpoints"]),
            nats_urls: v["nats_urls"].as_str().expect("nats_urls").to_owned(),
            credentials: PathBuf::from(v["credentials_file"].as_str().expect("credentials")),
            node_namespaces,
            summary: v,
        }
    }

    /// `lab vm create --eni E --node N`: asserts the node programmed the port.
    pub fn vm_create(&self, eni: &str, node: usize) -> Value {
        let n = node.to_string();
        let vm = self
            .cli(&[
                "lab", "vm", "create", "--eni", eni, "--node", &n, "-o", "json",
            ])
            .ok()
            .json();
        assert_eq!(vm["programmed"], true, "{vm}");
        vm
    }

    /// `lab vm exec E -- command...`, to completion.
    pub fn exec(&self, eni: &str, command: &[&str]) -> Run {
        let mut args = vec!["lab", "vm", "exec", eni, "--"];
        args.extend_from_slice(command);
        self.cli(&args)
    }

    /// `lab vm exec E -- command...` in the background (its output discarded).
    pub fn spawn(&self, eni: &str, command: &[&str]) -> Child {
        let mut args = vec!["lab", "vm", "exec", eni, "--"];
        args.extend_from_slice(command);
        self.command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a command in a VM")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cli(&["lab", "down"]);
    }
}

/// Wait for `path` to exist (a server's "ready" file).
pub fn wait_for_file(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The aws CLI against one endpoint with the lab's admin credentials.
pub struct Aws {
    /// `hive-api` endpoint.
    pub endpoint: String,
    /// The admin's credentials file.
    pub credentials: PathBuf,
    home: tempfile::TempDir,
}

impl Aws {
    /// The aws CLI for the lab's first node.
    pub fn new(up: &Up) -> Self {
        Self::on_node(up, 1)
    }

    /// The aws CLI for node `i`'s endpoint.
    pub fn on_node(up: &Up, i: usize) -> Self {
        Self {
            endpoint: up.endpoints.get(i - 1).expect("an endpoint").clone(),
            credentials: up.credentials.clone(),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Run `aws <args>` and parse its JSON answer (`null` when it printed nothing).
    pub fn call(&self, args: &[&str]) -> Value {
        self.try_call(args)
            .unwrap_or_else(|e| panic!("aws {args:?} failed:\n{e}"))
    }

    /// [`Aws::call`], with a failure returned as the CLI's output instead of a panic.
    pub fn try_call(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(aws_cli())
            .args(["--endpoint-url", &self.endpoint, "--region", "us-east-1"])
            .args(["--output", "json", "--profile", PROFILE])
            .args(args)
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials)
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run aws");
        if !out.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }
}

/// The string at `path` in `v`.
pub fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
        .to_owned()
}

/// A TCP listener on `argv[2]:argv[3]` that writes `argv[1]` when listening and answers every
/// connection with the address it came from (so the far side can say whom it saw).
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
pub struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    /// A listener on `addr:port` inside namespace `ns` (a VM, a node or the outside) that
    /// answers `seen <peer address>`; returns once it listens.
    pub fn listen(&self, ns: &str, addr: &str, port: u16) -> Listener {
        let ready = self.scratch.path().join(format!("listening-{ns}-{port}"));
        let child = Command::new(find("ip").expect("ip"))
            .args(["netns", "exec", ns, "python3", "-c", PEER_LISTENER])
            .arg(&ready)
            .args([addr, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the listener");
        let listener = Listener(child);
        wait_for_file(&ready, &format!("the listener in {ns}"));
        listener
    }

    /// A new TCP connection from ENI `from`'s VM: `Some(what the far side said)` or `None`.
    pub fn connect(&self, from: &str, addr: &str, port: u16) -> Option<String> {
        let r = self.exec(
            from,
            &["python3", "-c", PEER_CONNECT, addr, &port.to_string()],
        );
        match r.code {
            0 => Some(r.stdout.trim().to_owned()),
            3 => None,
            _ => panic!("connect failed to run: {}{}", r.stdout, r.stderr),
        }
    }

    /// `hive-cli` as an operator on node `i` runs it: that node's switch (`OVS_RUNDIR`), the
    /// lab's NATS, the node's name (for its tunnels' remote interfaces).
    pub fn node_cli(&self, up: &Up, i: usize, args: &[&str]) -> Run {
        let node = &up.summary["nodes"][i - 1];
        let metadata = up.summary["metadata"].as_bool().unwrap_or(false);
        let mut cmd = Command::new(hive_cli());
        cmd.args(["--nats-url", &up.nats_urls])
            .args(args)
            .env("OVS_RUNDIR", text(node, &["ovs_rundir"]))
            .env("HIVE_NODE_NAME", format!("node{i}"))
            .env("HIVE_NODE_TUNNEL_IP", text(node, &["tunnel_ip"]))
            .env("HIVE_REPLICAS", "3")
            .env("HIVE_VPC_METADATA_ENABLED", metadata.to_string());
        run(&mut cmd)
    }

    /// Tunnel ports (`hvt-*`) on node `i`'s bridge.
    pub fn tunnels(&self, up: &Up, i: usize) -> Vec<String> {
        let node = &up.summary["nodes"][i - 1];
        let out = run(Command::new(find("ovs-vsctl").expect("ovs-vsctl"))
            .args(["list-ports", "hive-vpc0"])
            .env("OVS_RUNDIR", text(node, &["ovs_rundir"])));
        out.stdout
            .lines()
            .filter(|p| p.starts_with("hvt-"))
            .map(str::to_owned)
            .collect()
    }
}

/// Wait until `check` holds (polling every 100 ms) or fail with `why` after `limit`; returns
/// how long it took.
pub fn wait_until(limit: Duration, why: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{why}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// `create-vpc` with `cidr` and one subnet `subnet` in it: (VPC id, subnet id).
pub fn create_vpc(aws: &Aws, cidr: &str, subnet: &str) -> (String, String) {
    let vpc = text(
        &aws.call(&["ec2", "create-vpc", "--cidr-block", cidr]),
        &["Vpc", "VpcId"],
    );
    let subnet = text(
        &aws.call(&[
            "ec2",
            "create-subnet",
            "--vpc-id",
            &vpc,
            "--cidr-block",
            subnet,
        ]),
        &["Subnet", "SubnetId"],
    );
    (vpc, subnet)
}

/// `create-security-group` `name` in `vpc`: its id.
pub fn create_group(aws: &Aws, vpc: &str, name: &str) -> String {
    text(
        &aws.call(&[
            "ec2",
            "create-security-group",
            "--vpc-id",
            vpc,
            "--group-name",
            name,
            "--description",
            "lab test",
        ]),
        &["GroupId"],
    )
}

/// `create-network-interface` in `subnet` with `groups` (none: the VPC's default group):
/// (id, private address, MAC).
pub fn create_eni(aws: &Aws, subnet: &str, groups: &[&str]) -> (String, Ipv4Addr, String) {
    let mut args = vec!["ec2", "create-network-interface", "--subnet-id", subnet];
    if !groups.is_empty() {
        args.push("--groups");
        args.extend_from_slice(groups);
    }
    let v = aws.call(&args);
    let ni = &v["NetworkInterface"];
    (
        text(ni, &["NetworkInterfaceId"]),
        text(ni, &["PrivateIpAddress"])
            .parse()
            .expect("an IPv4 address"),
        text(ni, &["MacAddress"]),
    )
}
