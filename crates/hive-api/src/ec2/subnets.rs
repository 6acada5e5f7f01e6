//! `CreateSubnet`, `DescribeSubnets`, `DeleteSubnet`, `ModifySubnetAttribute`.

use std::borrow::Cow;

use hive_vpc::model::{Subnet, SubnetId, SubnetState, VpcId};
use hive_vpc_store::SubnetAttribute;

use super::call::Call;
use super::filters::{self, Filter};
use super::render::{write_subnet, zone_id};
use crate::error::ApiError;

/// The filters `DescribeSubnets` supports (besides the tag filters).
const SUBNET_FILTERS: &[&str] = &[
    "availability-zone",
    "availability-zone-id",
    "availabilityZone",
    "available-ip-address-count",
    "cidr",
    "cidr-block",
    "cidrBlock",
    "default-for-az",
    "defaultForAz",
    "map-public-ip-on-launch",
    "owner-id",
    "state",
    "subnet-arn",
    "subnet-id",
    "vpc-id",
];

fn ipv6_refused() -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        "IPv6 subnets are not supported: Hive subnets are IPv4 only.",
        400,
    )
}

/// `CreateSubnet`.
pub(crate) async fn create(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    if p.optional("Ipv6CidrBlock").is_some()
        || p.bool("Ipv6Native")? == Some(true)
        || p.optional("Ipv6IpamPoolId").is_some()
    {
        return Err(ipv6_refused());
    }
    if p.optional("OutpostArn").is_some() || p.optional("Ipv4IpamPoolId").is_some() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "Outposts and IPAM pools are not supported by Hive; give CidrBlock.",
            400,
        ));
    }
    let vpc_id = VpcId::parse(p.required("VpcId")?)?;
    let cidr = p.required("CidrBlock")?;
    let zone = match (
        p.optional("AvailabilityZone"),
        p.optional("AvailabilityZoneId"),
    ) {
        (Some(zone), _) => Some(zone.to_owned()),
        (None, Some(id)) if id == zone_id(call.repo.availability_zone()) => {
            Some(call.repo.availability_zone().to_owned())
        }
        (None, Some(id)) => {
            return Err(p.invalid(
                "AvailabilityZoneId",
                id,
                "No availability zone has this id.",
            ));
        }
        (None, None) => None,
    };
    let tags = call.tag_specifications("subnet")?;
    let vpc = call.repo.get_vpc(call.account(), &vpc_id).await?;
    call.authorize_create(
        "subnet",
        &[
            ("ec2:Vpc", call.vpc_arn(&vpc_id)),
            (
                "ec2:AvailabilityZone",
                zone.clone()
                    .unwrap_or_else(|| call.repo.availability_zone().to_owned()),
            ),
        ],
        &tags,
    )
    .await?;
    call.authorize(&call.vpc_resource(&vpc), None).await?;
    call.dry_run()?;
    let subnet = call
        .repo
        .create_subnet(call.account(), &vpc_id, cidr, zone.as_deref(), &tags)
        .await?;
    Ok(call.respond(|w| {
        w.node("subnet", |w| write_subnet(w, &subnet, call.scope()));
    }))
}

fn fields<'a>(
    subnet: &'a Subnet,
    account: &'a str,
    arn: String,
) -> impl Fn(&str) -> Vec<Cow<'a, str>> + 'a {
    let flag = |b: bool| Cow::Borrowed(if b { "true" } else { "false" });
    move |name| match name {
        "subnet-id" => vec![Cow::Borrowed(subnet.id.as_str())],
        "vpc-id" => vec![Cow::Borrowed(subnet.vpc_id.as_str())],
        "cidr" | "cidr-block" | "cidrBlock" => vec![Cow::Owned(subnet.cidr_block.to_string())],
        "availability-zone" | "availabilityZone" => {
            vec![Cow::Borrowed(subnet.availability_zone.as_str())]
        }
        "availability-zone-id" => vec![Cow::Owned(zone_id(&subnet.availability_zone))],
        "available-ip-address-count" => {
            vec![Cow::Owned(subnet.available_ip_address_count().to_string())]
        }
        "default-for-az" | "defaultForAz" => vec![flag(subnet.default_for_az)],
        "map-public-ip-on-launch" => vec![flag(subnet.map_public_ip_on_launch)],
        "owner-id" => vec![Cow::Borrowed(account)],
        "state" => vec![Cow::Borrowed(match subnet.state {
            SubnetState::Pending => "pending",
            SubnetState::Available => "available",
        })],
        "subnet-arn" => vec![Cow::Owned(arn.clone())],
        _ => Vec::new(),
    }
}

fn select(
    call: &Call<'_>,
    all: Vec<Subnet>,
    ids: &[SubnetId],
    filters: &[Filter],
) -> Result<Vec<Subnet>, ApiError> {
    let scope = call.scope();
    let mut subnets: Vec<Subnet> = filters::requested(all, ids, |s| &s.id, SubnetId::not_found)?
        .into_iter()
        .filter(|s| {
            let arn = scope.arn("subnet", s.id.as_str());
            filters::matches(filters, &s.tags, fields(s, scope.account, arn))
        })
        .collect();
    subnets.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(subnets)
}

/// `DescribeSubnets`.
pub(crate) async fn describe(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let req = call
        .describe_request("SubnetId", SubnetId::parse, SUBNET_FILTERS)
        .await?;
    let all = call.repo.list_subnets(call.account()).await?;
    let subnets = select(call, all, &req.ids, &req.filters)?;
    let page = filters::paginate(subnets, |s| s.id.as_str(), req.max, p.optional("NextToken"))?;
    Ok(call.respond(|w| {
        w.list("subnetSet", &page.items, |w, s| {
            write_subnet(w, s, call.scope())
        })
        .next_token(page.next_token.as_deref());
    }))
}

/// `DeleteSubnet`: no interface may hold an address in it.
pub(crate) async fn delete(call: &Call<'_>) -> Result<String, ApiError> {
    let id = SubnetId::parse(call.params.required("SubnetId")?)?;
    let subnet = call.repo.get_subnet(call.account(), &id).await?;
    call.authorize(&call.subnet_resource(&subnet), None).await?;
    call.dry_run()?;
    call.repo.delete_subnet(call.account(), &id).await?;
    Ok(call.respond_true())
}

/// `ModifySubnetAttribute`: `MapPublicIpOnLaunch`; the IPv6, DNS64, customer-owned and
/// resource-name options are accepted only as their (off) defaults.
pub(crate) async fn modify_attribute(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let id = SubnetId::parse(p.required("SubnetId")?)?;
    let mut change = None;
    let mut seen = 0;
    for param in [
        "MapPublicIpOnLaunch",
        "AssignIpv6AddressOnCreation",
        "MapCustomerOwnedIpOnLaunch",
        "EnableDns64",
        "EnableResourceNameDnsARecordOnLaunch",
        "EnableResourceNameDnsAAAARecordOnLaunch",
        "DisableLniAtDeviceIndex",
    ] {
        let Some(s) = p.structure(param) else {
            continue;
        };
        seen += 1;
        let value = s.bool("Value")?.ok_or_else(|| s.missing("Value"))?;
        if param == "MapPublicIpOnLaunch" {
            change = Some(SubnetAttribute::MapPublicIpOnLaunch(value));
        } else if value {
            return Err(p.invalid(
                &format!("{param}.Value"),
                "true",
                "This subnet attribute is not supported by Hive.",
            ));
        }
    }
    for param in ["CustomerOwnedIpv4Pool", "EnableLniAtDeviceIndex"] {
        if p.optional(param).is_some() {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("{param} is not supported by Hive."),
                400,
            ));
        }
    }
    if let Some(kind) = p.optional("PrivateDnsHostnameTypeOnLaunch") {
        seen += 1;
        if kind != "ip-name" {
            return Err(p.invalid(
                "PrivateDnsHostnameTypeOnLaunch",
                kind,
                "Only ip-name is supported.",
            ));
        }
    }
    if seen == 0 {
        return Err(ApiError::new(
            "MissingParameter",
            "The request must contain the parameter MapPublicIpOnLaunch",
            400,
        ));
    }
    if seen > 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "You can only modify one attribute at a time.",
            400,
        ));
    }
    let subnet = call.repo.get_subnet(call.account(), &id).await?;
    call.authorize(&call.subnet_resource(&subnet), None).await?;
    call.dry_run()?;
    if let Some(change) = change {
        call.repo
            .modify_subnet_attribute(call.account(), &id, change)
            .await?;
    }
    Ok(call.respond_true())
}
