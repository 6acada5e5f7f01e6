//! The repository's contract, run on every storage adapter (memory, SQLite, a real
//! nats-server): each EC2 operation, each error code it can return, and that a refused call
//! leaves every bucket byte for byte as it was.

mod repo_support;
use repo_support as support;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use hive_vpc::compile::compile;
use hive_vpc::config::VpcConfig;
use hive_vpc::eni::CreateInterface;
use hive_vpc::model::{
    Direction, InterfaceStatus, NetworkInterfaceId, Peer, PortRange, Protocol, SecurityGroupId,
    SecurityGroupRule, SecurityGroupRuleId, VpcId,
};
use hive_vpc::vlan::VlanPool;
use hive_vpc_store::{
    GatewayBinding, NodeBindings, RecordKind, ResourceId, SubnetAttribute, VpcAttribute,
};
use support::{
    ACCOUNT, Backend, Build, OTHER, assert_default_network_stored, code, snapshot, tag,
    tcp_from_cidr, tcp_from_group,
};

const UNKNOWN_VPC: &str = "vpc-0123456789abcdef0";
const UNKNOWN_SUBNET: &str = "subnet-0123456789abcdef0";
const UNKNOWN_SG: &str = "sg-0123456789abcdef0";
const UNKNOWN_ENI: &str = "eni-0123456789abcdef0";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn eni_request(private_ip: Option<&str>, groups: &[&SecurityGroupId]) -> CreateInterface {
    CreateInterface {
        private_ip: private_ip.map(ip),
        groups: groups.iter().map(|g| (*g).clone()).collect(),
        description: String::new(),
    }
}

async fn vpc_lifecycle(b: Backend) {
    let r = &b.repo;
    let new = r
        .create_vpc(ACCOUNT, "10.1.0.0/16", &[tag("Name", "a")])
        .await
        .expect("create");
    assert_eq!(new.vpc.vlan, 2);
    assert!(!new.vpc.is_default);
    assert_eq!(new.vpc.tags, vec![tag("Name", "a")]);
    assert_eq!(new.default_group.name, "default");
    assert_eq!(new.default_group.vpc_id, new.vpc.id);
    assert_eq!(r.get_vpc(ACCOUNT, &new.vpc.id).await, Ok(new.vpc.clone()));
    assert_eq!(
        r.get_security_group(ACCOUNT, &new.default_group.id).await,
        Ok(new.default_group.clone())
    );
    // Another account sees nothing.
    assert_eq!(
        code(r.get_vpc(OTHER, &new.vpc.id).await),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(r.list_vpcs(OTHER).await, Ok(vec![]));
    assert_eq!(
        code(r.delete_vpc(OTHER, &new.vpc.id).await),
        "InvalidVpcID.NotFound"
    );

    let second = r
        .create_vpc(ACCOUNT, "10.1.0.0/16", &[])
        .await
        .expect("the same block in another VPC is fine");
    assert_eq!(second.vpc.vlan, 3);
    let mut ids: Vec<VpcId> = vec![new.vpc.id.clone(), second.vpc.id.clone()];
    ids.sort();
    let listed: Vec<VpcId> = r
        .list_vpcs(ACCOUNT)
        .await
        .expect("list")
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, ids);

    assert_eq!(
        r.vpc_attribute(ACCOUNT, &new.vpc.id, VpcAttribute::EnableDnsSupport)
            .await,
        Ok(true)
    );
    assert_eq!(
        r.vpc_attribute(ACCOUNT, &new.vpc.id, VpcAttribute::EnableDnsHostnames)
            .await,
        Ok(false)
    );
    let modified = r
        .modify_vpc_attribute(ACCOUNT, &new.vpc.id, VpcAttribute::EnableDnsHostnames, true)
        .await
        .expect("modify");
    assert!(modified.enable_dns_hostnames);
    assert_eq!(
        r.vpc_attribute(ACCOUNT, &new.vpc.id, VpcAttribute::EnableDnsHostnames)
            .await,
        Ok(true)
    );

    r.delete_vpc(ACCOUNT, &new.vpc.id).await.expect("delete");
    assert_eq!(
        code(r.get_vpc(ACCOUNT, &new.vpc.id).await),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(r.get_security_group(ACCOUNT, &new.default_group.id).await),
        "InvalidGroup.NotFound",
        "the default group goes with its VPC"
    );
    assert_eq!(
        code(r.delete_vpc(ACCOUNT, &new.vpc.id).await),
        "InvalidVpcID.NotFound"
    );
    let third = r.new_vpc("10.2.0.0/16").await;
    assert_eq!(third.vpc.vlan, 2, "the freed VLAN is handed out again");
}

async fn vpc_errors_write_nothing(b: Backend) {
    let r = &b.repo;
    let vpc = r.new_vpc("10.1.0.0/16").await.vpc;
    let subnet = r.new_subnet(&vpc.id, "10.1.1.0/24").await;
    let web = r.new_group(&vpc.id, "web", "web").await;
    let before = snapshot(r).await;
    for (cidr, expected) in [
        ("10.0.0.0/8", "InvalidVpc.Range"),
        ("10.0.0.0/15", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("127.0.0.0/16", "InvalidVpc.Range"),
        ("10.0.0.0/33", "InvalidParameterValue"),
        ("bogus", "InvalidParameterValue"),
    ] {
        assert_eq!(
            code(r.create_vpc(ACCOUNT, cidr, &[]).await),
            expected,
            "{cidr}"
        );
    }
    assert_eq!(
        code(
            r.create_vpc(ACCOUNT, "10.5.0.0/16", &[tag("aws:x", "y")])
                .await
        ),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(r.create_vpc("42", "10.5.0.0/16", &[]).await),
        "InvalidParameter"
    );
    assert_eq!(
        code(r.delete_vpc(ACCOUNT, &vpc.id).await),
        "DependencyViolation",
        "a subnet is left"
    );
    let unknown = VpcId::new_unchecked(UNKNOWN_VPC);
    assert_eq!(
        code(r.delete_vpc(ACCOUNT, &unknown).await),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(r.get_vpc(ACCOUNT, &unknown).await),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(
            r.modify_vpc_attribute(ACCOUNT, &unknown, VpcAttribute::EnableDnsSupport, false)
                .await
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(r.get_vpc(ACCOUNT, &VpcId::new_unchecked("vpc-zz")).await),
        "InvalidVpcID.Malformed"
    );
    assert_eq!(snapshot(r).await, before, "refused calls wrote nothing");

    r.delete_subnet(ACCOUNT, &subnet.id)
        .await
        .expect("delete subnet");
    let before = snapshot(r).await;
    assert_eq!(
        code(r.delete_vpc(ACCOUNT, &vpc.id).await),
        "DependencyViolation",
        "a non-default group is left"
    );
    assert_eq!(snapshot(r).await, before);
    r.delete_security_group(ACCOUNT, &web.id)
        .await
        .expect("delete group");
    r.delete_vpc(ACCOUNT, &vpc.id).await.expect("delete vpc");
    let left: Vec<_> = snapshot(r)
        .await
        .into_keys()
        .filter(|(bucket, key)| !(bucket == "hive-vpc-allocations" && key == "vlans"))
        .collect();
    assert_eq!(left, vec![], "only the VLAN pool is left");
}

async fn vpc_limit_exceeded(b: Backend) {
    let r = &b.repo;
    let mut pool = VlanPool::new();
    while pool.allocate().is_ok() {}
    let put = |pool: &VlanPool| {
        let bytes = serde_json::to_vec(pool).expect("json");
        let bucket = r.buckets().allocations.clone();
        async move { bucket.put("vlans", bytes.into()).await.expect("put pool") }
    };
    put(&pool).await;
    let before = snapshot(r).await;
    assert_eq!(
        code(r.create_vpc(ACCOUNT, "10.1.0.0/16", &[]).await),
        "VpcLimitExceeded"
    );
    assert_eq!(snapshot(r).await, before);
    pool.release(77).expect("release");
    put(&pool).await;
    let vpc = r.new_vpc("10.1.0.0/16").await;
    assert_eq!(vpc.vpc.vlan, 77);
}

async fn subnet_lifecycle_and_errors(b: Backend) {
    let r = &b.repo;
    let vpc = r.new_vpc("10.1.0.0/16").await;
    let vpc_id = vpc.vpc.id.clone();
    let s = r
        .create_subnet(ACCOUNT, &vpc_id, "10.1.1.0/24", None, &[tag("tier", "web")])
        .await
        .expect("subnet");
    assert_eq!(s.availability_zone, "hive-1a");
    assert_eq!(s.available_ip_address_count(), 251);
    assert_eq!(s.gateway(), ip("10.1.1.1"));
    assert_eq!(s.tags, vec![tag("tier", "web")]);
    assert_eq!(r.get_subnet(ACCOUNT, &s.id).await, Ok(s.clone()));
    assert_eq!(r.list_subnets(ACCOUNT).await, Ok(vec![s.clone()]));
    assert_eq!(
        code(r.get_subnet(OTHER, &s.id).await),
        "InvalidSubnetID.NotFound"
    );

    let before = snapshot(r).await;
    for (cidr, expected) in [
        ("10.2.0.0/24", "InvalidSubnet.Range"),
        ("10.1.5.0/29", "InvalidSubnet.Range"),
        ("10.0.0.0/8", "InvalidSubnet.Range"),
        ("10.1.1.128/25", "InvalidSubnet.Conflict"),
        ("10.1.0.0/16", "InvalidSubnet.Conflict"),
        ("10.1.1.0/24", "InvalidSubnet.Conflict"),
        ("10.1.1.0", "InvalidParameterValue"),
    ] {
        assert_eq!(
            code(r.create_subnet(ACCOUNT, &vpc_id, cidr, None, &[]).await),
            expected,
            "{cidr}"
        );
    }
    assert_eq!(
        code(
            r.create_subnet(ACCOUNT, &vpc_id, "10.1.5.0/24", Some("elsewhere-1z"), &[])
                .await
        ),
        "InvalidParameterValue"
    );
    let unknown = VpcId::new_unchecked(UNKNOWN_VPC);
    assert_eq!(
        code(
            r.create_subnet(ACCOUNT, &unknown, "10.1.5.0/24", None, &[])
                .await
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(
            r.create_subnet(OTHER, &vpc_id, "10.1.5.0/24", None, &[])
                .await
        ),
        "InvalidVpcID.NotFound"
    );
    let unknown_subnet = hive_vpc::model::SubnetId::new_unchecked(UNKNOWN_SUBNET);
    assert_eq!(
        code(r.delete_subnet(ACCOUNT, &unknown_subnet).await),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        code(
            r.modify_subnet_attribute(
                ACCOUNT,
                &unknown_subnet,
                SubnetAttribute::MapPublicIpOnLaunch(true)
            )
            .await
        ),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(snapshot(r).await, before);

    let modified = r
        .modify_subnet_attribute(ACCOUNT, &s.id, SubnetAttribute::MapPublicIpOnLaunch(true))
        .await
        .expect("modify");
    assert!(modified.map_public_ip_on_launch);
    assert!(
        r.get_subnet(ACCOUNT, &s.id)
            .await
            .expect("get")
            .map_public_ip_on_launch
    );

    let eni = r.new_eni(&s.id, &CreateInterface::default()).await;
    let before = snapshot(r).await;
    assert_eq!(
        code(r.delete_subnet(ACCOUNT, &s.id).await),
        "DependencyViolation"
    );
    assert_eq!(snapshot(r).await, before);
    r.delete_network_interface(ACCOUNT, &eni.id)
        .await
        .expect("delete eni");
    r.delete_subnet(ACCOUNT, &s.id)
        .await
        .expect("delete subnet");
    assert_eq!(
        code(r.get_subnet(ACCOUNT, &s.id).await),
        "InvalidSubnetID.NotFound"
    );
    // The block's reservation went with it.
    r.create_subnet(ACCOUNT, &vpc_id, "10.1.1.0/24", None, &[])
        .await
        .expect("the block is free again");
}

async fn security_groups_and_rules(b: Backend) {
    let r = &b.repo;
    let a = r.new_vpc("10.1.0.0/16").await;
    let bb = r.new_vpc("10.2.0.0/16").await;
    let subnet = r.new_subnet(&a.vpc.id, "10.1.1.0/24").await;
    let web = r.new_group(&a.vpc.id, "web", "web servers").await;
    assert_eq!(web.rules.len(), 1, "AWS's default egress rule");
    let db = r.new_group(&a.vpc.id, "db", "database").await;
    let far = r.new_group(&bb.vpc.id, "far", "other vpc").await;
    r.create_security_group(ACCOUNT, &bb.vpc.id, "web", "same name elsewhere", &[])
        .await
        .expect("names are per VPC");

    let before = snapshot(r).await;
    assert_eq!(
        code(
            r.create_security_group(ACCOUNT, &a.vpc.id, "WEB", "again", &[])
                .await
        ),
        "InvalidGroup.Duplicate"
    );
    assert_eq!(
        code(
            r.create_security_group(ACCOUNT, &a.vpc.id, "default", "d", &[])
                .await
        ),
        "InvalidGroup.Reserved"
    );
    assert_eq!(
        code(
            r.create_security_group(ACCOUNT, &a.vpc.id, "", "d", &[])
                .await
        ),
        "MissingParameter"
    );
    assert_eq!(
        code(
            r.create_security_group(ACCOUNT, &VpcId::new_unchecked(UNKNOWN_VPC), "x", "d", &[])
                .await
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(r.delete_security_group(ACCOUNT, &a.default_group.id).await),
        "CannotDelete"
    );
    let unknown = SecurityGroupId::new_unchecked(UNKNOWN_SG);
    assert_eq!(
        code(r.delete_security_group(ACCOUNT, &unknown).await),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        code(r.get_security_group(OTHER, &web.id).await),
        "InvalidGroup.NotFound"
    );
    assert_eq!(snapshot(r).await, before);

    let added = r
        .authorize(
            ACCOUNT,
            &db.id,
            vec![tcp_from_group(Direction::Ingress, 5432, &web.id)],
        )
        .await
        .expect("authorize");
    assert_eq!(added.len(), 1);
    assert!(added[0].id.as_str().starts_with("sgr-"));
    let eni = r
        .create_network_interface(ACCOUNT, &subnet.id, &eni_request(None, &[&db.id]), &[])
        .await
        .expect("eni in db");

    let before = snapshot(r).await;
    assert_eq!(
        code(
            r.authorize(
                ACCOUNT,
                &db.id,
                vec![tcp_from_group(Direction::Ingress, 5432, &web.id)]
            )
            .await
        ),
        "InvalidPermission.Duplicate"
    );
    assert_eq!(
        code(
            r.authorize(
                ACCOUNT,
                &db.id,
                vec![
                    tcp_from_cidr(Direction::Ingress, 22, "10.0.0.0/8"),
                    tcp_from_cidr(Direction::Ingress, 22, "10.9.9.9/8"),
                ]
            )
            .await
        ),
        "InvalidPermission.Duplicate",
        "all or nothing"
    );
    assert_eq!(
        code(
            r.authorize(
                ACCOUNT,
                &db.id,
                vec![tcp_from_group(Direction::Ingress, 1, &far.id)]
            )
            .await
        ),
        "InvalidGroup.NotFound",
        "a group of another VPC"
    );
    assert_eq!(
        code(
            r.authorize(
                ACCOUNT,
                &db.id,
                vec![tcp_from_group(Direction::Ingress, 1, &unknown)]
            )
            .await
        ),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        code(
            r.authorize(
                ACCOUNT,
                &unknown,
                vec![tcp_from_cidr(Direction::Ingress, 1, "0.0.0.0/0")]
            )
            .await
        ),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        code(
            r.revoke(
                ACCOUNT,
                &db.id,
                &[tcp_from_cidr(Direction::Ingress, 1, "0.0.0.0/0")]
            )
            .await
        ),
        "InvalidPermission.NotFound"
    );
    assert_eq!(
        code(
            r.revoke_by_ids(ACCOUNT, &db.id, Direction::Egress, &[added[0].id.clone()])
                .await
        ),
        "InvalidSecurityGroupRuleId.NotFound"
    );
    assert_eq!(
        code(r.delete_security_group(ACCOUNT, &web.id).await),
        "DependencyViolation",
        "db's rule names web"
    );
    assert_eq!(
        code(r.delete_security_group(ACCOUNT, &db.id).await),
        "DependencyViolation",
        "an interface uses db"
    );
    assert_eq!(snapshot(r).await, before);

    let rules = r.list_security_group_rules(ACCOUNT).await.expect("rules");
    assert!(
        rules
            .iter()
            .any(|g| g.group_id == db.id && g.rule == added[0] && g.vpc_id == a.vpc.id)
    );
    let groups = r.list_security_groups(ACCOUNT).await.expect("groups");
    assert_eq!(groups.len(), 6, "two defaults, web, db, far, and web in b");
    assert_eq!(
        r.find_security_group_by_name(ACCOUNT, Some(&a.vpc.id), "WEB")
            .await
            .map(|g| g.id),
        Ok(web.id.clone())
    );
    assert_eq!(
        code(
            r.find_security_group_by_name(ACCOUNT, Some(&a.vpc.id), "nope")
                .await
        ),
        "InvalidGroup.NotFound"
    );

    let egress = r
        .authorize(
            ACCOUNT,
            &web.id,
            vec![tcp_from_cidr(Direction::Egress, 443, "0.0.0.0/0")],
        )
        .await
        .expect("egress");
    let gone = r
        .revoke_by_ids(ACCOUNT, &web.id, Direction::Egress, &[egress[0].id.clone()])
        .await
        .expect("revoke by id");
    assert_eq!(gone, egress);
    let revoked = r
        .revoke(
            ACCOUNT,
            &db.id,
            &[
                tcp_from_group(Direction::Ingress, 5432, &web.id),
                tcp_from_cidr(Direction::Ingress, 9, "0.0.0.0/0"),
            ],
        )
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked, added);
    assert_eq!(revoked.unknown.len(), 1);
    r.delete_security_group(ACCOUNT, &web.id)
        .await
        .expect("web is unreferenced now");
    r.delete_network_interface(ACCOUNT, &eni.id)
        .await
        .expect("eni");
    r.delete_security_group(ACCOUNT, &db.id).await.expect("db");
    assert_eq!(
        code(r.get_security_group(ACCOUNT, &db.id).await),
        "InvalidGroup.NotFound"
    );
    r.create_security_group(ACCOUNT, &a.vpc.id, "db", "again", &[])
        .await
        .expect("the name is free again");
}

async fn network_interfaces(b: Backend) {
    let r = &b.repo;
    let a = r.new_vpc("10.1.0.0/16").await;
    let other = r.new_vpc("10.2.0.0/16").await;
    let subnet = r.new_subnet(&a.vpc.id, "10.1.1.0/28").await;
    let web = r.new_group(&a.vpc.id, "web", "w").await;
    let e1 = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    assert_eq!(e1.private_ip, ip("10.1.1.4"));
    assert_eq!(e1.groups, vec![a.default_group.id.clone()]);
    assert!(e1.mac.is_locally_administered() && e1.mac.is_unicast());
    assert_eq!(e1.status, InterfaceStatus::Available);
    assert_eq!(e1.vpc_id, a.vpc.id);
    assert_eq!(e1.availability_zone, "hive-1a");
    let e2 = r
        .create_network_interface(
            ACCOUNT,
            &subnet.id,
            &eni_request(Some("10.1.1.9"), &[&web.id]),
            &[tag("role", "db")],
        )
        .await
        .expect("e2");
    assert_eq!(e2.private_ip, ip("10.1.1.9"));
    assert_eq!(e2.groups, vec![web.id.clone()]);
    assert_ne!(e1.mac, e2.mac);
    assert_eq!(
        r.get_network_interface(ACCOUNT, &e2.id).await,
        Ok(e2.clone())
    );
    assert_eq!(
        code(r.get_network_interface(OTHER, &e2.id).await),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(
        r.locate_interface(&e2.id).await,
        Ok(Some((ACCOUNT.to_owned(), e2.clone())))
    );

    let before = snapshot(r).await;
    let too_many: Vec<SecurityGroupId> = (0..6)
        .map(|i| SecurityGroupId::new_unchecked(format!("sg-0000000{i}")))
        .collect();
    let unknown_group = SecurityGroupId::new_unchecked(UNKNOWN_SG);
    let cases: Vec<(CreateInterface, &str)> = vec![
        (eni_request(Some("10.1.1.9"), &[]), "InvalidIPAddress.InUse"),
        (eni_request(Some("10.1.1.1"), &[]), "InvalidParameterValue"),
        (eni_request(Some("10.1.2.5"), &[]), "InvalidParameterValue"),
        (
            eni_request(None, &[&other.default_group.id]),
            "InvalidParameter",
        ),
        (
            eni_request(None, &[&unknown_group]),
            "InvalidGroup.NotFound",
        ),
        (
            CreateInterface {
                groups: too_many,
                ..CreateInterface::default()
            },
            "SecurityGroupsPerInterfaceLimitExceeded",
        ),
        (
            CreateInterface {
                description: "d".repeat(300),
                ..CreateInterface::default()
            },
            "InvalidParameterValue",
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(
            code(
                r.create_network_interface(ACCOUNT, &subnet.id, &request, &[])
                    .await
            ),
            expected,
            "{request:?}"
        );
    }
    assert_eq!(
        code(
            r.create_network_interface(
                ACCOUNT,
                &hive_vpc::model::SubnetId::new_unchecked(UNKNOWN_SUBNET),
                &CreateInterface::default(),
                &[]
            )
            .await
        ),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(snapshot(r).await, before);

    // A /28 offers 11 addresses: two are taken, nine more fit.
    let mut all = vec![e1.clone(), e2.clone()];
    for _ in 0..9 {
        all.push(r.new_eni(&subnet.id, &CreateInterface::default()).await);
    }
    let addrs: HashSet<Ipv4Addr> = all.iter().map(|e| e.private_ip).collect();
    assert_eq!(addrs.len(), 11);
    let before = snapshot(r).await;
    assert_eq!(
        code(
            r.create_network_interface(ACCOUNT, &subnet.id, &CreateInterface::default(), &[])
                .await
        ),
        "InsufficientFreeAddressesInSubnet"
    );
    assert_eq!(snapshot(r).await, before);
    let macs = before.keys().filter(|(_, k)| k.starts_with("mac.")).count();
    assert_eq!(macs, 11, "one MAC reservation per interface");

    let modified = r
        .modify_network_interface_groups(ACCOUNT, &e1.id, std::slice::from_ref(&web.id))
        .await
        .expect("modify groups");
    assert_eq!(modified.groups, vec![web.id.clone()]);
    let before = snapshot(r).await;
    assert_eq!(
        code(
            r.modify_network_interface_groups(
                ACCOUNT,
                &e1.id,
                std::slice::from_ref(&other.default_group.id)
            )
            .await
        ),
        "InvalidParameter"
    );
    assert_eq!(
        code(
            r.modify_network_interface_groups(
                ACCOUNT,
                &e1.id,
                std::slice::from_ref(&unknown_group)
            )
            .await
        ),
        "InvalidGroup.NotFound"
    );
    assert_eq!(snapshot(r).await, before);

    r.set_interface_status(ACCOUNT, &e1.id, InterfaceStatus::InUse)
        .await
        .expect("attach");
    let before = snapshot(r).await;
    assert_eq!(
        code(r.delete_network_interface(ACCOUNT, &e1.id).await),
        "InvalidNetworkInterface.InUse"
    );
    assert_eq!(
        code(
            r.delete_network_interface(ACCOUNT, &NetworkInterfaceId::new_unchecked(UNKNOWN_ENI))
                .await
        ),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(snapshot(r).await, before);
    r.set_interface_status(ACCOUNT, &e1.id, InterfaceStatus::Available)
        .await
        .expect("detach");
    r.delete_network_interface(ACCOUNT, &e1.id)
        .await
        .expect("delete");
    assert_eq!(
        code(r.get_network_interface(ACCOUNT, &e1.id).await),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let again = r
        .create_network_interface(ACCOUNT, &subnet.id, &CreateInterface::default(), &[])
        .await
        .expect("the freed address is handed out again");
    assert_eq!(again.private_ip, ip("10.1.1.4"));
    for e in all.iter().skip(1).chain([&again]) {
        r.delete_network_interface(ACCOUNT, &e.id)
            .await
            .expect("delete");
    }
    let left = snapshot(r).await;
    assert!(
        !left.keys().any(|(_, k)| k.starts_with("mac.")),
        "MACs given back"
    );
    let subnet = r.get_subnet(ACCOUNT, &subnet.id).await.expect("subnet");
    assert_eq!(subnet.available_ip_address_count(), 11);
}

async fn tags(b: Backend) {
    let r = &b.repo;
    let vpc = r.new_vpc("10.1.0.0/16").await.vpc;
    let subnet = r.new_subnet(&vpc.id, "10.1.1.0/24").await;
    let sg = r.new_group(&vpc.id, "web", "w").await;
    let eni = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    let resources = vec![
        ResourceId::parse(vpc.id.as_str()).expect("id"),
        ResourceId::parse(subnet.id.as_str()).expect("id"),
        ResourceId::parse(sg.id.as_str()).expect("id"),
        ResourceId::parse(eni.id.as_str()).expect("id"),
    ];
    r.create_tags(ACCOUNT, &resources, &[tag("Name", "x"), tag("env", "prod")])
        .await
        .expect("tag");
    r.create_tags(ACCOUNT, &resources[..1], &[tag("env", "dev")])
        .await
        .expect("retag");
    let listed = r.list_tags(ACCOUNT).await.expect("list");
    assert_eq!(listed.len(), 8);
    let types: HashSet<&str> = listed.iter().map(|t| t.resource.resource_type()).collect();
    assert_eq!(
        types,
        HashSet::from(["vpc", "subnet", "security-group", "network-interface"])
    );
    assert_eq!(
        r.get_vpc(ACCOUNT, &vpc.id).await.expect("vpc").tags,
        vec![tag("Name", "x"), tag("env", "dev")]
    );
    assert_eq!(r.list_tags(OTHER).await, Ok(vec![]));

    let before = snapshot(r).await;
    let unknown = ResourceId::parse(UNKNOWN_VPC).expect("id");
    assert_eq!(
        code(
            r.create_tags(
                ACCOUNT,
                &[resources[0].clone(), unknown.clone()],
                &[tag("k", "v")]
            )
            .await
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(
            r.create_tags(ACCOUNT, &resources, &[tag("aws:x", "v")])
                .await
        ),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(r.create_tags(ACCOUNT, &resources, &[tag("", "v")]).await),
        "MissingParameter"
    );
    assert_eq!(
        code(
            r.create_tags(ACCOUNT, &resources, &[tag("k", &"v".repeat(256))])
                .await
        ),
        "InvalidParameterValue"
    );
    let many: Vec<(String, String)> = (0..49).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert_eq!(
        code(r.create_tags(ACCOUNT, &resources[..1], &many).await),
        "TagLimitExceeded",
        "2 + 49 > 50"
    );
    assert_eq!(
        code(
            r.delete_tags(ACCOUNT, &[unknown], &[("Name".into(), None)])
                .await
        ),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(code(ResourceId::parse("i-0123456789abcdef0")), "InvalidID");
    assert_eq!(
        code(ResourceId::parse("sgr-0123456789abcdef0")),
        "InvalidID"
    );
    assert_eq!(code(ResourceId::parse("vpc-zz")), "InvalidVpcID.Malformed");
    assert_eq!(snapshot(r).await, before);

    r.delete_tags(
        ACCOUNT,
        &resources[..1],
        &[("env".into(), Some("wrong".into()))],
    )
    .await
    .expect("no match, no change");
    assert_eq!(snapshot(r).await, before);
    r.delete_tags(
        ACCOUNT,
        &resources[..1],
        &[("env".into(), Some("dev".into()))],
    )
    .await
    .expect("delete by value");
    r.delete_tags(ACCOUNT, &resources, &[("Name".into(), None)])
        .await
        .expect("delete by key");
    let listed = r.list_tags(ACCOUNT).await.expect("list");
    assert_eq!(listed.len(), 3, "env=prod on subnet, group and interface");
    assert!(listed.iter().all(|t| t.key == "env" && t.value == "prod"));
}

async fn default_network_bootstrap(b: Backend) {
    let r = &b.repo;
    assert_eq!(r.default_vpc(ACCOUNT).await, Ok(None));
    let first = r
        .bootstrap_default(ACCOUNT, &VpcConfig::default())
        .await
        .expect("bootstrap");
    assert!(first.created);
    let n = &first.network;
    assert_eq!(n.vpc.vlan, 1);
    assert!(n.vpc.is_default);
    assert_eq!(n.vpc.cidr_block.to_string(), "10.0.0.0/16");
    assert_eq!(n.subnet.cidr_block.to_string(), "10.0.1.0/24");
    assert_eq!(n.subnet.gateway(), ip("10.0.1.1"));
    assert!(n.subnet.default_for_az);
    assert_eq!(n.default_group.name, "default");
    assert_eq!(r.get_vpc(ACCOUNT, &n.vpc.id).await, Ok(n.vpc.clone()));
    assert_default_network_stored(r, n).await;
    assert_eq!(
        r.find_security_group_by_name(ACCOUNT, None, "default")
            .await
            .map(|g| g.id),
        Ok(n.default_group.id.clone())
    );

    let before = snapshot(r).await;
    let again = r
        .bootstrap_default(ACCOUNT, &VpcConfig::default())
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.network, first.network);
    assert_eq!(snapshot(r).await, before, "idempotent");
    let bad = VpcConfig {
        gateway_ip: ip("10.0.1.9"),
        ..VpcConfig::default()
    };
    assert_eq!(
        code(r.bootstrap_default(ACCOUNT, &bad).await),
        "InvalidConfiguration"
    );

    // A user VPC takes VLAN 2: VLAN 1 is never in the pool.
    let user = r.new_vpc("10.9.0.0/16").await;
    assert_eq!(user.vpc.vlan, 2);
    let other = r
        .bootstrap_default(OTHER, &VpcConfig::default())
        .await
        .expect("other account");
    assert!(other.created);
    assert_eq!(
        other.network.vpc.vlan, 3,
        "VLAN 1 belongs to the first account"
    );

    // Deleting the default network is allowed and it stays deleted.
    r.delete_subnet(ACCOUNT, &n.subnet.id)
        .await
        .expect("subnet");
    r.delete_vpc(ACCOUNT, &n.vpc.id).await.expect("vpc");
    let after = r
        .bootstrap_default(ACCOUNT, &VpcConfig::default())
        .await
        .expect("after deletion");
    assert!(!after.created);
    assert_eq!(r.default_vpc(ACCOUNT).await, Ok(None));
}

async fn concurrent_bootstrap(b: Backend) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            b.repo.clone()
        } else {
            b.another().await
        };
        tasks.push(tokio::spawn(async move {
            repo.bootstrap_default(ACCOUNT, &VpcConfig::default()).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task").expect("bootstrap"));
    }
    assert_eq!(results.iter().filter(|r| r.created).count(), 1);
    assert!(results.iter().all(|r| r.network == results[0].network));
    let vpcs = b.repo.list_vpcs(ACCOUNT).await.expect("list");
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].vlan, 1);
    assert_eq!(
        b.repo.list_subnets(ACCOUNT).await.expect("subnets").len(),
        1
    );
    assert_eq!(
        b.repo
            .list_security_groups(ACCOUNT)
            .await
            .expect("groups")
            .len(),
        1
    );
    let pool = b
        .repo
        .buckets()
        .allocations
        .get("vlans")
        .await
        .expect("get");
    if let Some(pool) = pool {
        let pool: VlanPool = serde_json::from_slice(&pool.value).expect("pool");
        assert_eq!(pool.allocated(), 0, "no VLAN leaked by the losers");
    }
}

async fn node_state_from_kv(b: Backend) {
    let r = &b.repo;
    let default = r
        .bootstrap_default(ACCOUNT, &VpcConfig::default())
        .await
        .expect("bootstrap")
        .network;
    let a = r.new_vpc("10.1.0.0/16").await;
    let subnet = r.new_subnet(&a.vpc.id, "10.1.1.0/24").await;
    let web = r.new_group(&a.vpc.id, "web", "w").await;
    r.authorize(
        ACCOUNT,
        &web.id,
        vec![tcp_from_cidr(Direction::Ingress, 80, "0.0.0.0/0")],
    )
    .await
    .expect("rule");
    let e1 = r.new_eni(&subnet.id, &eni_request(None, &[&web.id])).await;
    let e2 = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    let e3 = r
        .create_network_interface(
            ACCOUNT,
            &default.subnet.id,
            &CreateInterface::default(),
            &[],
        )
        .await
        .expect("e3 in the default subnet");

    let mut bindings = NodeBindings {
        gateway: Some(GatewayBinding {
            ofport: 1,
            mac: None,
        }),
        metadata: true,
        ..NodeBindings::default()
    };
    bindings.ports.insert(e1.id.clone(), 5);
    bindings.ports.insert(e2.id.clone(), 6);
    bindings
        .ports
        .insert(NetworkInterfaceId::new_unchecked(UNKNOWN_ENI), 7);
    let state = r.node_state(&bindings).await.expect("state");
    assert_eq!(state.vpcs.len(), 2);
    assert!(
        state
            .vpcs
            .iter()
            .any(|v| v.id == default.vpc.id && v.vlan == 1)
    );
    assert_eq!(state.subnets.len(), 2);
    assert_eq!(state.security_groups.len(), 3);
    assert_eq!(state.ports.len(), 2, "the unknown interface is left out");
    let p1 = state
        .ports
        .iter()
        .find(|p| p.eni == e1.id)
        .expect("e1 port");
    assert_eq!(
        (p1.ofport, p1.ip, p1.mac, &p1.groups, &p1.subnet, &p1.vpc),
        (
            5,
            e1.private_ip,
            e1.mac,
            &e1.groups,
            &e1.subnet_id,
            &e1.vpc_id
        )
    );
    let gw = state.gateway.as_ref().expect("gateway");
    assert_eq!(
        (gw.ofport, &gw.vpc, gw.ip),
        (1, &default.vpc.id, ip("10.0.1.1"))
    );
    assert!(state.metadata);
    assert!(state.remotes.is_empty());
    let program = compile(&state).expect("compiles");
    assert!(
        program.len() > 20,
        "a real program: {} flows",
        program.len()
    );

    // Another process sees the same state: it comes from KV, not from memory.
    let other = b.another().await;
    assert_eq!(other.node_state(&bindings).await, Ok(state.clone()));

    // One OpenFlow port claimed twice keeps one interface; the gateway's port is never reused.
    let mut clash = NodeBindings::default();
    clash.ports.insert(e1.id.clone(), 5);
    clash.ports.insert(e2.id.clone(), 5);
    clash.ports.insert(e3.id.clone(), 0);
    let state = r.node_state(&clash).await.expect("state");
    assert_eq!(state.ports.len(), 1);
    assert!(state.gateway.is_none());

    r.delete_network_interface(ACCOUNT, &e2.id)
        .await
        .expect("delete");
    let state = r.node_state(&bindings).await.expect("state");
    assert_eq!(state.ports.len(), 1, "the deleted interface's port is gone");
    compile(&state).expect("compiles");
}

async fn watch_reports_changes(b: Backend) {
    let r = &b.repo;
    let mut changes = r.watch().await.expect("watch");
    let other = b.another().await;
    let vpc = other
        .create_vpc(ACCOUNT, "10.1.0.0/16", &[])
        .await
        .expect("vpc from another connection");
    let key = format!("{ACCOUNT}.{}", vpc.vpc.id);
    let mut seen = HashSet::new();
    let deadline = Duration::from_secs(10);
    let found = tokio::time::timeout(deadline, async {
        while let Some(change) = changes.next().await {
            let change = change.expect("change");
            seen.insert(change.kind);
            if change.kind == RecordKind::Vpc && change.key == key && !change.deleted {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the VPC's creation is reported");
    other
        .delete_vpc(ACCOUNT, &vpc.vpc.id)
        .await
        .expect("delete");
    let deleted = tokio::time::timeout(deadline, async {
        while let Some(change) = changes.next().await {
            let change = change.expect("change");
            seen.insert(change.kind);
            if change.kind == RecordKind::Vpc && change.key == key && change.deleted {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(deleted, Ok(true), "the VPC's deletion is reported");
    assert!(seen.contains(&RecordKind::Allocation), "{seen:?}");
    assert!(seen.contains(&RecordKind::SecurityGroup), "{seen:?}");
}

async fn node_state_leaves_out_inconsistent_records(b: Backend) {
    let r = &b.repo;
    let a = r.new_vpc("10.1.0.0/16").await;
    let subnet = r.new_subnet(&a.vpc.id, "10.1.1.0/24").await;
    let e1 = r.new_eni(&subnet.id, &CreateInterface::default()).await;
    let mut bindings = NodeBindings::default();
    bindings.ports.insert(e1.id.clone(), 3);
    assert_eq!(r.node_state(&bindings).await.expect("state").ports.len(), 1);

    // An interface record naming a group the store does not hold (written by hand): the port
    // stays, without that group, so it matches no rule of it.
    let raw = &r.buckets().interfaces;
    let key = format!("{ACCOUNT}.{}", e1.id);
    let mut edited = e1.clone();
    edited
        .groups
        .push(SecurityGroupId::new_unchecked(UNKNOWN_SG));
    raw.put(&key, serde_json::to_vec(&edited).expect("json").into())
        .await
        .expect("put");
    let state = r.node_state(&bindings).await.expect("state");
    assert_eq!(state.ports[0].groups, e1.groups);

    // A hand-written rule with an empty port range is left out; the group stays.
    let mut group = r
        .get_security_group(ACCOUNT, &a.default_group.id)
        .await
        .expect("group");
    group.rules.push(SecurityGroupRule {
        id: SecurityGroupRuleId::new_unchecked("sgr-0123456789abcdef0"),
        direction: Direction::Ingress,
        protocol: Protocol::Tcp(PortRange { from: 90, to: 80 }),
        peer: Peer::Cidr("0.0.0.0/0".parse().expect("cidr")),
        description: None,
    });
    let record = serde_json::json!({ "group": group });
    r.buckets()
        .security_groups
        .put(
            &format!("{ACCOUNT}.{}", group.id),
            serde_json::to_vec(&record).expect("json").into(),
        )
        .await
        .expect("put");
    let state = r.node_state(&bindings).await.expect("state");
    let stored = state
        .security_groups
        .iter()
        .find(|g| g.id == group.id)
        .expect("the group stays");
    assert_eq!(stored.rules.len(), group.rules.len() - 1);
    compile(&state).expect("compiles");

    // Two VPC records on one VLAN (a corrupt store): both VPCs and everything in them go,
    // rather than mixing two networks.
    let vpcs = &r.buckets().vpcs;
    let twin_key = format!("{ACCOUNT}.{UNKNOWN_VPC}");
    let original = vpcs
        .get(&format!("{ACCOUNT}.{}", a.vpc.id))
        .await
        .expect("get")
        .expect("record");
    let text = String::from_utf8(original.value.to_vec()).expect("utf8");
    let twin = text.replace(a.vpc.id.as_str(), UNKNOWN_VPC);
    vpcs.put(&twin_key, twin.into_bytes().into())
        .await
        .expect("put twin");
    let state = r.node_state(&bindings).await.expect("state");
    assert!(state.vpcs.iter().all(|v| v.vlan != a.vpc.vlan));
    assert!(state.ports.is_empty());
    assert!(state.subnets.is_empty());
    compile(&state).expect("still compiles");
}

per_backend!(
    vpc_lifecycle,
    vpc_errors_write_nothing,
    vpc_limit_exceeded,
    subnet_lifecycle_and_errors,
    security_groups_and_rules,
    network_interfaces,
    tags,
    default_network_bootstrap,
    concurrent_bootstrap,
    node_state_from_kv,
    node_state_leaves_out_inconsistent_records,
    watch_reports_changes,
);
