//! The end-to-end harness: the real `hive-api` binary on a temporary data dir (SQLite) or on a
//! real nats-server, driven by the real aws CLI and by boto3 scenarios
//! (`tests/data/e2e_boto3.py`), plus botocore-signed raw requests for the bad-request tests.
//!
//! The CLI is `$HIVE_AWS`, else the `aws` next to the python of `common::python()`; the tests
//! fail (never skip) with the fix when either is missing.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, python};

/// The region every client uses.
pub const REGION: &str = "us-east-1";
/// The bootstrap account.
pub const ACCOUNT: &str = "000000000000";

/// Access key id and secret.
#[derive(Clone)]
pub struct Creds {
    pub key: String,
    pub secret: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds").field("key", &self.key).finish()
    }
}

/// The string at `path` in CLI/boto3 output `v` (numeric segments index arrays); panics
/// naming the path when there is none.
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = match (cur, p.parse::<usize>()) {
            (Value::Array(items), Ok(i)) => &items[i],
            _ => &cur[*p],
        };
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
}

/// How to start one `hive-api` process.
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// Data dir (`--data-dir`).
    pub data_dir: PathBuf,
    /// `--nats-url`, for JetStream instead of the embedded store.
    pub nats_url: Option<String>,
    /// Extra environment (`HIVE_*`).
    pub env: Vec<(String, String)>,
}

/// Writes a 0600 encryption key file (`digit` x 64) under `dir` and returns the
/// `HIVE_ENCRYPTION_KEY_FILE` variable naming it: processes sharing one store must seal
/// secrets with the same key.
pub fn shared_key_env(dir: &Path, digit: char) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let key_file = dir.join("encryption.key");
    std::fs::write(&key_file, digit.to_string().repeat(64)).expect("write the key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the key file");
    (
        "HIVE_ENCRYPTION_KEY_FILE".into(),
        key_file.display().to_string(),
    )
}

impl NodeOpts {
    /// Options for several processes on the nats-server at `nats_url`: data dir `dir/data`, one
    /// shared key file (see [`shared_key_env`]) and the `extra` environment.
    pub fn on_nats(dir: &Path, nats_url: String, key_digit: char, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![shared_key_env(dir, key_digit)];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Self {
            data_dir: dir.join("data"),
            nats_url: Some(nats_url),
            env,
        }
    }
}

/// Starts one process per entry of `opts`, all at once (as processes racing at a cluster's
/// start do), and waits until each is healthy.
pub fn start_together(opts: &[NodeOpts]) -> Vec<Node> {
    std::thread::scope(|s| {
        let started: Vec<_> = opts.iter().map(|o| s.spawn(|| Node::start(o))).collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a node starts"))
            .collect()
    })
}

/// A running `hive-api` process, killed on drop.
pub struct Node {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stderr (logs).
    pub log: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Start the binary and wait until `/health` answers (20 s at most).
    pub fn start(opts: &NodeOpts) -> Node {
        std::fs::create_dir_all(&opts.data_dir).expect("create the data dir");
        let mut last = String::new();
        for attempt in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let log = opts
                .data_dir
                .join(format!("hive-api-{}-{attempt}.log", addr.port()));
            let log_file = std::fs::File::create(&log).expect("log file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_hive-api"));
            cmd.arg("--data-dir")
                .arg(&opts.data_dir)
                .args(["--listen", &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(log_file);
            if let Some(url) = &opts.nats_url {
                cmd.args(["--nats-url", url]);
            }
            for var in hive_api::config::ENV_VARS {
                cmd.env_remove(var);
            }
            cmd.env("RUST_LOG", "info");
            cmd.envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let child = cmd.spawn().expect("start the hive-api binary");
            let mut node = Node {
                child,
                addr,
                log,
                data_dir: opts.data_dir.clone(),
            };
            match node.wait_healthy() {
                Ok(()) => return node,
                Err(e) => last = e,
            }
        }
        panic!("hive-api did not start: {last}");
    }

    /// Poll `GET /health` until 200; an exited process or 20 s is an error with the log.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some((200, _)) = http_get(self.addr, "/health") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no healthy answer on {} within 20 s: {}",
                    self.addr,
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A blocking `GET path` (status, body), `None` when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// The admin credentials the first start wrote to `<data-dir>/admin-credentials` (profile
/// `hive-admin`), waiting up to 20 s for the file; also checks its mode is 0600.
pub fn admin_credentials(data_dir: &Path) -> Creds {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join("admin-credentials");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(creds) = parse_profile(&text, "hive-admin")
        {
            let mode = std::fs::metadata(&path)
                .expect("stat admin-credentials")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "admin-credentials must be mode 0600");
            return creds;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written within 20 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The key and secret of `[profile]` in a shared-credentials file.
pub fn parse_profile(text: &str, profile: &str) -> Option<Creds> {
    let mut in_profile = false;
    let (mut key, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line == format!("[{profile}]");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => key = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some(Creds {
        key: key?,
        secret: secret?,
    })
}

/// The aws CLI: `$HIVE_AWS`, else `aws` next to the test python.
pub fn aws_cli() -> PathBuf {
    let cli = std::env::var_os("HIVE_AWS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| python().with_file_name("aws"));
    assert!(
        cli.exists(),
        "no aws CLI at {}: set HIVE_AWS (e.g. HIVE_AWS=/var/tmp/hive-venv/bin/aws) or \
         `<venv>/bin/pip install awscli`",
        cli.display()
    );
    cli
}

/// What one CLI run produced.
#[derive(Debug)]
pub struct CliOut {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliOut {
    /// The stdout as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("aws printed no JSON ({e}): {}", self.stdout))
        }
    }
}

/// The aws CLI pointed at one endpoint, with its own config file and credentials file.
pub struct Aws {
    cli: PathBuf,
    endpoint: String,
    credentials_file: PathBuf,
    home: tempfile::TempDir,
}

impl Aws {
    /// A CLI for `endpoint` reading profiles from `credentials_file`
    /// (`AWS_SHARED_CREDENTIALS_FILE`), region us-east-1, no instance metadata, no retries.
    pub fn new(endpoint: &str, credentials_file: &Path) -> Aws {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            home.path().join("config"),
            format!("[default]\nregion = {REGION}\noutput = json\n"),
        )
        .expect("write the CLI config");
        Aws {
            cli: aws_cli(),
            endpoint: endpoint.to_owned(),
            credentials_file: credentials_file.to_owned(),
            home,
        }
    }

    /// Add a profile to a credentials file of this CLI's own (the admin file stays the
    /// server's): copies the current file first, then appends.
    pub fn add_profile(&mut self, profile: &str, creds: &Creds, token: Option<&str>) {
        let own = self.home.path().join("credentials");
        let mut text = std::fs::read_to_string(&self.credentials_file).unwrap_or_default();
        text.push_str(&format!(
            "\n[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            creds.key, creds.secret
        ));
        if let Some(t) = token {
            text.push_str(&format!("aws_session_token = {t}\n"));
        }
        std::fs::write(&own, text).expect("write the CLI credentials");
        self.credentials_file = own;
    }

    /// Run `aws --profile <profile> <args> --endpoint-url <endpoint>`.
    pub fn run(&self, profile: &str, args: &[&str]) -> CliOut {
        let out = Command::new(&self.cli)
            .args(["--profile", profile])
            .args(args)
            .args(["--endpoint-url", &self.endpoint, "--output", "json"])
            .env("HOME", self.home.path())
            .env("AWS_SHARED_CREDENTIALS_FILE", &self.credentials_file)
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_PAGER", "")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run the aws CLI");
        CliOut {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// [`Aws::run`] that must succeed; its JSON output.
    pub fn ok(&self, profile: &str, args: &[&str]) -> Value {
        let out = self.run(profile, args);
        assert!(
            out.ok,
            "aws --profile {profile} {} failed: {}",
            args.join(" "),
            out.stderr
        );
        out.json()
    }

    /// [`Aws::run`] that must fail; its stderr.
    pub fn fails(&self, profile: &str, args: &[&str]) -> String {
        let out = self.run(profile, args);
        assert!(
            !out.ok,
            "aws --profile {profile} {} succeeded: {}",
            args.join(" "),
            out.stdout
        );
        out.stderr
    }
}

fn e2e_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/e2e_boto3.py")
}

fn run_python(mode: &str, endpoints: &[String], admin: &Creds, stdin: &str) -> Value {
    let out = crate::common::run_piped(
        Command::new(python())
            .arg(e2e_script())
            .arg(mode)
            .env(
                "HIVE_E2E_ENDPOINT",
                endpoints.first().map_or("", String::as_str),
            )
            .env("HIVE_E2E_ENDPOINTS", endpoints.join(","))
            .env("HIVE_E2E_ADMIN_KEY", &admin.key)
            .env("HIVE_E2E_ADMIN_SECRET", &admin.secret)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE"),
        stdin.as_bytes(),
    );
    assert!(
        out.status.success(),
        "boto3 {mode} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        if out.status.code() == Some(3) {
            "\n— install boto3 into that python: <python> -m pip install boto3"
        } else {
            ""
        }
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "e2e_boto3.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Run a boto3 scenario (Python source using the helpers of `e2e_boto3.py`) against
/// `endpoints` (the first is `ENDPOINT`) as `admin`; its `RESULT` dict.
pub fn boto3(endpoints: &[String], admin: &Creds, scenario: &str) -> Value {
    run_python("run", endpoints, admin, scenario)
}

/// One request to sign with botocore.
#[derive(Debug, Clone)]
pub struct SignSpec {
    pub body: String,
    pub creds: Creds,
    pub token: Option<String>,
    pub service: &'static str,
    pub skew_seconds: i64,
}

/// botocore's SigV4 headers for each spec, POSTed to `endpoint`.
pub fn sign(endpoint: &str, specs: &[SignSpec]) -> Vec<Vec<(String, String)>> {
    let list: Vec<Value> = specs
        .iter()
        .map(|s| {
            serde_json::json!({
                "url": format!("{endpoint}/"),
                "body": s.body,
                "key": s.creds.key,
                "secret": s.creds.secret,
                "token": s.token,
                "service": s.service,
                "skew_seconds": s.skew_seconds,
            })
        })
        .collect();
    let stdin = serde_json::to_string(&list).expect("specs serialize");
    let none = Creds {
        key: String::new(),
        secret: String::new(),
    };
    let out = run_python("sign", &[endpoint.to_owned()], &none, &stdin);
    out.as_array()
        .expect("a list of header maps")
        .iter()
        .map(|h| {
            h.as_object()
                .expect("a header map")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .collect()
}

/// The raw HTTP/1.1 request for a signed POST (headers as signed, then `body`, which may differ
/// from what was signed).
pub fn raw_post(addr: SocketAddr, headers: &[(String, String)], body: &str) -> Vec<u8> {
    let mut req = format!("POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
            continue;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}
