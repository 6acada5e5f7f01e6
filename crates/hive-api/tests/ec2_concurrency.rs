//! Allocation under concurrency across processes: three real `hive-api` binaries on one
//! nats-server, driven by boto3 in parallel, never hand out the same address or VLAN twice.

mod common;
mod e2e;

use e2e::{Node, NodeOpts, admin_credentials, boto3};

#[test]
fn three_processes_allocate_addresses_and_vlans_without_duplicates() {
    let nats = hive_kv::testing::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The network plane's allocations are under test, not the switch.
    let opts = NodeOpts::on_nats(
        dir.path(),
        nats.url(),
        '5',
        &[("HIVE_VPC_ENABLED", "false")],
    );
    let data_dir = opts.data_dir.clone();
    let nodes: Vec<Node> = std::thread::scope(|s| {
        let started: Vec<_> = (0..3).map(|_| s.spawn(|| Node::start(&opts))).collect();
        started
            .into_iter()
            .map(|h| h.join().expect("a node starts"))
            .collect()
    });
    let endpoints: Vec<String> = nodes.iter().map(Node::endpoint).collect();
    let admin = admin_credentials(&data_dir);

    let result = boto3(
        &endpoints,
        &admin,
        r#"
ec2s = [client("ec2", endpoint=e) for e in ENDPOINTS]
vpc = ec2s[0].create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
subnet = ec2s[1].create_subnet(VpcId=vpc, CidrBlock="10.40.0.0/22")["Subnet"]["SubnetId"]

def make_eni(i):
    return ec2s[i % 3].create_network_interface(SubnetId=subnet)["NetworkInterface"]

with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
    enis = list(pool.map(make_eni, range(300)))
addresses = [e["PrivateIpAddress"] for e in enis]
macs = [e["MacAddress"] for e in enis]
listed = []
token = None
while True:
    kwargs = {"Filters": [{"Name": "subnet-id", "Values": [subnet]}], "MaxResults": 100}
    if token:
        kwargs["NextToken"] = token
    page = ec2s[2].describe_network_interfaces(**kwargs)
    listed += [e["PrivateIpAddress"] for e in page["NetworkInterfaces"]]
    token = page.get("NextToken")
    if not token:
        break

def make_vpc(i):
    return ec2s[i % 3].create_vpc(CidrBlock=f"10.{100 + i}.0.0/16")["Vpc"]["VpcId"]

with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
    vpcs = list(pool.map(make_vpc, range(50)))
RESULT["addresses"] = addresses
RESULT["macs"] = macs
RESULT["listed"] = sorted(listed)
RESULT["vpcs"] = vpcs
"#,
    );
    let strings = |key: &str| -> Vec<String> {
        result[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {result}"))
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let addresses = strings("addresses");
    assert_eq!(addresses.len(), 300);
    let mut unique = addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 300, "300 distinct addresses, 0 duplicates");
    assert_eq!(
        strings("listed"),
        unique,
        "the store holds exactly those 300"
    );
    let mut macs = strings("macs");
    macs.sort();
    macs.dedup();
    assert_eq!(macs.len(), 300, "300 distinct MACs");

    // The VLANs are not in the EC2 API: read them from the store the nodes share.
    let vpc_ids = strings("vpcs");
    assert_eq!(vpc_ids.len(), 50);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let vlans: Vec<u16> = runtime.block_on(async {
        let store = hive_kv::nats::NatsStore::connect(&nats.url(), Default::default())
            .await
            .expect("connect to nats");
        let repo = hive_vpc::repo::VpcRepo::open(&store, &Default::default())
            .await
            .expect("open the network repository");
        let vpcs = repo.list_vpcs("000000000000").await.expect("list vpcs");
        vpcs.iter()
            .filter(|v| vpc_ids.iter().any(|id| id == v.id.as_str()))
            .map(|v| v.vlan)
            .collect()
    });
    assert_eq!(vlans.len(), 50);
    let mut distinct = vlans.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 50, "50 distinct VLANs: {vlans:?}");
    assert!(distinct.iter().all(|v| (2..=4094).contains(v)), "{vlans:?}");
    drop(nodes);
}
