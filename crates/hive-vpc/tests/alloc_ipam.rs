//! Property tests for subnet address allocation and subnet placement, against a simple model
//! (a set of allocated addresses; a list of accepted blocks).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hive_vpc::cidr::check_subnet_cidr;
use hive_vpc::ipam::SubnetAddresses;
use ipnetwork::Ipv4Network;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Next,
    Request(u32),
    Release(u32),
    /// Release the nth allocated address (a valid release), then take the next free one.
    ReleaseAndNext(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Next),
        2 => any::<u32>().prop_map(Op::Request),
        1 => any::<u32>().prop_map(Op::Release),
        2 => any::<usize>().prop_map(Op::ReleaseAndNext),
    ]
}

fn addr(cidr: Ipv4Network, offset: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + offset)
}

fn reserved(cidr: Ipv4Network) -> BTreeSet<Ipv4Addr> {
    let size = cidr.size();
    [0, 1, 2, 3, size - 1]
        .into_iter()
        .map(|o| addr(cidr, o))
        .collect()
}

/// The lowest address the model says is free, as AWS-style "next free".
fn lowest_free(cidr: Ipv4Network, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let reserved = reserved(cidr);
    (0..cidr.size())
        .map(|o| addr(cidr, o))
        .find(|ip| !reserved.contains(ip) && !used.contains(ip))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Never a duplicate, never a reserved address, always the lowest free one, counts as AWS
    /// computes them, errors leave the state unchanged, and the stored form round-trips.
    #[test]
    fn allocator_matches_model(
        prefix in 20u8..=28,
        block in any::<u16>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let size = 1u32 << (32 - prefix);
        let base = (10u32 << 24) | ((u32::from(block) * size) & 0x00ff_ffff);
        let cidr = Ipv4Network::new(Ipv4Addr::from(base), prefix).expect("valid prefix");
        let mut state = SubnetAddresses::new(cidr).expect("valid subnet");
        let mut model: BTreeSet<Ipv4Addr> = BTreeSet::new();
        let reserved = reserved(cidr);
        for op in ops {
            let before = state.clone();
            match op {
                Op::Next => match state.allocate_next() {
                    Ok(ip) => {
                        prop_assert_eq!(Some(ip), lowest_free(cidr, &model));
                        prop_assert!(!reserved.contains(&ip));
                        prop_assert!(model.insert(ip), "duplicate {}", ip);
                    }
                    Err(e) => {
                        prop_assert_eq!(e.code(), "InsufficientFreeAddressesInSubnet");
                        prop_assert_eq!(lowest_free(cidr, &model), None);
                        prop_assert_eq!(&state, &before);
                    }
                },
                Op::Request(offset) => {
                    // Half the requests land in the block, the others anywhere.
                    let ip = if offset % 2 == 0 {
                        addr(cidr, (offset / 2) % size)
                    } else {
                        Ipv4Addr::from(offset)
                    };
                    match state.allocate(ip) {
                        Ok(()) => {
                            prop_assert!(cidr.contains(ip) && !reserved.contains(&ip));
                            prop_assert!(model.insert(ip), "duplicate {}", ip);
                        }
                        Err(e) => {
                            prop_assert!(
                                !cidr.contains(ip) || reserved.contains(&ip) || model.contains(&ip),
                                "refused a free address {}: {}", ip, e
                            );
                            prop_assert_eq!(&state, &before);
                        }
                    }
                }
                Op::Release(offset) => {
                    let ip = addr(cidr, offset % size);
                    match state.release(ip) {
                        Ok(()) => prop_assert!(model.remove(&ip)),
                        Err(_) => {
                            prop_assert!(!model.contains(&ip));
                            prop_assert_eq!(&state, &before);
                        }
                    }
                }
                Op::ReleaseAndNext(n) => {
                    if let Some(&ip) = model.iter().nth(n % model.len().max(1)) {
                        state.release(ip).expect("allocated address releases");
                        model.remove(&ip);
                        let again = state.allocate_next().expect("a free address exists");
                        // Release then allocate reuses: the lowest free address is at most
                        // the one just released.
                        prop_assert!(again <= ip);
                        prop_assert_eq!(Some(again), lowest_free(cidr, &model));
                        model.insert(again);
                    }
                }
            }
            prop_assert_eq!(state.allocated() as usize, model.len());
            prop_assert_eq!(state.available(), size - 5 - model.len() as u32);
        }
        let listed: BTreeSet<Ipv4Addr> = state.iter_allocated().collect();
        prop_assert_eq!(&listed, &model);
        let json = serde_json::to_string(&state).expect("serialize");
        let back: SubnetAddresses = serde_json::from_str(&json).expect("deserialize");
        prop_assert_eq!(&back, &state);
        prop_assert_eq!(back.available(), state.available());
    }

    /// Subnets accepted one after another never overlap, and a block is refused as a conflict
    /// exactly when it overlaps an accepted sibling.
    #[test]
    fn subnets_never_overlap(
        candidates in proptest::collection::vec((16u8..=28, any::<u16>()), 1..60),
    ) {
        let vpc: Ipv4Network = "10.20.0.0/16".parse().expect("cidr");
        let mut accepted: Vec<Ipv4Network> = Vec::new();
        for (prefix, index) in candidates {
            let size = 1u32 << (32 - prefix);
            let offset = (u32::from(index) * size) & 0xffff;
            let net = Ipv4Network::new(Ipv4Addr::from(u32::from(vpc.network()) + offset), prefix)
                .expect("valid");
            let overlaps = accepted.iter().any(|a| a.overlaps(net));
            match check_subnet_cidr(&[vpc], accepted.iter().copied(), net) {
                Ok(()) => {
                    prop_assert!(!overlaps);
                    accepted.push(net);
                }
                Err(e) => {
                    prop_assert!(overlaps, "{} refused without overlap: {}", net, e);
                    prop_assert_eq!(e.code(), "InvalidSubnet.Conflict");
                }
            }
        }
        for (i, a) in accepted.iter().enumerate() {
            for b in &accepted[i + 1..] {
                prop_assert!(!a.overlaps(*b), "{} overlaps {}", a, b);
            }
        }
    }
}

/// All 65,531 addresses of a /16, each once, none reserved, quickly; then a clear error.
#[test]
fn a_whole_slash_16_is_handed_out_fast() {
    let cidr: Ipv4Network = "10.0.0.0/16".parse().expect("cidr");
    let mut state = SubnetAddresses::new(cidr).expect("subnet");
    assert_eq!(state.available(), 65_531);
    let start = Instant::now();
    let mut seen = vec![false; 65_536];
    for _ in 0..65_531 {
        let ip = state.allocate_next().expect("free address");
        let offset = (u32::from(ip) - u32::from(cidr.network())) as usize;
        assert!(!seen[offset], "duplicate {ip}");
        seen[offset] = true;
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "allocating a /16 took {elapsed:?} (expected linear time)"
    );
    for reserved in [0, 1, 2, 3, 65_535] {
        assert!(!seen[reserved], "reserved offset {reserved} handed out");
    }
    assert_eq!(state.available(), 0);
    assert_eq!(state.allocated(), 65_531);
    assert_eq!(
        state.allocate_next().map_err(|e| e.code()),
        Err("InsufficientFreeAddressesInSubnet")
    );
    // Freeing one address in the middle of a full /16 makes exactly it available again.
    let middle = Ipv4Addr::new(10, 0, 128, 7);
    state.release(middle).expect("allocated");
    assert_eq!(state.allocate_next(), Ok(middle));
    let json = serde_json::to_string(&state).expect("serialize");
    assert!(
        json.len() < 12_000,
        "full /16 stored in {} bytes",
        json.len()
    );
}
