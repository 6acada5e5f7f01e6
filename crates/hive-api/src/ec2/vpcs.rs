//! `CreateVpc`, `DescribeVpcs`, `DeleteVpc`, `ModifyVpcAttribute`, `DescribeVpcAttribute`.

use std::borrow::Cow;

use hive_vpc::model::{Vpc, VpcId, VpcState};
use hive_vpc_store::VpcAttribute;

use super::call::Call;
use super::filters::{self, Filter};
use super::render::write_vpc;
use crate::error::ApiError;

/// The filters `DescribeVpcs` supports (besides `tag:<key>`, `tag-key`, `tag-value`).
const VPC_FILTERS: &[&str] = &[
    "cidr",
    "cidr-block",
    "cidr-block-association.cidr-block",
    "cidr-block-association.association-id",
    "cidr-block-association.state",
    "dhcp-options-id",
    "is-default",
    "owner-id",
    "state",
    "vpc-id",
];

/// `CreateVpc`: IPv4 blocks only; a VLAN is taken from the pool.
pub(crate) async fn create(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    if p.bool("AmazonProvidedIpv6CidrBlock")? == Some(true)
        || p.optional("Ipv6CidrBlock").is_some()
        || p.optional("Ipv6Pool").is_some()
        || p.optional("Ipv6IpamPoolId").is_some()
    {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "IPv6 CIDR blocks are not supported: Hive VPCs are IPv4 only.",
            400,
        ));
    }
    if p.optional("Ipv4IpamPoolId").is_some() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "IPAM pools are not supported by Hive; give CidrBlock.",
            400,
        ));
    }
    match p.optional("InstanceTenancy") {
        None | Some("default") => {}
        Some(other) => {
            return Err(p.invalid(
                "InstanceTenancy",
                other,
                "Only default tenancy is supported.",
            ));
        }
    }
    let cidr = p.required("CidrBlock")?;
    let tags = call.tag_specifications("vpc")?;
    call.authorize_create("vpc", &[], &tags).await?;
    call.dry_run()?;
    let created = call.repo.create_vpc(call.account(), cidr, &tags).await?;
    Ok(call.respond(|w| {
        w.node("vpc", |w| write_vpc(w, &created.vpc, call.scope()));
    }))
}

fn fields<'a>(vpc: &'a Vpc, account: &'a str) -> impl Fn(&str) -> Vec<Cow<'a, str>> + 'a {
    move |name| match name {
        "vpc-id" => vec![Cow::Borrowed(vpc.id.as_str())],
        "cidr" | "cidr-block" => vec![Cow::Owned(vpc.cidr_block.to_string())],
        "cidr-block-association.cidr-block" => vpc
            .cidr_blocks()
            .into_iter()
            .map(|b| Cow::Owned(b.to_string()))
            .collect(),
        "cidr-block-association.state" => vec![Cow::Borrowed("associated")],
        "dhcp-options-id" => vec![Cow::Borrowed("default")],
        "is-default" => vec![Cow::Borrowed(if vpc.is_default { "true" } else { "false" })],
        "owner-id" => vec![Cow::Borrowed(account)],
        "state" => vec![Cow::Borrowed(match vpc.state {
            VpcState::Pending => "pending",
            VpcState::Available => "available",
        })],
        _ => Vec::new(),
    }
}

/// The VPCs of `ids` (each must exist) or all, passing `filters`, sorted by id.
fn select(
    all: Vec<Vpc>,
    ids: &[VpcId],
    filters: &[Filter],
    account: &str,
) -> Result<Vec<Vpc>, ApiError> {
    let mut vpcs: Vec<Vpc> = filters::requested(all, ids, |v| &v.id, VpcId::not_found)?
        .into_iter()
        .filter(|v| filters::matches(filters, &v.tags, fields(v, account)))
        .collect();
    vpcs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(vpcs)
}

/// `DescribeVpcs`.
pub(crate) async fn describe(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let req = call
        .describe_request("VpcId", VpcId::parse, VPC_FILTERS)
        .await?;
    let all = call.repo.list_vpcs(call.account()).await?;
    let vpcs = select(all, &req.ids, &req.filters, call.account())?;
    let page = filters::paginate(vpcs, |v| v.id.as_str(), req.max, p.optional("NextToken"))?;
    Ok(call.respond(|w| {
        w.list("vpcSet", &page.items, |w, vpc| {
            write_vpc(w, vpc, call.scope())
        })
        .next_token(page.next_token.as_deref());
    }))
}

/// `DeleteVpc`: only its default group may remain.
pub(crate) async fn delete(call: &Call<'_>) -> Result<String, ApiError> {
    let id = VpcId::parse(call.params.required("VpcId")?)?;
    let vpc = call.repo.get_vpc(call.account(), &id).await?;
    call.authorize(&call.vpc_resource(&vpc), None).await?;
    call.dry_run()?;
    call.repo.delete_vpc(call.account(), &id).await?;
    Ok(call.respond_true())
}

fn attribute(name: &str) -> Option<VpcAttribute> {
    match name {
        "enableDnsSupport" => Some(VpcAttribute::EnableDnsSupport),
        "enableDnsHostnames" => Some(VpcAttribute::EnableDnsHostnames),
        _ => None,
    }
}

/// `ModifyVpcAttribute`: one of `EnableDnsSupport.Value`, `EnableDnsHostnames.Value` per
/// call, as EC2 requires.
pub(crate) async fn modify_attribute(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let id = VpcId::parse(p.required("VpcId")?)?;
    let mut changes = Vec::new();
    for (param, attr) in [
        ("EnableDnsSupport", Some(VpcAttribute::EnableDnsSupport)),
        ("EnableDnsHostnames", Some(VpcAttribute::EnableDnsHostnames)),
        ("EnableNetworkAddressUsageMetrics", None),
    ] {
        if let Some(s) = p.structure(param) {
            let value = s.bool("Value")?.ok_or_else(|| s.missing("Value"))?;
            changes.push((param, attr, value));
        }
    }
    let (param, attr, value) = match changes.as_slice() {
        [] => {
            return Err(ApiError::new(
                "MissingParameter",
                "The request must contain the parameter EnableDnsSupport or EnableDnsHostnames",
                400,
            ));
        }
        [one] => *one,
        _ => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Fields for multiple attribute types specified: you can only modify one \
                 attribute at a time.",
                400,
            ));
        }
    };
    let vpc = call.repo.get_vpc(call.account(), &id).await?;
    call.authorize(&call.vpc_resource(&vpc), None).await?;
    call.dry_run()?;
    match attr {
        Some(attr) => {
            call.repo
                .modify_vpc_attribute(call.account(), &id, attr, value)
                .await?;
        }
        // Hive keeps no usage metrics: turning them off is already the state.
        None if !value => {}
        None => {
            return Err(p.invalid(
                &format!("{param}.Value"),
                "true",
                "Network address usage metrics are not supported by Hive.",
            ));
        }
    }
    Ok(call.respond_true())
}

/// `DescribeVpcAttribute`.
pub(crate) async fn describe_attribute(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let id = VpcId::parse(p.required("VpcId")?)?;
    let name = p.required("Attribute")?;
    let attr = attribute(name);
    if attr.is_none() && name != "enableNetworkAddressUsageMetrics" {
        return Err(p.invalid("Attribute", name, "Unknown attribute."));
    }
    let vpc = call.repo.get_vpc(call.account(), &id).await?;
    call.authorize(&call.vpc_resource(&vpc), None).await?;
    call.dry_run()?;
    let value = match attr {
        Some(a) => call.repo.vpc_attribute(call.account(), &id, a).await?,
        None => false,
    };
    Ok(call.respond(|w| {
        w.text("vpcId", id.as_str()).node(name, |w| {
            w.bool("value", value);
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc(id: &str, cidr: &str, default: bool, tags: &[(&str, &str)]) -> Vpc {
        let mut v = Vpc::new(
            VpcId::new_unchecked(id),
            cidr.parse().expect("cidr"),
            2,
            default,
        );
        v.tags = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v
    }

    fn filter(name: &str, values: &[&str]) -> Filter {
        Filter {
            name: name.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn select_by_ids_and_filters() {
        let all = vec![
            vpc("vpc-2", "10.1.0.0/16", false, &[("Env", "prod")]),
            vpc("vpc-1", "10.0.0.0/16", true, &[]),
        ];
        let got = select(all.clone(), &[], &[], "0").expect("all");
        assert_eq!(got[0].id.as_str(), "vpc-1");
        let got = select(all.clone(), &[], &[filter("is-default", &["true"])], "0").expect("f");
        assert_eq!(got.len(), 1);
        let got = select(all.clone(), &[], &[filter("cidr", &["10.1.*"])], "0").expect("f");
        assert_eq!(got[0].id.as_str(), "vpc-2");
        let got = select(all.clone(), &[], &[filter("tag:Env", &["prod"])], "0").expect("f");
        assert_eq!(got[0].id.as_str(), "vpc-2");
        let got = select(all.clone(), &[VpcId::new_unchecked("vpc-1")], &[], "0").expect("id");
        assert_eq!(got.len(), 1);
        let e = select(all, &[VpcId::new_unchecked("vpc-9")], &[], "0").expect_err("missing");
        assert_eq!(e.code(), "InvalidVpcID.NotFound");
    }
}
