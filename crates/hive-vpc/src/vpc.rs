//! VPC and subnet lifecycles: `CreateVpc`, `AssociateVpcCidrBlock`, `CreateSubnet`, the
//! default network from `hive.toml`, and the checks before `DeleteVpc` / `DeleteSubnet`.
//!
//! Each function takes the current state as values (the VLAN pool, the VPC's subnets, ...) and
//! returns the records to store; state it changes (the VLAN pool, a VPC's blocks) is changed
//! in place and left untouched on error, so the caller commits with compare-and-swap.

use rand::RngCore;

use crate::cidr::{check_secondary_cidr, check_subnet_cidr, parse_cidr, parse_vpc_cidr};
use crate::config::VpcConfig;
use crate::error::VpcError;
use crate::model::{NetworkInterface, SecurityGroup, Subnet, SubnetId, Vpc, VpcId};
use crate::security_group::{DEFAULT_GROUP_NAME, default_security_group};
use crate::vlan::{DEFAULT_VPC_VLAN, VlanPool};

/// A new VPC with its default security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVpc {
    /// The VPC.
    pub vpc: Vpc,
    /// Its default security group.
    pub default_group: SecurityGroup,
}

/// `CreateVpc`: check the block, take a VLAN from `vlans` (`VpcLimitExceeded` when none is
/// left), and make the VPC with its default security group.
pub fn create_vpc<R: RngCore + ?Sized>(
    rng: &mut R,
    cidr_block: &str,
    vlans: &mut VlanPool,
) -> Result<NewVpc, VpcError> {
    let cidr = parse_vpc_cidr(cidr_block)?;
    let vlan = vlans.allocate()?;
    let vpc = Vpc::new(VpcId::generate(rng), cidr, vlan, false);
    let default_group = default_security_group(rng, &vpc.id);
    Ok(NewVpc { vpc, default_group })
}

/// The default network of a node, built from `[vpc]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNetwork {
    /// The default VPC (VLAN 1).
    pub vpc: Vpc,
    /// Its default subnet, default for its zone.
    pub subnet: Subnet,
    /// Its default security group.
    pub default_group: SecurityGroup,
}

/// The default VPC, subnet and group from a validated configuration.
pub fn default_network<R: RngCore + ?Sized>(
    rng: &mut R,
    config: &VpcConfig,
    availability_zone: &str,
) -> Result<DefaultNetwork, VpcError> {
    config.validate()?;
    let vpc = Vpc::new(
        VpcId::generate(rng),
        config.default_cidr,
        DEFAULT_VPC_VLAN,
        true,
    );
    let mut subnet = Subnet::new(
        SubnetId::generate(rng),
        vpc.id.clone(),
        config.default_subnet_cidr,
        availability_zone,
    )?;
    subnet.default_for_az = true;
    subnet.map_public_ip_on_launch = true;
    let default_group = default_security_group(rng, &vpc.id);
    Ok(DefaultNetwork {
        vpc,
        subnet,
        default_group,
    })
}

/// `AssociateVpcCidrBlock`: add a secondary block to `vpc` (AWS's size, overlap, quota and
/// RFC 1918 rules; see [`crate::cidr`]). Returns the block added.
pub fn associate_cidr_block(
    vpc: &mut Vpc,
    cidr_block: &str,
) -> Result<ipnetwork::Ipv4Network, VpcError> {
    let cidr = parse_cidr(cidr_block, "cidrBlock")?;
    check_secondary_cidr(vpc.id.as_str(), &vpc.cidr_blocks(), cidr)?;
    vpc.secondary_cidr_blocks.push(cidr);
    Ok(cidr)
}

/// `DisassociateVpcCidrBlock`: remove a secondary block no subnet uses. The primary block
/// cannot be removed.
pub fn disassociate_cidr_block(
    vpc: &mut Vpc,
    cidr: ipnetwork::Ipv4Network,
    subnets: &[Subnet],
) -> Result<(), VpcError> {
    if cidr == vpc.cidr_block {
        return Err(VpcError::InvalidParameter(format!(
            "The vpc CIDR block {cidr} cannot be disassociated: it is the primary block."
        )));
    }
    let index = vpc
        .secondary_cidr_blocks
        .iter()
        .position(|b| *b == cidr)
        .ok_or_else(|| VpcError::invalid("cidrBlock", cidr.to_string(), "Not associated."))?;
    if let Some(s) = subnets
        .iter()
        .find(|s| s.vpc_id == vpc.id && s.cidr_block.is_subnet_of(cidr))
    {
        return Err(VpcError::DependencyViolation {
            resource: cidr.to_string(),
            dependent: s.id.to_string(),
        });
    }
    vpc.secondary_cidr_blocks.remove(index);
    Ok(())
}

/// `CreateSubnet`: check the block against the VPC and `siblings` (the VPC's subnets) and make
/// the subnet with its empty address state.
pub fn create_subnet<R: RngCore + ?Sized>(
    rng: &mut R,
    vpc: &Vpc,
    siblings: &[Subnet],
    cidr_block: &str,
    availability_zone: &str,
) -> Result<Subnet, VpcError> {
    let cidr = parse_cidr(cidr_block, "cidrBlock")?;
    check_subnet_cidr(
        &vpc.cidr_blocks(),
        siblings
            .iter()
            .filter(|s| s.vpc_id == vpc.id)
            .map(|s| s.cidr_block),
        cidr,
    )?;
    Subnet::new(
        SubnetId::generate(rng),
        vpc.id.clone(),
        cidr,
        availability_zone,
    )
}

/// `DeleteSubnet` check: no interface holds an address in it.
pub fn check_subnet_deletable(subnet: &Subnet) -> Result<(), VpcError> {
    match subnet.addresses.iter_allocated().next() {
        Some(ip) => Err(VpcError::DependencyViolation {
            resource: subnet.id.to_string(),
            dependent: format!("network interface with address {ip}"),
        }),
        None => Ok(()),
    }
}

/// `DeleteVpc` check: no subnet, no interface, and no group but the default one.
pub fn check_vpc_deletable(
    vpc: &Vpc,
    subnets: &[Subnet],
    groups: &[SecurityGroup],
    interfaces: &[NetworkInterface],
) -> Result<(), VpcError> {
    let dependent = subnets
        .iter()
        .filter(|s| s.vpc_id == vpc.id)
        .map(|s| s.id.to_string())
        .chain(
            interfaces
                .iter()
                .filter(|i| i.vpc_id == vpc.id)
                .map(|i| i.id.to_string()),
        )
        .chain(
            groups
                .iter()
                .filter(|g| g.vpc_id == vpc.id && g.name != DEFAULT_GROUP_NAME)
                .map(|g| g.id.to_string()),
        )
        .next();
    match dependent {
        Some(dependent) => Err(VpcError::DependencyViolation {
            resource: vpc.id.to_string(),
            dependent,
        }),
        None => Ok(()),
    }
}

/// `DeleteVpc` once [`check_vpc_deletable`] passed: give the VLAN back (the default VPC's VLAN
/// 1 is not in the pool).
pub fn release_vpc(vpc: &Vpc, vlans: &mut VlanPool) -> Result<(), VpcError> {
    if vpc.vlan == DEFAULT_VPC_VLAN {
        return Ok(());
    }
    vlans.release(vpc.vlan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eni::{CreateInterface, create_network_interface};
    use crate::model::VpcState;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn code<T: std::fmt::Debug>(r: Result<T, VpcError>) -> &'static str {
        r.expect_err("should fail").code()
    }

    #[test]
    fn create_vpc_takes_vlans_and_makes_default_group() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut vlans = VlanPool::new();
        let a = create_vpc(&mut rng, "10.1.0.0/16", &mut vlans).expect("vpc");
        let b = create_vpc(&mut rng, "10.1.0.0/16", &mut vlans).expect("same block is fine");
        assert_eq!((a.vpc.vlan, b.vpc.vlan), (2, 3));
        assert!(!a.vpc.is_default);
        assert_eq!(a.vpc.state, VpcState::Available);
        assert!(a.vpc.enable_dns_support && !a.vpc.enable_dns_hostnames);
        assert_eq!(a.default_group.vpc_id, a.vpc.id);
        assert_eq!(a.default_group.name, "default");
        let before = vlans.clone();
        assert_eq!(
            code(create_vpc(&mut rng, "10.0.0.0/8", &mut vlans)),
            "InvalidVpc.Range"
        );
        assert_eq!(
            code(create_vpc(&mut rng, "10.0.0.0/33", &mut vlans)),
            "InvalidParameterValue"
        );
        assert_eq!(vlans, before, "a refused VPC takes no VLAN");
        release_vpc(&a.vpc, &mut vlans).expect("release");
        let c = create_vpc(&mut rng, "10.2.0.9/16", &mut vlans).expect("vpc");
        assert_eq!(
            c.vpc.cidr_block.to_string(),
            "10.2.0.0/16",
            "canonical form stored"
        );
        assert_eq!(c.vpc.vlan, 2, "released VLAN is reused");
        let json = serde_json::to_string(&c.vpc).expect("json");
        assert_eq!(serde_json::from_str::<Vpc>(&json).expect("parse"), c.vpc);
    }

    #[test]
    fn default_network_follows_config() {
        let mut rng = StdRng::seed_from_u64(2);
        let n = default_network(&mut rng, &VpcConfig::default(), "hive-1a").expect("default");
        assert_eq!(n.vpc.vlan, 1);
        assert!(n.vpc.is_default && n.vpc.enable_dns_hostnames);
        assert_eq!(n.vpc.cidr_block.to_string(), "10.0.0.0/16");
        assert_eq!(n.subnet.cidr_block.to_string(), "10.0.1.0/24");
        assert_eq!(n.subnet.gateway().to_string(), "10.0.1.1");
        assert_eq!(n.subnet.available_ip_address_count(), 251);
        assert!(n.subnet.default_for_az);
        let json = serde_json::to_string(&n.subnet).expect("json");
        assert_eq!(
            serde_json::from_str::<Subnet>(&json).expect("parse"),
            n.subnet
        );
        let mut vlans = VlanPool::new();
        release_vpc(&n.vpc, &mut vlans).expect("VLAN 1 is not pooled");
        let bad = VpcConfig {
            gateway_ip: "10.0.1.9".parse().expect("ip"),
            ..VpcConfig::default()
        };
        assert_eq!(
            code(default_network(&mut rng, &bad, "hive-1a")),
            "InvalidConfiguration"
        );
    }

    #[test]
    fn secondary_blocks_and_subnets() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut vlans = VlanPool::new();
        let mut vpc = create_vpc(&mut rng, "10.0.0.0/16", &mut vlans)
            .expect("vpc")
            .vpc;
        assert_eq!(
            code(associate_cidr_block(&mut vpc, "192.168.0.0/16")),
            "InvalidVpc.Range"
        );
        assert_eq!(
            code(associate_cidr_block(&mut vpc, "10.0.5.0/24")),
            "InvalidVpc.Range"
        );
        associate_cidr_block(&mut vpc, "10.1.0.0/16").expect("secondary");
        let a = create_subnet(&mut rng, &vpc, &[], "10.0.1.0/24", "hive-1a").expect("a");
        let b = create_subnet(
            &mut rng,
            &vpc,
            std::slice::from_ref(&a),
            "10.1.0.0/20",
            "hive-1a",
        )
        .expect("b in the secondary block");
        let siblings = [a.clone(), b.clone()];
        assert_eq!(
            code(create_subnet(
                &mut rng,
                &vpc,
                &siblings,
                "10.0.1.128/25",
                "z"
            )),
            "InvalidSubnet.Conflict"
        );
        assert_eq!(
            code(create_subnet(&mut rng, &vpc, &siblings, "10.2.0.0/24", "z")),
            "InvalidSubnet.Range"
        );
        // A subnet of another VPC with the same block is no conflict.
        let other = create_vpc(&mut rng, "10.0.0.0/16", &mut vlans)
            .expect("vpc")
            .vpc;
        assert!(create_subnet(&mut rng, &other, &siblings, "10.0.1.0/24", "z").is_ok());
        let secondary: ipnetwork::Ipv4Network = "10.1.0.0/16".parse().expect("cidr");
        assert_eq!(
            code(disassociate_cidr_block(&mut vpc, secondary, &siblings)),
            "DependencyViolation"
        );
        let primary = vpc.cidr_block;
        assert_eq!(
            code(disassociate_cidr_block(&mut vpc, primary, &[])),
            "InvalidParameter"
        );
        disassociate_cidr_block(&mut vpc, secondary, &[a]).expect("unused now");
        assert!(vpc.secondary_cidr_blocks.is_empty());
    }

    #[test]
    fn deletion_checks() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut vlans = VlanPool::new();
        let NewVpc { vpc, default_group } =
            create_vpc(&mut rng, "10.0.0.0/16", &mut vlans).expect("vpc");
        assert!(check_vpc_deletable(&vpc, &[], std::slice::from_ref(&default_group), &[]).is_ok());
        let mut subnet = create_subnet(&mut rng, &vpc, &[], "10.0.1.0/24", "z").expect("subnet");
        assert!(check_subnet_deletable(&subnet).is_ok());
        assert_eq!(
            code(check_vpc_deletable(
                &vpc,
                std::slice::from_ref(&subnet),
                &[],
                &[]
            )),
            "DependencyViolation"
        );
        let groups = [default_group];
        let eni = create_network_interface(
            &mut rng,
            &mut subnet,
            &groups,
            &CreateInterface::default(),
            |_| false,
        )
        .expect("eni");
        assert_eq!(code(check_subnet_deletable(&subnet)), "DependencyViolation");
        assert_eq!(
            code(check_vpc_deletable(
                &vpc,
                &[],
                &groups,
                std::slice::from_ref(&eni)
            )),
            "DependencyViolation"
        );
        assert_eq!(
            code(crate::security_group::check_group_deletable(
                &crate::model::SecurityGroup {
                    name: "x".into(),
                    ..groups[0].clone()
                },
                &[],
                std::slice::from_ref(&eni)
            )),
            "DependencyViolation",
            "a group used by an interface cannot be deleted"
        );
    }
}
