//! The network model: the records operators create through the EC2 API, with AWS's shapes.
//!
//! These types are shared by the allocators, the security-group rules and the flow compiler.

use std::fmt;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

macro_rules! resource_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id's prefix, as AWS writes it.
            pub const PREFIX: &'static str = $prefix;

            /// Wrap an id string without checking it (ids read back from storage).
            pub fn new_unchecked(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

resource_id!(
    /// A VPC id: `vpc-` and 17 hex digits.
    VpcId, "vpc-"
);
resource_id!(
    /// A subnet id: `subnet-` and 17 hex digits.
    SubnetId, "subnet-"
);
resource_id!(
    /// A security group id: `sg-` and 17 hex digits.
    SecurityGroupId, "sg-"
);
resource_id!(
    /// A security group rule id: `sgr-` and 17 hex digits.
    SecurityGroupRuleId, "sgr-"
);
resource_id!(
    /// A network interface id: `eni-` and 17 hex digits.
    NetworkInterfaceId, "eni-"
);

/// Direction of a security group rule, seen from the interface the group protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic arriving at the interface.
    Ingress,
    /// Traffic leaving the interface.
    Egress,
}

/// An inclusive range of TCP or UDP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (>= `from`).
    pub to: u16,
}

/// What a rule's protocol matches, in AWS's terms (`IpProtocol`, `FromPort`, `ToPort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "lowercase")]
pub enum Protocol {
    /// `-1`: every protocol and port.
    All,
    /// TCP (6) on a port range.
    Tcp(PortRange),
    /// UDP (17) on a port range.
    Udp(PortRange),
    /// ICMP (1); `None` type or code means any (AWS's `-1`).
    Icmp {
        /// ICMP type, or any.
        icmp_type: Option<u8>,
        /// ICMP code, or any.
        code: Option<u8>,
    },
    /// Any other IP protocol number, all of its traffic.
    Number(u8),
}

/// The other end of a rule: a CIDR block or the members of a security group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// An IPv4 CIDR block (`CidrIp`).
    Cidr(Ipv4Network),
    /// The interfaces in a security group (`UserIdGroupPairs`).
    Group(SecurityGroupId),
}

/// One security group rule. Rules only allow; everything else is denied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// Rule id (`sgr-...`).
    pub id: SecurityGroupRuleId,
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol and ports.
    pub protocol: Protocol,
    /// Source (ingress) or destination (egress).
    pub peer: Peer,
    /// Optional description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A security group: a named set of allow rules that interfaces belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Group id (`sg-...`).
    pub id: SecurityGroupId,
    /// The VPC the group belongs to.
    pub vpc_id: VpcId,
    /// Name, unique within the VPC.
    pub name: String,
    /// Description.
    pub description: String,
    /// Ingress and egress rules.
    pub rules: Vec<SecurityGroupRule>,
    /// Tags (key, value), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The private address of an interface, as used by the compiler.
pub type PrivateIp = Ipv4Addr;
