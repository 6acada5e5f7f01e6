//! Security group rules on the wire: `IpPermissions.N` in requests (and the legacy top-level
//! `CidrIp`/`IpProtocol`/`FromPort`/`ToPort`/`SourceSecurityGroupName` form), and
//! `ipPermissions` / `securityGroupRule` elements in responses.
//!
//! A request's `IpPermission` names several peers (`IpRanges`, `Groups`); hive-vpc takes one
//! rule per peer ([`RuleInput`]), so each permission is split here. A peer group may be named
//! by id or, as the CLI's `--source-group name` sends it, by name within the target group's
//! VPC. IPv6 ranges and prefix lists are refused: Hive's network plane is IPv4 only.

use std::collections::BTreeMap;

use hive_vpc::model::{Direction, Peer, Protocol, SecurityGroup, SecurityGroupRule};
use hive_vpc::security_group::RuleInput;

use crate::error::ApiError;
use crate::wire::query::Params;
use crate::wire::xml::XmlWriter;

/// The peer of one requested rule, before group names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerRef {
    /// `CidrIp`.
    Cidr(String),
    /// `GroupId` of a `UserIdGroupPair`.
    GroupId(String),
    /// `GroupName` of a `UserIdGroupPair` (or `SourceSecurityGroupName`).
    GroupName(String),
}

/// One requested rule: protocol, ports and one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestedRule {
    /// `IpProtocol`.
    pub ip_protocol: String,
    /// `FromPort`.
    pub from_port: Option<i32>,
    /// `ToPort`.
    pub to_port: Option<i32>,
    /// The peer.
    pub peer: PeerRef,
    /// `Description` of the range or pair.
    pub description: Option<String>,
}

impl RequestedRule {
    /// The input hive-vpc validates, with a group name resolved to its id by `resolve`.
    pub fn to_input(
        &self,
        resolve: impl Fn(&str) -> Result<String, ApiError>,
    ) -> Result<RuleInput, ApiError> {
        let (cidr_ip, group_id) = match &self.peer {
            PeerRef::Cidr(c) => (Some(c.clone()), None),
            PeerRef::GroupId(g) => (None, Some(g.clone())),
            PeerRef::GroupName(n) => (None, Some(resolve(n)?)),
        };
        Ok(RuleInput {
            ip_protocol: self.ip_protocol.clone(),
            from_port: self.from_port,
            to_port: self.to_port,
            cidr_ip,
            group_id,
            description: self.description.clone(),
        })
    }
}

fn port(params: &Params, name: &str) -> Result<Option<i32>, ApiError> {
    match params.int(name)? {
        None => Ok(None),
        Some(n) => i32::try_from(n)
            .map(Some)
            .map_err(|_| params.invalid(name, &n.to_string(), "Member must be a 32-bit integer")),
    }
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!("{what} are not supported: Hive security groups are IPv4 only."),
        400,
    )
}

/// The rules a request asks for, from `IpPermissions.N` or the legacy top-level parameters
/// (mixing both is `InvalidParameterCombination`). `own_account` is the only `UserId`
/// accepted in a group pair. Empty when the request names no rule at all.
pub(crate) fn parse_requested(
    params: &Params,
    own_account: &str,
) -> Result<Vec<RequestedRule>, ApiError> {
    let permissions = params.structs("IpPermissions")?;
    let legacy = [
        "CidrIp",
        "IpProtocol",
        "FromPort",
        "ToPort",
        "SourceSecurityGroupName",
    ]
    .into_iter()
    .any(|n| params.optional(n).is_some());
    if !permissions.is_empty() && legacy {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter 'ipPermissions' may not be used in combination with 'cidrIp', \
             'ipProtocol', 'fromPort', 'toPort' or 'sourceSecurityGroupName'",
            400,
        ));
    }
    let mut rules = Vec::new();
    if legacy {
        let ip_protocol = params.optional("IpProtocol").unwrap_or("-1").to_owned();
        let (from_port, to_port) = (port(params, "FromPort")?, port(params, "ToPort")?);
        let peer = match (
            params.optional("CidrIp"),
            params.optional("SourceSecurityGroupName"),
        ) {
            (Some(c), None) => PeerRef::Cidr(c.to_owned()),
            (None, Some(g)) => PeerRef::GroupName(g.to_owned()),
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    "The parameter 'cidrIp' may not be used in combination with \
                     'sourceSecurityGroupName'",
                    400,
                ));
            }
            (None, None) => return Err(params.missing("CidrIp")),
        };
        check_owner(params.optional("SourceSecurityGroupOwnerId"), own_account)?;
        rules.push(RequestedRule {
            ip_protocol,
            from_port,
            to_port,
            peer,
            description: None,
        });
        return Ok(rules);
    }
    for p in permissions {
        let ip_protocol = p.required("IpProtocol")?.to_owned();
        let (from_port, to_port) = (port(&p, "FromPort")?, port(&p, "ToPort")?);
        if !p.structs("Ipv6Ranges")?.is_empty() {
            return Err(unsupported("IPv6 ranges (Ipv6Ranges)"));
        }
        if !p.structs("PrefixListIds")?.is_empty() {
            return Err(unsupported("Prefix lists (PrefixListIds)"));
        }
        let mut peers = Vec::new();
        for range in p.structs("IpRanges")? {
            let cidr = range.required("CidrIp")?.to_owned();
            peers.push((
                PeerRef::Cidr(cidr),
                range.optional("Description").map(str::to_owned),
            ));
        }
        for pair in p.structs("Groups")? {
            check_owner(pair.optional("UserId"), own_account)?;
            if pair.optional("VpcPeeringConnectionId").is_some() {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    "VPC peering connections are not supported by Hive.",
                    400,
                ));
            }
            let peer = match (pair.optional("GroupId"), pair.optional("GroupName")) {
                (Some(id), _) => PeerRef::GroupId(id.to_owned()),
                (None, Some(name)) => PeerRef::GroupName(name.to_owned()),
                (None, None) => return Err(pair.missing("GroupId")),
            };
            peers.push((peer, pair.optional("Description").map(str::to_owned)));
        }
        if peers.is_empty() {
            return Err(ApiError::new(
                "MissingParameter",
                "The request must contain the parameter ipPermissions.ipRanges or \
                 ipPermissions.groups",
                400,
            ));
        }
        for (peer, description) in peers {
            rules.push(RequestedRule {
                ip_protocol: ip_protocol.clone(),
                from_port,
                to_port,
                peer,
                description,
            });
        }
    }
    Ok(rules)
}

fn check_owner(user_id: Option<&str>, own_account: &str) -> Result<(), ApiError> {
    match user_id {
        Some(u) if u != own_account => Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Security groups of other accounts ({}) are not supported by Hive.",
                crate::error::truncate(u, 32)
            ),
            400,
        )),
        _ => Ok(()),
    }
}

/// `ipProtocol`, `fromPort`, `toPort` as EC2 writes them for a protocol. `All` is `-1` with
/// no ports in `ipPermissions` but `-1`/`-1` in `securityGroupRule` (`rule_form`).
pub(crate) fn protocol_fields(
    protocol: &Protocol,
    rule_form: bool,
) -> (String, Option<i32>, Option<i32>) {
    let any = |v: Option<u8>| v.map_or(-1, i32::from);
    match *protocol {
        Protocol::All if rule_form => ("-1".to_owned(), Some(-1), Some(-1)),
        Protocol::All => ("-1".to_owned(), None, None),
        Protocol::Tcp(r) => ("tcp".to_owned(), Some(r.from.into()), Some(r.to.into())),
        Protocol::Udp(r) => ("udp".to_owned(), Some(r.from.into()), Some(r.to.into())),
        Protocol::Icmp { icmp_type, code } => {
            ("icmp".to_owned(), Some(any(icmp_type)), Some(any(code)))
        }
        Protocol::Number(n) if rule_form => (n.to_string(), Some(-1), Some(-1)),
        Protocol::Number(n) => (n.to_string(), None, None),
    }
}

pub(crate) fn write_protocol(w: &mut XmlWriter, protocol: &Protocol, rule_form: bool) {
    let (name, from, to) = protocol_fields(protocol, rule_form);
    w.text("ipProtocol", &name);
    if let Some(from) = from {
        w.display("fromPort", from);
    }
    if let Some(to) = to {
        w.display("toPort", to);
    }
}

/// `<{element}>` with the rules of one direction grouped into `IpPermission`s, as EC2 shows
/// them: one permission per protocol and port range, listing its CIDR ranges and groups.
pub(crate) fn write_ip_permissions<'a>(
    w: &mut XmlWriter,
    element: &str,
    rules: impl IntoIterator<Item = &'a SecurityGroupRule>,
    owner: &str,
) {
    let mut grouped: BTreeMap<Protocol, Vec<&SecurityGroupRule>> = BTreeMap::new();
    for rule in rules {
        grouped.entry(rule.protocol).or_default().push(rule);
    }
    w.list(element, grouped, |w, (protocol, rules)| {
        write_protocol(w, &protocol, false);
        write_permission_peers(w, &rules, owner);
    });
}

fn write_permission_peers(w: &mut XmlWriter, rules: &[&SecurityGroupRule], owner: &str) {
    w.list(
        "groups",
        rules.iter().filter_map(|r| match &r.peer {
            Peer::Group(g) => Some((g, r.description.as_deref())),
            Peer::Cidr(_) => None,
        }),
        |w, (g, description)| {
            w.opt_text("description", description)
                .text("userId", owner)
                .text("groupId", g.as_str());
        },
    );
    w.list(
        "ipRanges",
        rules.iter().filter_map(|r| match &r.peer {
            Peer::Cidr(c) => Some((c, r.description.as_deref())),
            Peer::Group(_) => None,
        }),
        |w, (c, description)| {
            w.text("cidrIp", &c.to_string())
                .opt_text("description", description);
        },
    );
    w.list("ipv6Ranges", std::iter::empty::<()>(), |_, ()| {});
    w.list("prefixListIds", std::iter::empty::<()>(), |_, ()| {});
}

/// `ipPermissions` elements for rules the request named but the group lacks
/// (`unknownIpPermissionSet` of a revoke), one per rule.
pub(crate) fn write_unknown_permissions(
    w: &mut XmlWriter,
    rules: &[hive_vpc::security_group::RuleSpec],
    owner: &str,
) {
    w.list("unknownIpPermissionSet", rules, |w, spec| {
        write_protocol(w, &spec.protocol, false);
        let rule = SecurityGroupRule {
            id: hive_vpc::model::SecurityGroupRuleId::new_unchecked(""),
            direction: spec.direction,
            protocol: spec.protocol,
            peer: spec.peer.clone(),
            description: spec.description.clone(),
        };
        write_permission_peers(w, &[&rule], owner);
    });
}

/// The fields of one `RevokedSecurityGroupRule`.
pub(crate) fn write_revoked_rule(
    w: &mut XmlWriter,
    group: &SecurityGroup,
    rule: &SecurityGroupRule,
) {
    w.text("securityGroupRuleId", rule.id.as_str())
        .text("groupId", group.id.as_str())
        .bool("isEgress", rule.direction == Direction::Egress);
    write_protocol(w, &rule.protocol, true);
    match &rule.peer {
        Peer::Cidr(c) => {
            w.text("cidrIpv4", &c.to_string());
        }
        Peer::Group(g) => {
            w.text("referencedGroupId", g.as_str());
        }
    }
    w.opt_text("description", rule.description.as_deref());
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ec2::test_params as params;
    use crate::wire::query::Dialect;

    #[test]
    fn one_rule_per_peer() {
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22\
             &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16&IpPermissions.1.IpRanges.1.Description=ssh\
             &IpPermissions.1.Groups.1.GroupId=sg-1a2b3c4d\
             &IpPermissions.2.IpProtocol=-1&IpPermissions.2.Groups.1.GroupName=web",
        );
        let rules = parse_requested(&p, "000000000000").expect("valid");
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].peer, PeerRef::Cidr("10.0.0.0/16".into()));
        assert_eq!(rules[0].description.as_deref(), Some("ssh"));
        assert_eq!(rules[1].peer, PeerRef::GroupId("sg-1a2b3c4d".into()));
        assert_eq!(rules[1].from_port, Some(22));
        assert_eq!(rules[2].peer, PeerRef::GroupName("web".into()));
        let input = rules[2]
            .to_input(|n| Ok(format!("sg-for-{n}")))
            .expect("resolved");
        assert_eq!(input.group_id.as_deref(), Some("sg-for-web"));
    }

    #[test]
    fn legacy_parameters() {
        let p = params("IpProtocol=tcp&FromPort=80&ToPort=81&CidrIp=0.0.0.0%2F0");
        let rules = parse_requested(&p, "000000000000").expect("valid");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].to_port, Some(81));
        let p = params("SourceSecurityGroupName=web");
        let rules = parse_requested(&p, "000000000000").expect("valid");
        assert_eq!(rules[0].ip_protocol, "-1");
        assert_eq!(rules[0].peer, PeerRef::GroupName("web".into()));
        let mixed = params("CidrIp=1.0.0.0%2F8&IpPermissions.1.IpProtocol=tcp");
        assert_eq!(
            parse_requested(&mixed, "0").expect_err("mixed").code(),
            "InvalidParameterCombination"
        );
        assert!(
            parse_requested(&params("GroupId=sg-1"), "0")
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn refusals() {
        let v6 = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=%3A%3A%2F0",
        );
        assert_eq!(
            parse_requested(&v6, "0").expect_err("v6").code(),
            "InvalidParameterValue"
        );
        let other = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.Groups.1.GroupId=sg-1&IpPermissions.1.Groups.1.UserId=111111111111",
        );
        assert_eq!(
            parse_requested(&other, "000000000000")
                .expect_err("other account")
                .code(),
            "InvalidParameterValue"
        );
        let no_peer = params("IpPermissions.1.IpProtocol=tcp");
        assert_eq!(
            parse_requested(&no_peer, "0").expect_err("no peer").code(),
            "MissingParameter"
        );
        let no_proto = params("IpPermissions.1.IpRanges.1.CidrIp=1.0.0.0%2F8");
        assert_eq!(
            parse_requested(&no_proto, "0")
                .expect_err("no proto")
                .code(),
            "MissingParameter"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 1000, ..Default::default() })]

        /// Whatever mix of rule parameters a client sends, parsing answers (never panics),
        /// and every rule it accepts names exactly one peer.
        #[test]
        fn parsing_never_panics(
            pairs in proptest::collection::vec((
                proptest::sample::select(vec![
                    "IpPermissions.1.IpProtocol", "IpPermissions.1.FromPort",
                    "IpPermissions.1.ToPort", "IpPermissions.1.IpRanges.1.CidrIp",
                    "IpPermissions.1.Groups.1.GroupId", "IpPermissions.1.Groups.1.GroupName",
                    "IpPermissions.1.Groups.1.UserId", "IpPermissions.2.IpProtocol",
                    "IpPermissions.2.IpRanges.1.CidrIp", "IpPermissions.1.Ipv6Ranges.1.CidrIpv6",
                    "CidrIp", "IpProtocol", "FromPort", "ToPort", "SourceSecurityGroupName",
                ]),
                "[-0-9a-z./]{0,12}",
            ), 0..8)
        ) {
            let params = Params::from_pairs(pairs).with_dialect(Dialect::Ec2);
            if let Ok(rules) = parse_requested(&params, "000000000000") {
                for r in rules {
                    let input = r.to_input(|n| Ok(n.to_owned()));
                    proptest::prop_assert!(input.is_ok());
                }
            }
        }
    }

    #[test]
    fn protocol_forms() {
        assert_eq!(
            protocol_fields(&Protocol::All, false),
            ("-1".into(), None, None)
        );
        assert_eq!(
            protocol_fields(&Protocol::All, true),
            ("-1".into(), Some(-1), Some(-1))
        );
        assert_eq!(
            protocol_fields(
                &Protocol::Icmp {
                    icmp_type: Some(8),
                    code: None
                },
                false
            ),
            ("icmp".into(), Some(8), Some(-1))
        );
    }
}
