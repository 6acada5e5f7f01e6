//! EC2 XML for Hive's network records: `vpc`, `subnet`, `securityGroupInfo` items and
//! `networkInterface`, with the element names of botocore's EC2 model (lower camel case,
//! `item` lists, `tagSet`).
//!
//! Fields AWS always shows but Hive has no notion of (DHCP options, tenancy, IPv6 sets) carry
//! AWS's defaults, so scripts that read them keep working.

use std::net::Ipv4Addr;

use hive_vpc::model::{
    Direction, InterfaceStatus, NetworkInterface, Peer, SecurityGroup, SecurityGroupId,
    SecurityGroupRule, Subnet, SubnetState, Vpc, VpcState,
};

use super::permissions::{write_ip_permissions, write_protocol};
use crate::wire::xml::XmlWriter;

/// Where a response is written for: the caller's account (`ownerId`) and the region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The 12-digit account id.
    pub account: &'a str,
    /// The region name.
    pub region: &'a str,
}

impl Scope<'_> {
    /// `arn:aws:ec2:<region>:<account>:<kind>/<id>`.
    pub fn arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:ec2:{}:{}:{kind}/{id}", self.region, self.account)
    }
}

/// `<tagSet>` with `key`/`value` items.
pub(crate) fn write_tags(w: &mut XmlWriter, element: &str, tags: &[(String, String)]) {
    w.list(element, tags, |w, (k, v)| {
        w.text("key", k).text("value", v);
    });
}

/// 17 hex digits derived from a text (FNV-1a, 64 bits, plus a nibble of a second round): a
/// stable association id for a VPC's CIDR block, which Hive does not store separately.
fn derived_hex(text: &str) -> String {
    let fnv = |seed: u64| {
        text.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let high = fnv(0x84222325_cbf29ce4) & 0xf;
    format!("{high:x}{:016x}", fnv(0xcbf2_9ce4_8422_2325))
}

fn vpc_state(state: VpcState) -> &'static str {
    match state {
        VpcState::Pending => "pending",
        VpcState::Available => "available",
    }
}

/// The fields of a `Vpc`.
pub(crate) fn write_vpc(w: &mut XmlWriter, vpc: &Vpc, scope: Scope<'_>) {
    w.text("vpcId", vpc.id.as_str())
        .text("ownerId", scope.account)
        .text("state", vpc_state(vpc.state))
        .text("cidrBlock", &vpc.cidr_block.to_string())
        .list("cidrBlockAssociationSet", vpc.cidr_blocks(), |w, block| {
            let id = derived_hex(&format!("{}/{block}", vpc.id));
            w.text("associationId", &format!("vpc-cidr-assoc-{id}"))
                .text("cidrBlock", &block.to_string())
                .node("cidrBlockState", |w| {
                    w.text("state", "associated");
                });
        })
        .list(
            "ipv6CidrBlockAssociationSet",
            std::iter::empty::<()>(),
            |_, ()| {},
        )
        .text("dhcpOptionsId", "default")
        .text("instanceTenancy", "default")
        .bool("isDefault", vpc.is_default)
        .node("blockPublicAccessStates", |w| {
            w.text("internetGatewayBlockMode", "off");
        });
    write_tags(w, "tagSet", &vpc.tags);
}

/// The availability zone id AWS pairs with a zone name (`us-east-1a` is `use1-az1`).
pub(crate) fn zone_id(zone: &str) -> String {
    let mut parts = zone.split('-');
    let (Some(area), Some(direction), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return zone.to_owned();
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let letter = rest.chars().find(char::is_ascii_alphabetic).unwrap_or('a');
    let index = u32::from(letter).saturating_sub(u32::from('a')) + 1;
    let initial = direction.chars().next().unwrap_or('x');
    format!("{area}{initial}{digits}-az{index}")
}

/// The fields of a `Subnet`.
pub(crate) fn write_subnet(w: &mut XmlWriter, subnet: &Subnet, scope: Scope<'_>) {
    let state = match subnet.state {
        SubnetState::Pending => "pending",
        SubnetState::Available => "available",
    };
    w.text("subnetId", subnet.id.as_str())
        .text("subnetArn", &scope.arn("subnet", subnet.id.as_str()))
        .text("state", state)
        .text("vpcId", subnet.vpc_id.as_str())
        .text("cidrBlock", &subnet.cidr_block.to_string())
        .list(
            "ipv6CidrBlockAssociationSet",
            std::iter::empty::<()>(),
            |_, ()| {},
        )
        .display(
            "availableIpAddressCount",
            subnet.available_ip_address_count(),
        )
        .text("availabilityZone", &subnet.availability_zone)
        .text("availabilityZoneId", &zone_id(&subnet.availability_zone))
        .bool("defaultForAz", subnet.default_for_az)
        .bool("mapPublicIpOnLaunch", subnet.map_public_ip_on_launch)
        .bool("mapCustomerOwnedIpOnLaunch", false)
        .text("ownerId", scope.account)
        .bool("assignIpv6AddressOnCreation", false)
        .bool("ipv6Native", false)
        .bool("enableDns64", false)
        .node("privateDnsNameOptionsOnLaunch", |w| {
            w.text("hostnameType", "ip-name")
                .bool("enableResourceNameDnsARecord", false)
                .bool("enableResourceNameDnsAAAARecord", false);
        })
        .node("blockPublicAccessStates", |w| {
            w.text("internetGatewayBlockMode", "off");
        });
    write_tags(w, "tagSet", &subnet.tags);
}

/// The fields of a `SecurityGroup` (`securityGroupInfo` item).
pub(crate) fn write_security_group(w: &mut XmlWriter, group: &SecurityGroup, scope: Scope<'_>) {
    w.text("ownerId", scope.account)
        .text("groupId", group.id.as_str())
        .text("groupName", &group.name)
        .text("groupDescription", &group.description)
        .text("vpcId", group.vpc_id.as_str())
        .text(
            "securityGroupArn",
            &scope.arn("security-group", group.id.as_str()),
        );
    write_ip_permissions(
        w,
        "ipPermissions",
        group
            .rules
            .iter()
            .filter(|r| r.direction == Direction::Ingress),
        scope.account,
    );
    write_ip_permissions(
        w,
        "ipPermissionsEgress",
        group
            .rules
            .iter()
            .filter(|r| r.direction == Direction::Egress),
        scope.account,
    );
    write_tags(w, "tagSet", &group.tags);
}

/// The private DNS name EC2 gives an address: `ip-10-0-1-5.ec2.internal` in us-east-1,
/// `ip-10-0-1-5.<region>.compute.internal` elsewhere.
pub(crate) fn private_dns_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ip-{a}-{b}-{c}-{d}.ec2.internal")
    } else {
        format!("ip-{a}-{b}-{c}-{d}.{region}.compute.internal")
    }
}

/// The fields of a `NetworkInterface`; `group_name` names each of its groups.
pub(crate) fn write_interface(
    w: &mut XmlWriter,
    eni: &NetworkInterface,
    scope: Scope<'_>,
    group_name: &dyn Fn(&SecurityGroupId) -> Option<String>,
) {
    let status = match eni.status {
        InterfaceStatus::Available => "available",
        InterfaceStatus::InUse => "in-use",
    };
    let dns = private_dns_name(eni.private_ip, scope.region);
    let ip = eni.private_ip.to_string();
    w.text("networkInterfaceId", eni.id.as_str())
        .text("subnetId", eni.subnet_id.as_str())
        .text("vpcId", eni.vpc_id.as_str())
        .text("availabilityZone", &eni.availability_zone)
        .text("availabilityZoneId", &zone_id(&eni.availability_zone))
        .text("description", &eni.description)
        .text("ownerId", scope.account)
        .text("requesterId", scope.account)
        .bool("requesterManaged", false)
        .text("status", status)
        .text("macAddress", &eni.mac.to_string())
        .text("privateIpAddress", &ip)
        .text("privateDnsName", &dns)
        .bool("sourceDestCheck", eni.source_dest_check)
        .list("groupSet", &eni.groups, |w, g| {
            w.text("groupId", g.as_str());
            w.opt_text("groupName", group_name(g).as_deref());
        })
        .list("ipv6AddressesSet", std::iter::empty::<()>(), |_, ()| {})
        .list("privateIpAddressesSet", [()], |w, ()| {
            w.text("privateIpAddress", &ip)
                .text("privateDnsName", &dns)
                .bool("primary", true);
        })
        .list("ipv4PrefixSet", std::iter::empty::<()>(), |_, ()| {})
        .list("ipv6PrefixSet", std::iter::empty::<()>(), |_, ()| {})
        .text("interfaceType", "interface")
        .bool("denyAllIgwTraffic", false)
        .bool("ipv6Native", false);
    write_tags(w, "tagSet", &eni.tags);
}

/// The fields of one `SecurityGroupRule` (`securityGroupRuleSet` items of Authorize and
/// DescribeSecurityGroupRules).
pub(crate) fn write_rule(
    w: &mut XmlWriter,
    group: &SecurityGroup,
    rule: &SecurityGroupRule,
    scope: Scope<'_>,
) {
    let owner = scope.account;
    w.text("securityGroupRuleId", rule.id.as_str())
        .text("groupId", group.id.as_str())
        .text("groupOwnerId", owner)
        .bool("isEgress", rule.direction == Direction::Egress);
    write_protocol(w, &rule.protocol, true);
    match &rule.peer {
        Peer::Cidr(c) => {
            w.text("cidrIpv4", &c.to_string());
        }
        Peer::Group(g) => {
            w.node("referencedGroupInfo", |w| {
                w.text("groupId", g.as_str()).text("userId", owner);
            });
        }
    }
    w.opt_text("description", rule.description.as_deref())
        .list("tagSet", std::iter::empty::<()>(), |_, ()| {})
        .text(
            "securityGroupRuleArn",
            &scope.arn("security-group-rule", rule.id.as_str()),
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;

    #[test]
    fn zone_ids_follow_aws() {
        assert_eq!(zone_id("us-east-1a"), "use1-az1");
        assert_eq!(zone_id("eu-west-2c"), "euw2-az3");
        assert_eq!(zone_id("local"), "local");
    }

    #[test]
    fn dns_names() {
        let ip = Ipv4Addr::new(10, 0, 1, 5);
        assert_eq!(
            private_dns_name(ip, "us-east-1"),
            "ip-10-0-1-5.ec2.internal"
        );
        assert_eq!(
            private_dns_name(ip, "eu-west-1"),
            "ip-10-0-1-5.eu-west-1.compute.internal"
        );
    }

    #[test]
    fn association_ids_are_stable_and_distinct() {
        assert_eq!(derived_hex("a"), derived_hex("a"));
        assert_ne!(derived_hex("a"), derived_hex("b"));
        assert_eq!(derived_hex("vpc-1/10.0.0.0/16").len(), 17);
    }

    #[test]
    fn tags_are_items() {
        let mut w = XmlWriter::new(Protocol::Ec2);
        write_tags(&mut w, "tagSet", &[("k".into(), "v&".into())]);
        assert_eq!(
            w.finish(),
            "<tagSet><item><key>k</key><value>v&amp;</value></item></tagSet>"
        );
    }
}
