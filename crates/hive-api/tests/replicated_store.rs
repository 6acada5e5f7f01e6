//! `hive-api` on a replicated JetStream, as operators run it (three processes, a 3-node
//! cluster of a current nats-server, buckets with 3 replicas), under the faults that matter:
//! - a NATS node killed and restarted under a stream of writes, then two at once (the
//!   cluster loses its quorum), answers only successes and retryable `503 ServiceUnavailable`
//!   with `Retry-After`, and loses no acknowledged write;
//! - ten simultaneous cold starts of three processes on a fresh cluster end, every time, with
//!   every process serving, exactly one administrator with one access key, and its credentials
//!   written once.

mod common;
mod e2e;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::{Creds, Node, NodeOpts, admin_credentials, boto3, parse_profile, start_together};
use hive_kv::testing::{NatsCluster, current_nats_server};

fn current_cluster() -> NatsCluster {
    let server = current_nats_server().unwrap_or_else(|e| panic!("{e}"));
    NatsCluster::start_with(&server, 3)
}

/// Options for process `i`: every node's URL, its own first (what an operator configures),
/// 3 replicas, no switch, the shared key under `dir`, data in `data_dir`.
fn opts_for(cluster: &NatsCluster, i: usize, dir: &Path, data_dir: PathBuf) -> NodeOpts {
    let mut urls: Vec<String> = (0..cluster.len()).filter_map(|n| cluster.url(n)).collect();
    urls.rotate_left(i);
    let mut opts = NodeOpts::on_nats(
        dir,
        urls.join(","),
        '7',
        &[("HIVE_VPC_ENABLED", "false"), ("HIVE_REPLICAS", "3")],
    );
    opts.data_dir = data_dir;
    opts
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Acknowledged and refused writes so far, as the boto3 writers report them.
fn tally(progress: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(progress).unwrap_or_default();
    let mut numbers = text.split_whitespace().map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn acked(progress: &Path) -> usize {
    tally(progress).0
}

#[test]
fn a_nats_node_killed_under_writes_gives_only_503s_and_loses_no_acknowledged_write() {
    let mut cluster = current_cluster();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let opts: Vec<NodeOpts> = (0..3)
        .map(|i| opts_for(&cluster, i, dir.path(), data.clone()))
        .collect();
    let nodes = start_together(&opts);
    let endpoints: Vec<String> = nodes.iter().map(Node::endpoint).collect();
    let admin = admin_credentials(&data);
    let progress = dir.path().join("progress");
    let stop = dir.path().join("stop");
    let scenario = format!(
        r#"
import threading
PROGRESS, STOP = {progress:?}, {stop:?}
ec2s = [client("ec2", endpoint=e) for e in ENDPOINTS]   # no retries: every answer counts
vpc = ec2s[0].create_vpc(CidrBlock="10.60.0.0/16")["Vpc"]["VpcId"]
acked, refused, lock = [], collections.Counter(), threading.Lock()

def writer(t):
    i = 0
    while not os.path.exists(STOP):
        i += 1
        try:
            g = ec2s[(t + i) % 3].create_security_group(
                VpcId=vpc, GroupName=f"g-{{t}}-{{i}}", Description="fault")["GroupId"]
            with lock:
                acked.append(g)
        except ClientError as e:
            meta = e.response.get("ResponseMetadata", {{}})
            code = e.response.get("Error", {{}}).get("Code")
            with lock:
                refused[f"{{meta.get('HTTPStatusCode')}} {{code}} retry-after={{meta.get('HTTPHeaders', {{}}).get('retry-after')}}"] += 1
        except Exception as e:  # connection reset and the like: recorded, never silent
            with lock:
                refused[f"transport {{type(e).__name__}}"] += 1
        with lock:
            with open(PROGRESS + f".{{t}}", "w") as f:
                f.write(f"{{len(acked)}} {{sum(refused.values())}}")
            os.replace(PROGRESS + f".{{t}}", PROGRESS)

threads = [threading.Thread(target=writer, args=(t,)) for t in range(12)]
for th in threads:
    th.start()
for th in threads:
    th.join()
seen = []
for ec2 in ec2s:
    ids = set()
    for page in ec2.get_paginator("describe_security_groups").paginate(
            Filters=[{{"Name": "vpc-id", "Values": [vpc]}}]):
        ids.update(g["GroupId"] for g in page["SecurityGroups"])
    seen.append(sorted(ids))
RESULT["acked"] = sorted(acked)
RESULT["seen"] = seen
RESULT["refused"] = dict(refused)
RESULT["statuses"] = {{str(k): v for k, v in STATUSES.items()}}
"#
    );
    let result = std::thread::scope(|s| {
        let run = s.spawn(|| boto3(&endpoints, &admin, &scenario));
        wait_for(
            "100 writes before the kill",
            Duration::from_secs(60),
            || acked(&progress) >= 100,
        );
        cluster.kill(1);
        let at_kill = acked(&progress);
        wait_for(
            "writes go on with a node down",
            Duration::from_secs(60),
            || acked(&progress) >= at_kill + 100,
        );
        cluster.restart(1).expect("the node comes back");
        let at_restart = acked(&progress);
        wait_for(
            "writes go on after the restart",
            Duration::from_secs(60),
            || acked(&progress) >= at_restart + 100,
        );
        // Two nodes down: no quorum, so writes cannot be acknowledged and must be refused.
        let refused_before = tally(&progress).1;
        cluster.kill(1);
        cluster.kill(2);
        wait_for(
            "refusals while the quorum is lost",
            Duration::from_secs(90),
            || tally(&progress).1 >= refused_before + 12,
        );
        cluster.restart(1).expect("node 1 comes back");
        cluster.restart(2).expect("node 2 comes back");
        let at_quorum = acked(&progress);
        wait_for(
            "writes go on with the quorum back",
            Duration::from_secs(90),
            || acked(&progress) >= at_quorum + 100,
        );
        std::fs::write(&stop, "").expect("stop file");
        run.join().expect("the boto3 run")
    });
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("a list")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    let acked_ids = strings(&result["acked"]);
    let refused = result["refused"].as_object().expect("refused");
    assert!(!refused.is_empty(), "the lost quorum refused writes");
    for (what, count) in refused {
        // A pooled connection the server closed while idle is the client's to retry; it
        // carries no answer (and no acknowledgement).
        if what.starts_with("transport ") {
            continue;
        }
        assert!(
            what.starts_with("503 ServiceUnavailable retry-after="),
            "{count} refusals were not a retryable 503: {what} (all: {refused:?})"
        );
        assert!(
            !what.ends_with("=None"),
            "a 503 without Retry-After: {what}"
        );
    }
    for (n, seen) in result["seen"].as_array().expect("seen").iter().enumerate() {
        let seen = strings(seen);
        let lost: Vec<&String> = acked_ids
            .iter()
            .filter(|id| seen.binary_search(id).is_err())
            .collect();
        assert!(
            lost.is_empty(),
            "endpoint {n} lost acknowledged writes: {lost:?}"
        );
    }
    eprintln!(
        "{} acknowledged writes, refusals {refused:?}, statuses {}",
        acked_ids.len(),
        result["statuses"]
    );
    drop(nodes);
}

/// The credentials file among `dirs` (exactly one must hold one).
fn the_one_credentials_file(dirs: &[PathBuf]) -> Creds {
    let written: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| d.join("admin-credentials").exists())
        .collect();
    assert_eq!(
        written.len(),
        1,
        "exactly one admin-credentials among {dirs:?}"
    );
    admin_credentials(written[0])
}

#[test]
fn ten_simultaneous_cold_starts_make_exactly_one_admin_with_credentials() {
    for trial in 0..10 {
        let cluster = current_cluster();
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("n{i}"))).collect();
        let opts: Vec<NodeOpts> = data_dirs
            .iter()
            .enumerate()
            .map(|(i, d)| opts_for(&cluster, i, dir.path(), d.clone()))
            .collect();
        let nodes = start_together(&opts);
        let admin = the_one_credentials_file(&data_dirs);
        let endpoints: Vec<String> = nodes.iter().map(Node::endpoint).collect();
        let result = boto3(
            &endpoints,
            &admin,
            r#"
RESULT["who"] = [client("sts", endpoint=e).get_caller_identity()["Arn"] for e in ENDPOINTS]
iam = client("iam", endpoint=ENDPOINTS[1])
RESULT["users"] = [u["UserName"] for u in iam.list_users()["Users"]]
RESULT["keys"] = [k["AccessKeyId"] for k in iam.list_access_keys(UserName="admin")["AccessKeyMetadata"]]
"#,
        );
        let admin_arn = "arn:aws:iam::000000000000:user/admin";
        assert_eq!(
            result["who"],
            serde_json::json!([admin_arn, admin_arn, admin_arn]),
            "trial {trial}: the written key works on every process"
        );
        assert_eq!(
            result["users"],
            serde_json::json!(["admin"]),
            "trial {trial}"
        );
        assert_eq!(
            result["keys"],
            serde_json::json!([admin.key]),
            "trial {trial}: exactly one key, the one written"
        );
        // A restart finds the bootstrap done and writes nothing more.
        drop(nodes);
        let again = start_together(&opts);
        let creds: Vec<Creds> = data_dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("admin-credentials")).ok())
            .filter_map(|t| parse_profile(&t, "hive-admin"))
            .collect();
        assert_eq!(
            creds.len(),
            1,
            "trial {trial}: a restart wrote no second file"
        );
        drop(again);
    }
}
