//! A failing store under a running node: storage that cannot be reached answers 503
//! `ServiceUnavailable` with `Retry-After` in IAM, STS and EC2, whether the request fails in
//! its action or already in authentication; botocore parses every answer and would retry it;
//! and the node serves again as soon as the store is back; the switch sync waits for a store
//! that is away at start. (Contention that outlasts the
//! cores' retries is a 503 too: `botocore_contract.rs` and the unit tests of `hive_api::error`.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hive_api::node::{self, Node};

/// The admin's key of a node on a fresh in-memory store behind a [`FaultyStore`].
struct Fixture {
    node: Node,
    faults: Faults,
    key: String,
    secret: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    fixture_with(Fault::None, false).await
}

/// A node with `[vpc] enabled` as given (no switch is reachable: `OVS_RUNDIR` points nowhere
/// in the test environment), started while `fault` holds.
async fn fixture_with(fault: Fault, vpc: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, faults) = FaultyStore::over(Arc::new(hive_kv::memory::MemoryStore::new()));
    faults.set(fault);
    let mut config = node_config(dir.path());
    config.vpc.enabled = vpc;
    let node = node::start_on(config, store).await.expect("start");
    let (key, secret) = read_admin_credentials(&dir.path().join("admin-credentials"));
    Fixture {
        node,
        faults,
        key,
        secret,
        _dir: dir,
    }
}

impl Fixture {
    /// `body` to `service` (iam, sts or ec2), signed by botocore with the admin's key.
    async fn call(&self, service: &str, body: &str) -> Reply {
        let spec = query_spec(self.node.addr, service, &self.key, &self.secret, body);
        let signed = botocore_sign(&[spec]);
        send_signed(self.node.addr, &signed[0], None).await
    }
}

/// 503 with `Retry-After: 1` and `code`, as botocore parses it, and retryable for botocore.
fn assert_retry_later(reply: &Reply, service: &str, operation: &str, code: &str) {
    assert_eq!(reply.status, 503, "{operation}: {}", reply.body);
    assert_eq!(reply.header("Retry-After"), Some("1"), "{operation}");
    let parsed = botocore_parse(service, operation, reply.status, &reply.body);
    assert_eq!(parsed["Error"]["Code"], code, "{operation}: {parsed}");
    assert_eq!(
        parsed["_retryable"], true,
        "{operation}: botocore retries it"
    );
}

const CREATE_USER: &str = "Action=CreateUser&Version=2010-05-08&UserName=alice";
const GET_USER: &str = "Action=GetUser&Version=2010-05-08";
const GET_SESSION_TOKEN: &str = "Action=GetSessionToken&Version=2011-06-15";
const GET_CALLER_IDENTITY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const CREATE_VPC: &str = "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.20.0.0/16";
const DESCRIBE_VPCS: &str = "Action=DescribeVpcs&Version=2016-11-15";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_answers_503_with_retry_after_everywhere() {
    let f = fixture().await;
    // Warm: authentication and the default network work.
    let vpcs = f.call("ec2", DESCRIBE_VPCS).await;
    assert_eq!(vpcs.status, 200, "{}", vpcs.body);

    // Writes fail: the actions' own storage errors.
    f.faults.set(Fault::WritesDown);
    let r = f.call("iam", CREATE_USER).await;
    assert_retry_later(&r, "iam", "CreateUser", "ServiceUnavailable");
    let r = f.call("sts", GET_SESSION_TOKEN).await;
    assert_retry_later(&r, "sts", "GetSessionToken", "ServiceUnavailable");
    let r = f.call("ec2", CREATE_VPC).await;
    assert_retry_later(&r, "ec2", "CreateVpc", "ServiceUnavailable");

    // Everything fails: once the authentication cache has dropped (its watch failed), even
    // the credential lookup needs the store.
    f.faults.set(Fault::Down);
    within(
        Duration::from_secs(20),
        "the auth cache dropping",
        || async { !f.node.app.auth_cache_live() },
    )
    .await;
    let r = f.call("sts", GET_CALLER_IDENTITY).await;
    assert_retry_later(&r, "sts", "GetCallerIdentity", "ServiceUnavailable");
    let r = f.call("iam", GET_USER).await;
    assert_retry_later(&r, "iam", "GetUser", "ServiceUnavailable");
    let r = f.call("ec2", DESCRIBE_VPCS).await;
    assert_retry_later(&r, "ec2", "DescribeVpcs", "ServiceUnavailable");

    // Back: served at once (reads go through while the cache's watch reconnects).
    f.faults.set(Fault::None);
    for (service, body) in [
        ("sts", GET_CALLER_IDENTITY),
        ("iam", CREATE_USER),
        ("ec2", CREATE_VPC),
    ] {
        let r = f.call(service, body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        assert_eq!(r.header("Retry-After"), None);
    }
}

/// A value of the switch sync's metrics (`/metrics/netsync`).
async fn netsync_metric(f: &Fixture, name: &str) -> u64 {
    let text = get(f.node.addr, "/metrics/netsync").await.body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("hive_netsync_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {text}"))
}

/// The network buckets are away while the node starts: it serves IAM at once, EC2 answers
/// 503, and the switch sync keeps retrying (instead of giving up) until they are back, then
/// compiles the stored network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_sync_waits_for_a_store_that_is_away_at_start() {
    let f = fixture_with(Fault::DownIn("hive-vpc-"), true).await;
    let r = f.call("sts", GET_CALLER_IDENTITY).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = f.call("ec2", DESCRIBE_VPCS).await;
    assert_retry_later(&r, "ec2", "DescribeVpcs", "ServiceUnavailable");
    let base = netsync_metric(&f, "program_flows").await;
    within(
        Duration::from_secs(30),
        "three failed starts of the sync",
        || async { netsync_metric(&f, "errors_total").await >= 3 },
    )
    .await;

    f.faults.set(Fault::None);
    within(
        Duration::from_secs(30),
        "the default network compiled",
        || async { netsync_metric(&f, "program_flows").await > base },
    )
    .await;
    let r = f.call("ec2", DESCRIBE_VPCS).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
