//! TLS termination with rustls: curl and the real aws CLI reach the server over HTTPS with a
//! self-signed certificate as their trust anchor. Needs `openssl` and `curl` (apt-get install
//! -y openssl curl) and the venv's `aws` (next to `$HIVE_PYTHON`); fails, never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hive_api::server::Server;

fn tool(name: &str, install: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: {install}");
}

/// A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new(tool("openssl", "apt-get install -y openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

async fn raw_bytes(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    buf
}

#[tokio::test]
async fn https_with_curl_and_the_aws_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let acceptor = hive_api::tls::acceptor(&cert, &key).expect("load the pair");
    let server = TestServer::start(Server::new(config(), ready_ok()).tls(acceptor)).await;
    let url = format!("https://127.0.0.1:{}", server.addr.port());

    let curl = tool("curl", "apt-get install -y curl");
    let cert_arg = cert.to_str().expect("utf-8").to_owned();
    let health_url = format!("{url}/health");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(curl)
            .args(["-sS", "--cacert", &cert_arg, &health_url])
            .output()
    })
    .await
    .expect("join")
    .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        raw_bytes(
            server.addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plaintext served on the TLS port"
    );

    // The real CLI, signing with a key nobody knows: routed by its credential scope to STS
    // and refused by the fail-closed authenticator, over TLS.
    let aws = python().with_file_name("aws");
    assert!(
        aws.exists(),
        "no aws CLI next to {}: pip install awscli",
        python().display()
    );
    let home = dir.path().to_owned();
    let cert_arg = cert.to_str().expect("utf-8").to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(aws)
            .args([
                "sts",
                "get-caller-identity",
                "--endpoint-url",
                &url,
                "--ca-bundle",
                &cert_arg,
            ])
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .output()
    })
    .await
    .expect("join")
    .expect("run aws");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("(InvalidClientTokenId)")
            && stderr.contains("The security token included in the request is invalid."),
        "aws CLI output: {stderr}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let (cert, _) = self_signed(a.path());
    let (_, other_key) = self_signed(b.path());
    let e = hive_api::tls::acceptor(&cert, &other_key)
        .err()
        .expect("mismatch refused");
    let text = e.to_string();
    assert!(text.contains("TLS"), "{text}");
    let key_pem = std::fs::read_to_string(&other_key).expect("key");
    let body = key_pem.lines().nth(1).expect("a base64 line");
    assert!(!text.contains(body), "no key material in the error");
}
