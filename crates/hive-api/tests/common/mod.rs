//! Helpers shared by the integration tests: an in-process server on a free loopback port, a
//! minimal HTTP/1.1 client over a raw socket (so malformed requests can be sent as is), test
//! seams (an accept-all authenticator, a small STS service) and the botocore bridge.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hive_api::config::ServerConfig;
use hive_api::error::ApiError;
use hive_api::server::{AuthRequest, Authenticator, AwsService, Principal, RequestContext, Server};
use hive_api::wire::query::Params;
use hive_api::wire::{Protocol, ServiceId, xml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server running in this process; stopped (gracefully) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free loopback port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Ask the server to stop and wait for `serve` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("task present until shutdown");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task did not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send raw bytes, read the response until the server closes.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    try_raw(addr, request, Duration::from_secs(10))
        .await
        .expect("server answers within 10 s")
}

/// [`raw`], or `None` when nothing listens or no complete answer comes within `limit` (a
/// starting node listens before it serves).
pub async fn try_raw(addr: SocketAddr, request: &[u8], limit: Duration) -> Option<Reply> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut reader, mut writer) = stream.into_split();
        // A server may answer (a 413 on the declared length) and close before it has read the
        // whole request: the write then fails, and the answer must be read while writing, or
        // the reset that the unread bytes cause can overtake it.
        let write = async {
            let _ = writer.write_all(request).await;
        };
        let read = async {
            let mut buf = Vec::new();
            let complete = reader.read_to_end(&mut buf).await.is_ok();
            (complete || !buf.is_empty()).then_some(buf)
        };
        let ((), buf) = tokio::join!(write, read);
        buf
    };
    let buf = tokio::time::timeout(limit, exchange).await.ok()??;
    Some(parse_reply(&buf))
}

fn parse_reply(buf: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete HTTP response");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// `POST /` with a form body and extra header lines (each ending in `\r\n`).
pub async fn post_form(addr: SocketAddr, body: &str, extra_headers: &str) -> Reply {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes()).await
}

/// An `Authorization` header line with a credential scope for `service` (not a valid
/// signature: only the routing reads it in these tests).
pub fn auth_header(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00\r\n"
    )
}

/// Server settings for tests.
pub fn config() -> ServerConfig {
    ServerConfig {
        shutdown_grace_ms: 2_000,
        ..ServerConfig::default()
    }
}

/// Accepts every request as the admin user (tests of what happens after authentication).
pub struct AllowAll;

pub fn admin() -> Principal {
    Principal {
        account_id: "000000000000".into(),
        arn: "arn:aws:iam::000000000000:user/admin".into(),
        user_id: "AIDAEXAMPLEADMIN0001".into(),
        access_key_id: Some("AKIAEXAMPLE".into()),
        identity: hive_iam::identity::Principal::User {
            account_id: "000000000000".into(),
            username: "admin".into(),
            user_id: "AIDAEXAMPLEADMIN0001".into(),
            arn: "arn:aws:iam::000000000000:user/admin".into(),
        },
        session_policy: None,
    }
}

#[async_trait]
impl Authenticator for AllowAll {
    async fn authenticate(&self, _request: &AuthRequest<'_>) -> Result<Principal, ApiError> {
        Ok(admin())
    }
}

/// A small STS: `GetCallerIdentity`, plus `Slow` (5 s), `Wait` (300 ms), `Fail` and `Panic`
/// for the failure paths.
pub struct TestSts;

#[async_trait]
impl AwsService for TestSts {
    fn id(&self) -> ServiceId {
        ServiceId::Sts
    }

    fn action(&self, action: &str) -> Option<&'static str> {
        ["GetCallerIdentity", "Slow", "Wait", "Panic", "Fail"]
            .into_iter()
            .find(|a| *a == action)
    }

    async fn call(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        match ctx.action {
            "GetCallerIdentity" => Ok(xml::query_response(
                ServiceId::Sts,
                ctx.action,
                &ctx.request_id,
                |r| {
                    r.text("UserId", &ctx.caller.user_id)
                        .text("Account", &ctx.caller.account_id)
                        .text("Arn", &ctx.caller.arn);
                },
            )),
            "Slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(xml::query_empty_response(
                    ServiceId::Sts,
                    ctx.action,
                    &ctx.request_id,
                ))
            }
            "Wait" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(xml::query_empty_response(
                    ServiceId::Sts,
                    ctx.action,
                    &ctx.request_id,
                ))
            }
            "Fail" => Err(params.missing("RoleArn")),
            "Panic" => panic!("handler bug for the test"),
            other => Err(ApiError::invalid_action(other, Protocol::Query)),
        }
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The python with botocore: `$HIVE_PYTHON`, else `<workspace>/.venv/bin/python`. Panics
/// (fails the test) with the fix when neither exists.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HIVE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no python with botocore: set HIVE_PYTHON (e.g. HIVE_PYTHON=/var/tmp/hive-venv/bin/python) \
         or create {}: python3 -m venv .venv && .venv/bin/pip install botocore",
        venv.display()
    );
    venv
}

/// Runs `cmd` (a python bridge) with piped stdio, feeds it `stdin` and waits for it: the one
/// spawn/feed/collect sequence every bridge shares.
pub fn run_piped(cmd: &mut std::process::Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            let program = cmd.get_program().to_string_lossy().into_owned();
            panic!("cannot run {program}: {e} (set HIVE_PYTHON)")
        });
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(stdin)
        .expect("write stdin to the child");
    child.wait_with_output().expect("child finishes")
}

/// botocore's parse of `body` as the response of `service`.`operation` with `status`.
pub fn botocore_parse(
    service: &str,
    operation: &str,
    status: u16,
    body: &str,
) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/botocore_parse.py");
    let out = run_piped(
        std::process::Command::new(python()).arg(&script).args([
            service,
            operation,
            &status.to_string(),
        ]),
        body.as_bytes(),
    );
    assert!(
        out.status.success(),
        "botocore_parse.py failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        if out.status.code() == Some(3) {
            " — install botocore into that python: <python> -m pip install botocore"
        } else {
            ""
        }
    );
    serde_json::from_slice(&out.stdout).expect("botocore_parse.py prints JSON")
}

/// Keep the readiness type import used by several tests short.
pub fn ready_ok() -> Arc<dyn hive_api::server::Readiness> {
    Arc::new(hive_api::server::FnReadiness(|| Ok(())))
}

// ----- child processes -------------------------------------------------------------------

/// A child process killed on drop.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (a tiny race with another binder remains; callers that start servers
/// on it retry or tolerate that).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts the `hive-api` binary with `args` and only the `HIVE_*` variables in `env` (every
/// inherited one is removed), stderr to `log`.
pub fn spawn_hive_api(args: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hive-api"));
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    for var in hive_api::config::ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    Proc(cmd.spawn().expect("start hive-api"))
}

/// Waits until the `hive-api` in `proc` listens on `addr` and, with `healthy`, answers
/// `/health` with 200; panics with its log when it exits first, or after `limit`.
pub async fn wait_up(
    addr: SocketAddr,
    proc: &mut Proc,
    log: &std::path::Path,
    healthy: bool,
    limit: Duration,
) {
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let deadline = std::time::Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && (!healthy
                || try_raw(addr, health, Duration::from_secs(2))
                    .await
                    .is_some_and(|r| r.status == 200))
        {
            return;
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!(
                "hive-api exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hive-api did not {} on {addr}",
            if healthy { "serve" } else { "listen" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a node logs each time it finds its store not ready at start (and retries).
pub const STORE_NOT_READY: &str = "the store is not ready; retrying";

/// Waits until the log at `log` contains `needle`; panics with the log when `proc` exits
/// first, or after `limit`.
pub async fn wait_for_log(proc: &mut Proc, log: &std::path::Path, needle: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("hive-api exited with {status} before logging {needle:?}: {text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} not logged within {limit:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `proc` exits: its status, or a panic after `limit`.
pub fn wait_exit(proc: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = proc.0.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hive-api still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `check` until it returns true; the time it took, or a panic after `limit`.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what} not seen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----- in-process apps and line-oriented python bridges ----------------------------------

/// An `App` on a fresh in-memory store whose IAM repository (random seal key) has `account`
/// bootstrapped.
pub async fn bootstrapped_app(account: &str) -> Arc<hive_api::app::App> {
    use hive_kv::KvStore;
    let store: Arc<dyn KvStore> = Arc::new(hive_kv::memory::MemoryStore::new());
    let repo = hive_iam_store::IamRepo::open(
        store.as_ref(),
        &hive_iam_store::buckets::IamBucketNames::default(),
        hive_iam::seal::Keyring::new(hive_iam::seal::SealKey::generate(&mut rand::rngs::OsRng).0),
    )
    .await
    .expect("open the repository");
    repo.bootstrap(account).await.expect("bootstrap");
    Arc::new(hive_api::app::App::new(
        Arc::new(repo),
        store,
        Arc::new(hive_api::config::Config::default()),
    ))
}

/// The account [`HeaderAuth`] authenticates in.
pub const HEADER_AUTH_ACCOUNT: &str = "000000000000";

/// Authenticates as the user named in `X-Test-Caller` (looked up in the repository), the
/// account root (`root`), a role session (`role:<name>`), or `admin` when the header is absent;
/// all in [`HEADER_AUTH_ACCOUNT`].
pub struct HeaderAuth {
    pub app: Arc<hive_api::app::App>,
}

#[async_trait]
impl Authenticator for HeaderAuth {
    async fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Principal, ApiError> {
        let caller = request
            .headers
            .get("x-test-caller")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("admin")
            .to_owned();
        if caller == "root" {
            return Ok(Principal {
                account_id: HEADER_AUTH_ACCOUNT.into(),
                arn: format!("arn:aws:iam::{HEADER_AUTH_ACCOUNT}:root"),
                user_id: HEADER_AUTH_ACCOUNT.into(),
                access_key_id: None,
                identity: hive_iam::identity::Principal::Root {
                    account_id: HEADER_AUTH_ACCOUNT.into(),
                },
                session_policy: None,
            });
        }
        if let Some(role) = caller.strip_prefix("role:") {
            let r = self.app.iam.get_role(HEADER_AUTH_ACCOUNT, role).await?;
            let identity = hive_iam::identity::Principal::AssumedRole {
                account_id: HEADER_AUTH_ACCOUNT.into(),
                role_name: r.role_name.clone(),
                role_id: r.role_id.clone(),
                session_name: "s1".into(),
                role_arn: r.arn.clone(),
            };
            return Ok(Principal {
                account_id: HEADER_AUTH_ACCOUNT.into(),
                arn: identity.arn(),
                user_id: identity.user_id(),
                access_key_id: None,
                identity,
                session_policy: None,
            });
        }
        let u = self.app.iam.get_user(HEADER_AUTH_ACCOUNT, &caller).await?;
        Ok(Principal {
            account_id: HEADER_AUTH_ACCOUNT.into(),
            arn: u.arn.clone(),
            user_id: u.user_id.clone(),
            access_key_id: None,
            identity: hive_iam::identity::Principal::User {
                account_id: HEADER_AUTH_ACCOUNT.into(),
                username: u.username.clone(),
                user_id: u.user_id.clone(),
                arn: u.arn.clone(),
            },
            session_policy: None,
        })
    }
}

/// Spawns a line-oriented bridge `cmd` (one JSON request per stdin line, one reply per stdout
/// line); its stderr is inherited so python tracebacks show in the test output.
pub fn spawn_bridge(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            let program = cmd.get_program().to_string_lossy().into_owned();
            panic!("cannot run {program}: {e} (set HIVE_PYTHON)")
        });
    let stdin = child.stdin.take().expect("stdin piped");
    let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
    (child, stdin, stdout)
}

// ----- real nodes and botocore-signed requests (helper "core") ---------------------------

/// A request signed by botocore, ready to send.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Signed {
    pub method: String,
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: String,
}

/// Sign `specs` with botocore's SigV4 (see tests/data/botocore_sign.py for the fields).
pub fn botocore_sign(specs: &[serde_json::Value]) -> Vec<Signed> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/botocore_sign.py");
    let specs = serde_json::to_string(specs).expect("specs to JSON");
    let out = run_piped(
        std::process::Command::new(python()).arg(&script),
        specs.as_bytes(),
    );
    assert!(
        out.status.success(),
        "botocore_sign.py failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("botocore_sign.py prints JSON")
}

/// A query-protocol request spec for [`botocore_sign`]: `POST /` of `body` to `addr`.
pub fn query_spec(
    addr: SocketAddr,
    service: &str,
    access_key: &str,
    secret_key: &str,
    body: &str,
) -> serde_json::Value {
    serde_json::json!({
        "service": service,
        "region": "us-east-1",
        "access_key": access_key,
        "secret_key": secret_key,
        "method": "POST",
        "url": format!("http://{addr}/"),
        "body": body,
        "headers": {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    })
}

/// Send a signed request as is (with `body` replaced when given: tampering).
pub async fn send_signed(addr: SocketAddr, signed: &Signed, body: Option<&str>) -> Reply {
    let body = body.unwrap_or(&signed.body);
    let rest = signed
        .url
        .split_once("://")
        .map(|(_, r)| r)
        .expect("absolute URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut req = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n",
        signed.method
    );
    for (k, v) in &signed.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw(addr, req.as_bytes()).await
}

/// The `<Code>` of an AWS error body.
pub fn error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(&body[start..end])
}

/// The (access key id, secret) in an `admin-credentials` file.
pub fn read_admin_credentials(path: &std::path::Path) -> (String, String) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(text.starts_with("[hive-admin]\n"), "{}", path.display());
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|r| r.trim_start().strip_prefix('='))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{name} missing in {}", path.display()))
    };
    (field("aws_access_key_id"), field("aws_secret_access_key"))
}

/// Configuration of an in-process node on `data_dir`, on a free loopback port, without the
/// authentication-failure throttle (tests send many bad requests on purpose).
pub fn node_config(data_dir: &std::path::Path) -> hive_api::config::Config {
    let mut c = hive_api::config::Config::default();
    c.storage.data_dir = data_dir.to_owned();
    c.server.listen = "127.0.0.1:0".parse().expect("loopback");
    c.server.shutdown_grace_ms = 2_000;
    c.server.auth_failure_threshold = 0;
    c
}

// ----- a store that fails on demand --------------------------------------------------------

/// What a [`FaultyStore`] does to its buckets' operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: every operation reaches the store.
    None,
    /// Writes fail as unreachable storage (`KvError::Unavailable`); reads and watches work.
    WritesDown,
    /// Creates and updates fail only in the bucket named: as unreachable storage.
    WritesDownIn(&'static str),
    /// Every compare-and-swap update loses (`KvError::RevisionConflict`): contention.
    Contention,
    /// Everything fails as unreachable storage, bucket opens included; live watches end.
    Down,
    /// Everything fails as unreachable storage in the buckets whose names start with this
    /// prefix (their opens included); the others work.
    DownIn(&'static str),
}

/// The switch of a [`FaultyStore`], shared with the test.
#[derive(Clone)]
pub struct Faults(Arc<tokio::sync::watch::Sender<Fault>>);

impl Faults {
    pub fn set(&self, fault: Fault) {
        self.0.send_replace(fault);
    }

    fn now(&self) -> Fault {
        *self.0.borrow()
    }

    fn unavailable(what: &str) -> hive_kv::KvError {
        hive_kv::KvError::Unavailable(format!("injected fault: {what}"))
    }

    fn read(&self, bucket: &str, what: &str) -> hive_kv::Result<()> {
        match self.now() {
            Fault::Down => Err(Self::unavailable(what)),
            Fault::DownIn(prefix) if bucket.starts_with(prefix) => Err(Self::unavailable(what)),
            _ => Ok(()),
        }
    }

    fn write(&self, bucket: &str, what: &str) -> hive_kv::Result<()> {
        self.read(bucket, what)?;
        match self.now() {
            Fault::WritesDown => Err(Self::unavailable(what)),
            Fault::WritesDownIn(b) if b == bucket => Err(Self::unavailable(what)),
            _ => Ok(()),
        }
    }

    fn update(&self, bucket: &str, key: &str, expected: u64) -> hive_kv::Result<()> {
        self.write(bucket, "update")?;
        if self.now() == Fault::Contention {
            return Err(hive_kv::KvError::RevisionConflict {
                key: key.to_owned(),
                expected,
                actual: Some(expected + 1),
            });
        }
        Ok(())
    }
}

/// A store over another whose operations fail as its [`Faults`] say, switchable at any time
/// (the node above it keeps running).
pub struct FaultyStore {
    inner: Arc<dyn hive_kv::KvStore>,
    faults: Faults,
}

impl FaultyStore {
    /// `inner` with no fault yet, and the switch.
    pub fn over(inner: Arc<dyn hive_kv::KvStore>) -> (Arc<Self>, Faults) {
        let faults = Faults(Arc::new(tokio::sync::watch::channel(Fault::None).0));
        let store = Arc::new(Self {
            inner,
            faults: faults.clone(),
        });
        (store, faults)
    }

    fn wrap(&self, inner: Arc<dyn hive_kv::Bucket>) -> Arc<dyn hive_kv::Bucket> {
        Arc::new(FaultyBucket {
            inner,
            faults: self.faults.clone(),
        })
    }
}

struct FaultyBucket {
    inner: Arc<dyn hive_kv::Bucket>,
    faults: Faults,
}

#[async_trait]
impl hive_kv::KvStore for FaultyStore {
    async fn create_or_open(
        &self,
        config: &hive_kv::BucketConfig,
    ) -> hive_kv::Result<Arc<dyn hive_kv::Bucket>> {
        self.faults.read(&config.name, "create or open bucket")?;
        Ok(self.wrap(self.inner.create_or_open(config).await?))
    }

    async fn open(&self, name: &str) -> hive_kv::Result<Arc<dyn hive_kv::Bucket>> {
        self.faults.read(name, "open bucket")?;
        Ok(self.wrap(self.inner.open(name).await?))
    }

    async fn bucket_config(&self, name: &str) -> hive_kv::Result<hive_kv::BucketConfig> {
        self.faults.read(name, "bucket config")?;
        self.inner.bucket_config(name).await
    }

    async fn delete_bucket(&self, name: &str) -> hive_kv::Result<()> {
        self.faults.write(name, "delete bucket")?;
        self.inner.delete_bucket(name).await
    }
}

#[async_trait]
impl hive_kv::Bucket for FaultyBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get(&self, key: &str) -> hive_kv::Result<Option<hive_kv::Entry>> {
        self.faults.read(self.name(), "get")?;
        self.inner.get(key).await
    }
    async fn entry_history(&self, key: &str) -> hive_kv::Result<Vec<hive_kv::Entry>> {
        self.faults.read(self.name(), "history")?;
        self.inner.entry_history(key).await
    }
    async fn put(&self, key: &str, value: bytes::Bytes) -> hive_kv::Result<u64> {
        self.faults.write(self.name(), "put")?;
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: bytes::Bytes) -> hive_kv::Result<u64> {
        self.faults.write(self.name(), "create")?;
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: bytes::Bytes, expected: u64) -> hive_kv::Result<u64> {
        self.faults.update(self.name(), key, expected)?;
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<u64>) -> hive_kv::Result<()> {
        self.faults.write(self.name(), "delete")?;
        self.inner.delete(key, expected).await
    }
    async fn purge(&self, key: &str, expected: Option<u64>) -> hive_kv::Result<()> {
        self.faults.write(self.name(), "purge")?;
        self.inner.purge(key, expected).await
    }
    async fn keys(&self, prefix: Option<&str>) -> hive_kv::Result<Vec<String>> {
        self.faults.read(self.name(), "keys")?;
        self.inner.keys(prefix).await
    }
    async fn watch(
        &self,
        prefix: Option<&str>,
        from: hive_kv::WatchFrom,
    ) -> hive_kv::Result<futures::stream::BoxStream<'static, hive_kv::Result<hive_kv::Entry>>> {
        use futures::StreamExt as _;
        self.faults.read(self.name(), "watch")?;
        let inner = self.inner.watch(prefix, from).await?;
        // A watch that is live when the store goes down fails, as a NATS watch would.
        let mut down = self.faults.0.subscribe();
        let name = self.name().to_owned();
        let outage = futures::stream::once(async move {
            let is_down = |f: &Fault| match *f {
                Fault::Down => true,
                Fault::DownIn(prefix) => name.starts_with(prefix),
                _ => false,
            };
            if down.wait_for(is_down).await.is_err() {
                std::future::pending::<()>().await;
            }
            Err(Faults::unavailable("watch"))
        });
        Ok(futures::stream::select(inner, outage).boxed())
    }
}
