//! Several repositories (as several hive-api processes would have, each with its own
//! connection) on one store at once: allocations stay unique, uniqueness rules hold, and a
//! group deleted while new uses of it are written never leaves a dangling use.

mod repo_support;
use repo_support as support;

use std::collections::HashSet;

use hive_vpc::eni::CreateInterface;
use hive_vpc::error::VpcError;
use hive_vpc::model::{Direction, Peer};
use hive_vpc_store::VpcRepo;
use support::{ACCOUNT, Backend, Build, tcp_from_group};

async fn three_repos(b: &Backend) -> Vec<VpcRepo> {
    vec![b.repo.clone(), b.another().await, b.another().await]
}

/// Runs `call(repo, i)` for `i` in `0..n` all at once, spread over three connections; the
/// results in the order of `i`.
async fn race<T, Fut>(
    b: &Backend,
    n: usize,
    call: impl Fn(VpcRepo, usize) -> Fut,
) -> Vec<Result<T, VpcError>>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, VpcError>> + Send + 'static,
{
    let repos = three_repos(b).await;
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(call(repos[i % repos.len()].clone(), i)))
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    results
}

/// Exactly one of the racing calls won; every other lost with the EC2 error `code`.
fn exactly_one_won<T>(results: Vec<Result<T, VpcError>>, code: &str) {
    let mut ok = 0;
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), code),
        }
    }
    assert_eq!(ok, 1);
}

async fn eni_300_distinct_addresses(b: Backend) {
    let vpc = b.repo.new_vpc("10.1.0.0/16").await;
    let subnet = b.repo.new_subnet(&vpc.vpc.id, "10.1.0.0/22").await;
    let created: Vec<_> = race(&b, 300, |repo, _| {
        let subnet = subnet.id.clone();
        async move {
            repo.create_network_interface(ACCOUNT, &subnet, &CreateInterface::default(), &[])
                .await
        }
    })
    .await
    .into_iter()
    .map(|r| r.expect("create interface"))
    .collect();
    let addrs: HashSet<_> = created.iter().map(|e| e.private_ip).collect();
    let macs: HashSet<_> = created.iter().map(|e| e.mac).collect();
    assert_eq!(addrs.len(), 300, "300 distinct addresses, 0 duplicates");
    assert_eq!(macs.len(), 300);
    let stored = b
        .repo
        .get_subnet(ACCOUNT, &subnet.id)
        .await
        .expect("subnet");
    assert_eq!(stored.addresses.allocated(), 300);
    let allocated: HashSet<_> = stored.addresses.iter_allocated().collect();
    assert_eq!(
        allocated, addrs,
        "the bitmap holds exactly the interfaces' addresses"
    );
    assert_eq!(
        b.repo
            .list_network_interfaces(ACCOUNT)
            .await
            .expect("list")
            .len(),
        300
    );
}

async fn vpc_50_distinct_vlans(b: Backend) {
    let created = race(&b, 50, |repo, _| async move {
        repo.create_vpc(ACCOUNT, "10.1.0.0/16", &[]).await
    })
    .await;
    let vlans: HashSet<u16> = created
        .into_iter()
        .map(|r| r.expect("create vpc").vpc.vlan)
        .collect();
    assert_eq!(
        vlans,
        (2..=51).collect::<HashSet<u16>>(),
        "50 distinct VLANs"
    );
    assert_eq!(b.repo.list_vpcs(ACCOUNT).await.expect("list").len(), 50);
}

async fn overlapping_subnets_race(b: Backend) {
    let vpc = b.repo.new_vpc("10.1.0.0/16").await;
    let results = race(&b, 12, |repo, i| {
        let vpc = vpc.vpc.id.clone();
        // Half ask for the /24, half for a /25 inside it: exactly one may win.
        let cidr = if i % 2 == 0 {
            "10.1.1.0/24"
        } else {
            "10.1.1.128/25"
        };
        async move { repo.create_subnet(ACCOUNT, &vpc, cidr, None, &[]).await }
    })
    .await;
    exactly_one_won(results, "InvalidSubnet.Conflict");
    assert_eq!(b.repo.list_subnets(ACCOUNT).await.expect("list").len(), 1);
}

async fn duplicate_group_names_race(b: Backend) {
    let vpc = b.repo.new_vpc("10.1.0.0/16").await;
    let results = race(&b, 12, |repo, i| {
        let vpc = vpc.vpc.id.clone();
        let name = if i % 2 == 0 { "web" } else { "WEB" };
        async move {
            repo.create_security_group(ACCOUNT, &vpc, name, "w", &[])
                .await
        }
    })
    .await;
    exactly_one_won(results, "InvalidGroup.Duplicate");
    assert_eq!(
        b.repo
            .list_security_groups(ACCOUNT)
            .await
            .expect("list")
            .len(),
        2,
        "default and one web"
    );
}

async fn group_deletion_races_new_uses(b: Backend) {
    let repos = three_repos(&b).await;
    let vpc = b.repo.new_vpc("10.1.0.0/16").await;
    let subnet = b.repo.new_subnet(&vpc.vpc.id, "10.1.0.0/24").await;
    let holder = b.repo.new_group(&vpc.vpc.id, "holder", "h").await;
    for round in 0..12 {
        let target = b
            .repo
            .create_security_group(ACCOUNT, &vpc.vpc.id, &format!("t{round}"), "t", &[])
            .await
            .expect("target");
        let (r0, r1, r2) = (repos[0].clone(), repos[1].clone(), repos[2].clone());
        let (t0, t1, t2) = (target.id.clone(), target.id.clone(), target.id.clone());
        let s = subnet.id.clone();
        let h = holder.id.clone();
        let delete = tokio::spawn(async move { r0.delete_security_group(ACCOUNT, &t0).await });
        let eni = tokio::spawn(async move {
            let request = CreateInterface {
                groups: vec![t1],
                ..CreateInterface::default()
            };
            r1.create_network_interface(ACCOUNT, &s, &request, &[])
                .await
        });
        let rule = tokio::spawn(async move {
            r2.authorize(
                ACCOUNT,
                &h,
                vec![tcp_from_group(Direction::Ingress, 1000 + round, &t2)],
            )
            .await
        });
        let deleted = delete.await.expect("task");
        let eni = eni.await.expect("task");
        let rule = rule.await.expect("task");
        if let Err(e) = &deleted {
            assert_eq!(e.code(), "DependencyViolation", "round {round}");
        }
        for e in [eni.as_ref().err(), rule.as_ref().err()]
            .into_iter()
            .flatten()
        {
            assert_eq!(e.code(), "InvalidGroup.NotFound", "round {round}");
        }
        let exists = b.repo.get_security_group(ACCOUNT, &target.id).await.is_ok();
        assert_eq!(exists, deleted.is_err(), "round {round}");
        let interfaces = b.repo.list_network_interfaces(ACCOUNT).await.expect("list");
        let groups = b.repo.list_security_groups(ACCOUNT).await.expect("list");
        if !exists {
            assert!(
                interfaces.iter().all(|i| !i.groups.contains(&target.id)),
                "round {round}: an interface uses a deleted group"
            );
            assert!(
                groups.iter().all(|g| g
                    .rules
                    .iter()
                    .all(|r| r.peer != Peer::Group(target.id.clone()))),
                "round {round}: a rule names a deleted group"
            );
        }
        // Clean up this round's uses so the next target starts alone.
        if let Ok(e) = eni {
            b.repo
                .delete_network_interface(ACCOUNT, &e.id)
                .await
                .expect("delete interface");
        }
        if let Ok(added) = rule {
            let ids: Vec<_> = added.iter().map(|r| r.id.clone()).collect();
            b.repo
                .revoke_by_ids(ACCOUNT, &holder.id, Direction::Ingress, &ids)
                .await
                .expect("revoke");
        }
        let stored = b
            .repo
            .get_subnet(ACCOUNT, &subnet.id)
            .await
            .expect("subnet");
        assert_eq!(
            stored.addresses.allocated(),
            0,
            "round {round}: address leaked"
        );
    }
}

per_backend!(
    eni_300_distinct_addresses,
    vpc_50_distinct_vlans,
    overlapping_subnets_race,
    duplicate_group_names_race,
    group_deletion_races_new_uses,
);
