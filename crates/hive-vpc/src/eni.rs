//! Network interfaces (ENIs): creating one takes a private address from its subnet and a
//! unique MAC; deleting one gives the address back.
//!
//! MACs are locally administered unicast addresses, `02:` followed by 40 random bits from the
//! caller's RNG, redrawn while they collide with the MACs already in use (the caller passes the
//! cluster's set). Creation follows `CreateNetworkInterface`: at most 5 security groups, all
//! from the subnet's VPC, and the VPC's default group when none is given.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use rand::RngCore;

use crate::error::VpcError;
use crate::model::{
    InterfaceStatus, MacAddr, NetworkInterface, NetworkInterfaceId, SecurityGroup, SecurityGroupId,
    SecurityGroupRule, Subnet, VpcId,
};
use crate::security_group::rule_key;

/// First byte of every MAC Hive makes: locally administered (bit 1) and unicast (bit 0 clear).
pub const MAC_PREFIX: u8 = 0x02;
/// Security groups an interface may belong to (AWS's default quota).
pub const MAX_GROUPS_PER_INTERFACE: usize = 5;
/// Draws before giving up on finding an unused MAC (40 random bits make this unreachable in
/// practice unless the set is absurdly large).
const MAC_ATTEMPTS: usize = 64;

/// A fresh MAC that `in_use` does not hold.
pub fn allocate_mac<R, F>(rng: &mut R, in_use: F) -> Result<MacAddr, VpcError>
where
    R: RngCore + ?Sized,
    F: Fn(&MacAddr) -> bool,
{
    for _ in 0..MAC_ATTEMPTS {
        let mut random = [0u8; 5];
        rng.fill_bytes(&mut random);
        let mac = MacAddr([
            MAC_PREFIX, random[0], random[1], random[2], random[3], random[4],
        ]);
        if !in_use(&mac) {
            return Ok(mac);
        }
    }
    Err(VpcError::MacExhausted)
}

/// What a client asks for in `CreateNetworkInterface`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateInterface {
    /// `PrivateIpAddress`, or the lowest free address.
    pub private_ip: Option<Ipv4Addr>,
    /// `SecurityGroupId.N`, or the VPC's default group when empty.
    pub groups: Vec<SecurityGroupId>,
    /// `Description`.
    pub description: String,
}

/// Create an interface in `subnet`, taking its address from `subnet.addresses` (the caller
/// commits the changed subnet and the new interface). `vpc_groups` are the security groups of
/// the subnet's VPC, the default one among them; `mac_in_use` tells which MACs are taken.
/// On error `subnet` is unchanged.
pub fn create_network_interface<R, F>(
    rng: &mut R,
    subnet: &mut Subnet,
    vpc_groups: &[SecurityGroup],
    request: &CreateInterface,
    mac_in_use: F,
) -> Result<NetworkInterface, VpcError>
where
    R: RngCore + ?Sized,
    F: Fn(&MacAddr) -> bool,
{
    let groups = resolve_groups(
        &subnet.vpc_id,
        &subnet.id.to_string(),
        vpc_groups,
        &request.groups,
    )?;
    let mac = allocate_mac(rng, mac_in_use)?;
    let private_ip = subnet
        .addresses
        .allocate_requested_or_next(request.private_ip)?;
    Ok(NetworkInterface {
        id: NetworkInterfaceId::generate(rng),
        subnet_id: subnet.id.clone(),
        vpc_id: subnet.vpc_id.clone(),
        availability_zone: subnet.availability_zone.clone(),
        private_ip,
        mac,
        groups,
        description: request.description.clone(),
        tags: Vec::new(),
        status: InterfaceStatus::Available,
        source_dest_check: true,
    })
}

/// Check a requested group list for an interface in `vpc`: 1 to 5 distinct groups of that VPC;
/// empty means the VPC's default group. Returns the list to store.
pub fn resolve_groups(
    vpc: &VpcId,
    subnet: &str,
    vpc_groups: &[SecurityGroup],
    requested: &[SecurityGroupId],
) -> Result<Vec<SecurityGroupId>, VpcError> {
    if requested.is_empty() {
        let default = vpc_groups
            .iter()
            .find(|g| &g.vpc_id == vpc && g.name == crate::security_group::DEFAULT_GROUP_NAME)
            .ok_or_else(|| {
                VpcError::InvalidParameter(format!("VPC '{vpc}' has no default security group"))
            })?;
        return Ok(vec![default.id.clone()]);
    }
    let mut seen = HashSet::new();
    let mut groups = Vec::with_capacity(requested.len());
    for id in requested {
        if seen.insert(id) {
            groups.push(id.clone());
        }
    }
    if groups.len() > MAX_GROUPS_PER_INTERFACE {
        return Err(VpcError::SecurityGroupsPerInterfaceLimitExceeded);
    }
    for id in &groups {
        match vpc_groups.iter().find(|g| &g.id == id) {
            None => return Err(id.not_found()),
            Some(g) if &g.vpc_id != vpc => {
                return Err(VpcError::InvalidParameter(format!(
                    "Security group {id} and subnet {subnet} belong to different networks."
                )));
            }
            Some(_) => {}
        }
    }
    Ok(groups)
}

/// Delete an interface: it must be detached; its address goes back to `subnet` (the caller
/// commits the subnet and removes the interface). On error `subnet` is unchanged.
pub fn delete_network_interface(
    subnet: &mut Subnet,
    interface: &NetworkInterface,
) -> Result<(), VpcError> {
    if interface.status == InterfaceStatus::InUse {
        return Err(VpcError::InterfaceInUse(interface.id.to_string()));
    }
    if interface.subnet_id != subnet.id {
        return Err(VpcError::InvalidParameter(format!(
            "interface {} is not in subnet {}",
            interface.id, subnet.id
        )));
    }
    subnet.addresses.release(interface.private_ip)
}

/// The rules that apply to an interface: the union of its groups' rules, each distinct rule
/// (same direction, protocol, ports and peer) once. Groups not found in `groups` add nothing.
pub fn effective_rules<'a>(
    interface: &NetworkInterface,
    groups: &'a [SecurityGroup],
) -> Vec<&'a SecurityGroupRule> {
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for id in &interface.groups {
        for group in groups.iter().filter(|g| &g.id == id) {
            for rule in &group.rules {
                if seen.insert(rule_key(rule)) {
                    rules.push(rule);
                }
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Peer, Protocol, SubnetId};
    use crate::security_group::{default_security_group, new_security_group};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn setup(rng: &mut StdRng) -> (Subnet, Vec<SecurityGroup>) {
        let vpc = VpcId::generate(rng);
        let subnet = Subnet::new(
            SubnetId::generate(rng),
            vpc.clone(),
            "10.0.1.0/24".parse().expect("cidr"),
            "hive-1a",
        )
        .expect("subnet");
        let default = default_security_group(rng, &vpc);
        let web = new_security_group(
            rng,
            &vpc,
            "web",
            "web servers",
            std::slice::from_ref(&default),
        )
        .expect("group");
        (subnet, vec![default, web])
    }

    #[test]
    fn macs_are_local_unicast_and_avoid_the_set() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut taken = HashSet::new();
        for _ in 0..2000 {
            let mac = allocate_mac(&mut rng, |m| taken.contains(m)).expect("mac");
            assert!(mac.is_locally_administered() && mac.is_unicast(), "{mac}");
            assert!(taken.insert(mac), "duplicate {mac}");
        }
        assert_eq!(
            allocate_mac(&mut rng, |_| true).map_err(|e| e.code()),
            Err("InsufficientAddressCapacity")
        );
    }

    #[test]
    fn mac_text_round_trips() {
        let mac = MacAddr([0x02, 0xab, 0, 1, 0xfe, 0x10]);
        assert_eq!(mac.to_string(), "02:ab:00:01:fe:10");
        assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "02:ab:00:01:fe",
            "02:ab:00:01:fe:10:11",
            "2:ab:00:01:fe:10",
            "02-ab-00-01-fe-10",
            "0g:ab:00:01:fe:10",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn create_takes_next_address_and_default_group() {
        let mut rng = StdRng::seed_from_u64(4);
        let (mut subnet, groups) = setup(&mut rng);
        let eni = create_network_interface(
            &mut rng,
            &mut subnet,
            &groups,
            &CreateInterface::default(),
            |_| false,
        )
        .expect("eni");
        assert_eq!(eni.private_ip, Ipv4Addr::new(10, 0, 1, 4));
        assert_eq!(eni.groups, vec![groups[0].id.clone()]);
        assert!(eni.id.as_str().starts_with("eni-"));
        assert_eq!(subnet.available_ip_address_count(), 250);
        let back: NetworkInterface =
            serde_json::from_str(&serde_json::to_string(&eni).expect("json")).expect("parse");
        assert_eq!(back, eni);
        delete_network_interface(&mut subnet, &eni).expect("delete");
        assert_eq!(subnet.available_ip_address_count(), 251);
    }

    #[test]
    fn create_checks_requested_address_and_groups() {
        let mut rng = StdRng::seed_from_u64(5);
        let (mut subnet, groups) = setup(&mut rng);
        let ask = |ip: Option<Ipv4Addr>, groups: Vec<SecurityGroupId>| CreateInterface {
            private_ip: ip,
            groups,
            description: "d".into(),
        };
        let web = groups[1].id.clone();
        let eni = create_network_interface(
            &mut rng,
            &mut subnet,
            &groups,
            &ask(
                Some(Ipv4Addr::new(10, 0, 1, 50)),
                vec![web.clone(), web.clone()],
            ),
            |_| false,
        )
        .expect("eni");
        assert_eq!(eni.private_ip, Ipv4Addr::new(10, 0, 1, 50));
        assert_eq!(eni.groups, vec![web.clone()]);
        let before = subnet.clone();
        let mut try_create = |req: CreateInterface| {
            create_network_interface(&mut rng, &mut subnet, &groups, &req, |_| false)
                .map_err(|e| e.code())
        };
        assert_eq!(
            try_create(ask(Some(Ipv4Addr::new(10, 0, 1, 50)), vec![])).err(),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            try_create(ask(Some(Ipv4Addr::new(10, 0, 1, 1)), vec![])).err(),
            Some("InvalidParameterValue")
        );
        assert_eq!(
            try_create(ask(
                None,
                vec![SecurityGroupId::new_unchecked("sg-1a2b3c4d")]
            ))
            .err(),
            Some("InvalidGroup.NotFound")
        );
        let six: Vec<_> = (0..6)
            .map(|i| SecurityGroupId::new_unchecked(format!("sg-0000000{i}")))
            .collect();
        assert_eq!(
            try_create(ask(None, six)).err(),
            Some("SecurityGroupsPerInterfaceLimitExceeded")
        );
        assert_eq!(
            subnet, before,
            "failed creations leave the subnet unchanged"
        );
        let mut rng2 = StdRng::seed_from_u64(9);
        let other_vpc = VpcId::generate(&mut rng2);
        let other_vpc_group = default_security_group(&mut rng2, &other_vpc);
        let mut all = groups.clone();
        all.push(other_vpc_group.clone());
        assert_eq!(
            create_network_interface(
                &mut rng,
                &mut subnet,
                &all,
                &ask(None, vec![other_vpc_group.id.clone()]),
                |_| false
            )
            .map_err(|e| e.code())
            .err(),
            Some("InvalidParameter")
        );
    }

    #[test]
    fn attached_interfaces_cannot_be_deleted() {
        let mut rng = StdRng::seed_from_u64(6);
        let (mut subnet, groups) = setup(&mut rng);
        let mut eni = create_network_interface(
            &mut rng,
            &mut subnet,
            &groups,
            &CreateInterface::default(),
            |_| false,
        )
        .expect("eni");
        eni.status = InterfaceStatus::InUse;
        assert_eq!(
            delete_network_interface(&mut subnet, &eni).map_err(|e| e.code()),
            Err("InvalidNetworkInterface.InUse")
        );
        assert!(subnet.addresses.is_allocated(eni.private_ip));
    }

    #[test]
    fn effective_rules_are_the_union_without_repeats() {
        let mut rng = StdRng::seed_from_u64(8);
        let (mut subnet, groups) = setup(&mut rng);
        let eni = create_network_interface(
            &mut rng,
            &mut subnet,
            &groups,
            &CreateInterface {
                groups: vec![groups[0].id.clone(), groups[1].id.clone()],
                ..CreateInterface::default()
            },
            |_| false,
        )
        .expect("eni");
        let rules = effective_rules(&eni, &groups);
        // default: ingress from itself + egress all; web: egress all (same rule as default's).
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().any(|r| r.direction == Direction::Ingress
            && r.peer == Peer::Group(groups[0].id.clone())
            && r.protocol == Protocol::All));
        assert!(rules.iter().any(|r| r.direction == Direction::Egress));
    }
}
