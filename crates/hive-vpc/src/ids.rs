//! Resource ids: generation from a caller's RNG and validation of ids that clients send.
//!
//! AWS ids are a prefix (`vpc-`, `subnet-`, `sg-`, `sgr-`, `eni-`) and 17 lowercase hex digits;
//! older resources have 8. Hive generates 17 and accepts both when parsing, so ids copied from
//! AWS documentation and scripts are not refused as malformed.

use rand::RngCore;

use crate::error::{ResourceKind, VpcError};
use crate::model::{NetworkInterfaceId, SecurityGroupId, SecurityGroupRuleId, SubnetId, VpcId};

/// Number of hex digits in the ids Hive generates.
pub const ID_HEX_DIGITS: usize = 17;

/// Number of hex digits in legacy (short) AWS ids, still accepted when parsing.
pub const LEGACY_ID_HEX_DIGITS: usize = 8;

/// 17 lowercase hex digits (68 random bits) from `rng`.
fn random_hex<R: RngCore + ?Sized>(rng: &mut R) -> String {
    let high = u128::from(rng.next_u32() & 0xf);
    let value = (high << 64) | u128::from(rng.next_u64());
    format!("{value:0width$x}", width = ID_HEX_DIGITS)
}

/// Whether `id` is `prefix` followed by 8 or 17 lowercase hex digits.
fn is_well_formed(id: &str, prefix: &str) -> bool {
    match id.strip_prefix(prefix) {
        Some(hex) => {
            (hex.len() == ID_HEX_DIGITS || hex.len() == LEGACY_ID_HEX_DIGITS)
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        None => false,
    }
}

macro_rules! id_functions {
    ($name:ident, $kind:expr) => {
        impl $name {
            /// The kind of resource this id names (for errors).
            pub const KIND: ResourceKind = $kind;

            /// A fresh random id (`prefix` + 17 lowercase hex digits).
            pub fn generate<R: RngCore + ?Sized>(rng: &mut R) -> Self {
                Self::new_unchecked(format!("{}{}", Self::PREFIX, random_hex(rng)))
            }

            /// Check an id a client sent: the prefix and 8 or 17 lowercase hex digits, or
            /// the EC2 `*.Malformed` error.
            pub fn parse(id: &str) -> Result<Self, VpcError> {
                if is_well_formed(id, Self::PREFIX) {
                    Ok(Self::new_unchecked(id))
                } else {
                    Err(VpcError::MalformedId {
                        kind: Self::KIND,
                        prefix: Self::PREFIX,
                        id: id.to_owned(),
                    })
                }
            }

            /// The EC2 `*.NotFound` error for this id.
            pub fn not_found(&self) -> VpcError {
                VpcError::NotFound {
                    kind: Self::KIND,
                    id: self.as_str().to_owned(),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = VpcError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

id_functions!(VpcId, ResourceKind::Vpc);
id_functions!(SubnetId, ResourceKind::Subnet);
id_functions!(SecurityGroupId, ResourceKind::SecurityGroup);
id_functions!(SecurityGroupRuleId, ResourceKind::SecurityGroupRule);
id_functions!(NetworkInterfaceId, ResourceKind::NetworkInterface);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn generated_ids_have_aws_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let vpc = VpcId::generate(&mut rng);
            assert!(vpc.as_str().starts_with("vpc-"));
            assert_eq!(vpc.as_str().len(), 4 + 17);
            assert_eq!(VpcId::parse(vpc.as_str()), Ok(vpc.clone()));
            let sgr = SecurityGroupRuleId::generate(&mut rng);
            assert_eq!(sgr.as_str().len(), 4 + 17);
            assert!(SecurityGroupRuleId::parse(sgr.as_str()).is_ok());
            assert!(SubnetId::generate(&mut rng).as_str().starts_with("subnet-"));
            assert!(
                SecurityGroupId::generate(&mut rng)
                    .as_str()
                    .starts_with("sg-")
            );
            assert!(
                NetworkInterfaceId::generate(&mut rng)
                    .as_str()
                    .starts_with("eni-")
            );
        }
    }

    #[test]
    fn generated_ids_differ() {
        let mut rng = StdRng::seed_from_u64(1);
        let ids: std::collections::HashSet<_> =
            (0..1000).map(|_| SubnetId::generate(&mut rng)).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn parse_accepts_legacy_and_refuses_junk() {
        assert!(VpcId::parse("vpc-1a2b3c4d").is_ok());
        assert!(VpcId::parse("vpc-0123456789abcdef0").is_ok());
        for bad in [
            "",
            "vpc-",
            "vpc-123",
            "vpc-0123456789ABCDEF0",
            "vpc-0123456789abcdefg",
            "subnet-0123456789abcdef0",
            " vpc-1a2b3c4d",
            "vpc-1a2b3c4d ",
            "vpc-1a2b3c4dé",
        ] {
            let e = VpcId::parse(bad).expect_err(bad);
            assert_eq!(e.code(), "InvalidVpcID.Malformed", "{bad}");
        }
        assert_eq!(
            SecurityGroupId::parse("sgx").map_err(|e| e.code()),
            Err("InvalidGroupId.Malformed")
        );
        assert_eq!(
            NetworkInterfaceId::parse("eni-zz").map_err(|e| e.code()),
            Err("InvalidNetworkInterfaceID.Malformed")
        );
        assert_eq!(
            "subnet-1a2b3c4d".parse::<SubnetId>().map(|s| s.to_string()),
            Ok("subnet-1a2b3c4d".to_owned())
        );
    }

    #[test]
    fn not_found_codes() {
        assert_eq!(
            VpcId::new_unchecked("vpc-1a2b3c4d").not_found().code(),
            "InvalidVpcID.NotFound"
        );
        assert_eq!(
            SecurityGroupRuleId::new_unchecked("sgr-1a2b3c4d")
                .not_found()
                .code(),
            "InvalidSecurityGroupRuleId.NotFound"
        );
    }
}
