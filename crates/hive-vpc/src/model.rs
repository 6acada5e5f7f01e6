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

impl MacAddr {
    /// Whether the locally administered bit is set (addresses Hive makes up itself).
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Whether this is a unicast (not group) address.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }
}

impl std::str::FromStr for MacAddr {
    type Err = crate::error::VpcError;

    /// Six two-digit hex bytes separated by colons, e.g. `02:1a:2b:3c:4d:5e`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || crate::error::VpcError::invalid("macAddress", s, "Invalid MAC address.");
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self(bytes))
    }
}

/// Lifecycle state of a VPC (`pending` | `available`), as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VpcState {
    /// Being set up.
    Pending,
    /// Ready for use.
    Available,
}

/// Lifecycle state of a subnet (`pending` | `available`), as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubnetState {
    /// Being set up.
    Pending,
    /// Ready for use.
    Available,
}

/// Status of a network interface (`available` | `in-use`), as EC2 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterfaceStatus {
    /// Not attached to an instance.
    Available,
    /// Attached (bound to a switch port).
    InUse,
}

fn default_true() -> bool {
    true
}

/// A VPC: an isolated network with one or more IPv4 blocks and its own VLAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// VPC id (`vpc-...`).
    pub id: VpcId,
    /// The primary IPv4 block (/16 to /28).
    pub cidr_block: Ipv4Network,
    /// Secondary IPv4 blocks, in association order; none overlaps another block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_cidr_blocks: Vec<Ipv4Network>,
    /// The VLAN that carries this VPC on the bridge: 1 for the default VPC, else 2..=4094.
    pub vlan: u16,
    /// Whether this is the default VPC (`isDefault`).
    pub is_default: bool,
    /// Lifecycle state.
    pub state: VpcState,
    /// Tags (key, value), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// `enableDnsSupport` attribute (AWS default: true).
    #[serde(default = "default_true")]
    pub enable_dns_support: bool,
    /// `enableDnsHostnames` attribute (AWS default: true for the default VPC, else false).
    #[serde(default)]
    pub enable_dns_hostnames: bool,
}

impl Vpc {
    /// A new available VPC with AWS's attribute defaults.
    pub fn new(id: VpcId, cidr_block: Ipv4Network, vlan: u16, is_default: bool) -> Self {
        Self {
            id,
            cidr_block,
            secondary_cidr_blocks: Vec::new(),
            vlan,
            is_default,
            state: VpcState::Available,
            tags: Vec::new(),
            enable_dns_support: true,
            enable_dns_hostnames: is_default,
        }
    }

    /// Every block of the VPC, primary first.
    pub fn cidr_blocks(&self) -> Vec<Ipv4Network> {
        std::iter::once(self.cidr_block)
            .chain(self.secondary_cidr_blocks.iter().copied())
            .collect()
    }

    /// Whether an address lies in one of the VPC's blocks.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.cidr_block.contains(ip) || self.secondary_cidr_blocks.iter().any(|b| b.contains(ip))
    }
}

/// A subnet: a block inside a VPC, in one availability zone, with its address allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// Subnet id (`subnet-...`).
    pub id: SubnetId,
    /// The VPC it belongs to.
    pub vpc_id: VpcId,
    /// Its IPv4 block (/16 to /28, inside one of the VPC's blocks).
    pub cidr_block: Ipv4Network,
    /// Availability zone name.
    pub availability_zone: String,
    /// `mapPublicIpOnLaunch` attribute.
    #[serde(default)]
    pub map_public_ip_on_launch: bool,
    /// Whether this is the default subnet of its zone (`defaultForAz`).
    #[serde(default)]
    pub default_for_az: bool,
    /// Lifecycle state.
    pub state: SubnetState,
    /// Tags (key, value), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Which of its addresses are handed out; always over `cidr_block`.
    pub addresses: crate::ipam::SubnetAddresses,
}

impl Subnet {
    /// A new available subnet with no address handed out yet.
    pub fn new(
        id: SubnetId,
        vpc_id: VpcId,
        cidr_block: Ipv4Network,
        availability_zone: impl Into<String>,
    ) -> Result<Self, crate::error::VpcError> {
        Ok(Self {
            id,
            vpc_id,
            cidr_block,
            availability_zone: availability_zone.into(),
            map_public_ip_on_launch: false,
            default_for_az: false,
            state: SubnetState::Available,
            tags: Vec::new(),
            addresses: crate::ipam::SubnetAddresses::new(cidr_block)?,
        })
    }

    /// AWS's `AvailableIpAddressCount`.
    pub fn available_ip_address_count(&self) -> u32 {
        self.addresses.available()
    }

    /// The gateway (VPC router) address: the first host of the block.
    pub fn gateway(&self) -> Ipv4Addr {
        self.addresses.gateway()
    }
}

/// A network interface (ENI): one private address in a subnet, a MAC, and its groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface id (`eni-...`).
    pub id: NetworkInterfaceId,
    /// The subnet its address comes from.
    pub subnet_id: SubnetId,
    /// The subnet's VPC.
    pub vpc_id: VpcId,
    /// The subnet's availability zone.
    #[serde(default)]
    pub availability_zone: String,
    /// Primary private IPv4 address.
    pub private_ip: PrivateIp,
    /// Locally administered unicast MAC, unique in the cluster.
    pub mac: MacAddr,
    /// Security groups (1 to 5, same VPC); the interface gets the union of their rules.
    pub groups: Vec<SecurityGroupId>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Tags (key, value), in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Whether it is attached.
    pub status: InterfaceStatus,
    /// `sourceDestCheck`: traffic must come from / go to the interface's own address.
    #[serde(default = "default_true")]
    pub source_dest_check: bool,
}
