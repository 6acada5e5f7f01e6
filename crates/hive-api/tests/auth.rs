//! Authentication and authorization of real requests: botocore signs, an in-process node (the
//! same composition as the binary) answers. Good requests pass; each kind of bad request gets
//! AWS's error (never a 500 or a hang) and writes nothing; revocations (inactive key, detached
//! policy) take effect within one second, also through a second `App` on the same store
//! (SQLite file and a real nats-server).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hive_api::app::{ACCOUNT_ID, App};
use hive_api::node::{self, Node};
use hive_api::server::{Principal, RequestContext};
use hive_api::wire::ServiceId;
use hive_iam::identity::{KeyStatus, Principal as IamPrincipal};
use hive_iam_store::Target;
use serde_json::json;

const GCI: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const CREATE_INTRUDER: &str = "Action=CreateUser&UserName=intruder&Version=2010-05-08";

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
    key: String,
    secret: String,
}

async fn fixture(max_body: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = node_config(dir.path());
    config.server.max_body_bytes = max_body;
    let node = node::start(config).await.expect("node starts");
    assert!(
        node.app.wait_auth_cache_live(Duration::from_secs(5)).await,
        "the cache's watch goes live"
    );
    let (key, secret) = read_admin_credentials(&dir.path().join("admin-credentials"));
    Fixture {
        _dir: dir,
        node,
        key,
        secret,
    }
}

/// A new access key of `user`, and a botocore-signed `GetCallerIdentity` with it for `addr`.
async fn new_key_gci(
    iam: &hive_iam_store::IamRepo,
    user: &str,
    addr: std::net::SocketAddr,
) -> (String, Vec<Signed>) {
    let k = iam.create_access_key(ACCOUNT_ID, user).await.expect("key");
    let id = k.record.access_key_id.clone();
    let signed = botocore_sign(&[query_spec(
        addr,
        "sts",
        &id,
        k.secret_access_key.expose(),
        GCI,
    )]);
    (id, signed)
}

/// A new access key of `user` made through `writer`, and a botocore-signed `GetCallerIdentity`
/// with it for the node at `addr`, once that node accepts it (within 2 s).
async fn working_key(
    writer: &App,
    user: &str,
    addr: std::net::SocketAddr,
) -> (String, Vec<Signed>) {
    let (id, signed) = new_key_gci(&writer.iam, user, addr).await;
    within(Duration::from_secs(2), "new key", || async {
        send_signed(addr, &signed[0], None).await.status == 200
    })
    .await;
    (id, signed)
}

fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(
        (reply.status, error_code(&reply.body)),
        (status, Some(code)),
        "{what}: {}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_and_bad_requests_get_their_aws_answers_and_write_nothing() {
    let f = fixture(64 * 1024).await;
    let addr = f.node.addr;
    let (key, secret) = (f.key.as_str(), f.secret.as_str());
    let wrong_secret = "x".repeat(40);
    let padding = format!("{GCI}&Pad={}", "p".repeat(70 * 1024));
    let mut skewed_past = query_spec(addr, "iam", key, secret, CREATE_INTRUDER);
    skewed_past["skew_seconds"] = json!(-20 * 60);
    let mut skewed_future = query_spec(addr, "iam", key, secret, CREATE_INTRUDER);
    skewed_future["skew_seconds"] = json!(20 * 60);
    let presigned = json!({
        "service": "sts", "region": "us-east-1", "access_key": key, "secret_key": secret,
        "method": "GET", "url": format!("http://{addr}/?{GCI}"), "body": "", "headers": {},
        "presign_expires": 300,
    });
    let presigned_wrong = json!({
        "service": "sts", "region": "us-east-1", "access_key": key, "secret_key": wrong_secret,
        "method": "GET", "url": format!("http://{addr}/?{GCI}"), "body": "", "headers": {},
        "presign_expires": 300,
    });
    let signed = botocore_sign(&[
        query_spec(addr, "sts", key, secret, GCI),
        query_spec(addr, "iam", key, &wrong_secret, CREATE_INTRUDER),
        query_spec(
            addr,
            "iam",
            key,
            secret,
            "Action=ListUsers&Version=2010-05-08",
        ),
        skewed_past,
        skewed_future,
        query_spec(addr, "iam", "AKIAZZZZZZZZZZZZZZZZ", secret, CREATE_INTRUDER),
        query_spec(
            addr,
            "sts",
            key,
            secret,
            "Action=FlyToTheMoon&Version=2011-06-15",
        ),
        presigned,
        query_spec(addr, "sts", key, secret, &format!("{GCI}&Bad=%ZZ")),
        query_spec(addr, "sts", key, secret, &padding),
        presigned_wrong,
        query_spec(addr, "s3", key, secret, GCI),
    ]);

    let good = send_signed(addr, &signed[0], None).await;
    assert_eq!(good.status, 200, "{}", good.body);
    assert!(
        good.body
            .contains("<Arn>arn:aws:iam::000000000000:user/admin</Arn>"),
        "{}",
        good.body
    );
    // botocore reads the body as GetCallerIdentity's output.
    let parsed = botocore_parse("sts", "GetCallerIdentity", 200, &good.body);
    assert_eq!(parsed["Account"], "000000000000");

    let r = send_signed(addr, &signed[1], None).await;
    assert_error(&r, 403, "SignatureDoesNotMatch", "wrong secret");
    // Signed as ListUsers, sent as CreateUser: the body no longer matches the signature.
    let r = send_signed(addr, &signed[2], Some(CREATE_INTRUDER)).await;
    assert_error(&r, 403, "SignatureDoesNotMatch", "tampered body");
    let r = send_signed(addr, &signed[3], None).await;
    assert_error(&r, 403, "SignatureDoesNotMatch", "20 minutes late");
    assert!(r.body.contains("Signature expired"), "{}", r.body);
    let r = send_signed(addr, &signed[4], None).await;
    assert_error(&r, 403, "SignatureDoesNotMatch", "20 minutes early");
    assert!(r.body.contains("Signature not yet current"), "{}", r.body);
    let r = send_signed(addr, &signed[5], None).await;
    assert_error(&r, 403, "InvalidClientTokenId", "unknown key");
    let r = send_signed(addr, &signed[6], None).await;
    assert_error(&r, 400, "InvalidAction", "unknown action");
    let r = send_signed(addr, &signed[7], None).await;
    assert_eq!(r.status, 200, "presigned GET: {}", r.body);
    let r = send_signed(addr, &signed[8], None).await;
    assert_error(&r, 400, "MalformedQueryString", "malformed form encoding");
    let r = send_signed(addr, &signed[9], None).await;
    assert_error(&r, 413, "RequestEntityTooLarge", "oversized body");
    let r = send_signed(addr, &signed[10], None).await;
    assert_error(
        &r,
        403,
        "SignatureDoesNotMatch",
        "presigned with a wrong secret",
    );

    let r = send_signed(addr, &signed[11], None).await;
    assert_error(
        &r,
        403,
        "SignatureDoesNotMatch",
        "credential scoped to another service",
    );
    assert!(
        r.body
            .contains("scoped to correct service: &apos;sts&apos;"),
        "{}",
        r.body
    );

    let r = post_form(addr, CREATE_INTRUDER, "").await;
    assert_error(&r, 403, "MissingAuthenticationToken", "unsigned");

    // None of the refused requests wrote anything.
    let users = f
        .node
        .app
        .iam
        .list_users(ACCOUNT_ID, None)
        .await
        .expect("list users");
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["admin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_key_is_refused_within_a_second_and_the_cache_serves_repeats() {
    let f = fixture(1024 * 1024).await;
    let addr = f.node.addr;
    let iam = &f.node.app.iam;
    iam.create_user(ACCOUNT_ID, "carol", None, Vec::new())
        .await
        .expect("create carol");
    let (id, signed) = new_key_gci(iam, "carol", addr).await;
    let r = send_signed(addr, &signed[0], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("user/carol"), "{}", r.body);

    // Last use was recorded off the request path.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let keys = iam
            .list_access_keys(ACCOUNT_ID, "carol")
            .await
            .expect("list keys");
        if keys.iter().any(|k| k.last_used.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "key use never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Once the watch has delivered the last writes (carol's key, its use), a burst of
    // replays is served from memory. (A signed request may be replayed within its 15 minutes.)
    within(
        Duration::from_secs(3),
        "five cache hits in a row",
        || async {
            let before = f.node.app.auth_cache_stats();
            for _ in 0..5 {
                assert_eq!(send_signed(addr, &signed[0], None).await.status, 200);
            }
            let after = f.node.app.auth_cache_stats();
            assert!(after.live);
            after.hits >= before.hits + 5
        },
    )
    .await;

    iam.update_access_key(ACCOUNT_ID, "carol", &id, KeyStatus::Inactive)
        .await
        .expect("deactivate");
    let r = send_signed(addr, &signed[0], None).await;
    assert_error(
        &r,
        403,
        "InvalidClientTokenId",
        "inactive key, same process",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_credentials_need_their_token_and_expire() {
    let f = fixture(1024 * 1024).await;
    let addr = f.node.addr;
    let iam = &f.node.app.iam;
    let admin = iam
        .get_user(ACCOUNT_ID, "admin")
        .await
        .expect("admin exists");
    let principal = IamPrincipal::User {
        account_id: ACCOUNT_ID.into(),
        username: admin.username.clone(),
        user_id: admin.user_id.clone(),
        arn: admin.arn.clone(),
    };
    let now = time::OffsetDateTime::now_utc();
    let live = iam
        .create_session(principal.clone(), 900, None, Vec::new(), now)
        .await
        .expect("session");
    // Issued 1000 s ago for 900 s: expired 100 s ago.
    let expired = iam
        .create_session(
            principal,
            900,
            None,
            Vec::new(),
            now - time::Duration::seconds(1000),
        )
        .await
        .expect("old session");
    let spec = |c: &hive_iam_store::TemporaryCredentials, token: Option<&str>| {
        let mut s = query_spec(
            addr,
            "sts",
            &c.access_key_id,
            c.secret_access_key.expose(),
            GCI,
        );
        if let Some(t) = token {
            s["token"] = json!(t);
        }
        s
    };
    let signed = botocore_sign(&[
        spec(&live, Some(live.session_token.expose())),
        spec(&live, None),
        spec(&live, Some("not-the-token")),
        spec(&expired, Some(expired.session_token.expose())),
    ]);
    let r = send_signed(addr, &signed[0], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("user/admin"), "{}", r.body);
    let r = send_signed(addr, &signed[1], None).await;
    assert_error(
        &r,
        403,
        "InvalidClientTokenId",
        "session key without its token",
    );
    let r = send_signed(addr, &signed[2], None).await;
    assert_error(
        &r,
        403,
        "InvalidClientTokenId",
        "session key with a wrong token",
    );
    let r = send_signed(addr, &signed[3], None).await;
    assert_error(&r, 403, "ExpiredToken", "expired session");
}

fn context_for(caller: Principal) -> RequestContext {
    RequestContext {
        request_id: "test".into(),
        service: ServiceId::Iam,
        action: "ListUsers",
        caller,
        client: Some("127.0.0.1:1".parse().expect("addr")),
    }
}

async fn principal_of(app: &App, user: &str) -> Principal {
    let u = app.iam.get_user(ACCOUNT_ID, user).await.expect("user");
    Principal {
        account_id: ACCOUNT_ID.into(),
        arn: u.arn.clone(),
        user_id: u.user_id.clone(),
        access_key_id: None,
        identity: IamPrincipal::User {
            account_id: ACCOUNT_ID.into(),
            username: u.username,
            user_id: u.user_id,
            arn: u.arn,
        },
        session_policy: None,
    }
}

/// Two `App`s on one store: `writer` changes things, `reader` (warm cache) must notice within
/// one second — through its KV watch, not by luck.
async fn revocations_cross_apps(writer: &Node, reader: &Node) {
    let (w, r) = (&writer.app, &reader.app);
    assert!(r.wait_auth_cache_live(Duration::from_secs(5)).await);
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:List*","Resource":"*"}]}"#;
    w.iam
        .create_user(ACCOUNT_ID, "dave", None, Vec::new())
        .await
        .expect("create dave");
    let p = w
        .iam
        .create_policy(ACCOUNT_ID, "ListOnly", None, policy, None, Vec::new())
        .await
        .expect("policy");
    w.iam
        .attach_policy(ACCOUNT_ID, &Target::User("dave".into()), &p.arn)
        .await
        .expect("attach");
    let dave = principal_of(r, "dave").await;
    let ctx = context_for(dave);
    // The reader sees the attachment and caches dave's policies.
    within(Duration::from_secs(2), "attach", || async {
        r.authorize(&ctx, "iam:ListUsers", "*").await.is_ok()
    })
    .await;
    // Once the watch has delivered the writer's last changes, repeats come from memory.
    within(Duration::from_secs(2), "a cache hit", || async {
        let hits = r.auth_cache_stats().hits;
        r.authorize(&ctx, "iam:ListUsers", "*")
            .await
            .expect("allowed");
        r.auth_cache_stats().hits > hits
    })
    .await;
    let denied = r
        .authorize(&ctx, "iam:CreateUser", "*")
        .await
        .expect_err("not allowed");
    assert_eq!(denied.code(), "AccessDenied");
    assert!(
        denied
            .message()
            .contains("because no identity-based policy allows the iam:CreateUser action"),
        "{}",
        denied.message()
    );

    w.iam
        .detach_policy(ACCOUNT_ID, &Target::User("dave".into()), &p.arn)
        .await
        .expect("detach");
    let took = within(Duration::from_secs(1), "detach", || async {
        r.authorize(&ctx, "iam:ListUsers", "*").await.is_err()
    })
    .await;
    eprintln!("detached policy took effect in the other app after {took:?}");

    // A deactivated key: the reader authenticated with it (cached), then it is refused.
    let (id, signed) = working_key(w, "dave", reader.addr).await;
    w.iam
        .update_access_key(ACCOUNT_ID, "dave", &id, KeyStatus::Inactive)
        .await
        .expect("deactivate");
    let took = within(Duration::from_secs(1), "deactivation", || async {
        let reply = send_signed(reader.addr, &signed[0], None).await;
        assert_ne!(reply.status, 500, "{}", reply.body);
        reply.status == 403 && error_code(&reply.body) == Some("InvalidClientTokenId")
    })
    .await;
    eprintln!("deactivated key refused by the other app after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_second_app_on_one_sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = node::start(node_config(dir.path())).await.expect("node a");
    let b = node::start(node_config(dir.path())).await.expect("node b");
    revocations_cross_apps(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_second_app_on_one_nats_server() {
    let nats = hive_kv::testing::NatsServer::start();
    let key = "5a".repeat(32);
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = node_config(dir.path());
        c.storage.nats_url = Some(nats.url());
        c.iam.encryption_key = Some(hive_api::config::Secret::new(key.clone()));
        nodes.push(node::start(c).await.expect("node on nats"));
        dirs.push(dir);
    }
    revocations_cross_apps(&nodes[0], &nodes[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_a_live_watch_reads_through() {
    // App::new outside any runtime cannot start its watch: it must never cache.
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node::start(node_config(dir.path())).await.expect("node");
    let app = std::thread::spawn({
        let iam = n.app.iam.clone();
        let store = n.app.store.clone();
        let config = n.app.config.clone();
        move || App::new(iam, store, config)
    })
    .join()
    .expect("thread");
    let app = Arc::new(app);
    assert!(!app.auth_cache_live());
    let ctx = context_for(principal_of(&app, "admin").await);
    for _ in 0..3 {
        app.authorize(&ctx, "iam:CreateUser", "*")
            .await
            .expect("admin may");
    }
    let stats = app.auth_cache_stats();
    assert_eq!(stats.hits, 0, "{stats:?}");
}

/// async-nats reconnects under the watch without reporting the outage, so the cache's bound on
/// entry age is what keeps a revocation made right after an outage within one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_does_not_stretch_a_revocation() {
    let mut nats = hive_kv::testing::NatsServer::start();
    let key = "6b".repeat(32);
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = node_config(dir.path());
        c.storage.nats_url = Some(nats.url());
        c.storage.op_timeout_ms = 1_000;
        c.iam.encryption_key = Some(hive_api::config::Secret::new(key.clone()));
        nodes.push(node::start(c).await.expect("node on nats"));
        dirs.push(dir);
    }
    let (w, r) = (&nodes[0], &nodes[1]);
    assert!(r.app.wait_auth_cache_live(Duration::from_secs(5)).await);
    w.app
        .iam
        .create_user(ACCOUNT_ID, "gina", None, Vec::new())
        .await
        .expect("user");
    let (id, signed) = working_key(&w.app, "gina", r.addr).await;

    nats.stop();
    // During the outage nothing answers 500 or hangs: cached for at most a second, then 503.
    let reply = send_signed(r.addr, &signed[0], None).await;
    assert!(matches!(reply.status, 200 | 503), "{}", reply.body);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let reply = send_signed(r.addr, &signed[0], None).await;
    assert_eq!(
        reply.status, 503,
        "storage down, cache expired: {}",
        reply.body
    );
    nats.restart().expect("restart nats");

    within(Duration::from_secs(20), "recovery", || async {
        send_signed(r.addr, &signed[0], None).await.status == 200
    })
    .await;
    within(Duration::from_secs(20), "writer recovery", || async {
        w.app
            .iam
            .update_access_key(ACCOUNT_ID, "gina", &id, KeyStatus::Inactive)
            .await
            .is_ok()
    })
    .await;
    let took = within(
        Duration::from_secs(1),
        "deactivation after the outage",
        || async {
            let reply = send_signed(r.addr, &signed[0], None).await;
            reply.status == 403 && error_code(&reply.body) == Some("InvalidClientTokenId")
        },
    )
    .await;
    eprintln!("deactivation after an outage took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_keeps_its_cache() {
    let f = fixture(1024 * 1024).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = f.node.app.auth_cache_stats();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = f.node.app.auth_cache_stats();
    assert_eq!(
        before.invalidations, after.invalidations,
        "nothing rewrites IAM records in the background"
    );
}
