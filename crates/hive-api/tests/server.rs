//! The server end to end over loopback HTTP: operational endpoints, the error paths every
//! client mistake takes (each an AWS error body with a 4xx, never a 500), routing, throttling,
//! timeouts and graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hive_api::config::ServerConfig;
use hive_api::server::{FnReadiness, Server};

fn assert_query_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(
        reply.body.contains("<ErrorResponse><Error><Type>"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains(&format!("<Code>{code}</Code>")),
        "{}",
        reply.body
    );
    let id = reply.header("x-amzn-RequestId").expect("request id header");
    assert!(
        reply.body.contains(&format!("<RequestId>{id}</RequestId>")),
        "{}",
        reply.body
    );
}

fn assert_ec2_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(
        reply.body.contains("<Response><Errors><Error>"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains(&format!("<Code>{code}</Code>")),
        "{}",
        reply.body
    );
    let id = reply.header("x-amzn-RequestId").expect("request id header");
    assert!(
        reply.body.contains(&format!("<RequestID>{id}</RequestID>")),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn health_is_shallow_and_carries_a_request_id() {
    let server = TestServer::start(Server::new(config(), ready_ok())).await;
    let reply = get(server.addr, "/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"ok"}"#);
    let id = reply.header("x-amzn-RequestId").expect("request id");
    assert_eq!(id.len(), 36, "uuid form: {id}");
    let other = get(server.addr, "/health").await;
    assert_ne!(
        other.header("x-amzn-RequestId"),
        Some(id),
        "ids are per request"
    );
}

#[tokio::test]
async fn ready_reflects_the_storage_check() {
    let ok = TestServer::start(Server::new(config(), ready_ok())).await;
    assert_eq!(get(ok.addr, "/ready").await.status, 200);

    let failing = Arc::new(FnReadiness(|| Err("storage is down".to_owned())));
    let down = TestServer::start(Server::new(config(), failing)).await;
    let reply = get(down.addr, "/ready").await;
    assert_eq!(reply.status, 503);
    assert!(
        !reply.body.contains("storage is down"),
        "the reason stays in the log"
    );
    assert_eq!(
        get(down.addr, "/health").await.status,
        200,
        "health stays shallow"
    );
}

#[tokio::test]
async fn metrics_count_actions_outcomes_and_auth_failures() {
    let server =
        TestServer::start(Server::new(config(), ready_ok()).service(Arc::new(TestSts))).await;
    post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    let text = get(server.addr, "/metrics").await;
    assert_eq!(text.status, 200);
    assert!(
        text.body.contains(
            "hive_api_requests_total{service=\"sts\",action=\"unknown\",outcome=\"MissingAuthenticationToken\"} 2"
        ),
        "{}",
        text.body
    );
    assert!(
        text.body
            .contains("hive_api_auth_failures_total{code=\"MissingAuthenticationToken\"} 2")
    );
    assert!(
        text.body
            .contains("hive_api_request_duration_seconds_count 2")
    );

    let allowed = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    post_form(
        allowed.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    post_form(allowed.addr, "Action=NoSuchThing&Version=2011-06-15", "").await;
    let text = get(allowed.addr, "/metrics").await.body;
    assert!(text.contains(
        "hive_api_requests_total{service=\"sts\",action=\"GetCallerIdentity\",outcome=\"ok\"} 1"
    ));
    assert!(
        text.contains("hive_api_requests_total{service=\"sts\",action=\"unknown\",outcome=\"InvalidAction\"} 1"),
        "unknown action names never become labels: {text}"
    );
    assert!(!text.contains("NoSuchThing"));
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_chunked() {
    let cfg = ServerConfig {
        max_body_bytes: 1024,
        ..config()
    };
    let server = TestServer::start(
        Server::new(cfg, ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let big = format!(
        "Action=GetCallerIdentity&Version=2011-06-15&Pad={}",
        "x".repeat(2000)
    );
    let reply = post_form(server.addr, &big, "").await;
    assert_query_error(&reply, 413, "RequestEntityTooLarge");

    // No Content-Length: the limit is enforced while reading.
    let chunk = "y".repeat(3000);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let reply = raw(server.addr, req.as_bytes()).await;
    assert_query_error(&reply, 413, "RequestEntityTooLarge");

    let ok = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    assert_eq!(ok.status, 200, "a body under the limit passes");
}

#[tokio::test]
async fn unknown_actions_are_invalid_action_in_each_protocol() {
    let server = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let reply = post_form(server.addr, "Action=MakeCoffee&Version=2011-06-15", "").await;
    assert_query_error(&reply, 400, "InvalidAction");
    // IAM has no handler registered yet: every IAM action is InvalidAction, not a 500.
    let reply = post_form(server.addr, "Action=ListUsers&Version=2010-05-08", "").await;
    assert_query_error(&reply, 400, "InvalidAction");
    let reply = get(server.addr, "/?Action=DescribeVpcs&Version=2016-11-15").await;
    assert_ec2_error(&reply, 400, "InvalidAction");
    assert!(
        reply
            .body
            .contains("The action DescribeVpcs is not valid for this web service.")
    );
}

#[tokio::test]
async fn unsigned_and_unknown_key_requests_are_refused() {
    let server =
        TestServer::start(Server::new(config(), ready_ok()).service(Arc::new(TestSts))).await;
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    assert_query_error(&reply, 403, "MissingAuthenticationToken");
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        &auth_header("sts"),
    )
    .await;
    assert_query_error(&reply, 403, "InvalidClientTokenId");
    let reply = get(
        server.addr,
        "/?Action=DescribeVpcs&Version=2016-11-15&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fec2%2Faws4_request",
    )
    .await;
    assert_ec2_error(&reply, 403, "InvalidClientTokenId");
}

#[tokio::test]
async fn malformed_requests_get_their_aws_errors() {
    let server = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15&X=%G1",
        "",
    )
    .await;
    assert_query_error(&reply, 400, "MalformedQueryString");
    let reply = post_form(server.addr, "Action=A&Action=B&Version=2011-06-15", "").await;
    assert_query_error(&reply, 400, "MalformedQueryString");
    let reply = post_form(server.addr, "Version=2011-06-15&X=%FF", &auth_header("ec2")).await;
    assert_ec2_error(&reply, 400, "MalformedQueryString");
    let reply = post_form(server.addr, "Action=GetCallerIdentity", "").await;
    assert_query_error(&reply, 400, "MissingParameter");
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=1999-01-01",
        "",
    )
    .await;
    assert_query_error(&reply, 400, "NoSuchVersion");
    let reply = post_form(server.addr, "Version=2011-06-15", "").await;
    assert_query_error(&reply, 400, "MissingAction");
    let reply = post_form(server.addr, "Action=Fail&Version=2011-06-15", "").await;
    assert_query_error(&reply, 400, "ValidationError");
    let json = "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
                Content-Length: 2\r\n\r\n{}";
    assert_query_error(
        &raw(server.addr, json.as_bytes()).await,
        415,
        "UnsupportedMediaType",
    );
    let put = "PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    assert_query_error(
        &raw(server.addr, put.as_bytes()).await,
        405,
        "MethodNotAllowed",
    );
    assert_query_error(&get(server.addr, "/nope").await, 404, "NotFound");
    let garbage = raw(server.addr, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert_eq!(garbage.status, 400, "hyper refuses non-HTTP bytes with 400");
}

#[tokio::test]
async fn routing_uses_credential_scope_then_version() {
    let server = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    // The scope alone routes (no Version).
    let reply = post_form(server.addr, "Action=GetCallerIdentity", &auth_header("sts")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("<Arn>arn:aws:iam::000000000000:user/admin</Arn>")
    );
    assert_eq!(reply.header("content-type"), Some("text/xml"));
    // A Version that contradicts the scope is refused.
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2010-05-08",
        &auth_header("sts"),
    )
    .await;
    assert_query_error(&reply, 400, "NoSuchVersion");
    // GET with a query string works like a POST body.
    let reply = get(server.addr, "/?Action=GetCallerIdentity&Version=2011-06-15").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn repeated_auth_failures_are_throttled_per_source() {
    let cfg = ServerConfig {
        auth_failure_threshold: 3,
        auth_ban_secs: 60,
        ..config()
    };
    let server = TestServer::start(Server::new(cfg, ready_ok()).service(Arc::new(TestSts))).await;
    for _ in 0..3 {
        let reply = post_form(
            server.addr,
            "Action=GetCallerIdentity&Version=2011-06-15",
            "",
        )
        .await;
        assert_eq!(reply.status, 403);
    }
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    assert_query_error(&reply, 400, "Throttling");
    let reply = get(server.addr, "/?Action=DescribeVpcs&Version=2016-11-15").await;
    assert_ec2_error(&reply, 400, "Throttling");
    assert_eq!(
        get(server.addr, "/health").await.status,
        200,
        "operations stay reachable"
    );
    assert!(
        get(server.addr, "/metrics")
            .await
            .body
            .contains("hive_api_auth_throttled_total 2")
    );
}

#[tokio::test]
async fn slow_requests_time_out_and_panics_are_contained() {
    let cfg = ServerConfig {
        request_timeout_ms: 200,
        ..config()
    };
    let server = TestServer::start(
        Server::new(cfg, ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let started = std::time::Instant::now();
    let reply = post_form(server.addr, "Action=Slow&Version=2011-06-15", "").await;
    assert_query_error(&reply, 408, "RequestTimeout");
    assert!(started.elapsed() < Duration::from_secs(3));

    let reply = post_form(server.addr, "Action=Panic&Version=2011-06-15", "").await;
    assert_query_error(&reply, 500, "InternalFailure");
    assert!(!reply.body.contains("handler bug"), "no internals leak");
    assert_eq!(
        get(server.addr, "/health").await.status,
        200,
        "the server survives"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let server = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let addr = server.addr;
    // A request that is in flight when shutdown starts still gets its answer.
    let in_flight =
        tokio::spawn(async move { post_form(addr, "Action=Wait&Version=2011-06-15", "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await.expect("serve returns Ok");
    assert_eq!(in_flight.await.expect("client task").status, 200);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
