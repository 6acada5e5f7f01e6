//! Allocation benchmarks for hive-vpc: handing out a whole /16, one allocate/release on a
//! nearly full /16, the clone-and-serialize cost of a CAS round, and VLAN allocation.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BatchSize, Criterion, criterion_main};
use hive_vpc::ipam::SubnetAddresses;
use hive_vpc::vlan::VlanPool;

fn slash_16() -> SubnetAddresses {
    SubnetAddresses::new("10.0.0.0/16".parse().expect("valid CIDR")).expect("valid subnet")
}

fn full_slash_16() -> SubnetAddresses {
    let mut s = slash_16();
    while s.allocate_next().is_ok() {}
    s
}

fn ipam(c: &mut Criterion) {
    c.bench_function("ipam/allocate_all_65531_of_slash16", |b| {
        b.iter_batched(
            slash_16,
            |mut s| {
                for _ in 0..65_531 {
                    black_box(s.allocate_next().expect("free address"));
                }
                s
            },
            BatchSize::LargeInput,
        )
    });

    // One address free, in the middle of a full /16: release it and take it again.
    let mut nearly_full = full_slash_16();
    let hole = Ipv4Addr::new(10, 0, 200, 17);
    c.bench_function("ipam/release_then_allocate_next_nearly_full_slash16", |b| {
        b.iter(|| {
            nearly_full.release(black_box(hole)).expect("allocated");
            black_box(nearly_full.allocate_next().expect("the hole"))
        })
    });

    // The free address is the last one: the worst case for the next-free scan after a release
    // moved the hint back to the start.
    let mut worst = full_slash_16();
    let last = Ipv4Addr::new(10, 0, 255, 254);
    let first = Ipv4Addr::new(10, 0, 0, 4);
    c.bench_function("ipam/allocate_next_worst_case_scan_slash16", |b| {
        b.iter(|| {
            worst.release(last).expect("allocated");
            worst.release(first).expect("allocated");
            worst.allocate(first).expect("free");
            black_box(worst.allocate_next().expect("the last address"))
        })
    });

    let mut requested = full_slash_16();
    c.bench_function("ipam/allocate_requested_nearly_full_slash16", |b| {
        b.iter(|| {
            requested.release(hole).expect("allocated");
            requested.allocate(black_box(hole)).expect("free")
        })
    });

    // What a CAS round costs around the allocation: decode the stored value, allocate, encode.
    let half = {
        let mut s = slash_16();
        for _ in 0..32_000 {
            s.allocate_next().expect("free");
        }
        serde_json::to_string(&s).expect("serialize")
    };
    c.bench_function("ipam/cas_round_decode_allocate_encode_half_slash16", |b| {
        b.iter(|| {
            let mut s: SubnetAddresses = serde_json::from_str(black_box(&half)).expect("decode");
            black_box(s.allocate_next().expect("free"));
            serde_json::to_string(&s).expect("encode")
        })
    });
}

fn vlan(c: &mut Criterion) {
    c.bench_function("vlan/allocate_all_4093", |b| {
        b.iter_batched(
            VlanPool::new,
            |mut p| {
                while let Ok(v) = p.allocate() {
                    black_box(v);
                }
                p
            },
            BatchSize::SmallInput,
        )
    });
    let mut pool = VlanPool::new();
    while pool.allocate().is_ok() {}
    c.bench_function("vlan/release_then_allocate_full_pool", |b| {
        b.iter(|| {
            pool.release(black_box(4000)).expect("held");
            black_box(pool.allocate().expect("the released VLAN"))
        })
    });
}

/// The benchmark group (in a module because `criterion_group!` makes an undocumented `pub fn`).
#[allow(missing_docs)]
mod group {
    use super::{ipam, vlan};
    use criterion::criterion_group;

    criterion_group!(benches, ipam, vlan);
}

criterion_main!(group::benches);
