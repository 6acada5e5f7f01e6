//! `CreateNetworkInterface`, `DescribeNetworkInterfaces`, `DeleteNetworkInterface`,
//! `ModifyNetworkInterfaceAttribute` (security groups).
//!
//! An interface has one private IPv4 address; secondary addresses, IPv6 and prefixes are
//! refused with `InvalidParameterValue` rather than silently ignored.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use hive_vpc::eni::CreateInterface;
use hive_vpc::model::{
    InterfaceStatus, NetworkInterface, NetworkInterfaceId, SecurityGroup, SecurityGroupId, SubnetId,
};

use super::call::Call;
use super::filters::{self, Filter};
use super::render::{private_dns_name, write_interface, zone_id};
use crate::error::ApiError;
use crate::wire::query::Params;

/// The filters `DescribeNetworkInterfaces` supports (besides the tag filters).
const INTERFACE_FILTERS: &[&str] = &[
    "addresses.primary",
    "addresses.private-ip-address",
    "availability-zone",
    "availability-zone-id",
    "description",
    "group-id",
    "group-name",
    "interface-type",
    "mac-address",
    "network-interface-id",
    "owner-id",
    "private-dns-name",
    "private-ip-address",
    "requester-managed",
    "source-dest-check",
    "status",
    "subnet-id",
    "vpc-id",
];

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!("{what} not supported by Hive: an interface has one private IPv4 address."),
        400,
    )
}

fn parse_ip(params: &Params, name: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse()
        .map_err(|_| params.invalid(name, text, "This is not a valid IPv4 address."))
}

/// The primary address asked for by `PrivateIpAddress` or a single `PrivateIpAddresses.N`.
fn requested_address(p: &Params) -> Result<Option<Ipv4Addr>, ApiError> {
    for (param, what) in [
        ("Ipv6AddressCount", "IPv6 addresses are"),
        (
            "SecondaryPrivateIpAddressCount",
            "Secondary private addresses are",
        ),
        ("Ipv4PrefixCount", "IPv4 prefixes are"),
        ("Ipv6PrefixCount", "IPv6 prefixes are"),
    ] {
        if p.int(param)?.is_some_and(|n| n > 0) {
            return Err(unsupported(what));
        }
    }
    for (param, what) in [
        ("Ipv6Addresses", "IPv6 addresses are"),
        ("Ipv4Prefix", "IPv4 prefixes are"),
        ("Ipv6Prefix", "IPv6 prefixes are"),
    ] {
        if !p.structs(param)?.is_empty() {
            return Err(unsupported(what));
        }
    }
    if p.bool("EnablePrimaryIpv6")? == Some(true) {
        return Err(unsupported("IPv6 addresses are"));
    }
    let mut address = p
        .optional("PrivateIpAddress")
        .map(|a| parse_ip(p, "PrivateIpAddress", a))
        .transpose()?;
    let listed = p.structs("PrivateIpAddresses")?;
    match listed.as_slice() {
        [] => {}
        [one] => {
            if one.bool("Primary")? == Some(false) {
                return Err(unsupported("Secondary private addresses are"));
            }
            let ip = parse_ip(one, "PrivateIpAddress", one.required("PrivateIpAddress")?)?;
            if address.is_some_and(|a| a != ip) {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    "PrivateIpAddress and PrivateIpAddresses name different primary addresses.",
                    400,
                ));
            }
            address = Some(ip);
        }
        _ => return Err(unsupported("Secondary private addresses are")),
    }
    Ok(address)
}

fn group_ids(p: &Params) -> Result<Vec<SecurityGroupId>, ApiError> {
    p.list("SecurityGroupId")?
        .into_iter()
        .map(|g| SecurityGroupId::parse(g).map_err(ApiError::from))
        .collect()
}

/// Each group of `ids` (`InvalidGroup.NotFound` for an unknown one).
async fn groups(call: &Call<'_>, ids: &[SecurityGroupId]) -> Result<Vec<SecurityGroup>, ApiError> {
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        groups.push(call.repo.get_security_group(call.account(), id).await?);
    }
    Ok(groups)
}

/// `CreateNetworkInterface`.
pub(crate) async fn create(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let subnet_id = SubnetId::parse(p.required("SubnetId")?)?;
    let private_ip = requested_address(p)?;
    match p.optional("InterfaceType") {
        None | Some("interface") => {}
        Some(other) => {
            return Err(p.invalid("InterfaceType", other, "Only interface is supported."));
        }
    }
    let group_ids = group_ids(p)?;
    let description = p.get("Description").unwrap_or("").to_owned();
    let tags = call.tag_specifications("network-interface")?;
    let subnet = call.repo.get_subnet(call.account(), &subnet_id).await?;
    let requested_groups = groups(call, &group_ids).await?;
    call.authorize_create(
        "network-interface",
        &[
            ("ec2:Vpc", call.vpc_arn(&subnet.vpc_id)),
            ("ec2:Subnet", call.scope().arn("subnet", subnet.id.as_str())),
            ("ec2:AvailabilityZone", subnet.availability_zone.clone()),
        ],
        &tags,
    )
    .await?;
    call.authorize(&call.subnet_resource(&subnet), None).await?;
    for group in &requested_groups {
        call.authorize(&call.group_resource(group), None).await?;
    }
    call.dry_run()?;
    let request = CreateInterface {
        private_ip,
        groups: group_ids,
        description,
    };
    let eni = call
        .repo
        .create_network_interface(call.account(), &subnet_id, &request, &tags)
        .await?;
    let all_groups = call.repo.list_security_groups(call.account()).await?;
    let name = group_namer(&all_groups);
    Ok(call.respond(|w| {
        w.node("networkInterface", |w| {
            write_interface(w, &eni, call.scope(), &name);
        });
    }))
}

fn group_namer(all: &[SecurityGroup]) -> impl Fn(&SecurityGroupId) -> Option<String> + '_ {
    move |id| all.iter().find(|g| &g.id == id).map(|g| g.name.clone())
}

fn interface_matches(
    eni: &NetworkInterface,
    filters: &[Filter],
    account: &str,
    region: &str,
    all_groups: &[SecurityGroup],
) -> bool {
    let flag = |b: bool| Cow::Borrowed(if b { "true" } else { "false" });
    filters::matches(filters, &eni.tags, |name| match name {
        "addresses.private-ip-address" | "private-ip-address" => {
            vec![Cow::Owned(eni.private_ip.to_string())]
        }
        "addresses.primary" => vec![flag(true)],
        "availability-zone" => vec![Cow::Borrowed(eni.availability_zone.as_str())],
        "availability-zone-id" => vec![Cow::Owned(zone_id(&eni.availability_zone))],
        "description" => vec![Cow::Borrowed(eni.description.as_str())],
        "group-id" => eni
            .groups
            .iter()
            .map(|g| Cow::Borrowed(g.as_str()))
            .collect(),
        "group-name" => eni
            .groups
            .iter()
            .filter_map(|g| all_groups.iter().find(|x| &x.id == g))
            .map(|g| Cow::Owned(g.name.clone()))
            .collect(),
        "interface-type" => vec![Cow::Borrowed("interface")],
        "mac-address" => vec![Cow::Owned(eni.mac.to_string())],
        "network-interface-id" => vec![Cow::Borrowed(eni.id.as_str())],
        "owner-id" => vec![Cow::Owned(account.to_owned())],
        "private-dns-name" => vec![Cow::Owned(private_dns_name(eni.private_ip, region))],
        "requester-managed" => vec![flag(false)],
        "source-dest-check" => vec![flag(eni.source_dest_check)],
        "status" => vec![Cow::Borrowed(match eni.status {
            InterfaceStatus::Available => "available",
            InterfaceStatus::InUse => "in-use",
        })],
        "subnet-id" => vec![Cow::Borrowed(eni.subnet_id.as_str())],
        "vpc-id" => vec![Cow::Borrowed(eni.vpc_id.as_str())],
        _ => Vec::new(),
    })
}

/// `DescribeNetworkInterfaces`.
pub(crate) async fn describe(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let req = call
        .describe_request(
            "NetworkInterfaceId",
            NetworkInterfaceId::parse,
            INTERFACE_FILTERS,
        )
        .await?;
    let all = call.repo.list_network_interfaces(call.account()).await?;
    let asked = filters::requested(&all, &req.ids, |e| &e.id, NetworkInterfaceId::not_found)?;
    let all_groups = call.repo.list_security_groups(call.account()).await?;
    let scope = call.scope();
    let mut enis: Vec<&NetworkInterface> = asked
        .into_iter()
        .filter(|e| interface_matches(e, &req.filters, scope.account, scope.region, &all_groups))
        .collect();
    enis.sort_by(|a, b| a.id.cmp(&b.id));
    let page = filters::paginate(enis, |e| e.id.as_str(), req.max, p.optional("NextToken"))?;
    let name = group_namer(&all_groups);
    Ok(call.respond(|w| {
        w.list("networkInterfaceSet", &page.items, |w, eni| {
            write_interface(w, eni, scope, &name);
        })
        .next_token(page.next_token.as_deref());
    }))
}

/// `DeleteNetworkInterface`: only a detached interface; its address goes back to the
/// subnet.
pub(crate) async fn delete(call: &Call<'_>) -> Result<String, ApiError> {
    let id = NetworkInterfaceId::parse(call.params.required("NetworkInterfaceId")?)?;
    let eni = call.repo.get_network_interface(call.account(), &id).await?;
    call.authorize(&call.interface_resource(&eni), None).await?;
    call.dry_run()?;
    call.repo
        .delete_network_interface(call.account(), &id)
        .await?;
    Ok(call.respond_true())
}

/// `ModifyNetworkInterfaceAttribute`: replace the interface's security groups
/// (`SecurityGroupId.N`). One attribute per call, as EC2 requires.
pub(crate) async fn modify_attribute(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let id = NetworkInterfaceId::parse(p.required("NetworkInterfaceId")?)?;
    let group_ids = group_ids(p)?;
    let others: Vec<&str> = [
        "Description",
        "SourceDestCheck",
        "Attachment",
        "EnaSrdSpecification",
        "ConnectionTrackingSpecification",
    ]
    .into_iter()
    .filter(|n| p.structure(n).is_some())
    .chain(
        ["EnablePrimaryIpv6", "AssociatePublicIpAddress"]
            .into_iter()
            .filter(|n| p.optional(n).is_some()),
    )
    .collect();
    match (group_ids.is_empty(), others.as_slice()) {
        (true, []) => return Err(p.missing("SecurityGroupId")),
        (false, []) => {}
        (true, [one]) => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Changing {one} is not supported by Hive; only the security groups can be changed."
                ),
                400,
            ));
        }
        _ => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Fields for multiple attribute types specified: you can only modify one \
                 attribute at a time.",
                400,
            ));
        }
    }
    let eni = call.repo.get_network_interface(call.account(), &id).await?;
    let new_groups = groups(call, &group_ids).await?;
    call.authorize(&call.interface_resource(&eni), None).await?;
    for group in &new_groups {
        call.authorize(&call.group_resource(group), None).await?;
    }
    call.dry_run()?;
    call.repo
        .modify_network_interface_groups(call.account(), &id, &group_ids)
        .await?;
    Ok(call.respond_true())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ec2::test_params as params;

    #[test]
    fn address_requests() {
        assert_eq!(requested_address(&params("")).expect("none"), None);
        assert_eq!(
            requested_address(&params("PrivateIpAddress=10.0.1.9")).expect("one"),
            Some(Ipv4Addr::new(10, 0, 1, 9))
        );
        assert_eq!(
            requested_address(&params(
                "PrivateIpAddresses.1.PrivateIpAddress=10.0.1.7&PrivateIpAddresses.1.Primary=true"
            ))
            .expect("listed"),
            Some(Ipv4Addr::new(10, 0, 1, 7))
        );
        for bad in [
            "PrivateIpAddress=10.0.1",
            "SecondaryPrivateIpAddressCount=2",
            "Ipv6AddressCount=1",
            "PrivateIpAddresses.1.PrivateIpAddress=10.0.1.7&PrivateIpAddresses.2.PrivateIpAddress=10.0.1.8",
        ] {
            assert_eq!(
                requested_address(&params(bad)).expect_err(bad).code(),
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }
}
