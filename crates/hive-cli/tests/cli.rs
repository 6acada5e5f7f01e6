//! The built `hive-cli` binary on the embedded store, on a real nats-server and against a
//! sandbox Open vSwitch, with the real AWS CLI signing requests to an in-process `hive-api`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hive_ovs::{Sandbox, SandboxMode};
use serde_json::Value;

/// One `hive-cli` invocation's result.
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

/// A node's files and environment: a data directory, optionally NATS and a sandbox switch.
struct Node {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self {
            // No switch unless a test brings its sandbox: a bogus rundir keeps the host's
            // Open vSwitch (if any) out of it.
            env: vec![
                (
                    "OVS_RUNDIR".into(),
                    dir.path().join("no-ovs").display().to_string(),
                ),
                ("HIVE_VPC_NAT_ENABLED".into(), "false".into()),
            ],
            dir,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn set(&mut self, key: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn cli(&self, args: &[&str]) -> Run {
        self.cli_stdin(args, None)
    }

    fn cli_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        use std::io::Write as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hive-cli"));
        cmd.arg("--data-dir").arg(self.data_dir()).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HIVE_")) {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run hive-cli");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out: Output = child.wait_with_output().expect("hive-cli exits");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The configuration `hive-cli` sees, for an in-process server on the same store.
    fn config(&self) -> hive_node::config::Config {
        let env: Vec<(String, String)> = self.env.clone();
        let flags = hive_node::config::Overrides {
            data_dir: Some(self.data_dir().to_owned()),
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            nats_url: None,
        };
        let mut config = hive_node::config::Config::load(
            None,
            |k| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()),
            &flags,
        )
        .expect("config");
        config.vpc.enabled = false;
        config
    }
}

fn aws_cli() -> PathBuf {
    let cli = std::env::var_os("HIVE_AWS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/aws"));
    assert!(
        cli.exists(),
        "no aws CLI at {}: run scripts/test (it builds the venv), or set HIVE_AWS=/path/to/venv/bin/aws",
        cli.display()
    );
    cli
}

/// `aws <args>` against `endpoint` with the credentials file and profile given.
fn aws(endpoint: &str, credentials: &Path, profile: &str, args: &[&str]) -> (bool, String) {
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(aws_cli())
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(["--profile", profile])
        .args(args)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", home.path())
        .output()
        .expect("run aws");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`aws`] on the blocking pool, so the in-process server keeps serving.
async fn aws_off_thread(
    endpoint: &str,
    credentials: &Path,
    profile: &str,
    args: &[&str],
) -> (bool, String) {
    let (endpoint, credentials, profile) = (
        endpoint.to_owned(),
        credentials.to_owned(),
        profile.to_owned(),
    );
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        aws(&endpoint, &credentials, &profile, &args)
    })
    .await
    .expect("aws runs")
}

#[test]
fn init_is_idempotent_and_keeps_the_secret_off_stdout() {
    let node = Node::new();
    let first = node.cli(&["init"]).ok();
    let creds = node.data_dir().join("admin-credentials");
    let text = std::fs::read_to_string(&creds).expect("credentials written");
    assert!(
        text.starts_with("[hive-admin]\naws_access_key_id = AKIA"),
        "{text}"
    );
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .expect("secret line");
    assert!(!first.stdout.contains(secret) && !first.stderr.contains(secret));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&creds)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    for bucket in [
        "hive-iam-users",
        "hive-iam-access-keys",
        "hive-iam-sessions",
    ] {
        assert!(first.stdout.contains(bucket), "{}", first.stdout);
    }
    assert!(
        first.stdout.contains("default network created"),
        "{}",
        first.stdout
    );

    let second = node.cli(&["-o", "json", "init"]).ok().json();
    assert_eq!(second["admin"]["created"], false);
    assert_eq!(
        std::fs::read_to_string(&creds).expect("still there"),
        text,
        "a second init changes nothing"
    );
    let users = node.cli(&["-o", "json", "iam", "user", "list"]).ok().json();
    assert_eq!(
        users.as_array().map(Vec::len),
        Some(1),
        "exactly one admin: {users}"
    );

    // Asking for the secret after the fact is refused with what to do instead.
    let again = node.cli(&["init", "--show-secret"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("hint:"), "{}", again.stderr);
}

#[test]
fn init_and_doctor_on_a_real_nats_server() {
    let nats = hive_kv::testing::NatsServer::start();
    let mut node = Node::new();
    node.set("HIVE_NATS_URL", nats.url());
    node.cli(&["init"]).ok();
    node.cli(&["init"]).ok();
    let doctor = node.cli(&["-o", "json", "doctor", "--skip-ovs"]);
    let report = doctor.json();
    let checks = report["checks"].as_array().expect("checks");
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .map(|c| c["status"].as_str().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no check {name}: {report}"))
    };
    assert_eq!(status("storage"), "pass");
    assert_eq!(status("bucket hive-iam-sessions"), "pass");
    assert_eq!(status("admin"), "pass");
    assert_eq!(status("secrets sealed"), "pass");
    assert_eq!(doctor.code, 0, "{}", doctor.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_user_and_an_imported_key_sign_requests_with_the_aws_cli() {
    let node = Node::new();
    node.cli(&["init"]).ok();
    node.cli(&["iam", "user", "create", "alice"]).ok();
    let creds = node.data_dir().join("alice-credentials");
    node.cli(&[
        "iam",
        "access-key",
        "create",
        "alice",
        "--credentials-file",
        creds.to_str().expect("utf-8"),
    ])
    .ok();
    node.cli(&["iam", "user", "create", "migrated"]).ok();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    node.cli_stdin(
        &[
            "iam",
            "access-key",
            "import",
            "migrated",
            "--access-key-id",
            "AKIAIOSFODNN7EXAMPLE",
        ],
        Some(&format!("{secret}\n")),
    )
    .ok();
    let imported = node.data_dir().join("imported-credentials");
    std::fs::write(
        &imported,
        format!("[migrated]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {secret}\n"),
    )
    .expect("write");

    let server = hive_api::node::start(node.config())
        .await
        .expect("hive-api starts");
    let endpoint = server.endpoint_url();
    let (ok, out) =
        aws_off_thread(&endpoint, &creds, "alice", &["sts", "get-caller-identity"]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("arn:aws:iam::000000000000:user/alice"),
        "{out}"
    );
    // alice has no policy yet: IAM refuses her, as AWS would.
    let (ok, out) = aws_off_thread(&endpoint, &creds, "alice", &["iam", "list-users"]).await;
    assert!(!ok && out.contains("AccessDenied"), "{out}");

    let caller = ["sts", "get-caller-identity"];
    let (ok, out) = aws_off_thread(&endpoint, &imported, "migrated", &caller).await;
    assert!(ok, "{out}");
    assert!(out.contains("user/migrated"), "{out}");

    // Deactivated through the CLI, refused by the server within a second.
    node.cli(&["iam", "access-key", "deactivate", "AKIAIOSFODNN7EXAMPLE"])
        .ok();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (ok, out) = aws_off_thread(&endpoint, &imported, "migrated", &caller).await;
    assert!(!ok && out.contains("InvalidClientTokenId"), "{out}");
    server.shutdown().await.expect("stops");
}

#[test]
fn iam_lint_reports_aws_messages_and_risky_grants() {
    let node = Node::new();
    let bad = node.cli_stdin(
        &["iam", "lint", "-"],
        Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject"}]}"#,
        ),
    );
    assert_eq!(bad.code, 1);
    assert!(
        bad.stdout
            .contains("Policy statement must contain resources."),
        "{}",
        bad.stdout
    );
    let risky = node
        .cli_stdin(
            &["-o", "json", "iam", "lint", "-"],
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:PassRole","Resource":"*"}]}"#),
        )
        .ok()
        .json();
    assert_eq!(risky["valid"], true);
    assert_eq!(risky["warnings"][0]["rule"], "passrole-on-any");
    let strict = node.cli_stdin(
        &["iam", "lint", "--strict", "-"],
        Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#),
    );
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    let syntax = node.cli_stdin(&["iam", "lint", "-"], Some("{not json"));
    assert!(
        syntax.stdout.contains("Syntax errors in policy."),
        "{}",
        syntax.stdout
    );
}

#[test]
fn simulate_explains_the_decision() {
    let node = Node::new();
    node.cli(&["init"]).ok();
    let allowed = node
        .cli(&[
            "-o",
            "json",
            "iam",
            "simulate",
            "--principal",
            "admin",
            "--action",
            "ec2:CreateVpc",
        ])
        .ok()
        .json();
    assert_eq!(allowed["results"][0]["decision"], "allowed");
    assert!(
        allowed["results"][0]["matched_statements"][0]["policy"]
            .as_str()
            .is_some_and(|p| p.ends_with("policy/AdministratorAccess")),
        "{allowed}"
    );
    node.cli(&["iam", "user", "create", "bob"]).ok();
    let denied = node.cli(&[
        "iam",
        "simulate",
        "--principal",
        "bob",
        "--action",
        "iam:CreateUser",
    ]);
    assert_eq!(denied.code, 1);
    assert!(denied.stdout.contains("implicitDeny"), "{}", denied.stdout);
    assert!(
        denied
            .stdout
            .contains("because no identity-based policy allows the iam:CreateUser action"),
        "{}",
        denied.stdout
    );
}

/// A node whose switch is a sandbox (dummy datapath), set up by `hive-cli ovs setup`.
fn switch_node(sandbox: &Sandbox) -> Node {
    let mut node = Node::new();
    node.set("OVS_RUNDIR", sandbox.dir().display().to_string());
    node.set("HIVE_VPC_DATAPATH_TYPE", "dummy");
    node.cli(&["init"]).ok();
    node.cli(&["ovs", "setup"]).ok();
    node
}

fn check_status(report: &Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
        .to_owned()
}

#[test]
fn doctor_passes_on_a_sandbox_and_names_what_breaks() {
    let sandbox = Sandbox::start(SandboxMode::Dummy)
        .expect("a sandbox Open vSwitch (apt-get install -y openvswitch-switch)");
    let node = switch_node(&sandbox);
    let good = node.cli(&["-o", "json", "doctor"]);
    let report = good.json();
    assert_eq!(good.code, 0, "{report:#}");
    for check in [
        "open vswitch",
        "bridge hive-vpc0",
        "fail mode",
        "fail-closed drop flow",
        "port hive-int0",
        "bucket hive-iam-users",
    ] {
        assert_eq!(check_status(&report, check), "pass", "{check}: {report:#}");
    }

    // The fail-closed flow removed by hand: doctor fails and names it.
    sandbox
        .ofctl(&[
            "-O",
            "OpenFlow13",
            "del-flows",
            "hive-vpc0",
            "--strict",
            "table=0,priority=0",
        ])
        .expect("delete the drop flow");
    let broken = node.cli(&["-o", "json", "doctor"]);
    assert_eq!(broken.code, 1);
    assert_eq!(
        check_status(&broken.json(), "fail-closed drop flow"),
        "fail"
    );
    // ovs reconcile repairs it.
    node.cli(&["ovs", "reconcile"]).ok();
    node.cli(&["vpc", "flows", "--diff"]).ok();
    assert_eq!(node.cli(&["doctor"]).code, 0);

    // A bucket deleted: doctor fails and names the bucket.
    let node_config = node.config();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (store, _) = hive_node::storage::open(&node_config.storage)
            .await
            .expect("store");
        store
            .delete_bucket("hive-iam-roles")
            .await
            .expect("delete bucket");
    });
    let broken = node.cli(&["-o", "json", "doctor"]);
    assert_eq!(broken.code, 1);
    assert_eq!(
        check_status(&broken.json(), "bucket hive-iam-roles"),
        "fail"
    );
}

#[test]
fn vpc_trace_agrees_with_ofproto_trace() {
    let sandbox = Sandbox::start(SandboxMode::Dummy)
        .expect("a sandbox Open vSwitch (apt-get install -y openvswitch-switch)");
    let node = switch_node(&sandbox);
    let vpc = node
        .cli(&["-o", "json", "vpc", "create", "--cidr", "10.20.0.0/16"])
        .ok()
        .json();
    let vpc_id = vpc["vpc_id"].as_str().expect("vpc id").to_owned();
    let subnet = node
        .cli(&[
            "-o",
            "json",
            "vpc",
            "subnet",
            "create",
            "--vpc-id",
            &vpc_id,
            "--cidr",
            "10.20.1.0/24",
        ])
        .ok()
        .json();
    let subnet_id = subnet["subnet_id"].as_str().expect("subnet").to_owned();
    let group = |name: &str| {
        node.cli(&[
            "-o", "json", "vpc", "sg", "create", "--vpc-id", &vpc_id, "--name", name,
        ])
        .ok()
        .json()["group_id"]
            .as_str()
            .expect("group")
            .to_owned()
    };
    let (web, client) = (group("web"), group("client"));
    node.cli(&[
        "vpc",
        "sg",
        "allow",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--source-group",
        &client,
    ])
    .ok();
    let eni = |g: &str| {
        node.cli(&[
            "-o",
            "json",
            "vpc",
            "eni",
            "create",
            "--subnet-id",
            &subnet_id,
            "--group",
            g,
        ])
        .ok()
        .json()["network_interface_id"]
            .as_str()
            .expect("eni")
            .to_owned()
    };
    let (server, caller) = (eni(&web), eni(&client));
    sandbox
        .add_port("hive-vpc0", "vm-server", Some(&server), Some(11))
        .expect("plug");
    sandbox
        .add_port("hive-vpc0", "vm-client", Some(&caller), Some(12))
        .expect("plug");
    node.cli(&["ovs", "reconcile"]).ok();

    let trace = |port: &str| {
        node.cli(&[
            "-o", "json", "vpc", "trace", "--from", &caller, "--to", &server, "--port", port,
            "--ovs",
        ])
    };
    let allowed = trace("80");
    assert_eq!(allowed.code, 0, "{}{}", allowed.stdout, allowed.stderr);
    let j = allowed.json();
    assert_eq!(j["reference"]["verdict"], "allow", "{j:#}");
    assert_eq!(j["ovs"]["verdict"], "allow", "{j:#}");
    assert_eq!(j["ovs"]["outputs"][0], "vm-server", "{j:#}");
    let denied = trace("22");
    assert_eq!(denied.code, 0, "{}{}", denied.stdout, denied.stderr);
    let j = denied.json();
    assert_eq!(
        (
            j["reference"]["verdict"].as_str(),
            j["ovs"]["verdict"].as_str()
        ),
        (Some("deny"), Some("deny")),
        "{j:#}"
    );

    // Revoke: both flip together once the switch has the new program.
    node.cli(&[
        "vpc",
        "sg",
        "revoke",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--source-group",
        &client,
    ])
    .ok();
    node.cli(&["ovs", "reconcile"]).ok();
    let j = trace("80").ok().json();
    assert_eq!(
        (
            j["reference"]["verdict"].as_str(),
            j["ovs"]["verdict"].as_str()
        ),
        (Some("deny"), Some("deny")),
        "{j:#}"
    );
}

#[test]
fn ovs_setup_dry_run_prints_the_guides_commands_without_a_switch() {
    let node = Node::new();
    node.cli(&["init"]).ok();
    let out = node.cli(&["ovs", "setup", "--dry-run"]).ok().stdout;
    assert!(out.contains("fail_mode=secure"), "{out}");
    assert!(out.contains("hive-int0"), "{out}");
    assert!(out.contains("priority=0"), "{out}");
}

#[test]
fn errors_say_what_to_do_next_and_completions_exist() {
    let node = Node::new();
    let out = node.cli(&["iam", "user", "show", "nobody"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("NoSuchEntity"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    let bash = node.cli(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("hive-cli"), "{bash}");
}
