//! IPv4 CIDR blocks as clients write them, and AWS's rules for VPC and subnet blocks.
//!
//! - [`parse_cidr`] reads `a.b.c.d/n` with `n` in 0..=32 strictly (no missing prefix, no
//!   leading zeros, no spaces) and returns the canonical block: as AWS documents for
//!   `CreateVpc`, `CreateSubnet` and `CidrIp`, host bits are cleared (`100.68.0.18/18` becomes
//!   `100.68.0.0/18`), so a rule given in either form is the same rule.
//! - VPC blocks are /16 to /28; a VPC has at most [`MAX_CIDR_BLOCKS_PER_VPC`] blocks that do not
//!   overlap, and secondary blocks follow AWS's RFC 1918 table: a block from one private range
//!   (10/8, 172.16/12, 192.168/16, or 198.19/16) may not join a VPC whose primary block is from
//!   another range or public. Ranges that cannot carry VPC traffic at all (0/8, loopback,
//!   link-local with the metadata address, multicast, class E) are refused: a Hive rule, since
//!   Hive's switch uses 169.254.169.254 itself.
//! - Subnet blocks are /16 to /28, inside one of the VPC's blocks (`InvalidSubnet.Range`), and
//!   overlap no sibling (`InvalidSubnet.Conflict`).

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::error::VpcError;

/// Largest VPC or subnet block (shortest prefix).
pub const MIN_PREFIX: u8 = 16;
/// Smallest VPC or subnet block (longest prefix).
pub const MAX_PREFIX: u8 = 28;
/// CIDR blocks per VPC, primary included (AWS's default quota).
pub const MAX_CIDR_BLOCKS_PER_VPC: usize = 5;

const NOT_A_CIDR: &str = "This is not a valid CIDR block.";

/// Parse `a.b.c.d/n` strictly into its canonical block (host bits cleared), naming
/// `parameter` in the error.
pub fn parse_cidr(text: &str, parameter: &'static str) -> Result<Ipv4Network, VpcError> {
    let invalid = || VpcError::invalid(parameter, truncate(text), NOT_A_CIDR);
    let (addr, prefix) = text.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let net = Ipv4Network::new(addr, prefix).map_err(|_| invalid())?;
    Ipv4Network::new(net.network(), prefix).map_err(|_| invalid())
}

/// Keep error messages short whatever a client sends.
fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parse and check the primary block of a new VPC (`CreateVpc` `CidrBlock`).
pub fn parse_vpc_cidr(text: &str) -> Result<Ipv4Network, VpcError> {
    let net = parse_cidr(text, "cidrBlock")?;
    check_vpc_cidr(net)?;
    Ok(net)
}

/// The size and range rules every VPC block obeys.
pub fn check_vpc_cidr(net: Ipv4Network) -> Result<(), VpcError> {
    let range_error = |reason: &str| VpcError::InvalidVpcRange {
        cidr: net.to_string(),
        reason: reason.to_owned(),
    };
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix()) {
        return Err(range_error("CIDR block should be between /16 and /28."));
    }
    let unusable = [
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ];
    if unusable
        .iter()
        .filter_map(|s| s.parse::<Ipv4Network>().ok())
        .any(|special| special.overlaps(net))
    {
        return Err(range_error(
            "The range is reserved (this network, loopback, link-local, multicast).",
        ));
    }
    Ok(())
}

/// The address range classes of AWS's secondary-block restriction table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeClass {
    /// 10.0.0.0/8.
    Private10,
    /// 172.16.0.0/12.
    Private172,
    /// 192.168.0.0/16.
    Private192,
    /// 198.19.0.0/16 (benchmarking range AWS treats like a private one).
    Range198,
    /// Anything else (publicly routable, 100.64.0.0/10, ...).
    Other,
}

impl RangeClass {
    /// The class of a block (blocks of /16 or longer never straddle these ranges).
    pub fn of(net: Ipv4Network) -> Self {
        let classes = [
            ("10.0.0.0/8", Self::Private10),
            ("172.16.0.0/12", Self::Private172),
            ("192.168.0.0/16", Self::Private192),
            ("198.19.0.0/16", Self::Range198),
        ];
        classes
            .iter()
            .find(|(range, _)| {
                range
                    .parse::<Ipv4Network>()
                    .is_ok_and(|r| r.contains(net.network()))
            })
            .map_or(Self::Other, |&(_, class)| class)
    }
}

/// Check a secondary block for a VPC whose current blocks are `existing` (primary first):
/// size and range rules, the block quota, no overlap, and the RFC 1918 table.
pub fn check_secondary_cidr(
    vpc: &str,
    existing: &[Ipv4Network],
    new: Ipv4Network,
) -> Result<(), VpcError> {
    check_vpc_cidr(new)?;
    if existing.len() >= MAX_CIDR_BLOCKS_PER_VPC {
        return Err(VpcError::CidrLimitExceeded {
            vpc: vpc.to_owned(),
            limit: MAX_CIDR_BLOCKS_PER_VPC,
        });
    }
    if let Some(other) = existing.iter().find(|e| e.overlaps(new)) {
        return Err(VpcError::InvalidVpcRange {
            cidr: new.to_string(),
            reason: format!("It overlaps with the VPC's CIDR block '{other}'."),
        });
    }
    if let Some(&primary) = existing.first() {
        let class = RangeClass::of(new);
        if class != RangeClass::Other && class != RangeClass::of(primary) {
            return Err(VpcError::InvalidVpcRange {
                cidr: new.to_string(),
                reason: "The CIDR is restricted. Use a CIDR from the same private address range \
                         as the current VPC CIDR, or use a publicly-routable CIDR."
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// Parse a subnet block (`CreateSubnet` `CidrBlock`) and check it against its VPC's blocks and
/// its sibling subnets.
pub fn parse_subnet_cidr<I>(
    text: &str,
    vpc_blocks: &[Ipv4Network],
    siblings: I,
) -> Result<Ipv4Network, VpcError>
where
    I: IntoIterator<Item = Ipv4Network>,
{
    let net = parse_cidr(text, "cidrBlock")?;
    check_subnet_cidr(vpc_blocks, siblings, net)?;
    Ok(net)
}

/// The subnet rules: /16 to /28, inside one VPC block, overlapping no sibling.
pub fn check_subnet_cidr<I>(
    vpc_blocks: &[Ipv4Network],
    siblings: I,
    net: Ipv4Network,
) -> Result<(), VpcError>
where
    I: IntoIterator<Item = Ipv4Network>,
{
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&net.prefix())
        || !vpc_blocks.iter().any(|b| net.is_subnet_of(*b))
    {
        return Err(VpcError::InvalidSubnetRange(net.to_string()));
    }
    if let Some(existing) = siblings.into_iter().find(|s| s.overlaps(net)) {
        return Err(VpcError::SubnetConflict {
            cidr: net.to_string(),
            existing: existing.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().expect("test CIDR")
    }

    fn code<T>(r: Result<T, VpcError>) -> Result<T, &'static str> {
        r.map_err(|e| e.code())
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(
            parse_cidr("10.0.0.0/16", "cidrBlock"),
            Ok(net("10.0.0.0/16"))
        );
        assert_eq!(parse_cidr("0.0.0.0/0", "cidrIp"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_cidr("10.0.1.7/32", "cidrIp"), Ok(net("10.0.1.7/32")));
        // AWS canonicalises host bits away.
        assert_eq!(
            parse_cidr("10.0.0.5/16", "cidrBlock"),
            Ok(net("10.0.0.0/16"))
        );
        assert_eq!(
            parse_cidr("100.68.0.18/18", "cidrBlock"),
            Ok(net("100.68.0.0/18"))
        );
        assert_eq!(parse_cidr("10.0.1.0/16", "cidrIp"), Ok(net("10.0.0.0/16")));
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/016",
            "10.0.0.0/+6",
            "10.0.0/16",
            "010.0.0.0/16",
            "10.0.0.0/16/1",
            " 10.0.0.0/16",
            "::/0",
            "10.0.0.0/1é",
        ] {
            assert_eq!(
                code(parse_cidr(bad, "cidrBlock")),
                Err("InvalidParameterValue"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_message_names_parameter_and_value() {
        let e = parse_cidr("10.0.0.0/33", "cidrBlock").expect_err("prefix too long");
        assert_eq!(
            e.to_string(),
            "Value (10.0.0.0/33) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        );
    }

    #[test]
    fn vpc_size_rules() {
        assert!(parse_vpc_cidr("10.0.0.0/16").is_ok());
        assert!(parse_vpc_cidr("10.0.0.0/28").is_ok());
        assert!(parse_vpc_cidr("203.0.113.0/24").is_ok());
        assert_eq!(code(parse_vpc_cidr("10.0.0.0/15")), Err("InvalidVpc.Range"));
        assert_eq!(
            code(parse_vpc_cidr("192.168.0.0/8")),
            Err("InvalidVpc.Range")
        );
        assert_eq!(code(parse_vpc_cidr("10.0.0.0/8")), Err("InvalidVpc.Range"));
        assert_eq!(code(parse_vpc_cidr("10.0.0.0/29")), Err("InvalidVpc.Range"));
        assert_eq!(
            code(parse_vpc_cidr("127.0.0.0/16")),
            Err("InvalidVpc.Range")
        );
        assert_eq!(
            code(parse_vpc_cidr("169.254.0.0/16")),
            Err("InvalidVpc.Range")
        );
        assert_eq!(
            code(parse_vpc_cidr("224.0.0.0/16")),
            Err("InvalidVpc.Range")
        );
    }

    #[test]
    fn secondary_blocks_follow_the_rfc1918_table() {
        let ten = [net("10.0.0.0/16")];
        assert!(check_secondary_cidr("vpc-1", &ten, net("10.1.0.0/16")).is_ok());
        assert!(check_secondary_cidr("vpc-1", &ten, net("100.64.0.0/16")).is_ok());
        assert!(check_secondary_cidr("vpc-1", &ten, net("203.0.113.0/24")).is_ok());
        for restricted in ["172.16.0.0/16", "192.168.0.0/16", "198.19.0.0/16"] {
            assert_eq!(
                code(check_secondary_cidr("vpc-1", &ten, net(restricted))),
                Err("InvalidVpc.Range"),
                "{restricted}"
            );
        }
        let public = [net("203.0.113.0/24")];
        for restricted in [
            "10.1.0.0/16",
            "172.16.0.0/16",
            "192.168.0.0/16",
            "198.19.0.0/16",
        ] {
            assert!(check_secondary_cidr("vpc-1", &public, net(restricted)).is_err());
        }
        assert!(check_secondary_cidr("vpc-1", &public, net("198.51.100.0/24")).is_ok());
        let one72 = [net("172.31.0.0/16")];
        assert!(check_secondary_cidr("vpc-1", &one72, net("172.20.0.0/16")).is_ok());
        assert!(check_secondary_cidr("vpc-1", &one72, net("10.0.0.0/16")).is_err());
        let r198 = [net("198.19.0.0/20")];
        assert!(check_secondary_cidr("vpc-1", &r198, net("198.19.16.0/20")).is_ok());
        assert!(check_secondary_cidr("vpc-1", &r198, net("192.168.0.0/20")).is_err());
    }

    #[test]
    fn secondary_blocks_do_not_overlap_and_are_limited() {
        let blocks = [net("10.0.0.0/16")];
        assert_eq!(
            code(check_secondary_cidr("vpc-1", &blocks, net("10.0.128.0/17"))),
            Err("InvalidVpc.Range")
        );
        assert_eq!(
            code(check_secondary_cidr("vpc-1", &blocks, net("10.0.0.0/16"))),
            Err("InvalidVpc.Range")
        );
        let five: Vec<_> = (0..5).map(|i| net(&format!("10.{i}.0.0/16"))).collect();
        assert_eq!(
            code(check_secondary_cidr("vpc-1", &five, net("10.9.0.0/16"))),
            Err("CidrLimitExceeded")
        );
    }

    #[test]
    fn subnet_rules() {
        let vpc = [net("10.0.0.0/16"), net("10.1.0.0/24")];
        let siblings = [net("10.0.1.0/24")];
        assert!(parse_subnet_cidr("10.0.2.0/24", &vpc, siblings).is_ok());
        assert!(parse_subnet_cidr("10.1.0.0/28", &vpc, siblings).is_ok());
        assert!(parse_subnet_cidr("10.0.0.0/16", &vpc, []).is_ok());
        assert_eq!(
            code(parse_subnet_cidr("10.0.1.0/24", &vpc, siblings)),
            Err("InvalidSubnet.Conflict")
        );
        assert_eq!(
            code(parse_subnet_cidr("10.0.0.0/23", &vpc, siblings)),
            Err("InvalidSubnet.Conflict")
        );
        assert_eq!(
            code(parse_subnet_cidr("10.8.0.0/24", &vpc, siblings)),
            Err("InvalidSubnet.Range")
        );
        assert_eq!(
            code(parse_subnet_cidr("10.1.0.0/23", &vpc, siblings)),
            Err("InvalidSubnet.Range"),
            "larger than the secondary block"
        );
        assert_eq!(
            code(parse_subnet_cidr("10.0.1.0/29", &vpc, siblings)),
            Err("InvalidSubnet.Range")
        );
        assert_eq!(
            code(parse_subnet_cidr("10.0.1.8/28", &vpc, siblings)),
            Err("InvalidSubnet.Conflict"),
            "canonicalised to 10.0.1.0/28, inside the sibling"
        );
        assert_eq!(
            parse_subnet_cidr("10.0.3.9/24", &vpc, siblings),
            Ok(net("10.0.3.0/24"))
        );
    }

    #[test]
    fn range_classes() {
        assert_eq!(RangeClass::of(net("10.200.0.0/16")), RangeClass::Private10);
        assert_eq!(RangeClass::of(net("172.31.0.0/16")), RangeClass::Private172);
        assert_eq!(RangeClass::of(net("172.32.0.0/16")), RangeClass::Other);
        assert_eq!(
            RangeClass::of(net("192.168.5.0/24")),
            RangeClass::Private192
        );
        assert_eq!(RangeClass::of(net("198.19.0.0/16")), RangeClass::Range198);
        assert_eq!(RangeClass::of(net("100.64.0.0/16")), RangeClass::Other);
    }
}
