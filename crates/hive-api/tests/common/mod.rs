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
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("server answers within 10 s")
        .expect("read response");
    parse_reply(&buf)
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

/// botocore's parse of `body` as the response of `service`.`operation` with `status`.
pub fn botocore_parse(
    service: &str,
    operation: &str,
    status: u16,
    body: &str,
) -> serde_json::Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/botocore_parse.py");
    let python = python();
    let mut child = Command::new(&python)
        .arg(&script)
        .args([service, operation, &status.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e} (set HIVE_PYTHON)", python.display()));
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(body.as_bytes())
        .expect("write body to python");
    let out = child.wait_with_output().expect("python finishes");
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
