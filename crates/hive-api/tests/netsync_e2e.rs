//! End to end: the real `hive-api` binary with `[vpc] enabled`, driven by the real aws CLI,
//! programs a sandboxed Open vSwitch (dummy datapath) found through `OVS_RUNDIR`. VPC, subnet,
//! two security groups (one referencing the other), rules and interfaces are made with the CLI;
//! dummy ports carrying the interfaces' iface-ids are plugged; `ofproto/trace --ct-next` shows
//! allowed traffic reaching the right port and denied traffic dropped; revoking the rule flips
//! the trace; the bridge always equals the program compiled from the binary's store; deleting
//! everything leaves no trace of it on the bridge; a restart over a wiped table restores it.
//!
//! Needs Open vSwitch (`apt-get install -y openvswitch-switch`) and the aws CLI (`HIVE_AWS`, or
//! the venv of `HIVE_PYTHON`); fails, never skips, without them.

mod common;
mod e2e;

use std::time::{Duration, Instant};

use e2e::{Aws, Node, NodeOpts};
use hive_api::netsync::{compiled_program, read_switch_facts};
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::sqlite::SqliteStore;
use hive_ovs::{OvsSwitch, Sandbox, SandboxMode, Switch, TraceResult};
use hive_vpc::compile::ROUTER_MAC;
use hive_vpc::config::VpcConfig;
use hive_vpc::flow::FlowProgram;
use hive_vpc_store::{RepoOptions, VpcRepo};
use serde_json::Value;

const BR: &str = "hive-vpc0";
const P: &str = "hive-admin";
const WAIT: Duration = Duration::from_secs(30);

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {v}"))
        .to_owned()
}

/// One interface as the CLI reported it.
struct Eni {
    id: String,
    ip: String,
    mac: String,
}

fn create_eni(aws: &Aws, subnet: &str, group: &str) -> Eni {
    let out = aws.ok(
        P,
        &[
            "ec2",
            "create-network-interface",
            "--subnet-id",
            subnet,
            "--groups",
            group,
        ],
    );
    Eni {
        id: s(&out, &["NetworkInterface", "NetworkInterfaceId"]),
        ip: s(&out, &["NetworkInterface", "PrivateIpAddress"]),
        mac: s(&out, &["NetworkInterface", "MacAddress"]),
    }
}

fn trace(sb: &Sandbox, from: &Eni, in_port: u32, to: &Eni, port: u16) -> TraceResult {
    let flow = format!(
        "in_port={in_port},dl_src={},dl_dst={ROUTER_MAC},tcp,nw_src={},nw_dst={},nw_ttl=64,tcp_src=40000,tcp_dst={port}",
        from.mac, from.ip, to.ip
    );
    sb.trace(BR, &flow, &["trk,new"]).expect("ofproto/trace")
}

/// Poll until `pred` holds for the trace (the sync applies changes asynchronously).
fn eventually(
    what: &str,
    mut probe: impl FnMut() -> TraceResult,
    pred: impl Fn(&TraceResult) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = probe();
        if pred(&t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never held; last trace:\n{}",
            t.raw
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the bridge holds exactly the program compiled from the store the binary uses
/// (opened here too: both the embedded store and JetStream are shared between processes).
fn bridge_equals_store(
    rt: &tokio::runtime::Runtime,
    repo: &VpcRepo,
    switch: &OvsSwitch,
) -> FlowProgram {
    let deadline = Instant::now() + WAIT;
    loop {
        let facts = read_switch_facts(switch).expect("read the bridge");
        let program = rt
            .block_on(compiled_program(repo, &facts, &VpcConfig::default()))
            .expect("compile the stored state");
        let drift = switch.drift(&program).expect("diff-flows");
        if drift.is_clean() {
            return program;
        }
        assert!(
            Instant::now() < deadline,
            "bridge never matched the store: {drift}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node with `[vpc] enabled`, its switch found through `OVS_RUNDIR=ovs_rundir`.
fn node(
    data_dir: &std::path::Path,
    nats_url: Option<String>,
    ovs_rundir: &std::path::Path,
    extra: &[(String, String)],
) -> Node {
    let mut env = vec![
        ("HIVE_VPC_ENABLED".into(), "true".into()),
        ("OVS_RUNDIR".into(), ovs_rundir.display().to_string()),
        // Right after ovs-vswitchd starts, `--enable-dummy=override` may not yet stand in
        // for the kernel datapath: ask for the dummy one by name.
        ("HIVE_VPC_DATAPATH_TYPE".into(), "dummy".into()),
    ];
    env.extend(extra.iter().cloned());
    Node::start(&NodeOpts {
        data_dir: data_dir.to_owned(),
        nats_url,
        env,
    })
}

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxMode::Dummy).unwrap_or_else(|e| {
        panic!("this test needs Open vSwitch (apt-get install -y openvswitch-switch): {e}")
    })
}

/// What the CLI made.
struct Made {
    vpc: String,
    subnet: String,
    app: String,
    web: String,
    ssh_from_app: String,
    a: Eni,
    b: Eni,
}

/// VPC, subnet, groups `app` and `web` (web admits SSH from app's members), one interface in
/// each, all through the CLI.
fn make(aws: &Aws) -> Made {
    let vpc = s(
        &aws.ok(P, &["ec2", "create-vpc", "--cidr-block", "10.30.0.0/16"]),
        &["Vpc", "VpcId"],
    );
    let subnet = s(
        &aws.ok(
            P,
            &[
                "ec2",
                "create-subnet",
                "--vpc-id",
                &vpc,
                "--cidr-block",
                "10.30.1.0/24",
            ],
        ),
        &["Subnet", "SubnetId"],
    );
    let group = |name: &str| {
        s(
            &aws.ok(
                P,
                &[
                    "ec2",
                    "create-security-group",
                    "--vpc-id",
                    &vpc,
                    "--group-name",
                    name,
                    "--description",
                    name,
                ],
            ),
            &["GroupId"],
        )
    };
    let app = group("app");
    let web = group("web");
    let ssh_from_app =
        format!("IpProtocol=tcp,FromPort=22,ToPort=22,UserIdGroupPairs=[{{GroupId={app}}}]");
    aws.ok(
        P,
        &[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &web,
            "--ip-permissions",
            &ssh_from_app,
        ],
    );
    let a = create_eni(aws, &subnet, &app);
    let b = create_eni(aws, &subnet, &web);
    Made {
        vpc,
        subnet,
        app,
        web,
        ssh_from_app,
        a,
        b,
    }
}

/// Plug both interfaces, see SSH app→web pass (trace and bridge = store), other traffic drop.
fn plug_and_check(rt: &tokio::runtime::Runtime, sb: &Sandbox, repo: &VpcRepo, m: &Made) -> u32 {
    let switch = sb.switch(BR).expect("switch");
    let pa = sb
        .add_port(BR, "pa", Some(&m.a.id), Some(10))
        .expect("plug a");
    sb.add_port(BR, "pb", Some(&m.b.id), Some(11))
        .expect("plug b");
    eventually(
        "SSH from app to web allowed",
        || trace(sb, &m.a, pa, &m.b, 22),
        |t| t.outputs == vec!["pb".to_string()],
    );
    let program = bridge_equals_store(rt, repo, &switch);
    assert!(
        program.to_ofctl().contains(&m.a.mac),
        "a's port security missing"
    );
    assert!(
        trace(sb, &m.a, pa, &m.b, 23).is_drop(),
        "port 23 must be dropped"
    );
    assert!(
        trace(sb, &m.b, 11, &m.a, 22).is_drop(),
        "app admits nothing"
    );
    pa
}

/// Revoke the SSH rule through `aws`: the trace flips.
fn revoke_and_check(
    rt: &tokio::runtime::Runtime,
    sb: &Sandbox,
    repo: &VpcRepo,
    aws: &Aws,
    m: &Made,
    pa: u32,
) {
    aws.ok(
        P,
        &[
            "ec2",
            "revoke-security-group-ingress",
            "--group-id",
            &m.web,
            "--ip-permissions",
            &m.ssh_from_app,
        ],
    );
    eventually(
        "SSH dropped after revoke",
        || trace(sb, &m.a, pa, &m.b, 22),
        TraceResult::is_drop,
    );
    bridge_equals_store(rt, repo, &sb.switch(BR).expect("switch"));
}

/// Delete everything through `aws`: nothing of it stays on the bridge.
fn delete_and_check(
    rt: &tokio::runtime::Runtime,
    sb: &Sandbox,
    repo: &VpcRepo,
    aws: &Aws,
    m: &Made,
) {
    let switch = sb.switch(BR).expect("switch");
    for eni in [&m.a, &m.b] {
        aws.ok(
            P,
            &[
                "ec2",
                "delete-network-interface",
                "--network-interface-id",
                &eni.id,
            ],
        );
    }
    for g in [&m.web, &m.app] {
        aws.ok(P, &["ec2", "delete-security-group", "--group-id", g]);
    }
    aws.ok(P, &["ec2", "delete-subnet", "--subnet-id", &m.subnet]);
    aws.ok(P, &["ec2", "delete-vpc", "--vpc-id", &m.vpc]);
    let deadline = Instant::now() + WAIT;
    loop {
        let text: String = switch
            .dump_flows()
            .expect("dump-flows")
            .iter()
            .map(|f| format!("{f}\n"))
            .collect();
        if !text.contains("10.30.") && !text.contains(&m.a.mac) && !text.contains(&m.b.mac) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deleted resources still on the bridge:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bridge_equals_store(rt, repo, &switch);
}

#[test]
fn the_cli_programs_the_switch_through_hive_api_on_the_embedded_store() {
    let sb = sandbox();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let hive = node(&data_dir, None, sb.dir(), &[]);
    let aws = Aws::new(&hive.endpoint(), &data_dir.join("admin-credentials"));
    let repo = rt.block_on(async {
        let store = SqliteStore::open(&data_dir)
            .await
            .expect("open the node's store");
        VpcRepo::open(&store, &RepoOptions::default())
            .await
            .expect("open the network repository")
    });
    let m = make(&aws);
    let pa = plug_and_check(&rt, &sb, &repo, &m);
    revoke_and_check(&rt, &sb, &repo, &aws, &m, pa);

    // A restart over a wiped table: the bridge is rebuilt from the store.
    drop(hive);
    sb.ofctl(&["-O", "OpenFlow13", "del-flows", BR])
        .expect("del-flows");
    let hive = node(&data_dir, None, sb.dir(), &[]);
    let aws = Aws::new(&hive.endpoint(), &data_dir.join("admin-credentials"));
    let switch = sb.switch(BR).expect("switch");
    eventually(
        "bridge reprogrammed after restart",
        || trace(&sb, &m.a, pa, &m.b, 23),
        TraceResult::is_drop,
    );
    let program = bridge_equals_store(&rt, &repo, &switch);
    assert_eq!(
        switch.dump_flows().expect("dump-flows").len(),
        program.len()
    );

    // The sync's metrics, beside /metrics.
    let (status, text) = e2e::http_get(hive.addr, "/metrics/netsync").expect("GET metrics");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("hive_netsync_switch_online 1\n"), "{text}");
    assert!(text.contains("hive_netsync_in_sync 1\n"), "{text}");
    assert!(
        text.contains(&format!("hive_netsync_program_flows {}\n", program.len())),
        "{text}"
    );

    delete_and_check(&rt, &sb, &repo, &aws, &m);
    let log = hive.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn changes_through_another_process_on_one_jetstream_reach_the_switch() {
    let sb = sandbox();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let nats = hive_kv::testing::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = [e2e::shared_key_env(dir.path(), '7')];
    let data_dir = dir.path().join("data");
    // This node owns the switch; the other one has none (it says so and serves anyway).
    let here = node(&data_dir, Some(nats.url()), sb.dir(), &key);
    let nowhere = dir.path().join("no-ovs");
    let there = node(&data_dir, Some(nats.url()), &nowhere, &key);
    let aws_there = Aws::new(&there.endpoint(), &data_dir.join("admin-credentials"));
    let repo = rt.block_on(async {
        let store = NatsStore::connect(&nats.url(), NatsOptions::default())
            .await
            .expect("connect to NATS");
        VpcRepo::open(&store, &RepoOptions::default())
            .await
            .expect("open the network repository")
    });

    // Everything is made and changed through the other process.
    let m = make(&aws_there);
    let pa = plug_and_check(&rt, &sb, &repo, &m);
    revoke_and_check(&rt, &sb, &repo, &aws_there, &m, pa);
    delete_and_check(&rt, &sb, &repo, &aws_there, &m);

    let log = there.log_text();
    assert_eq!(
        log.matches("Open vSwitch is not reachable").count(),
        1,
        "the node without a switch says so once: {log}"
    );
    assert!(!here.log_text().contains("Open vSwitch is not reachable"));
    let (_, text) = e2e::http_get(there.addr, "/metrics/netsync").expect("GET metrics");
    assert!(text.contains("hive_netsync_switch_online 0\n"), "{text}");
}
