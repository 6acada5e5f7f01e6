//! Property tests for the VLAN pool and MAC allocation against simple models.

use std::collections::{BTreeSet, HashSet};

use hive_vpc::eni::allocate_mac;
use hive_vpc::model::VpcId;
use hive_vpc::vlan::{FIRST_USER_VLAN, LAST_USER_VLAN, VlanPool};
use hive_vpc::vpc::{create_vpc, release_vpc};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
enum Op {
    Allocate,
    Reserve(u16),
    Release(u16),
    /// Release the nth held VLAN, then allocate.
    ReleaseAndAllocate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Allocate),
        1 => any::<u16>().prop_map(|v| Op::Reserve(v % 4100)),
        1 => any::<u16>().prop_map(|v| Op::Release(v % 4100)),
        2 => any::<usize>().prop_map(Op::ReleaseAndAllocate),
    ]
}

fn lowest_free(held: &BTreeSet<u16>) -> Option<u16> {
    (FIRST_USER_VLAN..=LAST_USER_VLAN).find(|v| !held.contains(v))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Never a duplicate VLAN, never 0, 1 or 4095, lowest free first, released ones reused,
    /// errors change nothing, and the stored form round-trips.
    #[test]
    fn pool_matches_model(
        prefill in 0usize..4093,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut pool = VlanPool::new();
        let mut held = BTreeSet::new();
        for _ in 0..prefill {
            held.insert(pool.allocate().expect("room"));
        }
        for op in ops {
            let before = pool.clone();
            match op {
                Op::Allocate => match pool.allocate() {
                    Ok(v) => {
                        prop_assert_eq!(Some(v), lowest_free(&held));
                        prop_assert!(held.insert(v), "duplicate VLAN {}", v);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.code(), "VpcLimitExceeded");
                        prop_assert_eq!(lowest_free(&held), None);
                        prop_assert_eq!(&pool, &before);
                    }
                },
                Op::Reserve(v) => match pool.reserve(v) {
                    Ok(()) => prop_assert!(held.insert(v)),
                    Err(_) => {
                        prop_assert!(!(FIRST_USER_VLAN..=LAST_USER_VLAN).contains(&v) || held.contains(&v));
                        prop_assert_eq!(&pool, &before);
                    }
                },
                Op::Release(v) => match pool.release(v) {
                    Ok(()) => prop_assert!(held.remove(&v)),
                    Err(_) => {
                        prop_assert!(!held.contains(&v));
                        prop_assert_eq!(&pool, &before);
                    }
                },
                Op::ReleaseAndAllocate(n) => {
                    if let Some(&v) = held.iter().nth(n % held.len().max(1)) {
                        pool.release(v).expect("held VLAN releases");
                        held.remove(&v);
                        let again = pool.allocate().expect("one is free");
                        prop_assert!(again <= v, "released {} but got {}", v, again);
                        held.insert(again);
                    }
                }
            }
            prop_assert_eq!(pool.allocated() as usize, held.len());
            for v in [0u16, 1, 4095] {
                prop_assert!(!pool.is_allocated(v));
            }
        }
        let json = serde_json::to_string(&pool).expect("serialize");
        let back: VlanPool = serde_json::from_str(&json).expect("deserialize");
        prop_assert_eq!(&back, &pool);
        prop_assert!(json.len() < 800, "stored pool is {} bytes", json.len());
    }
}

/// Creating VPCs until the VLANs run out gives 4,093 distinct VLANs and then
/// `VpcLimitExceeded`; deleting one VPC lets another be created on its VLAN.
#[test]
fn vpcs_run_out_of_vlans_clearly() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut pool = VlanPool::new();
    let mut vlans = HashSet::new();
    let mut vpcs = Vec::new();
    for _ in FIRST_USER_VLAN..=LAST_USER_VLAN {
        let v = create_vpc(&mut rng, "10.0.0.0/16", &mut pool).expect("room");
        assert!(vlans.insert(v.vpc.vlan));
        vpcs.push(v.vpc);
    }
    let err = create_vpc(&mut rng, "10.0.0.0/16", &mut pool).expect_err("full");
    assert_eq!(err.code(), "VpcLimitExceeded");
    let freed = vpcs.swap_remove(1234);
    release_vpc(&freed, &mut pool).expect("release");
    let again = create_vpc(&mut rng, "10.9.0.0/16", &mut pool).expect("room again");
    assert_eq!(again.vpc.vlan, freed.vlan);
    let ids: HashSet<VpcId> = vpcs.iter().map(|v| v.id.clone()).collect();
    assert_eq!(ids.len(), vpcs.len(), "VPC ids are unique");
}

/// 20,000 MACs drawn against the growing set are all distinct, local and unicast.
#[test]
fn macs_are_unique_in_the_set() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut set = HashSet::new();
    for _ in 0..20_000 {
        let mac = allocate_mac(&mut rng, |m| set.contains(m)).expect("mac");
        assert!(mac.is_locally_administered() && mac.is_unicast());
        assert!(set.insert(mac));
    }
}
