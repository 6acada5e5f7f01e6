//! What every EC2 handler shares: the request ([`Call`]), authorization against EC2 resource
//! ARNs with EC2's condition keys, tag parameters, `DryRun`, and the response envelope.
//!
//! Authorization follows the EC2 service authorization reference: `Describe*` actions take no
//! resource-level permissions (resource `*`); the others name each resource they touch
//! (`arn:aws:ec2:<region>:<account>:vpc/vpc-...`, `subnet/`, `security-group/`,
//! `network-interface/`), with `aws:ResourceTag/<k>` (and EC2's alias `ec2:ResourceTag/<k>`)
//! from the resource's tags, `ec2:Vpc` (the VPC's ARN) for resources inside a VPC, and
//! `aws:RequestTag/<k>` / `aws:TagKeys` for tags a request applies. Creating a resource with
//! `TagSpecification` also needs `ec2:CreateTags` on it with `ec2:CreateAction`, as on AWS.
//! EC2 says `UnauthorizedOperation` where IAM says `AccessDenied`.

use hive_iam::policy::RequestContext as PolicyRequest;
use hive_vpc::model::{NetworkInterface, SecurityGroup, Subnet, Vpc, VpcId};
use hive_vpc_store::VpcRepo;

use super::render::Scope;
use crate::app::App;
use crate::error::ApiError;
use crate::server::RequestContext;
use crate::wire::query::Params;
use crate::wire::xml::{self, XmlWriter};

/// A checked and authorized `Describe*` request ([`Call::describe_request`]).
#[derive(Debug)]
pub(crate) struct DescribeRequest<I> {
    /// The ids asked for (empty: every resource).
    pub ids: Vec<I>,
    /// `Filter.N`.
    pub filters: Vec<super::filters::Filter>,
    /// `MaxResults`.
    pub max: Option<usize>,
}

/// Longest tag key (EC2's tag restrictions; shared with the repository).
const MAX_TAG_KEY: usize = hive_vpc_store::MAX_TAG_KEY_LEN;
/// Longest tag value (EC2's tag restrictions).
const MAX_TAG_VALUE: usize = hive_vpc_store::MAX_TAG_VALUE_LEN;

/// One EC2 request being served.
pub(crate) struct Call<'a> {
    /// Shared server state.
    pub app: &'a App,
    /// The network repository.
    pub repo: &'a VpcRepo,
    /// The request.
    pub ctx: &'a RequestContext,
    /// Its parameters (EC2 dialect).
    pub params: &'a Params,
}

/// A resource as the policy engine sees it: its ARN and condition keys.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    /// The ARN (or a `.../*` pattern for a resource being created).
    pub arn: String,
    /// Condition keys and values.
    pub keys: Vec<(String, String)>,
}

impl Resource {
    fn new(arn: String, region: &str) -> Self {
        Self {
            arn,
            keys: vec![("ec2:Region".to_owned(), region.to_owned())],
        }
    }

    fn key(mut self, name: &str, value: impl Into<String>) -> Self {
        self.keys.push((name.to_owned(), value.into()));
        self
    }

    fn tagged(mut self, tags: &[(String, String)]) -> Self {
        for (k, v) in tags {
            self.keys.push((format!("aws:ResourceTag/{k}"), v.clone()));
            self.keys.push((format!("ec2:ResourceTag/{k}"), v.clone()));
        }
        self
    }
}

impl<'a> Call<'a> {
    /// The caller's account, which owns every resource it sees.
    pub fn account(&self) -> &'a str {
        &self.ctx.caller.account_id
    }

    /// The account and region responses are written for.
    pub fn scope(&self) -> Scope<'a> {
        Scope {
            account: &self.ctx.caller.account_id,
            region: self.app.region(),
        }
    }

    /// `ec2:<Action>`.
    pub fn iam_action(&self) -> String {
        format!("ec2:{}", self.ctx.action)
    }

    /// A success body `<{Action}Response><requestId/>...`.
    pub fn respond(&self, body: impl FnOnce(&mut XmlWriter)) -> String {
        xml::ec2_response(self.ctx.action, &self.ctx.request_id, body)
    }

    /// A success body holding only `<return>true</return>`.
    pub fn respond_true(&self) -> String {
        self.respond(|w| {
            w.bool("return", true);
        })
    }

    /// Authorize this request's action on `resource`, with `request_tags` as
    /// `aws:RequestTag/<k>` and `aws:TagKeys` when given.
    pub async fn authorize(
        &self,
        resource: &Resource,
        request_tags: Option<&[(String, String)]>,
    ) -> Result<(), ApiError> {
        self.authorize_as(&self.iam_action(), resource, request_tags, None)
            .await
    }

    /// Authorize `action` on `resource` (see [`Call::authorize`]); `create_action` sets
    /// `ec2:CreateAction` (tag-on-create).
    pub async fn authorize_as(
        &self,
        action: &str,
        resource: &Resource,
        request_tags: Option<&[(String, String)]>,
        create_action: Option<&str>,
    ) -> Result<(), ApiError> {
        self.app
            .authorize_with(
                self.ctx,
                action,
                &resource.arn,
                |req: &mut PolicyRequest| {
                    for (k, v) in &resource.keys {
                        req.set(k, v.as_str());
                    }
                    if let Some(tags) = request_tags {
                        for (k, v) in tags {
                            req.set(&format!("aws:RequestTag/{k}"), v.as_str());
                        }
                        req.set_values("aws:TagKeys", tags.iter().map(|(k, _)| k.as_str()));
                    }
                    if let Some(a) = create_action {
                        req.set("ec2:CreateAction", a);
                    }
                },
            )
            .await
            .map_err(unauthorized)
    }

    /// Authorize a `Describe*` action (no resource-level permissions on AWS).
    pub async fn authorize_describe(&self) -> Result<(), ApiError> {
        self.authorize(&Resource::new("*".to_owned(), self.app.region()), None)
            .await
    }

    /// What every `Describe*` request carries, checked before anything is read, as EC2 does:
    /// the ids asked for in `<id_param>.N`, the `Filter.N` the action supports (and the tag
    /// filters), `MaxResults` (5 to 1000); then the action is authorized and `DryRun` answered.
    pub async fn describe_request<I>(
        &self,
        id_param: &str,
        parse: impl Fn(&str) -> Result<I, hive_vpc::error::VpcError>,
        supported: &[&str],
    ) -> Result<DescribeRequest<I>, ApiError> {
        let ids = self
            .params
            .list(id_param)?
            .into_iter()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()?;
        let filters = super::filters::parse(self.params, supported, true)?;
        let max = super::filters::max_results(self.params, 5, 1000)?;
        self.authorize_describe().await?;
        self.dry_run()?;
        Ok(DescribeRequest { ids, filters, max })
    }

    /// Authorize creating a resource of `kind` (`vpc`, `subnet`, ...) with `extra` keys and
    /// `tags` from `TagSpecification`: the action itself and, when tagged, `ec2:CreateTags`.
    pub async fn authorize_create(
        &self,
        kind: &str,
        extra: &[(&str, String)],
        tags: &[(String, String)],
    ) -> Result<(), ApiError> {
        let mut resource = self.new_resource(kind);
        for (k, v) in extra {
            resource = resource.key(k, v.clone());
        }
        self.authorize(&resource, Some(tags)).await?;
        if !tags.is_empty() {
            self.authorize_as(
                "ec2:CreateTags",
                &resource,
                Some(tags),
                Some(self.ctx.action),
            )
            .await?;
        }
        Ok(())
    }

    /// `kind/*` for a resource about to be created.
    pub fn new_resource(&self, kind: &str) -> Resource {
        Resource::new(self.scope().arn(kind, "*"), self.app.region())
    }

    /// The VPC's ARN (the value of `ec2:Vpc`).
    pub fn vpc_arn(&self, vpc: &VpcId) -> String {
        self.scope().arn("vpc", vpc.as_str())
    }

    /// A VPC as a policy resource.
    pub fn vpc_resource(&self, vpc: &Vpc) -> Resource {
        Resource::new(self.vpc_arn(&vpc.id), self.app.region())
            .key("ec2:VpcID", vpc.id.as_str())
            .key("ec2:Tenancy", "default")
            .tagged(&vpc.tags)
    }

    /// A subnet as a policy resource.
    pub fn subnet_resource(&self, subnet: &Subnet) -> Resource {
        Resource::new(
            self.scope().arn("subnet", subnet.id.as_str()),
            self.app.region(),
        )
        .key("ec2:Vpc", self.vpc_arn(&subnet.vpc_id))
        .key("ec2:SubnetID", subnet.id.as_str())
        .key("ec2:AvailabilityZone", subnet.availability_zone.as_str())
        .tagged(&subnet.tags)
    }

    /// A security group as a policy resource.
    pub fn group_resource(&self, group: &SecurityGroup) -> Resource {
        Resource::new(
            self.scope().arn("security-group", group.id.as_str()),
            self.app.region(),
        )
        .key("ec2:Vpc", self.vpc_arn(&group.vpc_id))
        .key("ec2:SecurityGroupID", group.id.as_str())
        .tagged(&group.tags)
    }

    /// A network interface as a policy resource.
    pub fn interface_resource(&self, eni: &NetworkInterface) -> Resource {
        Resource::new(
            self.scope().arn("network-interface", eni.id.as_str()),
            self.app.region(),
        )
        .key("ec2:Vpc", self.vpc_arn(&eni.vpc_id))
        .key(
            "ec2:Subnet",
            self.scope().arn("subnet", eni.subnet_id.as_str()),
        )
        .key("ec2:NetworkInterfaceID", eni.id.as_str())
        .key("ec2:AvailabilityZone", eni.availability_zone.as_str())
        .tagged(&eni.tags)
    }

    /// `DryRun=true`: everything was checked and authorized; answer `DryRunOperation`
    /// instead of acting, as EC2 does.
    pub fn dry_run(&self) -> Result<(), ApiError> {
        if self.params.bool("DryRun")? == Some(true) {
            return Err(ApiError::new(
                "DryRunOperation",
                "Request would have succeeded, but DryRun flag is set.",
                412,
            ));
        }
        Ok(())
    }

    /// The tags of `TagSpecification.N` for a resource of `resource_type` (the only type
    /// `CreateX` accepts), with AWS's tag limits, each key once.
    pub fn tag_specifications(
        &self,
        resource_type: &str,
    ) -> Result<Vec<(String, String)>, ApiError> {
        let mut tags = Vec::new();
        for spec in self.params.structs("TagSpecification")? {
            let kind = spec.required("ResourceType")?;
            if kind != resource_type {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "'{}' is not a valid taggable resource type for this operation.",
                        crate::error::truncate(kind, 64)
                    ),
                    400,
                ));
            }
            tags.extend(parse_tags(&spec, "Tag")?);
        }
        check_unique(&tags)?;
        Ok(tags)
    }
}

/// EC2's code for a refused authorization.
fn unauthorized(e: ApiError) -> ApiError {
    if e.code() == "AccessDenied" {
        ApiError::new("UnauthorizedOperation", e.message().to_owned(), 403)
    } else {
        e
    }
}

/// `{name}.N.Key` / `{name}.N.Value` pairs (an absent value is empty). Keys and values are
/// checked against AWS's limits; `aws:` keys are reserved.
pub(crate) fn parse_tags(params: &Params, name: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut tags = Vec::new();
    for tag in params.structs(name)? {
        let key = tag.get("Key").ok_or_else(|| tag.missing("Key"))?;
        check_key(&tag, key)?;
        let value = tag.get("Value").unwrap_or("");
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(tag.invalid(
                "Value",
                value,
                "Tag values may be at most 255 characters long.",
            ));
        }
        tags.push((key.to_owned(), value.to_owned()));
    }
    Ok(tags)
}

/// `Tag.N.Key` with an optional `Tag.N.Value` (`DeleteTags`).
pub(crate) fn parse_tag_selectors(
    params: &Params,
    name: &str,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut tags = Vec::new();
    for tag in params.structs(name)? {
        let key = tag.get("Key").ok_or_else(|| tag.missing("Key"))?;
        check_key(&tag, key)?;
        tags.push((key.to_owned(), tag.get("Value").map(str::to_owned)));
    }
    Ok(tags)
}

fn check_key(tag: &Params, key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.chars().count() > MAX_TAG_KEY {
        return Err(tag.invalid(
            "Key",
            key,
            "Tag keys must be between 1 and 127 characters long.",
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "Tag keys starting with 'aws:' are reserved for internal use",
            400,
        ));
    }
    Ok(())
}

/// A key given twice in one request is refused, as EC2 does.
pub(crate) fn check_unique(tags: &[(String, String)]) -> Result<(), ApiError> {
    for (i, (k, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Duplicate tag key '{}' specified.",
                    crate::error::truncate(k, 128)
                ),
                400,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ec2::test_params as params;

    #[test]
    fn tags_parse_and_check() {
        let p = params("Tag.1.Key=Name&Tag.1.Value=web&Tag.2.Key=empty");
        assert_eq!(
            parse_tags(&p, "Tag").expect("valid"),
            [
                ("Name".to_owned(), "web".to_owned()),
                ("empty".to_owned(), String::new())
            ]
        );
        let e =
            parse_tags(&params("Tag.1.Key=aws%3Ax&Tag.1.Value=1"), "Tag").expect_err("reserved");
        assert_eq!(e.code(), "InvalidParameterValue");
        let long = "k".repeat(128);
        let e = parse_tags(&params(&format!("Tag.1.Key={long}")), "Tag").expect_err("long key");
        assert_eq!(e.code(), "InvalidParameterValue");
        let e = parse_tags(&params("Tag.1.Value=x"), "Tag").expect_err("no key");
        assert_eq!(e.code(), "MissingParameter");
        let sel = parse_tag_selectors(&params("Tag.1.Key=a&Tag.2.Key=b&Tag.2.Value=v"), "Tag")
            .expect("valid");
        assert_eq!(
            sel,
            [
                ("a".to_owned(), None),
                ("b".to_owned(), Some("v".to_owned()))
            ]
        );
        assert!(check_unique(&[("a".into(), "1".into()), ("a".into(), "2".into())]).is_err());
    }

    #[test]
    fn access_denied_becomes_unauthorized_operation() {
        let e = unauthorized(ApiError::access_denied("User x is not authorized"));
        assert_eq!((e.code(), e.status()), ("UnauthorizedOperation", 403));
        assert_eq!(e.message(), "User x is not authorized");
        let other = unauthorized(ApiError::internal());
        assert_eq!(other.code(), "InternalFailure");
    }
}
