//! `CreateSecurityGroup`, `DescribeSecurityGroups`, `DeleteSecurityGroup`,
//! `AuthorizeSecurityGroupIngress`/`Egress`, `RevokeSecurityGroupIngress`/`Egress` and
//! `DescribeSecurityGroupRules`.
//!
//! A group may be named by `GroupName` only in the default VPC (as on AWS); peer groups in
//! rules may be named by id, or by name within the target group's VPC.

use std::borrow::Cow;

use hive_vpc::model::{
    Direction, Peer, SecurityGroup, SecurityGroupId, SecurityGroupRuleId, VpcId,
};
use hive_vpc::security_group::{RuleSpec, check_peer_groups, parse_rule};
use hive_vpc_store::GroupRule;

use super::call::Call;
use super::filters::{self, Filter};
use super::permissions::{
    RequestedRule, parse_requested, protocol_fields, write_revoked_rule, write_unknown_permissions,
};
use super::render::{Scope, write_rule, write_security_group, write_tags};
use crate::error::ApiError;

/// The filters `DescribeSecurityGroups` supports (besides the tag filters).
const GROUP_FILTERS: &[&str] = &[
    "description",
    "egress.ip-permission.cidr",
    "egress.ip-permission.from-port",
    "egress.ip-permission.group-id",
    "egress.ip-permission.group-name",
    "egress.ip-permission.protocol",
    "egress.ip-permission.to-port",
    "egress.ip-permission.user-id",
    "group-id",
    "group-name",
    "ip-permission.cidr",
    "ip-permission.from-port",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "ip-permission.protocol",
    "ip-permission.to-port",
    "ip-permission.user-id",
    "owner-id",
    "vpc-id",
];

/// The filters `DescribeSecurityGroupRules` supports (besides the tag filters).
const RULE_FILTERS: &[&str] = &["group-id", "security-group-rule-id"];

/// The account's default VPC, or EC2's error for a call that needs one.
async fn default_vpc(call: &Call<'_>) -> Result<VpcId, ApiError> {
    match call.repo.default_vpc(call.account()).await? {
        Some(vpc) => Ok(vpc.id),
        None => Err(ApiError::new(
            "VPCIdNotSpecified",
            "No default VPC for this user. GroupName is only supported for the default VPC; \
             use GroupId or VpcId.",
            400,
        )),
    }
}

/// The group of `GroupId`, or of `GroupName` in the default VPC when `by_name` allows it.
async fn target_group(call: &Call<'_>, by_name: bool) -> Result<SecurityGroup, ApiError> {
    let p = call.params;
    if let Some(id) = p.optional("GroupId") {
        let id = SecurityGroupId::parse(id)?;
        return Ok(call.repo.get_security_group(call.account(), &id).await?);
    }
    match p.optional("GroupName") {
        Some(name) if by_name => {
            let vpc = default_vpc(call).await?;
            Ok(call
                .repo
                .find_security_group_by_name(call.account(), Some(&vpc), name)
                .await?)
        }
        _ => Err(p.missing("GroupId")),
    }
}

/// `CreateSecurityGroup`: in `VpcId`, or the default VPC.
pub(crate) async fn create(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let name = p.required("GroupName")?;
    let description = p.required("GroupDescription")?;
    let tags = call.tag_specifications("security-group")?;
    let vpc_id = match p.optional("VpcId") {
        Some(id) => VpcId::parse(id)?,
        None => default_vpc(call).await?,
    };
    let vpc = call.repo.get_vpc(call.account(), &vpc_id).await?;
    call.authorize_create(
        "security-group",
        &[("ec2:Vpc", call.vpc_arn(&vpc_id))],
        &tags,
    )
    .await?;
    call.authorize(&call.vpc_resource(&vpc), None).await?;
    call.dry_run()?;
    let group = call
        .repo
        .create_security_group(call.account(), &vpc_id, name, description, &tags)
        .await?;
    let arn = call.scope().arn("security-group", group.id.as_str());
    Ok(call.respond(|w| {
        w.text("return", "true").text("groupId", group.id.as_str());
        write_tags(w, "tagSet", &group.tags);
        w.text("securityGroupArn", &arn);
    }))
}

/// Values of the `[egress.]ip-permission.*` filters for `group`'s rules of `direction`.
fn permission_values<'a>(
    group: &'a SecurityGroup,
    direction: Direction,
    field: &str,
    account: &'a str,
    names: &'a [SecurityGroup],
) -> Vec<Cow<'a, str>> {
    let rules = group.rules.iter().filter(|r| r.direction == direction);
    let mut values = Vec::new();
    for rule in rules {
        let (protocol, from, to) = protocol_fields(&rule.protocol, false);
        match (field, &rule.peer) {
            ("cidr", Peer::Cidr(c)) => values.push(Cow::Owned(c.to_string())),
            ("group-id", Peer::Group(g)) => values.push(Cow::Borrowed(g.as_str())),
            ("group-name", Peer::Group(g)) => {
                if let Some(peer) = names.iter().find(|n| &n.id == g) {
                    values.push(Cow::Borrowed(peer.name.as_str()));
                }
            }
            ("user-id", Peer::Group(_)) => values.push(Cow::Borrowed(account)),
            ("protocol", _) => values.push(Cow::Owned(protocol)),
            ("from-port", _) => {
                if let Some(from) = from {
                    values.push(Cow::Owned(from.to_string()));
                }
            }
            ("to-port", _) => {
                if let Some(to) = to {
                    values.push(Cow::Owned(to.to_string()));
                }
            }
            _ => {}
        }
    }
    values
}

fn group_matches(
    group: &SecurityGroup,
    filters: &[Filter],
    account: &str,
    all: &[SecurityGroup],
) -> bool {
    filters::matches(filters, &group.tags, |name| match name {
        "description" => vec![Cow::Borrowed(group.description.as_str())],
        "group-id" => vec![Cow::Borrowed(group.id.as_str())],
        "group-name" => vec![Cow::Borrowed(group.name.as_str())],
        "owner-id" => vec![Cow::Borrowed(account)],
        "vpc-id" => vec![Cow::Borrowed(group.vpc_id.as_str())],
        other => {
            if let Some(field) = other.strip_prefix("egress.ip-permission.") {
                permission_values(group, Direction::Egress, field, account, all)
            } else if let Some(field) = other.strip_prefix("ip-permission.") {
                permission_values(group, Direction::Ingress, field, account, all)
            } else {
                Vec::new()
            }
        }
    })
}

/// `DescribeSecurityGroups`.
pub(crate) async fn describe(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let ids = p
        .list("GroupId")?
        .into_iter()
        .map(SecurityGroupId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let names = p.list("GroupName")?;
    let filters = filters::parse(p, GROUP_FILTERS, true)?;
    let max = filters::max_results(p, 5, 1000)?;
    call.authorize_describe().await?;
    call.dry_run()?;
    let all = call.repo.list_security_groups(call.account()).await?;
    let asked = filters::requested(&all, &ids, |g| &g.id, SecurityGroupId::not_found)?;
    let mut named = Vec::new();
    if !names.is_empty() {
        let vpc = default_vpc(call).await?;
        for name in &names {
            match all.iter().find(|g| g.vpc_id == vpc && g.name == *name) {
                Some(g) => named.push(g.id.clone()),
                None => {
                    return Err(ApiError::new(
                        "InvalidGroup.NotFound",
                        format!(
                            "The security group '{}' does not exist in default VPC '{vpc}'",
                            crate::error::truncate(name, 255)
                        ),
                        400,
                    ));
                }
            }
        }
    }
    let mut groups: Vec<&SecurityGroup> = asked
        .into_iter()
        .filter(|g| named.is_empty() || named.contains(&g.id))
        .filter(|g| group_matches(g, &filters, call.account(), &all))
        .collect();
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    let page = filters::paginate(groups, |g| g.id.as_str(), max, p.optional("NextToken"))?;
    Ok(call.respond(|w| {
        w.list("securityGroupInfo", &page.items, |w, g| {
            write_security_group(w, g, call.scope());
        })
        .next_token(page.next_token.as_deref());
    }))
}

/// `DeleteSecurityGroup`: not the default group, not referenced by another group's rules,
/// not used by an interface.
pub(crate) async fn delete(call: &Call<'_>) -> Result<String, ApiError> {
    let group = target_group(call, true).await?;
    call.authorize(&call.group_resource(&group), None).await?;
    call.dry_run()?;
    call.repo
        .delete_security_group(call.account(), &group.id)
        .await?;
    Ok(call.respond(|w| {
        w.text("return", "true").text("groupId", group.id.as_str());
    }))
}

/// The requested rules as hive-vpc rule specs for `group`, peer names resolved in its VPC.
fn specs(
    group: &SecurityGroup,
    direction: Direction,
    requested: &[RequestedRule],
    all: &[SecurityGroup],
) -> Result<Vec<RuleSpec>, ApiError> {
    let resolve = |name: &str| -> Result<String, ApiError> {
        all.iter()
            .find(|g| g.vpc_id == group.vpc_id && g.name == name)
            .map(|g| g.id.to_string())
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidGroup.NotFound",
                    format!(
                        "The security group '{}' does not exist in VPC '{}'",
                        crate::error::truncate(name, 255),
                        group.vpc_id
                    ),
                    400,
                )
            })
    };
    requested
        .iter()
        .map(|r| {
            let input = r.to_input(resolve)?;
            parse_rule(direction, &input).map_err(ApiError::from)
        })
        .collect()
}

/// Tags asked for new rules (`TagSpecification` of type `security-group-rule`): Hive keeps
/// no tags on rules, so any tag is refused rather than dropped.
fn refuse_rule_tags(call: &Call<'_>) -> Result<(), ApiError> {
    if !call.tag_specifications("security-group-rule")?.is_empty() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "Tags on security group rules are not supported by Hive.",
            400,
        ));
    }
    Ok(())
}

/// `AuthorizeSecurityGroupIngress` / `Egress`: every rule is added or none.
pub(crate) async fn authorize(call: &Call<'_>, direction: Direction) -> Result<String, ApiError> {
    let group = target_group(call, direction == Direction::Ingress).await?;
    let requested = parse_requested(call.params, call.account())?;
    if requested.is_empty() {
        return Err(call.params.missing("IpPermissions"));
    }
    refuse_rule_tags(call)?;
    let all = call.repo.list_security_groups(call.account()).await?;
    let specs = specs(&group, direction, &requested, &all)?;
    check_peer_groups(&group, &specs, &all)?;
    call.authorize(&call.group_resource(&group), None).await?;
    call.dry_run()?;
    let added = call
        .repo
        .authorize(call.account(), &group.id, specs)
        .await?;
    Ok(call.respond(|w| {
        w.text("return", "true")
            .list("securityGroupRuleSet", &added, |w, rule| {
                write_rule(w, &group, rule, call.scope());
            });
    }))
}

/// `RevokeSecurityGroupIngress` / `Egress`, by rule content or by `SecurityGroupRuleId.N`.
pub(crate) async fn revoke(call: &Call<'_>, direction: Direction) -> Result<String, ApiError> {
    let p = call.params;
    let group = target_group(call, direction == Direction::Ingress).await?;
    let rule_ids = p
        .list("SecurityGroupRuleId")?
        .into_iter()
        .map(SecurityGroupRuleId::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let requested = parse_requested(p, call.account())?;
    if !rule_ids.is_empty() && !requested.is_empty() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter 'SecurityGroupRuleIds' may not be used in combination with \
             'IpPermissions' or the rule parameters",
            400,
        ));
    }
    if rule_ids.is_empty() && requested.is_empty() {
        return Err(p.missing("IpPermissions"));
    }
    let specs = if requested.is_empty() {
        Vec::new()
    } else {
        let all = call.repo.list_security_groups(call.account()).await?;
        specs(&group, direction, &requested, &all)?
    };
    call.authorize(&call.group_resource(&group), None).await?;
    call.dry_run()?;
    let (revoked, unknown) = if rule_ids.is_empty() {
        let outcome = call.repo.revoke(call.account(), &group.id, &specs).await?;
        (outcome.revoked, outcome.unknown)
    } else {
        let revoked = call
            .repo
            .revoke_by_ids(call.account(), &group.id, direction, &rule_ids)
            .await?;
        (revoked, Vec::new())
    };
    Ok(call.respond(|w| {
        w.text("return", "true");
        if !unknown.is_empty() {
            write_unknown_permissions(w, &unknown, call.account());
        }
        w.list("revokedSecurityGroupRuleSet", &revoked, |w, rule| {
            write_revoked_rule(w, &group, rule);
        });
    }))
}

/// `DescribeSecurityGroupRules`.
pub(crate) async fn describe_rules(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let req = call
        .describe_request(
            "SecurityGroupRuleId",
            SecurityGroupRuleId::parse,
            RULE_FILTERS,
        )
        .await?;
    let all: Vec<GroupRule> = call.repo.list_security_group_rules(call.account()).await?;
    let asked = filters::requested(
        &all,
        &req.ids,
        |r| &r.rule.id,
        SecurityGroupRuleId::not_found,
    )?;
    let no_tags: &[(String, String)] = &[];
    let mut rules: Vec<&GroupRule> = asked
        .into_iter()
        .filter(|r| {
            filters::matches(&req.filters, no_tags, |name| match name {
                "group-id" => vec![Cow::Borrowed(r.group_id.as_str())],
                "security-group-rule-id" => vec![Cow::Borrowed(r.rule.id.as_str())],
                _ => Vec::new(),
            })
        })
        .collect();
    rules.sort_by(|a, b| a.rule.id.cmp(&b.rule.id));
    let page = filters::paginate(
        rules,
        |r| r.rule.id.as_str(),
        req.max,
        p.optional("NextToken"),
    )?;
    Ok(call.respond(|w| {
        w.list("securityGroupRuleSet", &page.items, |w, r| {
            write_group_rule(w, r, call.scope());
        })
        .next_token(page.next_token.as_deref());
    }))
}

fn write_group_rule(w: &mut crate::wire::xml::XmlWriter, r: &GroupRule, scope: Scope<'_>) {
    // `write_rule` needs the group only for its id.
    let group = SecurityGroup {
        id: r.group_id.clone(),
        vpc_id: r.vpc_id.clone(),
        name: String::new(),
        description: String::new(),
        rules: Vec::new(),
        tags: Vec::new(),
    };
    write_rule(w, &group, &r.rule, scope);
}

/// Rules a group has in `direction`.
#[cfg(test)]
fn rules_of(
    group: &SecurityGroup,
    direction: Direction,
) -> Vec<&hive_vpc::model::SecurityGroupRule> {
    group
        .rules
        .iter()
        .filter(|r| r.direction == direction)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_vpc::model::{Protocol, SecurityGroupRule};

    fn filter(name: &str, values: &[&str]) -> Filter {
        Filter {
            name: name.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn permission_filters_look_at_rules() {
        let id = SecurityGroupId::new_unchecked("sg-1a2b3c4d");
        let rule = |n: &str, direction, peer| SecurityGroupRule {
            id: SecurityGroupRuleId::new_unchecked(n),
            direction,
            protocol: Protocol::All,
            peer,
            description: None,
        };
        let group = SecurityGroup {
            id: id.clone(),
            vpc_id: VpcId::new_unchecked("vpc-1a2b3c4d"),
            name: "default".into(),
            description: "default VPC security group".into(),
            rules: vec![
                rule("sgr-1", Direction::Ingress, Peer::Group(id.clone())),
                rule(
                    "sgr-2",
                    Direction::Egress,
                    Peer::Cidr("0.0.0.0/0".parse().expect("cidr")),
                ),
            ],
            tags: Vec::new(),
        };
        let all = vec![group.clone()];
        assert_eq!(rules_of(&group, Direction::Ingress).len(), 1);
        let ok = |fs: &[Filter]| group_matches(&group, fs, "000000000000", &all);
        assert!(ok(&[filter("group-name", &["default"])]));
        assert!(ok(&[filter("ip-permission.group-name", &["default"])]));
        assert!(ok(&[filter("ip-permission.protocol", &["-1"])]));
        assert!(ok(&[filter("egress.ip-permission.cidr", &["0.0.0.0/0"])]));
        assert!(!ok(&[filter("ip-permission.cidr", &["0.0.0.0/0"])]));
        assert!(ok(&[filter("vpc-id", &["vpc-1a2b3c4d"])]));
        assert!(!ok(&[filter("description", &["other"])]));
    }
}
