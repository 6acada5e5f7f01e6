//! The `[vpc]` section of `hive.toml`, with the setup guide's values as defaults.
//!
//! ```toml
//! [vpc]
//! enabled = true
//! bridge_name = "hive-vpc0"
//! default_cidr = "10.0.0.0/16"
//! default_subnet_cidr = "10.0.1.0/24"
//! gateway_ip = "10.0.1.1"
//! nat_enabled = false
//! metadata_enabled = false
//! metadata_ip = "169.254.169.254"
//! ```
//!
//! `nat_enabled` defaults to false: masquerading changes the host's firewall, so an operator
//! turns it on knowingly. `metadata_enabled` defaults to false: the switch is fail-closed, and
//! 169.254.169.254 is reachable only once a metadata service is configured to answer there.
//! [`VpcConfig::validate`] checks what the rest of Hive relies on: the default VPC block obeys
//! the VPC rules, the default subnet obeys the subnet rules inside it, and the gateway is the
//! subnet's first host (the address AWS reserves for the VPC router, so IPAM never hands it out).

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::cidr::{check_subnet_cidr, check_vpc_cidr};
use crate::error::VpcError;

/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_BRIDGE_NAME: usize = 15;

/// Network settings of a Hive node (`[vpc]` in `hive.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VpcConfig {
    /// Whether the network plane runs at all.
    pub enabled: bool,
    /// The OVS bridge Hive owns.
    pub bridge_name: String,
    /// The default VPC's block.
    pub default_cidr: Ipv4Network,
    /// The default VPC's default subnet.
    pub default_subnet_cidr: Ipv4Network,
    /// The default subnet's gateway (host port address): its first host.
    pub gateway_ip: Ipv4Addr,
    /// Masquerade VPC traffic out of the host's default-route interface.
    pub nat_enabled: bool,
    /// Let interfaces reach the instance metadata address.
    pub metadata_enabled: bool,
    /// The instance metadata address.
    pub metadata_ip: Ipv4Addr,
    /// The bridge's Open vSwitch datapath: `system` (kernel module, the default), `netdev`
    /// (userspace, no module needed) or `dummy` (test sandboxes).
    pub datapath_type: String,
}

/// The datapath types `[vpc] datapath_type` accepts.
pub const DATAPATH_TYPES: [&str; 3] = ["system", "netdev", "dummy"];

impl Default for VpcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bridge_name: "hive-vpc0".to_owned(),
            default_cidr: Ipv4Network::new(Ipv4Addr::new(10, 0, 0, 0), 16)
                .expect("16 is a valid prefix"),
            default_subnet_cidr: Ipv4Network::new(Ipv4Addr::new(10, 0, 1, 0), 24)
                .expect("24 is a valid prefix"),
            gateway_ip: Ipv4Addr::new(10, 0, 1, 1),
            nat_enabled: false,
            metadata_enabled: false,
            metadata_ip: Ipv4Addr::new(169, 254, 169, 254),
            datapath_type: "system".to_owned(),
        }
    }
}

impl VpcConfig {
    /// Check the settings agree with each other and with AWS's rules.
    pub fn validate(&self) -> Result<(), VpcError> {
        let bad = |field: &'static str, reason: String| VpcError::InvalidConfig { field, reason };
        let name = &self.bridge_name;
        if name.is_empty()
            || name.len() > MAX_BRIDGE_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad(
                "bridge_name",
                format!("{name:?} must be 1 to 15 characters of [A-Za-z0-9._-]"),
            ));
        }
        if !DATAPATH_TYPES.contains(&self.datapath_type.as_str()) {
            return Err(bad(
                "datapath_type",
                format!("{:?} must be system, netdev or dummy", self.datapath_type),
            ));
        }
        if self.default_cidr.ip() != self.default_cidr.network() {
            return Err(bad(
                "default_cidr",
                format!("{} has host bits set", self.default_cidr),
            ));
        }
        check_vpc_cidr(self.default_cidr).map_err(|e| bad("default_cidr", e.to_string()))?;
        if self.default_subnet_cidr.ip() != self.default_subnet_cidr.network() {
            return Err(bad(
                "default_subnet_cidr",
                format!("{} has host bits set", self.default_subnet_cidr),
            ));
        }
        check_subnet_cidr(&[self.default_cidr], [], self.default_subnet_cidr).map_err(|_| {
            bad(
                "default_subnet_cidr",
                format!(
                    "{} must be a /16 to /28 inside default_cidr {}",
                    self.default_subnet_cidr, self.default_cidr
                ),
            )
        })?;
        let first_host = Ipv4Addr::from(u32::from(self.default_subnet_cidr.network()) + 1);
        if self.gateway_ip != first_host {
            return Err(bad(
                "gateway_ip",
                format!(
                    "{} must be the first host of default_subnet_cidr ({first_host})",
                    self.gateway_ip
                ),
            ));
        }
        if !self.metadata_ip.is_link_local() {
            return Err(bad(
                "metadata_ip",
                format!(
                    "{} must be a link-local address (169.254.0.0/16)",
                    self.metadata_ip
                ),
            ));
        }
        Ok(())
    }

    /// The settings, once [`VpcConfig::validate`] accepts them (handy right after parsing).
    pub fn validated(self) -> Result<Self, VpcError> {
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_guides_and_valid() {
        let c = VpcConfig::default();
        assert!(c.enabled);
        assert_eq!(c.bridge_name, "hive-vpc0");
        assert_eq!(c.default_cidr.to_string(), "10.0.0.0/16");
        assert_eq!(c.default_subnet_cidr.to_string(), "10.0.1.0/24");
        assert_eq!(c.gateway_ip.to_string(), "10.0.1.1");
        assert!(!c.nat_enabled);
        assert!(!c.metadata_enabled);
        assert_eq!(c.metadata_ip.to_string(), "169.254.169.254");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn missing_fields_take_defaults() {
        let c: VpcConfig = serde_json::from_str(r#"{"nat_enabled": true}"#).expect("parse");
        assert!(c.nat_enabled);
        assert_eq!(c.bridge_name, "hive-vpc0");
        let e = serde_json::from_str::<VpcConfig>(r#"{"nat_enable": true}"#);
        assert!(
            e.is_err(),
            "a misspelt key is an error, not silently ignored"
        );
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let field = |json: &str| {
            let c: VpcConfig = serde_json::from_str(json).expect("parse");
            match c.validate() {
                Err(VpcError::InvalidConfig { field, .. }) => field,
                other => panic!("{json}: {other:?}"),
            }
        };
        assert_eq!(field(r#"{"bridge_name": ""}"#), "bridge_name");
        assert_eq!(
            field(r#"{"bridge_name": "a-very-long-bridge-name"}"#),
            "bridge_name"
        );
        assert_eq!(field(r#"{"bridge_name": "br 0"}"#), "bridge_name");
        assert_eq!(field(r#"{"default_cidr": "10.0.0.0/8"}"#), "default_cidr");
        assert_eq!(field(r#"{"default_cidr": "10.0.0.1/16"}"#), "default_cidr");
        assert_eq!(
            field(r#"{"default_subnet_cidr": "10.1.1.0/24"}"#),
            "default_subnet_cidr"
        );
        assert_eq!(
            field(r#"{"default_subnet_cidr": "10.0.1.0/29"}"#),
            "default_subnet_cidr"
        );
        assert_eq!(
            field(r#"{"default_subnet_cidr": "10.0.1.9/24"}"#),
            "default_subnet_cidr"
        );
        assert_eq!(field(r#"{"gateway_ip": "10.0.1.7"}"#), "gateway_ip");
        assert_eq!(field(r#"{"gateway_ip": "10.0.2.1"}"#), "gateway_ip");
        assert_eq!(field(r#"{"metadata_ip": "10.0.0.1"}"#), "metadata_ip");
    }

    #[test]
    fn other_consistent_layouts_are_accepted() {
        let c: VpcConfig = serde_json::from_str(
            r#"{"default_cidr": "172.20.0.0/16", "default_subnet_cidr": "172.20.8.0/22",
                "gateway_ip": "172.20.8.1", "bridge_name": "br-hive"}"#,
        )
        .expect("parse");
        assert_eq!(
            c.validated().map(|c| c.gateway_ip.to_string()),
            Ok("172.20.8.1".into())
        );
    }
}
