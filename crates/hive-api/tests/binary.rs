//! The `hive-api` binary: start-up on the embedded store and on NATS JetStream (waiting for a
//! NATS server that is not there yet, giving up after `startup_timeout_secs`, at once on a bad
//! URL), readiness following storage, JSON logs with request ids and no secrets, graceful exit
//! on SIGTERM, and configuration errors that name the key.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    Proc, STORE_NOT_READY, free_port, get, post_form, spawn_hive_api as hive_api, wait_exit,
    wait_for_log, wait_up,
};

fn sigterm_and_wait(proc: &mut Proc) -> std::process::ExitStatus {
    let pid = proc.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
    wait_exit(proc, Duration::from_secs(15))
}

#[tokio::test]
async fn runs_on_the_embedded_store_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("hive-data");
    let log = dir.path().join("log");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let listen = addr.to_string();
    let data_arg = data.to_str().expect("utf-8 path");
    let mut proc = hive_api(
        &["--data-dir", data_arg, "--listen", &listen],
        &[
            ("HIVE_LOG_FORMAT", "json"),
            ("HIVE_SETUP_TOKEN", "setup-token-never-logged"),
        ],
        &log,
    );
    wait_up(addr, &mut proc, &log, false, Duration::from_secs(20)).await;

    assert_eq!(get(addr, "/health").await.status, 200);
    assert_eq!(get(addr, "/ready").await.status, 200);
    assert!(
        data.join(hive_kv::sqlite::DB_FILE).exists(),
        "the SQLite store is in the data dir"
    );
    let signature = "deadbeef".repeat(8);
    let reply = post_form(
        addr,
        "Action=GetUser&Version=2010-05-08",
        &format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/iam/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={signature}\r\nX-Amz-Date: 20240101T000000Z\r\n"
        ),
    )
    .await;
    assert_eq!(reply.status, 403, "unknown key refused: {}", reply.body);
    assert!(
        reply.body.contains("<Code>InvalidClientTokenId</Code>"),
        "{}",
        reply.body
    );
    let request_id = reply
        .header("x-amzn-RequestId")
        .expect("request id")
        .to_owned();

    let status = sigterm_and_wait(&mut proc);
    assert!(status.success(), "graceful exit: {status}");
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.contains(&listen))),
        "logs where it listens: {text}"
    );
    assert!(text.contains(&request_id), "request id in the logs");
    for secret in [
        "setup-token-never-logged",
        signature.as_str(),
        "AKIAEXAMPLE",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log: {text}"
        );
    }
}

#[test]
fn configuration_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hive.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body = 5\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hive-api"))
        .args(["--config", config.to_str().expect("utf-8")])
        .output()
        .expect("run hive-api");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body"), "{err}");
}

fn nats_server() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.exists() {
                return p;
            }
        }
    }
    panic!("nats-server not found: apt-get install -y nats-server");
}

#[tokio::test]
async fn runs_on_nats_and_readiness_follows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats_port = free_port();
    let store_dir = dir.path().join("js");
    let nats = Proc(
        Command::new(nats_server())
            .args([
                "-js",
                "-sd",
                store_dir.to_str().expect("utf-8"),
                "-a",
                "127.0.0.1",
            ])
            .args(["-p", &nats_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server"),
    );
    let nats_addr: SocketAddr = format!("127.0.0.1:{nats_port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(nats_addr).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = dir.path().join("log");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let url = format!("nats://{nats_addr}");
    let mut proc = hive_api(
        &[
            "--data-dir",
            dir.path().join("data").to_str().expect("utf-8"),
            "--listen",
            &addr.to_string(),
            "--nats-url",
            &url,
        ],
        &[("HIVE_STORAGE_OP_TIMEOUT_MS", "1000")],
        &log,
    );
    wait_up(addr, &mut proc, &log, false, Duration::from_secs(20)).await;
    assert_eq!(
        get(addr, "/ready").await.status,
        200,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    drop(nats); // storage goes away
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = get(addr, "/ready").await;
        if reply.status == 503 {
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            Instant::now() < deadline,
            "/ready never noticed NATS going down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get(addr, "/health").await.status,
        200,
        "health stays shallow"
    );
}

/// Started before its NATS server, the node waits (a warning per attempt) instead of exiting,
/// and serves once the server is there.
#[tokio::test]
async fn a_node_started_before_nats_waits_for_it() {
    let mut nats = hive_kv::testing::NatsServer::start();
    nats.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut proc = hive_api(
        &[
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--listen",
            &addr.to_string(),
            "--nats-url",
            &nats.url(),
        ],
        &[],
        &log,
    );
    wait_for_log(&mut proc, &log, STORE_NOT_READY, Duration::from_secs(60)).await;
    nats.restart().expect("start nats-server");
    wait_up(addr, &mut proc, &log, true, Duration::from_secs(60)).await;
    assert!(data.join("admin-credentials").exists());
}

/// A URL that cannot be a NATS URL ends start-up without a retry; a store that never comes
/// ends it once `startup_timeout_secs` has passed, naming the setting.
#[tokio::test]
async fn start_up_gives_up_on_a_bad_url_at_once_and_on_a_missing_store_after_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let run = |url: &str, env: &[(&str, &str)], name: &str| {
        let log = dir.path().join(name);
        let mut proc = hive_api(
            &[
                "--data-dir",
                data,
                "--listen",
                "127.0.0.1:0",
                "--nats-url",
                url,
            ],
            env,
            &log,
        );
        let status = wait_exit(&mut proc, Duration::from_secs(120));
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    };
    let (status, log) = run("nats://bad host:4222", &[], "bad-url.log");
    assert!(!status.success(), "{log}");
    assert!(log.contains("bad NATS URL"), "{log}");
    assert!(!log.contains(STORE_NOT_READY), "no retry: {log}");

    let nobody = format!("nats://127.0.0.1:{}", free_port());
    let (status, log) = run(
        &nobody,
        &[("HIVE_STORAGE_STARTUP_TIMEOUT_SECS", "2")],
        "timeout.log",
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains(STORE_NOT_READY), "{log}");
    assert!(
        log.contains("storage not ready after 2 s ([storage] startup_timeout_secs)"),
        "{log}"
    );
}
