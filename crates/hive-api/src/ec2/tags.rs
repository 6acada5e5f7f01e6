//! `CreateTags`, `DeleteTags`, `DescribeTags` for VPCs, subnets, security groups and network
//! interfaces.
//!
//! Each resource named is authorized separately (`ec2:CreateTags` / `ec2:DeleteTags` on its
//! ARN, with its current tags as `aws:ResourceTag/<k>` and the request's as
//! `aws:RequestTag/<k>` / `aws:TagKeys`), so a policy limited to some resources or tag keys
//! holds, as on AWS.

use std::borrow::Cow;

use hive_vpc_store::{ResourceId, TagDescription};

use super::call::{Call, Resource, check_unique, parse_tag_selectors, parse_tags};
use super::filters;
use crate::error::ApiError;

/// The filters `DescribeTags` supports.
const TAG_FILTERS: &[&str] = &["key", "resource-id", "resource-type", "value"];

/// Most resources one `CreateTags` / `DeleteTags` call may name (AWS's limit).
const MAX_RESOURCES: usize = 1000;

fn resource_ids(call: &Call<'_>) -> Result<Vec<ResourceId>, ApiError> {
    let p = call.params;
    let ids = p.list("ResourceId")?;
    if ids.is_empty() {
        return Err(p.missing("ResourceId"));
    }
    if ids.len() > MAX_RESOURCES {
        return Err(p.invalid(
            "ResourceId",
            &ids.len().to_string(),
            "At most 1000 resources per call.",
        ));
    }
    ids.into_iter()
        .map(|id| ResourceId::parse(id).map_err(ApiError::from))
        .collect()
}

/// The resource as a policy resource, with its current tags (and `NotFound` when it does not
/// exist).
async fn resource_of(
    call: &Call<'_>,
    id: &ResourceId,
) -> Result<(Resource, Vec<(String, String)>), ApiError> {
    let account = call.account();
    Ok(match id {
        ResourceId::Vpc(v) => {
            let vpc = call.repo.get_vpc(account, v).await?;
            (call.vpc_resource(&vpc), vpc.tags)
        }
        ResourceId::Subnet(s) => {
            let subnet = call.repo.get_subnet(account, s).await?;
            (call.subnet_resource(&subnet), subnet.tags)
        }
        ResourceId::SecurityGroup(g) => {
            let group = call.repo.get_security_group(account, g).await?;
            (call.group_resource(&group), group.tags)
        }
        ResourceId::NetworkInterface(e) => {
            let eni = call.repo.get_network_interface(account, e).await?;
            (call.interface_resource(&eni), eni.tags)
        }
    })
}

/// `CreateTags`: add or overwrite tags on every resource named.
pub(crate) async fn create(call: &Call<'_>) -> Result<String, ApiError> {
    let resources = resource_ids(call)?;
    let tags = parse_tags(call.params, "Tag")?;
    if tags.is_empty() {
        return Err(call.params.missing("Tag"));
    }
    check_unique(&tags)?;
    for id in &resources {
        let (resource, _) = resource_of(call, id).await?;
        call.authorize(&resource, Some(&tags)).await?;
    }
    call.dry_run()?;
    call.repo
        .create_tags(call.account(), &resources, &tags)
        .await?;
    Ok(call.respond_true())
}

/// `DeleteTags`: a tag goes when its key matches and, if a value is given, its value too;
/// without `Tag.N` every tag of the resources goes.
pub(crate) async fn delete(call: &Call<'_>) -> Result<String, ApiError> {
    let resources = resource_ids(call)?;
    let selectors = parse_tag_selectors(call.params, "Tag")?;
    let mut all_keys: Vec<(String, Option<String>)> = Vec::new();
    for id in &resources {
        let (resource, current) = resource_of(call, id).await?;
        let keys: Vec<(String, String)> = if selectors.is_empty() {
            current.clone()
        } else {
            selectors
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect()
        };
        // `aws:TagKeys` names the keys being removed; `aws:RequestTag` is not set for a
        // delete (AWS sets it only for tags being applied).
        call.app
            .authorize_with(call.ctx, &call.iam_action(), &resource.arn, |req| {
                for (k, v) in &resource.keys {
                    req.set(k, v.as_str());
                }
                req.set_values("aws:TagKeys", keys.iter().map(|(k, _)| k.as_str()));
            })
            .await
            .map_err(|e| {
                if e.code() == "AccessDenied" {
                    ApiError::new("UnauthorizedOperation", e.message().to_owned(), 403)
                } else {
                    e
                }
            })?;
        if selectors.is_empty() {
            for (k, _) in current {
                if !all_keys.iter().any(|(x, _)| *x == k) {
                    all_keys.push((k, None));
                }
            }
        }
    }
    call.dry_run()?;
    let selectors = if selectors.is_empty() {
        all_keys
    } else {
        selectors
    };
    if !selectors.is_empty() {
        call.repo
            .delete_tags(call.account(), &resources, &selectors)
            .await?;
    }
    Ok(call.respond_true())
}

/// `DescribeTags`.
pub(crate) async fn describe(call: &Call<'_>) -> Result<String, ApiError> {
    let p = call.params;
    let filters = filters::parse(p, TAG_FILTERS, false)?;
    let max = filters::max_results(p, 5, 1000)?;
    call.authorize_describe().await?;
    call.dry_run()?;
    let all = call.repo.list_tags(call.account()).await?;
    let no_tags: &[(String, String)] = &[];
    let mut tags: Vec<(String, TagDescription)> = all
        .into_iter()
        .filter(|t| {
            filters::matches(&filters, no_tags, |name| match name {
                "key" => vec![Cow::Borrowed(t.key.as_str())],
                "value" => vec![Cow::Borrowed(t.value.as_str())],
                "resource-id" => vec![Cow::Borrowed(t.resource.as_str())],
                "resource-type" => vec![Cow::Borrowed(t.resource.resource_type())],
                _ => Vec::new(),
            })
        })
        // Tab sorts before every character a key may hold, so (resource, key) order holds.
        .map(|t| (format!("{}\t{}", t.resource, t.key), t))
        .collect();
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    let page = filters::paginate(tags, |(k, _)| k.as_str(), max, p.optional("NextToken"))?;
    Ok(call.respond(|w| {
        w.list("tagSet", &page.items, |w, (_, t)| {
            w.text("resourceId", t.resource.as_str())
                .text("resourceType", t.resource.resource_type())
                .text("key", &t.key)
                .text("value", &t.value);
        })
        .next_token(page.next_token.as_deref());
    }))
}
