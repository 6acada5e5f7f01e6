//! Property test of address allocation through the repository: any sequence of interface
//! creations (requested or next address) and deletions in one /28 agrees with a plain model
//! (a map of interfaces to addresses), the subnet's bitmap holds exactly the interfaces'
//! addresses, each interface holds one MAC reservation, and a refused call writes nothing;
//! likewise VPC creations and deletions hand out the lowest free VLAN and give it back.

mod repo_support;
use repo_support as support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hive_kv::memory::MemoryStore;
use hive_vpc::eni::CreateInterface;
use hive_vpc::model::NetworkInterfaceId;
use hive_vpc_store::{RepoOptions, VpcRepo};
use proptest::prelude::*;
use support::{ACCOUNT, Build, snapshot};

#[derive(Debug, Clone)]
enum Op {
    /// Create an interface, at `10.1.1.<offset>` when given.
    Create(Option<u8>),
    /// Delete the n-th interface (modulo how many there are).
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::of(0u8..20).prop_map(Op::Create),
        2 => any::<usize>().prop_map(Op::Delete),
    ]
}

const RESERVED: [u8; 5] = [0, 1, 2, 3, 15];

fn addr(offset: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 1, offset)
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store = MemoryStore::new();
    let repo = VpcRepo::open(&store, &RepoOptions::default())
        .await
        .expect("open");
    let vpc = repo.new_vpc("10.1.0.0/16").await;
    let subnet = repo.new_subnet(&vpc.vpc.id, "10.1.1.0/28").await;
    let mut model: BTreeMap<NetworkInterfaceId, Ipv4Addr> = BTreeMap::new();
    for op in ops {
        let before = snapshot(&repo).await;
        match op {
            Op::Create(offset) => {
                let used: BTreeSet<Ipv4Addr> = model.values().copied().collect();
                let request = CreateInterface {
                    private_ip: offset.map(addr),
                    ..CreateInterface::default()
                };
                let expected: Result<Ipv4Addr, &str> = match offset {
                    Some(o) if o > 15 || RESERVED.contains(&o) => Err("InvalidParameterValue"),
                    Some(o) if used.contains(&addr(o)) => Err("InvalidIPAddress.InUse"),
                    Some(o) => Ok(addr(o)),
                    None => (4..15)
                        .map(addr)
                        .find(|a| !used.contains(a))
                        .ok_or("InsufficientFreeAddressesInSubnet"),
                };
                let got = repo
                    .create_network_interface(ACCOUNT, &subnet.id, &request, &[])
                    .await;
                match (&got, expected) {
                    (Ok(eni), Ok(ip)) => {
                        prop_assert_eq!(eni.private_ip, ip);
                        model.insert(eni.id.clone(), ip);
                    }
                    (Err(e), Err(code)) => {
                        prop_assert_eq!(e.code(), code);
                        prop_assert!(snapshot(&repo).await == before, "refused, yet wrote");
                    }
                    (got, expected) => {
                        prop_assert!(false, "got {:?}, expected {:?}", got, expected);
                    }
                }
            }
            Op::Delete(n) => {
                if model.is_empty() {
                    continue;
                }
                let id = model.keys().nth(n % model.len()).cloned().expect("n < len");
                repo.delete_network_interface(ACCOUNT, &id)
                    .await
                    .expect("delete");
                model.remove(&id);
            }
        }
        let stored = repo.get_subnet(ACCOUNT, &subnet.id).await.expect("subnet");
        let allocated: BTreeSet<Ipv4Addr> = stored.addresses.iter_allocated().collect();
        let modelled: BTreeSet<Ipv4Addr> = model.values().copied().collect();
        prop_assert_eq!(&allocated, &modelled);
        prop_assert_eq!(modelled.len(), model.len(), "no address twice");
        prop_assert_eq!(
            stored.available_ip_address_count() as usize,
            11 - model.len()
        );
        let listed: BTreeMap<NetworkInterfaceId, Ipv4Addr> = repo
            .list_network_interfaces(ACCOUNT)
            .await
            .expect("list")
            .into_iter()
            .map(|e| (e.id, e.private_ip))
            .collect();
        prop_assert_eq!(&listed, &model);
        let macs = snapshot(&repo)
            .await
            .into_keys()
            .filter(|(_, k)| k.starts_with("mac."))
            .count();
        prop_assert_eq!(macs, model.len());
    }
    Ok(())
}

/// Create (true) or delete the n-th VPC (false, n).
async fn run_vlans(ops: Vec<(bool, usize)>) -> Result<(), TestCaseError> {
    let store = MemoryStore::new();
    let repo = VpcRepo::open(&store, &RepoOptions::default())
        .await
        .expect("open");
    let mut model: BTreeMap<hive_vpc::model::VpcId, u16> = BTreeMap::new();
    for (create, n) in ops {
        if create || model.is_empty() {
            let used: BTreeSet<u16> = model.values().copied().collect();
            let expected = (2..=4094u16).find(|v| !used.contains(v)).expect("room");
            let new = repo.new_vpc("10.1.0.0/16").await;
            prop_assert_eq!(new.vpc.vlan, expected, "the lowest free VLAN");
            model.insert(new.vpc.id, new.vpc.vlan);
        } else {
            let id = model.keys().nth(n % model.len()).cloned().expect("n < len");
            repo.delete_vpc(ACCOUNT, &id).await.expect("delete");
            model.remove(&id);
        }
        let stored: BTreeMap<_, _> = repo
            .list_vpcs(ACCOUNT)
            .await
            .expect("list")
            .into_iter()
            .map(|v| (v.id, v.vlan))
            .collect();
        prop_assert_eq!(&stored, &model);
        let pool = repo
            .buckets()
            .allocations
            .get("vlans")
            .await
            .expect("get")
            .expect("pool");
        let pool: hive_vpc::vlan::VlanPool = serde_json::from_slice(&pool.value).expect("pool");
        prop_assert_eq!(pool.allocated() as usize, model.len());
        prop_assert!(model.values().all(|v| pool.is_allocated(*v)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn vlans_agree_with_the_model(
        ops in proptest::collection::vec((any::<bool>(), any::<usize>()), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_vlans(ops))?;
    }

    #[test]
    fn allocation_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(ops))?;
    }
}
