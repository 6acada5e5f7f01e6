//! Security groups with AWS's rules: names, descriptions, the default group, rule input,
//! duplicates, revocation and deletion checks.
//!
//! - Names: 1 to 255 characters of AWS's VPC character set, not starting with `sg-`, unique
//!   per VPC ignoring case; `default` is reserved for the group every VPC is born with.
//! - The default group allows all ingress from its own members and all egress; every other new
//!   group starts with AWS's single egress rule, all traffic to 0.0.0.0/0.
//! - Rule input is AWS's `IpPermission` seen one peer at a time ([`RuleInput`]): `IpProtocol`
//!   `tcp`/`udp`/`icmp`, a number (6, 17 and 1 become tcp, udp and icmp), or `-1`/`all`;
//!   `FromPort`/`ToPort` are a port range for tcp/udp (0..=65535, from <= to), ICMP type and
//!   code for icmp (-1..=255, -1 meaning any; any type needs any code), and ignored otherwise.
//! - Two rules are the same rule when direction, protocol, ports and peer are equal; the
//!   description does not count ([`rule_key`]). Adding an existing rule is
//!   `InvalidPermission.Duplicate`; each added rule gets an `sgr-` id.
//!
//! Functions change a group value in place and leave it untouched on error, so the caller can
//! commit the result with compare-and-swap.

use std::collections::BTreeSet;

use ipnetwork::Ipv4Network;
use rand::RngCore;

use crate::cidr::parse_cidr;
use crate::error::VpcError;
use crate::model::{
    Direction, NetworkInterface, Peer, PortRange, Protocol, SecurityGroup, SecurityGroupId,
    SecurityGroupRule, SecurityGroupRuleId, VpcId,
};

/// The name of every VPC's default group.
pub const DEFAULT_GROUP_NAME: &str = "default";
/// The description AWS gives the default group.
pub const DEFAULT_GROUP_DESCRIPTION: &str = "default VPC security group";
/// Longest group name, group description or rule description.
pub const MAX_TEXT_LEN: usize = 255;
/// Rules per direction in one group (AWS's default quota).
pub const MAX_RULES_PER_DIRECTION: usize = 60;

/// The identity of a rule: direction, protocol with ports, and peer.
pub type RuleKey = (Direction, Protocol, Peer);

/// The identity of a stored rule (its description and id do not count).
pub fn rule_key(rule: &SecurityGroupRule) -> RuleKey {
    (rule.direction, rule.protocol, rule.peer.clone())
}

/// AWS's character set for VPC group names and descriptions:
/// `a-zA-Z0-9`, space and `._-:/()#,@[]+=&;{}!$*`.
fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c)
}

fn check_text(parameter: &'static str, text: &str) -> Result<(), VpcError> {
    let shown = || text.chars().take(MAX_TEXT_LEN).collect::<String>();
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(VpcError::invalid(
            parameter,
            shown(),
            "Maximum length is 255 characters.",
        ));
    }
    if !text.chars().all(allowed_char) {
        return Err(VpcError::invalid(
            parameter,
            shown(),
            "Character sets beyond ASCII are not supported.",
        ));
    }
    Ok(())
}

/// Check a `GroupName` for `CreateSecurityGroup`.
pub fn validate_group_name(name: &str) -> Result<(), VpcError> {
    if name.is_empty() {
        return Err(VpcError::MissingParameter("groupName"));
    }
    check_text("GroupName", name)?;
    if name.starts_with("sg-") {
        return Err(VpcError::invalid(
            "GroupName",
            name,
            "Group names may not be in the format sg-*.",
        ));
    }
    Ok(())
}

/// Check a `GroupDescription` (required, same rules as names).
pub fn validate_group_description(description: &str) -> Result<(), VpcError> {
    if description.is_empty() {
        return Err(VpcError::MissingParameter("groupDescription"));
    }
    check_text("GroupDescription", description)
}

/// Check a rule `Description` (optional, up to 255 characters of the same set).
pub fn validate_rule_description(description: &str) -> Result<(), VpcError> {
    check_text("Description", description)
}

/// One rule as a client writes it (one `IpPermission` with one peer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleInput {
    /// `IpProtocol`: `tcp`, `udp`, `icmp`, `icmpv6`, `-1`, `all`, or a number 0..=255.
    pub ip_protocol: String,
    /// `FromPort` (tcp/udp: first port; icmp: type).
    pub from_port: Option<i32>,
    /// `ToPort` (tcp/udp: last port; icmp: code).
    pub to_port: Option<i32>,
    /// `CidrIp`: an IPv4 block.
    pub cidr_ip: Option<String>,
    /// `GroupId` of a `UserIdGroupPair`: another (or the same) security group.
    pub group_id: Option<String>,
    /// `Description` of the range or pair.
    pub description: Option<String>,
}

/// A validated, normalised rule without an id yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    /// Ingress or egress.
    pub direction: Direction,
    /// Protocol and ports, normalised.
    pub protocol: Protocol,
    /// Source (ingress) or destination (egress).
    pub peer: Peer,
    /// Optional description.
    pub description: Option<String>,
}

impl RuleSpec {
    /// The identity of the rule (see [`rule_key`]).
    pub fn key(&self) -> RuleKey {
        (self.direction, self.protocol, self.peer.clone())
    }

    /// Whether a stored rule is this rule.
    pub fn matches(&self, rule: &SecurityGroupRule) -> bool {
        rule.direction == self.direction && rule.protocol == self.protocol && rule.peer == self.peer
    }

    fn into_rule(self, id: SecurityGroupRuleId) -> SecurityGroupRule {
        SecurityGroupRule {
            id,
            direction: self.direction,
            protocol: self.protocol,
            peer: self.peer,
            description: self.description,
        }
    }
}

/// Parse `IpProtocol` with `FromPort`/`ToPort` into a normalised [`Protocol`].
pub fn parse_protocol(
    ip_protocol: &str,
    from_port: Option<i32>,
    to_port: Option<i32>,
) -> Result<Protocol, VpcError> {
    let shown: String = ip_protocol.chars().take(32).collect();
    let lower = ip_protocol.to_ascii_lowercase();
    let number =
        if lower.is_empty() || lower.len() > 3 || !lower.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            lower.parse::<u8>().ok()
        };
    match (lower.as_str(), number) {
        ("-1" | "all", _) => Ok(Protocol::All),
        ("tcp", _) | (_, Some(6)) => port_range(from_port, to_port).map(Protocol::Tcp),
        ("udp", _) | (_, Some(17)) => port_range(from_port, to_port).map(Protocol::Udp),
        ("icmp", _) | (_, Some(1)) => icmp(from_port, to_port),
        ("icmpv6", _) => Ok(Protocol::Number(58)),
        (_, Some(n)) => Ok(Protocol::Number(n)),
        _ => Err(VpcError::invalid(
            "IpProtocol",
            shown,
            "Unknown protocol. Use tcp, udp, icmp, -1 or a protocol number 0-255.",
        )),
    }
}

fn port_range(from: Option<i32>, to: Option<i32>) -> Result<PortRange, VpcError> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err(VpcError::invalid(
            "FromPort",
            "null",
            "Must specify both from and to ports with TCP/UDP.",
        ));
    };
    let port = |p: i32, parameter| {
        u16::try_from(p)
            .map_err(|_| VpcError::invalid(parameter, p.to_string(), "Invalid TCP/UDP port."))
    };
    let (from, to) = (port(from, "FromPort")?, port(to, "ToPort")?);
    if from > to {
        return Err(VpcError::invalid(
            "ToPort",
            to.to_string(),
            format!("Invalid TCP/UDP port range: from port {from} is greater than to port {to}."),
        ));
    }
    Ok(PortRange { from, to })
}

fn icmp(icmp_type: Option<i32>, code: Option<i32>) -> Result<Protocol, VpcError> {
    let value = |v: Option<i32>, parameter| match v.unwrap_or(-1) {
        -1 => Ok(None),
        v => u8::try_from(v).map(Some).map_err(|_| {
            VpcError::invalid(
                parameter,
                v.to_string(),
                "ICMP type and code are -1 to 255.",
            )
        }),
    };
    let icmp_type = value(icmp_type, "FromPort")?;
    let code = value(code, "ToPort")?;
    if icmp_type.is_none() && code.is_some() {
        return Err(VpcError::invalid(
            "ToPort",
            code.map_or_else(String::new, |c| c.to_string()),
            "If you specify all ICMP types, you must specify all ICMP codes.",
        ));
    }
    Ok(Protocol::Icmp { icmp_type, code })
}

/// Parse one rule for `direction` from a client's input.
pub fn parse_rule(direction: Direction, input: &RuleInput) -> Result<RuleSpec, VpcError> {
    let protocol = parse_protocol(&input.ip_protocol, input.from_port, input.to_port)?;
    let peer = match (&input.cidr_ip, &input.group_id) {
        (Some(cidr), None) => Peer::Cidr(parse_rule_cidr(cidr)?),
        (None, Some(group)) => Peer::Group(SecurityGroupId::parse(group)?),
        (Some(_), Some(_)) => {
            return Err(VpcError::InvalidParameter(
                "A rule has either a CIDR block or a security group as its peer, not both."
                    .to_owned(),
            ));
        }
        (None, None) => {
            return Err(VpcError::MissingParameter("cidrIp or groupId"));
        }
    };
    if let Some(d) = &input.description {
        validate_rule_description(d)?;
    }
    Ok(RuleSpec {
        direction,
        protocol,
        peer,
        description: input.description.clone(),
    })
}

/// A rule's `CidrIp`, canonicalised as AWS does (`10.0.0.5/16` is the rule for `10.0.0.0/16`).
pub fn parse_rule_cidr(text: &str) -> Result<Ipv4Network, VpcError> {
    parse_cidr(text, "cidrIp").map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        VpcError::invalid(
            "cidrIp",
            shown.clone(),
            format!("CIDR block {shown} is malformed"),
        )
    })
}

/// AWS's text for a rule in `InvalidPermission.Duplicate` messages.
pub fn describe_rule(spec: &RuleSpec) -> String {
    let peer = match &spec.peer {
        Peer::Cidr(c) => c.to_string(),
        Peer::Group(g) => g.to_string(),
    };
    let any = |v: Option<u8>| v.map_or(-1, i32::from);
    let what = match spec.protocol {
        Protocol::All => "ALL".to_owned(),
        Protocol::Tcp(r) => format!("TCP, from port: {}, to port: {}", r.from, r.to),
        Protocol::Udp(r) => format!("UDP, from port: {}, to port: {}", r.from, r.to),
        Protocol::Icmp { icmp_type, code } => {
            format!(
                "ICMP, from port: {}, to port: {}",
                any(icmp_type),
                any(code)
            )
        }
        Protocol::Number(n) => n.to_string(),
    };
    format!("peer: {peer}, {what}, ALLOW")
}

fn all_traffic_egress() -> RuleSpec {
    RuleSpec {
        direction: Direction::Egress,
        protocol: Protocol::All,
        peer: Peer::Cidr(
            Ipv4Network::new(std::net::Ipv4Addr::UNSPECIFIED, 0).expect("/0 is valid"),
        ),
        description: None,
    }
}

/// The group every VPC is born with: name `default`; all ingress from its own members; all
/// egress to 0.0.0.0/0.
pub fn default_security_group<R: RngCore + ?Sized>(rng: &mut R, vpc: &VpcId) -> SecurityGroup {
    let id = SecurityGroupId::generate(rng);
    let ingress = RuleSpec {
        direction: Direction::Ingress,
        protocol: Protocol::All,
        peer: Peer::Group(id.clone()),
        description: None,
    };
    let rules = [ingress, all_traffic_egress()]
        .into_iter()
        .map(|s| s.into_rule(SecurityGroupRuleId::generate(rng)))
        .collect();
    SecurityGroup {
        id,
        vpc_id: vpc.clone(),
        name: DEFAULT_GROUP_NAME.to_owned(),
        description: DEFAULT_GROUP_DESCRIPTION.to_owned(),
        rules,
        tags: Vec::new(),
    }
}

/// `CreateSecurityGroup`: check the name and description and their uniqueness among
/// `vpc_groups` (the groups of `vpc`; others are ignored), and return the new group with AWS's
/// default egress rule.
pub fn new_security_group<R: RngCore + ?Sized>(
    rng: &mut R,
    vpc: &VpcId,
    name: &str,
    description: &str,
    vpc_groups: &[SecurityGroup],
) -> Result<SecurityGroup, VpcError> {
    validate_group_name(name)?;
    validate_group_description(description)?;
    if name.eq_ignore_ascii_case(DEFAULT_GROUP_NAME) {
        return Err(VpcError::ReservedGroupName);
    }
    if vpc_groups
        .iter()
        .any(|g| &g.vpc_id == vpc && g.name.eq_ignore_ascii_case(name))
    {
        return Err(VpcError::DuplicateGroup {
            name: name.to_owned(),
            vpc: vpc.to_string(),
        });
    }
    Ok(SecurityGroup {
        id: SecurityGroupId::generate(rng),
        vpc_id: vpc.clone(),
        name: name.to_owned(),
        description: description.to_owned(),
        rules: vec![all_traffic_egress().into_rule(SecurityGroupRuleId::generate(rng))],
        tags: Vec::new(),
    })
}

/// Check that the groups named as peers exist in `known` and belong to `group`'s VPC (a rule
/// may always name its own group).
pub fn check_peer_groups(
    group: &SecurityGroup,
    specs: &[RuleSpec],
    known: &[SecurityGroup],
) -> Result<(), VpcError> {
    for spec in specs {
        let Peer::Group(peer) = &spec.peer else {
            continue;
        };
        if peer == &group.id {
            continue;
        }
        match known.iter().find(|g| &g.id == peer) {
            None => return Err(peer.not_found()),
            Some(g) if g.vpc_id != group.vpc_id => {
                return Err(VpcError::GroupInOtherNetwork(format!(
                    "{} and {}",
                    group.id, peer
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// `AuthorizeSecurityGroupIngress`/`Egress`: add every rule or none. A rule equal to an
/// existing one or to another in the same request is `InvalidPermission.Duplicate`; going over
/// [`MAX_RULES_PER_DIRECTION`] is `RulesPerSecurityGroupLimitExceeded`. Returns the new rules
/// with their `sgr-` ids.
pub fn authorize<R: RngCore + ?Sized>(
    rng: &mut R,
    group: &mut SecurityGroup,
    specs: Vec<RuleSpec>,
) -> Result<Vec<SecurityGroupRule>, VpcError> {
    let mut keys: BTreeSet<RuleKey> = group.rules.iter().map(rule_key).collect();
    for spec in &specs {
        if !keys.insert(spec.key()) {
            return Err(VpcError::DuplicatePermission(describe_rule(spec)));
        }
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        let count = keys.iter().filter(|k| k.0 == direction).count();
        if count > MAX_RULES_PER_DIRECTION {
            return Err(VpcError::RulesPerSecurityGroupLimitExceeded);
        }
    }
    let added: Vec<SecurityGroupRule> = specs
        .into_iter()
        .map(|s| s.into_rule(SecurityGroupRuleId::generate(rng)))
        .collect();
    group.rules.extend(added.iter().cloned());
    Ok(added)
}

/// What a revoke by content did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The rules removed.
    pub revoked: Vec<SecurityGroupRule>,
    /// Requested rules the group did not have (`UnknownIpPermissions`).
    pub unknown: Vec<RuleSpec>,
}

/// `RevokeSecurityGroupIngress`/`Egress` by rule content (description ignored). Rules the
/// group lacks are reported in [`Revoked::unknown`]; when none of them exists the call is
/// `InvalidPermission.NotFound` and the group is unchanged.
pub fn revoke(group: &mut SecurityGroup, specs: &[RuleSpec]) -> Result<Revoked, VpcError> {
    let (found, unknown): (Vec<&RuleSpec>, Vec<&RuleSpec>) = specs
        .iter()
        .partition(|s| group.rules.iter().any(|r| s.matches(r)));
    if found.is_empty() {
        return Err(VpcError::PermissionNotFound);
    }
    let gone: BTreeSet<RuleKey> = found.iter().map(|s| s.key()).collect();
    let (revoked, kept) = std::mem::take(&mut group.rules)
        .into_iter()
        .partition(|r| gone.contains(&rule_key(r)));
    group.rules = kept;
    Ok(Revoked {
        revoked,
        unknown: unknown.into_iter().cloned().collect(),
    })
}

/// Revoke by `SecurityGroupRuleId.N`: every id must name a rule of `direction` in the group
/// (`InvalidSecurityGroupRuleId.NotFound` otherwise, and nothing is removed).
pub fn revoke_by_ids(
    group: &mut SecurityGroup,
    direction: Direction,
    ids: &[SecurityGroupRuleId],
) -> Result<Vec<SecurityGroupRule>, VpcError> {
    if let Some(missing) = ids.iter().find(|id| {
        !group
            .rules
            .iter()
            .any(|r| &r.id == *id && r.direction == direction)
    }) {
        return Err(missing.not_found());
    }
    let (revoked, kept) = std::mem::take(&mut group.rules)
        .into_iter()
        .partition(|r| ids.contains(&r.id));
    group.rules = kept;
    Ok(revoked)
}

/// `DeleteSecurityGroup` checks: the default group cannot be deleted (`CannotDelete`); a group
/// that another group's rules name, or that an interface uses, is a `DependencyViolation`.
pub fn check_group_deletable(
    group: &SecurityGroup,
    all_groups: &[SecurityGroup],
    interfaces: &[NetworkInterface],
) -> Result<(), VpcError> {
    if group.name == DEFAULT_GROUP_NAME {
        return Err(VpcError::CannotDeleteDefaultGroup(group.id.to_string()));
    }
    let referencing = all_groups.iter().find(|other| {
        other.id != group.id
            && other
                .rules
                .iter()
                .any(|r| r.peer == Peer::Group(group.id.clone()))
    });
    if let Some(other) = referencing {
        return Err(VpcError::DependencyViolation {
            resource: group.id.to_string(),
            dependent: other.id.to_string(),
        });
    }
    if let Some(eni) = interfaces.iter().find(|i| i.groups.contains(&group.id)) {
        return Err(VpcError::DependencyViolation {
            resource: group.id.to_string(),
            dependent: eni.id.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn code<T: std::fmt::Debug>(r: Result<T, VpcError>) -> &'static str {
        r.expect_err("should fail").code()
    }

    fn tcp(from: u16, to: u16) -> Protocol {
        Protocol::Tcp(PortRange { from, to })
    }

    fn input(proto: &str, from: Option<i32>, to: Option<i32>, cidr: &str) -> RuleInput {
        RuleInput {
            ip_protocol: proto.to_owned(),
            from_port: from,
            to_port: to,
            cidr_ip: Some(cidr.to_owned()),
            ..RuleInput::default()
        }
    }

    #[test]
    fn protocols_normalise() {
        assert_eq!(parse_protocol("tcp", Some(22), Some(22)), Ok(tcp(22, 22)));
        assert_eq!(parse_protocol("6", Some(22), Some(22)), Ok(tcp(22, 22)));
        assert_eq!(
            parse_protocol("TCP", Some(0), Some(65535)),
            Ok(tcp(0, 65535))
        );
        assert_eq!(
            parse_protocol("17", Some(53), Some(53)),
            Ok(Protocol::Udp(PortRange { from: 53, to: 53 }))
        );
        assert_eq!(
            parse_protocol("1", Some(8), Some(0)),
            Ok(Protocol::Icmp {
                icmp_type: Some(8),
                code: Some(0)
            })
        );
        assert_eq!(
            parse_protocol("icmp", None, None),
            Ok(Protocol::Icmp {
                icmp_type: None,
                code: None
            })
        );
        assert_eq!(
            parse_protocol("icmp", Some(8), Some(-1)),
            Ok(Protocol::Icmp {
                icmp_type: Some(8),
                code: None
            })
        );
        assert_eq!(
            parse_protocol("-1", Some(5), Some(1)),
            Ok(Protocol::All),
            "ports ignored"
        );
        assert_eq!(parse_protocol("all", None, None), Ok(Protocol::All));
        assert_eq!(
            parse_protocol("47", Some(1), Some(2)),
            Ok(Protocol::Number(47))
        );
        assert_eq!(
            parse_protocol("icmpv6", None, None),
            Ok(Protocol::Number(58))
        );
    }

    #[test]
    fn protocol_and_port_errors() {
        for (p, from, to) in [
            ("tcp", None, None),
            ("tcp", Some(22), None),
            ("tcp", Some(-1), Some(-1)),
            ("tcp", Some(0), Some(65536)),
            ("udp", Some(100), Some(99)),
            ("icmp", Some(256), Some(0)),
            ("icmp", Some(-2), Some(0)),
            ("icmp", Some(-1), Some(3)),
            ("icmp", Some(3), Some(300)),
            ("gre", None, None),
            ("256", None, None),
            ("", None, None),
            ("-2", None, None),
            ("+6", Some(1), Some(1)),
        ] {
            assert_eq!(
                code(parse_protocol(p, from, to)),
                "InvalidParameterValue",
                "{p} {from:?} {to:?}"
            );
        }
    }

    #[test]
    fn rule_peers() {
        let r = parse_rule(
            Direction::Ingress,
            &input("tcp", Some(22), Some(22), "0.0.0.0/0"),
        )
        .expect("rule");
        assert_eq!(r.peer, Peer::Cidr("0.0.0.0/0".parse().expect("cidr")));
        assert_eq!(
            parse_rule(
                Direction::Ingress,
                &input("tcp", Some(22), Some(22), "10.0.0.5/16")
            )
            .map(|r| r.peer),
            Ok(Peer::Cidr("10.0.0.0/16".parse().expect("cidr"))),
            "host bits are canonicalised away"
        );
        assert_eq!(
            code(parse_rule(
                Direction::Ingress,
                &input("tcp", Some(22), Some(22), "10.0.0.0/33")
            )),
            "InvalidParameterValue"
        );
        let by_group = RuleInput {
            ip_protocol: "-1".into(),
            group_id: Some("sg-1a2b3c4d".into()),
            ..RuleInput::default()
        };
        assert_eq!(
            parse_rule(Direction::Egress, &by_group).map(|r| r.peer),
            Ok(Peer::Group(SecurityGroupId::new_unchecked("sg-1a2b3c4d")))
        );
        let bad_group = RuleInput {
            group_id: Some("sg-xyz".into()),
            ..by_group.clone()
        };
        assert_eq!(
            code(parse_rule(Direction::Egress, &bad_group)),
            "InvalidGroupId.Malformed"
        );
        let both = RuleInput {
            cidr_ip: Some("0.0.0.0/0".into()),
            ..by_group.clone()
        };
        assert_eq!(
            code(parse_rule(Direction::Egress, &both)),
            "InvalidParameter"
        );
        let neither = RuleInput {
            group_id: None,
            ..by_group
        };
        assert_eq!(
            code(parse_rule(Direction::Egress, &neither)),
            "MissingParameter"
        );
        let bad_desc = RuleInput {
            description: Some("é".into()),
            ..input("-1", None, None, "10.0.0.0/8")
        };
        assert_eq!(
            code(parse_rule(Direction::Egress, &bad_desc)),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn names_and_descriptions() {
        assert!(validate_group_name("web servers (prod) #1").is_ok());
        assert!(validate_group_name(&"a".repeat(255)).is_ok());
        assert_eq!(
            code(validate_group_name(&"a".repeat(256))),
            "InvalidParameterValue"
        );
        assert_eq!(code(validate_group_name("sg-web")), "InvalidParameterValue");
        assert_eq!(code(validate_group_name("wéb")), "InvalidParameterValue");
        assert_eq!(code(validate_group_name("a\nb")), "InvalidParameterValue");
        assert_eq!(code(validate_group_name("")), "MissingParameter");
        assert_eq!(code(validate_group_description("")), "MissingParameter");
        assert!(validate_group_description("Allow SSH: admins only!").is_ok());
        assert_eq!(
            code(validate_group_description("<script>")),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn default_group_has_aws_rules() {
        let mut rng = StdRng::seed_from_u64(1);
        let vpc = VpcId::generate(&mut rng);
        let g = default_security_group(&mut rng, &vpc);
        assert_eq!(g.name, "default");
        assert_eq!(g.description, "default VPC security group");
        assert_eq!(g.rules.len(), 2);
        let ingress = &g.rules[0];
        assert_eq!(
            (ingress.direction, ingress.protocol, &ingress.peer),
            (
                Direction::Ingress,
                Protocol::All,
                &Peer::Group(g.id.clone())
            )
        );
        let egress = &g.rules[1];
        assert_eq!(
            (egress.direction, egress.protocol, egress.peer.to_owned()),
            (
                Direction::Egress,
                Protocol::All,
                Peer::Cidr("0.0.0.0/0".parse().expect("cidr"))
            )
        );
        assert!(g.rules.iter().all(|r| r.id.as_str().starts_with("sgr-")));
        assert_ne!(g.rules[0].id, g.rules[1].id);
    }

    #[test]
    fn create_checks_names_per_vpc() {
        let mut rng = StdRng::seed_from_u64(2);
        let vpc = VpcId::generate(&mut rng);
        let other = VpcId::generate(&mut rng);
        let existing = vec![
            default_security_group(&mut rng, &vpc),
            new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web"),
        ];
        let g = new_security_group(&mut rng, &vpc, "db", "database", &existing).expect("db");
        assert_eq!(g.rules.len(), 1, "only the default egress rule");
        assert_eq!(g.rules[0].direction, Direction::Egress);
        assert_eq!(g.rules[0].protocol, Protocol::All);
        assert_eq!(
            code(new_security_group(
                &mut rng, &vpc, "web", "again", &existing
            )),
            "InvalidGroup.Duplicate"
        );
        assert_eq!(
            code(new_security_group(
                &mut rng, &vpc, "WEB", "again", &existing
            )),
            "InvalidGroup.Duplicate"
        );
        assert!(new_security_group(&mut rng, &other, "web", "other vpc", &existing).is_ok());
        assert_eq!(
            code(new_security_group(&mut rng, &vpc, "default", "d", &[])),
            "InvalidGroup.Reserved"
        );
    }

    fn spec(direction: Direction, protocol: Protocol, cidr: &str) -> RuleSpec {
        RuleSpec {
            direction,
            protocol,
            peer: Peer::Cidr(cidr.parse().expect("cidr")),
            description: None,
        }
    }

    #[test]
    fn duplicates_ignore_description_and_are_atomic() {
        let mut rng = StdRng::seed_from_u64(3);
        let vpc = VpcId::generate(&mut rng);
        let mut g = new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web");
        let ssh = spec(Direction::Ingress, tcp(22, 22), "10.0.0.0/8");
        let added = authorize(&mut rng, &mut g, vec![ssh.clone()]).expect("add");
        assert_eq!(added.len(), 1);
        assert!(added[0].id.as_str().starts_with("sgr-"));
        let described = RuleSpec {
            description: Some("again".into()),
            ..ssh.clone()
        };
        let before = g.clone();
        let http = spec(Direction::Ingress, tcp(80, 80), "0.0.0.0/0");
        let e = authorize(&mut rng, &mut g, vec![http.clone(), described]).expect_err("dup");
        assert_eq!(e.code(), "InvalidPermission.Duplicate");
        assert_eq!(
            e.to_string(),
            "the specified rule \"peer: 10.0.0.0/8, TCP, from port: 22, to port: 22, ALLOW\" already exists"
        );
        assert_eq!(g, before, "nothing added");
        let non_canonical = parse_rule(
            Direction::Ingress,
            &input("tcp", Some(22), Some(22), "10.1.2.3/8"),
        )
        .expect("rule");
        assert_eq!(
            code(authorize(&mut rng, &mut g, vec![non_canonical])),
            "InvalidPermission.Duplicate",
            "10.1.2.3/8 is the rule for 10.0.0.0/8"
        );
        assert_eq!(
            code(authorize(
                &mut rng,
                &mut g,
                vec![http.clone(), http.clone()]
            )),
            "InvalidPermission.Duplicate"
        );
        // Same content in the other direction, or other ports, is another rule.
        let egress_ssh = RuleSpec {
            direction: Direction::Egress,
            ..ssh.clone()
        };
        let ssh_range = spec(Direction::Ingress, tcp(22, 23), "10.0.0.0/8");
        assert!(authorize(&mut rng, &mut g, vec![egress_ssh, ssh_range, http]).is_ok());
        assert_eq!(g.rules.len(), 5);
    }

    #[test]
    fn rule_limit() {
        let mut rng = StdRng::seed_from_u64(4);
        let vpc = VpcId::generate(&mut rng);
        let mut g = new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web");
        let specs: Vec<_> = (0..60)
            .map(|p| spec(Direction::Ingress, tcp(p, p), "0.0.0.0/0"))
            .collect();
        authorize(&mut rng, &mut g, specs).expect("60 fit");
        assert_eq!(
            code(authorize(
                &mut rng,
                &mut g,
                vec![spec(Direction::Ingress, tcp(99, 99), "0.0.0.0/0")]
            )),
            "RulesPerSecurityGroupLimitExceeded"
        );
        assert!(
            authorize(
                &mut rng,
                &mut g,
                vec![spec(Direction::Egress, tcp(99, 99), "0.0.0.0/0")]
            )
            .is_ok()
        );
    }

    #[test]
    fn revoke_by_content_and_by_id() {
        let mut rng = StdRng::seed_from_u64(5);
        let vpc = VpcId::generate(&mut rng);
        let mut g = new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web");
        let ssh = spec(Direction::Ingress, tcp(22, 22), "10.0.0.0/8");
        let http = spec(Direction::Ingress, tcp(80, 80), "0.0.0.0/0");
        let added = authorize(&mut rng, &mut g, vec![ssh.clone(), http.clone()]).expect("add");
        let before = g.clone();
        assert_eq!(
            code(revoke(
                &mut g,
                &[spec(Direction::Ingress, tcp(443, 443), "0.0.0.0/0")]
            )),
            "InvalidPermission.NotFound"
        );
        assert_eq!(g, before);
        let described = RuleSpec {
            description: Some("x".into()),
            ..ssh.clone()
        };
        let other = spec(Direction::Ingress, tcp(1, 1), "0.0.0.0/0");
        let out = revoke(&mut g, &[described, other.clone()]).expect("revoke");
        assert_eq!(out.revoked.len(), 1);
        assert_eq!(out.revoked[0].id, added[0].id);
        assert_eq!(out.unknown, vec![other]);
        assert_eq!(
            code(revoke_by_ids(
                &mut g,
                Direction::Egress,
                &[added[1].id.clone()]
            )),
            "InvalidSecurityGroupRuleId.NotFound"
        );
        assert_eq!(
            code(revoke_by_ids(
                &mut g,
                Direction::Ingress,
                &[
                    added[1].id.clone(),
                    SecurityGroupRuleId::new_unchecked("sgr-1a2b3c4d")
                ]
            )),
            "InvalidSecurityGroupRuleId.NotFound"
        );
        assert_eq!(g.rules.len(), 2, "nothing removed by the failed calls");
        let gone = revoke_by_ids(&mut g, Direction::Ingress, &[added[1].id.clone()]).expect("ok");
        assert_eq!(gone.len(), 1);
        assert_eq!(g.rules.len(), 1);
    }

    #[test]
    fn peer_groups_must_exist_in_the_same_vpc() {
        let mut rng = StdRng::seed_from_u64(6);
        let vpc = VpcId::generate(&mut rng);
        let other_vpc = VpcId::generate(&mut rng);
        let web = new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web");
        let db = new_security_group(&mut rng, &vpc, "db", "d", &[]).expect("db");
        let far = new_security_group(&mut rng, &other_vpc, "far", "f", &[]).expect("far");
        let known = vec![web.clone(), db.clone(), far.clone()];
        let from = |g: &SecurityGroup| RuleSpec {
            direction: Direction::Ingress,
            protocol: Protocol::All,
            peer: Peer::Group(g.id.clone()),
            description: None,
        };
        assert!(check_peer_groups(&db, &[from(&web), from(&db)], &known).is_ok());
        assert_eq!(
            code(check_peer_groups(&db, &[from(&far)], &known)),
            "InvalidGroup.NotFound"
        );
        let ghost = SecurityGroup {
            id: SecurityGroupId::new_unchecked("sg-1a2b3c4d"),
            ..web
        };
        assert_eq!(
            code(check_peer_groups(&db, &[from(&ghost)], &known)),
            "InvalidGroup.NotFound"
        );
    }

    #[test]
    fn deletion_dependencies() {
        let mut rng = StdRng::seed_from_u64(7);
        let vpc = VpcId::generate(&mut rng);
        let default = default_security_group(&mut rng, &vpc);
        let web = new_security_group(&mut rng, &vpc, "web", "w", &[]).expect("web");
        let mut db = new_security_group(&mut rng, &vpc, "db", "d", &[]).expect("db");
        assert_eq!(
            code(check_group_deletable(&default, &[], &[])),
            "CannotDelete"
        );
        assert!(
            check_group_deletable(&web, &[default.clone(), web.clone(), db.clone()], &[]).is_ok()
        );
        let from_web = RuleSpec {
            direction: Direction::Ingress,
            protocol: tcp(5432, 5432),
            peer: Peer::Group(web.id.clone()),
            description: None,
        };
        authorize(&mut rng, &mut db, vec![from_web]).expect("add");
        let all = [default.clone(), web.clone(), db.clone()];
        assert_eq!(
            code(check_group_deletable(&web, &all, &[])),
            "DependencyViolation"
        );
        // A group that only references itself can go.
        assert!(check_group_deletable(&default, &[], &[]).is_err());
        let mut selfish = new_security_group(&mut rng, &vpc, "self", "s", &[]).expect("self");
        let own = RuleSpec {
            direction: Direction::Ingress,
            protocol: Protocol::All,
            peer: Peer::Group(selfish.id.clone()),
            description: None,
        };
        authorize(&mut rng, &mut selfish, vec![own]).expect("add");
        assert!(check_group_deletable(&selfish, std::slice::from_ref(&selfish), &[]).is_ok());
    }

    #[test]
    fn describe_rule_texts() {
        let mut s = spec(Direction::Ingress, Protocol::All, "0.0.0.0/0");
        assert_eq!(describe_rule(&s), "peer: 0.0.0.0/0, ALL, ALLOW");
        s.protocol = Protocol::Icmp {
            icmp_type: Some(8),
            code: None,
        };
        assert_eq!(
            describe_rule(&s),
            "peer: 0.0.0.0/0, ICMP, from port: 8, to port: -1, ALLOW"
        );
        s.protocol = Protocol::Number(47);
        assert_eq!(describe_rule(&s), "peer: 0.0.0.0/0, 47, ALLOW");
    }
}
