//! The real aws CLI (from the venv next to `$HIVE_PYTHON`) against the server over plain HTTP:
//! for IAM, STS and EC2 it must reach the right service through its credential scope and read
//! our error bodies, code and message, as it reads AWS's.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use hive_api::server::Server;

async fn aws(endpoint: String, args: &'static [&'static str]) -> (bool, String) {
    let aws = python().with_file_name("aws");
    assert!(
        aws.exists(),
        "no aws CLI next to {}: pip install awscli",
        python().display()
    );
    let home = tempfile::tempdir().expect("tempdir");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(aws)
            .args(args)
            .args(["--endpoint-url", &endpoint])
            .env("HOME", home.path())
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
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_reads_our_errors_for_each_service() {
    let server =
        TestServer::start(Server::new(config(), ready_ok()).service(Arc::new(TestSts))).await;
    let url = format!("http://{}", server.addr);
    let (ok, err) = aws(url.clone(), &["iam", "get-user"]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "An error occurred (InvalidClientTokenId) when calling the GetUser operation: \
                      The security token included in the request is invalid."
        ),
        "{err}"
    );
    let (ok, err) = aws(url.clone(), &["ec2", "describe-vpcs"]).await;
    assert!(!ok);
    assert!(
        err.contains("(InvalidClientTokenId) when calling the DescribeVpcs operation"),
        "{err}"
    );
    let metrics = get(server.addr, "/metrics").await.body;
    for service in ["iam", "ec2"] {
        assert!(
            metrics.contains(&format!(
                "hive_api_requests_total{{service=\"{service}\",action=\"unknown\",outcome=\"InvalidClientTokenId\"}} 1"
            )),
            "routed to {service} by the credential scope: {metrics}"
        );
    }
}

#[tokio::test]
async fn the_cli_gets_a_success_body_it_can_read() {
    let server = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let endpoint = format!("http://{}", server.addr);
    let aws = python().with_file_name("aws");
    let home = tempfile::tempdir().expect("tempdir");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(aws)
            .args([
                "sts",
                "get-caller-identity",
                "--output",
                "json",
                "--endpoint-url",
                &endpoint,
            ])
            .env("HOME", home.path())
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .output()
    })
    .await
    .expect("join")
    .expect("run aws");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("CLI prints JSON");
    assert_eq!(parsed["Arn"], "arn:aws:iam::000000000000:user/admin");
    assert_eq!(parsed["Account"], "000000000000");
}
