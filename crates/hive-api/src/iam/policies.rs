//! IAM actions for roles, managed policies and their versions, attachments, inline policies,
//! policy simulation and account authorization details.
//!
//! Every action validates its parameters, then authorizes the caller with the AWS action name
//! and the ARN of the entity or policy it touches (the stored ARN, with its path, when the
//! entity exists), and only then reads or changes anything, so a caller without permission
//! learns nothing about what exists. Attach and detach actions also set `iam:PolicyARN`, and
//! `CreateRole` sets `iam:PermissionsBoundary`, as AWS does.
//!
//! Policy documents go on the wire percent-encoded (`%7B%22Version%22...`), as IAM sends
//! them: botocore's `json_decode_policies` handler decodes every `policyDocumentType` member
//! back into JSON, which is what `aws iam get-role` prints.
//!
//! Pagination (`Marker`/`MaxItems`) is by position in the listing; the marker is opaque to
//! clients.

use hive_iam::error::IamError;
use hive_iam::identity::{
    DEFAULT_ACCOUNT_ID, EntityKind, GroupRecord, PolicyRecord, PolicyVersion, RoleRecord, Tag,
    UserRecord, arn, derived_unique_id, parse_arn, validate_name, validate_path,
};
use hive_iam::policy::simulate::{SimOutcome, SimSource, Simulation};
use hive_iam::policy::{
    PolicyDocument, PolicyError, PolicyKind, Principal as PolicyPrincipal, SizeLimit, validate_size,
};
use hive_iam_store::{PolicyEntity, PolicyUsage, Target};

use crate::app::App;
use crate::error::ApiError;
use crate::server::RequestContext;
use crate::server::handler::action_table;
use crate::wire::query::Params;
use crate::wire::xml::{self, XmlWriter};
use crate::wire::{Protocol, ServiceId};

action_table! {
    /// Serve `ctx.action`.
    pub(super) async fn call(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        dispatch ctx.action => {
            "CreateRole" => create_role(app, ctx, params).await,
            "GetRole" => get_role(app, ctx, params).await,
            "ListRoles" => list_roles(app, ctx, params).await,
            "UpdateRole" => update_role(app, ctx, params).await,
            "UpdateRoleDescription" => update_role_description(app, ctx, params).await,
            "DeleteRole" => delete_role(app, ctx, params).await,
            "UpdateAssumeRolePolicy" => update_assume_role_policy(app, ctx, params).await,
            "CreatePolicy" => create_policy(app, ctx, params).await,
            "GetPolicy" => get_policy(app, ctx, params).await,
            "ListPolicies" => list_policies(app, ctx, params).await,
            "DeletePolicy" => delete_policy(app, ctx, params).await,
            "CreatePolicyVersion" => create_policy_version(app, ctx, params).await,
            "GetPolicyVersion" => get_policy_version(app, ctx, params).await,
            "ListPolicyVersions" => list_policy_versions(app, ctx, params).await,
            "DeletePolicyVersion" => change_policy_version(app, ctx, params, false).await,
            "SetDefaultPolicyVersion" => change_policy_version(app, ctx, params, true).await,
            "AttachUserPolicy" | "AttachGroupPolicy" | "AttachRolePolicy" => {
                attach_policy(app, ctx, params, true).await
            },
            "DetachUserPolicy" | "DetachGroupPolicy" | "DetachRolePolicy" => {
                attach_policy(app, ctx, params, false).await
            },
            "ListAttachedUserPolicies" | "ListAttachedGroupPolicies" | "ListAttachedRolePolicies" => {
                list_attached_policies(app, ctx, params).await
            },
            "ListEntitiesForPolicy" => list_entities_for_policy(app, ctx, params).await,
            "PutUserPolicy" | "PutGroupPolicy" | "PutRolePolicy" => {
                put_inline_policy(app, ctx, params).await
            },
            "GetUserPolicy" | "GetGroupPolicy" | "GetRolePolicy" => {
                get_inline_policy(app, ctx, params).await
            },
            "ListUserPolicies" | "ListGroupPolicies" | "ListRolePolicies" => {
                list_inline_policies(app, ctx, params).await
            },
            "DeleteUserPolicy" | "DeleteGroupPolicy" | "DeleteRolePolicy" => {
                delete_inline_policy(app, ctx, params).await
            },
            "SimulatePrincipalPolicy" => simulate_principal_policy(app, ctx, params).await,
            "SimulateCustomPolicy" => simulate_custom_policy(app, ctx, params).await,
            "GetAccountAuthorizationDetails" => account_authorization_details(app, ctx, params).await,
            _ => Err(ApiError::invalid_action(ctx.action, Protocol::Query)),
        }
    }
}

// ----- shared helpers ---------------------------------------------------------------------

/// Items per page when the client gives no `MaxItems` (AWS's default).
const DEFAULT_MAX_ITEMS: i64 = 100;

fn respond(ctx: &RequestContext, result: impl FnOnce(&mut XmlWriter)) -> String {
    xml::query_response(ServiceId::Iam, ctx.action, &ctx.request_id, result)
}

fn respond_empty(ctx: &RequestContext) -> String {
    xml::query_empty_response(ServiceId::Iam, ctx.action, &ctx.request_id)
}

fn account(ctx: &RequestContext) -> &str {
    &ctx.caller.account_id
}

/// Percent-encodes a policy document as IAM returns it (RFC 3986 unreserved characters kept,
/// a space as `%20`), so that botocore's `unquote` + `json.loads` gives the document back.
pub(crate) fn encode_document(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn policy_error(e: PolicyError) -> ApiError {
    ApiError::from(IamError::from(e))
}

fn invalid_input(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidInput", message, 400)
}

/// One page of `items` per `Marker` and `MaxItems`, with the marker of the next page.
fn paginate<T>(params: &Params, items: Vec<T>) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = params
        .int_in("MaxItems", 1, 1000)?
        .unwrap_or(DEFAULT_MAX_ITEMS);
    let max = usize::try_from(max).unwrap_or(1);
    let start = match params.optional("Marker") {
        None => 0,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| params.invalid("Marker", m, "Marker is not valid"))?,
    };
    let len = items.len();
    let start = start.min(len);
    let end = start.saturating_add(max).min(len);
    let marker = (end < len).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        marker,
    ))
}

/// The optional `PathPrefix` parameter, checked against AWS's pattern.
fn path_prefix(params: &Params) -> Result<Option<&str>, ApiError> {
    match params.optional("PathPrefix") {
        None => Ok(None),
        Some(p)
            if p.starts_with('/')
                && p.len() <= 512
                && p.bytes().all(|b| (0x21..=0x7f).contains(&b)) =>
        {
            Ok(Some(p))
        }
        Some(p) => Err(params.invalid(
            "PathPrefix",
            p,
            "Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*",
        )),
    }
}

fn description(params: &Params) -> Result<Option<&str>, ApiError> {
    match params.get("Description") {
        Some(d) if d.chars().count() > 1000 => Err(params.invalid(
            "Description",
            d,
            "Member must have length less than or equal to 1000",
        )),
        other => Ok(other),
    }
}

/// Which kind of entity an action names (`AttachUserPolicy` → user), with its name parameter.
fn target_of(ctx: &RequestContext, params: &Params) -> Result<Target, ApiError> {
    let action = ctx.action;
    if action.contains("User") {
        Ok(Target::User(params.required("UserName")?.to_owned()))
    } else if action.contains("Group") {
        Ok(Target::Group(params.required("GroupName")?.to_owned()))
    } else {
        Ok(Target::Role(params.required("RoleName")?.to_owned()))
    }
}

fn target_parts(target: &Target) -> (EntityKind, &str) {
    match target {
        Target::User(n) => (EntityKind::User, n),
        Target::Group(n) => (EntityKind::Group, n),
        Target::Role(n) => (EntityKind::Role, n),
    }
}

/// The ARN a request about `target` is authorized against: the stored ARN (with the entity's
/// path) when it exists, the path-less ARN otherwise. The name is validated first.
async fn entity_arn(app: &App, account: &str, target: &Target) -> Result<String, ApiError> {
    let (kind, name) = target_parts(target);
    validate_name(kind, name)?;
    let found = match target {
        Target::User(n) => app.iam.get_user(account, n).await.map(|u| u.arn),
        Target::Group(n) => app.iam.get_group(account, n).await.map(|g| g.arn),
        Target::Role(n) => app.iam.get_role(account, n).await.map(|r| r.arn),
    };
    match found {
        Ok(a) => Ok(a),
        Err(IamError::NoSuchEntity(_)) => Ok(arn(account, kind, "/", name)),
        Err(e) => Err(e.into()),
    }
}

/// Checks the form of a `PolicyArn` parameter (before authorization).
fn policy_arn_param<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    let value = params.required(name)?;
    if is_aws_managed(value) || parse_arn(value).is_some_and(|p| p.kind == EntityKind::Policy) {
        Ok(value)
    } else {
        Err(invalid_input(format!(
            "ARN {} is not valid.",
            crate::error::truncate(value, 256)
        )))
    }
}

fn is_aws_managed(policy_arn: &str) -> bool {
    policy_arn
        .strip_prefix("arn:aws:iam::aws:policy/")
        .is_some_and(|rest| !rest.is_empty())
}

/// After authorization: AWS managed policies do not exist here, and policies of other
/// accounts cannot be used.
fn own_policy(ctx: &RequestContext, policy_arn: &str) -> Result<(), ApiError> {
    let own = parse_arn(policy_arn).is_some_and(|p| p.account_id == account(ctx));
    if own {
        Ok(())
    } else {
        Err(IamError::NoSuchEntity(format!(
            "Policy {policy_arn} does not exist or is not attachable."
        ))
        .into())
    }
}

/// A managed policy document: IAM's size quota, syntax, and the `2012-10-17` requirement.
fn check_managed_document(text: &str) -> Result<(), ApiError> {
    validate_size(text, SizeLimit::Managed).map_err(policy_error)?;
    PolicyDocument::parse(text, PolicyKind::Identity)
        .and_then(|d| d.require_current_version())
        .map_err(policy_error)
}

fn u32_param(params: &Params, name: &str, min: i64, max: i64) -> Result<Option<u32>, ApiError> {
    Ok(params
        .int_in(name, min, max)?
        .and_then(|n| u32::try_from(n).ok()))
}

// ----- XML writers ------------------------------------------------------------------------

fn write_tags(w: &mut XmlWriter, tags: &[Tag]) {
    if !tags.is_empty() {
        w.list("Tags", tags, |w, t| {
            w.text("Key", &t.key).text("Value", &t.value);
        });
    }
}

fn write_boundary(w: &mut XmlWriter, boundary: Option<&str>) {
    if let Some(b) = boundary {
        super::identities::write_boundary(w, b);
    }
}

/// How much of a role an action reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleView {
    /// `GetRole`, `UpdateRoleDescription`: everything, with `RoleLastUsed`.
    Full,
    /// `CreateRole`: what was set.
    Created,
    /// `ListRoles`: AWS leaves out tags, boundary and last use.
    Listed,
}

fn write_role(w: &mut XmlWriter, r: &RoleRecord, view: RoleView) {
    w.text("Path", &r.path)
        .text("RoleName", &r.role_name)
        .text("RoleId", &r.role_id)
        .text("Arn", &r.arn)
        .time("CreateDate", r.created_at)
        .text(
            "AssumeRolePolicyDocument",
            &encode_document(&r.assume_role_policy_document),
        )
        .opt_text("Description", r.description.as_deref())
        .display("MaxSessionDuration", r.max_session_duration);
    if view != RoleView::Listed {
        write_boundary(w, r.permissions_boundary.as_deref());
        write_tags(w, &r.tags);
    }
    if view == RoleView::Full {
        w.node("RoleLastUsed", |_| {});
    }
}

fn write_policy(w: &mut XmlWriter, p: &PolicyRecord, boundary_uses: usize, with_tags: bool) {
    w.text("PolicyName", &p.policy_name)
        .text("PolicyId", &p.policy_id)
        .text("Arn", &p.arn)
        .text("Path", &p.path)
        .text("DefaultVersionId", p.default_version_id())
        .display("AttachmentCount", p.attachments.len())
        .display("PermissionsBoundaryUsageCount", boundary_uses)
        .bool("IsAttachable", true)
        .opt_text("Description", p.description.as_deref())
        .time("CreateDate", p.created_at)
        .time("UpdateDate", p.updated_at);
    if with_tags {
        write_tags(w, &p.tags);
    }
}

fn write_version(w: &mut XmlWriter, v: &PolicyVersion, with_document: bool) {
    if with_document {
        w.text("Document", &encode_document(&v.document));
    }
    w.text("VersionId", &v.version_id)
        .bool("IsDefaultVersion", v.is_default)
        .time("CreateDate", v.created_at);
}

/// `AttachedManagedPolicies` / `AttachedPolicies` members from stored references (ARNs, or
/// plain names in hand-written records).
fn write_attached(w: &mut XmlWriter, name: &str, account_id: &str, refs: &[String]) {
    w.list(name, refs, |w, r| {
        let (policy_name, policy_arn) = match parse_arn(r) {
            Some(p) => (p.name, r.clone()),
            None if !r.starts_with("arn:") => {
                (r.clone(), arn(account_id, EntityKind::Policy, "/", r))
            }
            None => (r.clone(), r.clone()),
        };
        w.text("PolicyName", &policy_name)
            .text("PolicyArn", &policy_arn);
    });
}

fn write_inline(
    w: &mut XmlWriter,
    name: &str,
    inline: &std::collections::BTreeMap<String, String>,
) {
    w.list(name, inline, |w, (policy_name, document)| {
        w.text("PolicyName", policy_name)
            .text("PolicyDocument", &encode_document(document));
    });
}

// ----- roles ------------------------------------------------------------------------------

async fn create_role(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    let document = params.required("AssumeRolePolicyDocument")?;
    let path = params.optional("Path").unwrap_or("/");
    validate_name(EntityKind::Role, name)?;
    validate_path(path)?;
    let description = description(params)?;
    let max_session = u32_param(params, "MaxSessionDuration", 3600, 43_200)?;
    let boundary = params.optional("PermissionsBoundary");
    if let Some(b) = boundary
        && !(is_aws_managed(b) || parse_arn(b).is_some_and(|p| p.kind == EntityKind::Policy))
    {
        return Err(invalid_input(format!(
            "ARN {} is not valid.",
            crate::error::truncate(b, 256)
        )));
    }
    let tags = super::member_tags(params)?;
    let role_arn = arn(account(ctx), EntityKind::Role, path, name);
    app.authorize_with(ctx, "iam:CreateRole", &role_arn, |req| {
        if let Some(b) = boundary {
            req.set("iam:PermissionsBoundary", b);
        }
    })
    .await?;
    if let Some(b) = boundary {
        own_policy(ctx, b)?;
        app.iam.get_policy(b).await?;
    }
    let mut role = app
        .iam
        .create_role(
            account(ctx),
            name,
            Some(path),
            document,
            description,
            max_session,
            tags,
        )
        .await?;
    if let Some(b) = boundary {
        let target = Target::Role(role.role_name.clone());
        if let Err(e) = app
            .iam
            .set_permissions_boundary(account(ctx), &target, Some(b))
            .await
        {
            // Leave no half-made role behind.
            if let Err(cleanup) = app.iam.delete_role(account(ctx), &role.role_name).await {
                tracing::warn!(error = %cleanup, "cannot remove a role whose boundary failed");
            }
            return Err(e.into());
        }
        role.permissions_boundary = Some(b.to_owned());
    }
    Ok(respond(ctx, |r| {
        r.node("Role", |w| write_role(w, &role, RoleView::Created));
    }))
}

async fn get_role(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    authorize_role(app, ctx, name).await?;
    let role = app.iam.get_role(account(ctx), name).await?;
    Ok(respond(ctx, |r| {
        r.node("Role", |w| write_role(w, &role, RoleView::Full));
    }))
}

async fn list_roles(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let prefix = path_prefix(params)?;
    let resource = format!(
        "arn:aws:iam::{}:role{}",
        account(ctx),
        prefix.unwrap_or("/")
    );
    app.authorize(ctx, "iam:ListRoles", &resource).await?;
    let roles = app.iam.list_roles(account(ctx), prefix).await?;
    let (page, marker) = paginate(params, roles)?;
    Ok(respond(ctx, |r| {
        r.list("Roles", &page, |w, role| {
            write_role(w, role, RoleView::Listed)
        })
        .pagination(marker.as_deref());
    }))
}

async fn update_role(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    let description = description(params)?;
    let max_session = u32_param(params, "MaxSessionDuration", 3600, 43_200)?;
    authorize_role(app, ctx, name).await?;
    app.iam
        .update_role(account(ctx), name, description, max_session)
        .await?;
    Ok(respond(ctx, |_| {}))
}

async fn update_role_description(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    let description = description(params)?.ok_or_else(|| params.missing("Description"))?;
    authorize_role(app, ctx, name).await?;
    app.iam
        .update_role(account(ctx), name, Some(description), None)
        .await?;
    let role = app.iam.get_role(account(ctx), name).await?;
    Ok(respond(ctx, |r| {
        r.node("Role", |w| write_role(w, &role, RoleView::Full));
    }))
}

async fn delete_role(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    authorize_role(app, ctx, name).await?;
    app.iam.delete_role(account(ctx), name).await?;
    Ok(respond_empty(ctx))
}

async fn update_assume_role_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let name = params.required("RoleName")?;
    let document = params.required("PolicyDocument")?;
    authorize_role(app, ctx, name).await?;
    app.iam
        .update_assume_role_policy(account(ctx), name, document)
        .await?;
    Ok(respond_empty(ctx))
}

// ----- managed policies -------------------------------------------------------------------

async fn create_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let name = params.required("PolicyName")?;
    let document = params.required("PolicyDocument")?;
    let path = params.optional("Path").unwrap_or("/");
    validate_name(EntityKind::Policy, name)?;
    validate_path(path)?;
    let description = description(params)?;
    let tags = super::member_tags(params)?;
    let policy_arn = arn(account(ctx), EntityKind::Policy, path, name);
    app.authorize(ctx, "iam:CreatePolicy", &policy_arn).await?;
    check_managed_document(document)?;
    let policy = app
        .iam
        .create_policy(account(ctx), name, Some(path), document, description, tags)
        .await?;
    Ok(respond(ctx, |r| {
        r.node("Policy", |w| write_policy(w, &policy, 0, true));
    }))
}

async fn get_policy(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    app.authorize(ctx, "iam:GetPolicy", policy_arn).await?;
    own_policy(ctx, policy_arn)?;
    let policy = app.iam.get_policy(policy_arn).await?;
    let uses = app
        .iam
        .boundary_holders(account(ctx), policy_arn)
        .await?
        .len();
    Ok(respond(ctx, |r| {
        r.node("Policy", |w| write_policy(w, &policy, uses, true));
    }))
}

async fn list_policies(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let scope = params.optional("Scope").unwrap_or("All");
    if !matches!(scope, "All" | "AWS" | "Local") {
        return Err(params.invalid(
            "Scope",
            scope,
            "Member must satisfy enum value set: [All, AWS, Local]",
        ));
    }
    let only_attached = params.bool("OnlyAttached")?.unwrap_or(false);
    let prefix = path_prefix(params)?;
    let usage = match params.optional("PolicyUsageFilter") {
        None => None,
        Some(u) => Some(PolicyUsage::parse(u).ok_or_else(|| {
            params.invalid(
                "PolicyUsageFilter",
                u,
                "Member must satisfy enum value set: [PermissionsPolicy, PermissionsBoundary]",
            )
        })?),
    };
    app.authorize(ctx, "iam:ListPolicies", "*").await?;
    // Hive has no AWS managed policies: the AWS scope is empty.
    let policies = if scope == "AWS" {
        Vec::new()
    } else {
        app.iam.list_policies(account(ctx), prefix).await?
    };
    let counts = app.iam.boundary_usage_counts(account(ctx)).await?;
    let listed: Vec<(PolicyRecord, usize)> = policies
        .into_iter()
        .map(|p| {
            let uses = counts.get(&p.arn).copied().unwrap_or(0);
            (p, uses)
        })
        .filter(|(p, uses)| {
            let attached = !p.attachments.is_empty();
            (!only_attached || attached)
                && match usage {
                    None => true,
                    Some(PolicyUsage::Permissions) => attached,
                    Some(PolicyUsage::Boundary) => *uses > 0,
                }
        })
        .collect();
    let (page, marker) = paginate(params, listed)?;
    Ok(respond(ctx, |r| {
        r.list("Policies", &page, |w, (p, uses)| {
            write_policy(w, p, *uses, false)
        })
        .pagination(marker.as_deref());
    }))
}

async fn delete_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    app.authorize(ctx, "iam:DeletePolicy", policy_arn).await?;
    own_policy(ctx, policy_arn)?;
    app.iam.delete_policy(policy_arn).await?;
    Ok(respond_empty(ctx))
}

async fn create_policy_version(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    let document = params.required("PolicyDocument")?;
    let set_as_default = params.bool("SetAsDefault")?.unwrap_or(false);
    app.authorize(ctx, "iam:CreatePolicyVersion", policy_arn)
        .await?;
    own_policy(ctx, policy_arn)?;
    check_managed_document(document)?;
    let version = app
        .iam
        .create_policy_version(policy_arn, document, set_as_default)
        .await?;
    Ok(respond(ctx, |r| {
        r.node("PolicyVersion", |w| write_version(w, &version, false));
    }))
}

async fn get_policy_version(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    let version_id = params.required("VersionId")?;
    app.authorize(ctx, "iam:GetPolicyVersion", policy_arn)
        .await?;
    own_policy(ctx, policy_arn)?;
    let version = app.iam.get_policy_version(policy_arn, version_id).await?;
    Ok(respond(ctx, |r| {
        r.node("PolicyVersion", |w| write_version(w, &version, true));
    }))
}

/// The number in a version id (`v12` → 12), for newest-first listings.
fn version_number(v: &PolicyVersion) -> u64 {
    v.version_id
        .strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn list_policy_versions(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    app.authorize(ctx, "iam:ListPolicyVersions", policy_arn)
        .await?;
    own_policy(ctx, policy_arn)?;
    let mut versions = app.iam.get_policy(policy_arn).await?.versions;
    versions.sort_by_key(|v| std::cmp::Reverse(version_number(v)));
    let (page, marker) = paginate(params, versions)?;
    Ok(respond(ctx, |r| {
        r.list("Versions", &page, |w, v| write_version(w, v, false))
            .pagination(marker.as_deref());
    }))
}

/// `DeletePolicyVersion` (`set_default` false) or `SetDefaultPolicyVersion` (true): the same
/// parameters and checks, one repository call apart.
async fn change_policy_version(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
    set_default: bool,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    let version_id = params.required("VersionId")?;
    app.authorize(ctx, &format!("iam:{}", ctx.action), policy_arn)
        .await?;
    own_policy(ctx, policy_arn)?;
    if set_default {
        app.iam
            .set_default_policy_version(policy_arn, version_id)
            .await?;
    } else {
        app.iam
            .delete_policy_version(policy_arn, version_id)
            .await?;
    }
    Ok(respond_empty(ctx))
}

// ----- attachments ------------------------------------------------------------------------

async fn attach_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
    attach: bool,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    let entity = entity_arn(app, account(ctx), &target).await?;
    let action = format!("iam:{}", ctx.action);
    app.authorize_with(ctx, &action, &entity, |req| {
        req.set("iam:PolicyARN", policy_arn);
    })
    .await?;
    own_policy(ctx, policy_arn)?;
    if attach {
        app.iam
            .attach_policy(account(ctx), &target, policy_arn)
            .await
            .map_err(|e| match (e, &target) {
                // The repository words every quota as the user one.
                (IamError::LimitExceeded(_), Target::Group(_)) => {
                    IamError::LimitExceeded("Cannot exceed quota for PoliciesPerGroup: 10".into())
                }
                (IamError::LimitExceeded(_), Target::Role(_)) => {
                    IamError::LimitExceeded("Cannot exceed quota for PoliciesPerRole: 10".into())
                }
                (e, _) => e,
            })?;
    } else {
        app.iam
            .detach_policy(account(ctx), &target, policy_arn)
            .await?;
    }
    Ok(respond_empty(ctx))
}

async fn list_attached_policies(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    let prefix = path_prefix(params)?;
    authorize_entity(app, ctx, &target).await?;
    let attached: Vec<_> = app
        .iam
        .attached_policies(account(ctx), &target)
        .await?
        .into_iter()
        .filter(|a| match prefix {
            None => true,
            Some(prefix) => parse_arn(&a.policy_arn).is_some_and(|p| p.path.starts_with(prefix)),
        })
        .collect();
    let (page, marker) = paginate(params, attached)?;
    Ok(respond(ctx, |r| {
        r.list("AttachedPolicies", &page, |w, a| {
            w.text("PolicyName", &a.policy_name)
                .text("PolicyArn", &a.policy_arn);
        })
        .pagination(marker.as_deref());
    }))
}

async fn list_entities_for_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let policy_arn = policy_arn_param(params, "PolicyArn")?;
    let filter = match params.optional("EntityFilter") {
        None => None,
        Some(f @ ("User" | "Role" | "Group" | "LocalManagedPolicy" | "AWSManagedPolicy")) => {
            Some(f)
        }
        Some(f) => {
            return Err(params.invalid(
                "EntityFilter",
                f,
                "Member must satisfy enum value set: [User, Role, Group, LocalManagedPolicy, AWSManagedPolicy]",
            ));
        }
    };
    let usage = match params.optional("PolicyUsageFilter") {
        None => None,
        Some(u) => Some(PolicyUsage::parse(u).ok_or_else(|| {
            params.invalid(
                "PolicyUsageFilter",
                u,
                "Member must satisfy enum value set: [PermissionsPolicy, PermissionsBoundary]",
            )
        })?),
    };
    let prefix = path_prefix(params)?;
    app.authorize(ctx, "iam:ListEntitiesForPolicy", policy_arn)
        .await?;
    own_policy(ctx, policy_arn)?;
    let entities: Vec<PolicyEntity> = app
        .iam
        .entities_for_policy(policy_arn)
        .await?
        .into_iter()
        .filter(|e| {
            let kind_ok = match filter {
                None => true,
                Some("User") => e.kind == EntityKind::User,
                Some("Group") => e.kind == EntityKind::Group,
                Some("Role") => e.kind == EntityKind::Role,
                // Policies are not entities that use policies.
                Some(_) => false,
            };
            kind_ok
                && usage.is_none_or(|u| u == e.usage)
                && prefix.is_none_or(|p| e.path.starts_with(p))
        })
        .collect();
    let (page, marker) = paginate(params, entities)?;
    let of = |kind: EntityKind| page.iter().filter(move |e| e.kind == kind);
    Ok(respond(ctx, |r| {
        r.list("PolicyGroups", of(EntityKind::Group), |w, e| {
            w.text("GroupName", &e.name).text("GroupId", &e.id);
        })
        .list("PolicyUsers", of(EntityKind::User), |w, e| {
            w.text("UserName", &e.name).text("UserId", &e.id);
        })
        .list("PolicyRoles", of(EntityKind::Role), |w, e| {
            w.text("RoleName", &e.name).text("RoleId", &e.id);
        })
        .pagination(marker.as_deref());
    }))
}

// ----- inline policies --------------------------------------------------------------------

fn name_element(target: &Target) -> &'static str {
    match target {
        Target::User(_) => "UserName",
        Target::Group(_) => "GroupName",
        Target::Role(_) => "RoleName",
    }
}

/// Authorize `ctx.action` on the entity `target` names (its ARN, looked up for the path).
/// Authorize the action on role `name` (against its stored ARN, path included).
async fn authorize_role(app: &App, ctx: &RequestContext, name: &str) -> Result<(), ApiError> {
    authorize_entity(app, ctx, &Target::Role(name.to_owned())).await
}

async fn authorize_entity(
    app: &App,
    ctx: &RequestContext,
    target: &Target,
) -> Result<(), ApiError> {
    let entity = entity_arn(app, account(ctx), target).await?;
    app.authorize(ctx, &format!("iam:{}", ctx.action), &entity)
        .await
}

async fn put_inline_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    let policy_name = params.required("PolicyName")?;
    let document = params.required("PolicyDocument")?;
    validate_name(EntityKind::Policy, policy_name)?;
    authorize_entity(app, ctx, &target).await?;
    app.iam
        .put_inline_policy(account(ctx), &target, policy_name, document)
        .await?;
    Ok(respond_empty(ctx))
}

async fn get_inline_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    let policy_name = params.required("PolicyName")?;
    validate_name(EntityKind::Policy, policy_name)?;
    authorize_entity(app, ctx, &target).await?;
    let document = app
        .iam
        .get_inline_policy(account(ctx), &target, policy_name)
        .await?;
    let (_, name) = target_parts(&target);
    Ok(respond(ctx, |r| {
        r.text(name_element(&target), name)
            .text("PolicyName", policy_name)
            .text("PolicyDocument", &encode_document(&document));
    }))
}

async fn list_inline_policies(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    authorize_entity(app, ctx, &target).await?;
    let names = app.iam.list_inline_policies(account(ctx), &target).await?;
    let (page, marker) = paginate(params, names)?;
    Ok(respond(ctx, |r| {
        r.text_list("PolicyNames", page.iter().map(String::as_str))
            .pagination(marker.as_deref());
    }))
}

async fn delete_inline_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let target = target_of(ctx, params)?;
    let policy_name = params.required("PolicyName")?;
    validate_name(EntityKind::Policy, policy_name)?;
    authorize_entity(app, ctx, &target).await?;
    app.iam
        .delete_inline_policy(account(ctx), &target, policy_name)
        .await?;
    Ok(respond_empty(ctx))
}

// ----- simulation -------------------------------------------------------------------------
// The decisions are `hive_iam::policy::simulate`'s; here: the request's parameters, the stored
// policies of the simulated entity, and the response.

/// A supplied document that does not parse: the simulator reports `InvalidInput`.
fn simulation_input_error(list: &str, n: usize, e: PolicyError) -> ApiError {
    invalid_input(format!("{list}.{n}: {e}"))
}

/// A stored policy: one that no longer parses is left out (it grants nothing), and logged.
fn add_stored(sim: &mut Simulation, id: &str, source: SimSource, text: &str) {
    if let Err(e) = sim.add_identity(id, source, text) {
        tracing::warn!(error = %e, "stored policy does not parse; left out of the simulation");
    }
}

/// `PolicyInputList` and `PermissionsBoundaryPolicyInputList` (which replaces any stored
/// boundary), and `ResourcePolicy`.
fn add_supplied(sim: &mut Simulation, params: &Params) -> Result<(), ApiError> {
    for (n, text) in params.members("PolicyInputList")?.into_iter().enumerate() {
        sim.add_identity(
            &format!("PolicyInputList.{}", n + 1),
            SimSource::Supplied,
            text,
        )
        .map_err(|e| simulation_input_error("PolicyInputList", n + 1, e))?;
    }
    let boundaries = params.members("PermissionsBoundaryPolicyInputList")?;
    if !boundaries.is_empty() {
        let ids: Vec<String> = (1..=boundaries.len())
            .map(|n| format!("PermissionsBoundaryPolicyInputList.{n}"))
            .collect();
        sim.set_boundary(
            ids.iter()
                .zip(boundaries)
                .map(|(id, text)| (id.as_str(), SimSource::Supplied, text)),
        )
        .map_err(|(n, e)| simulation_input_error("PermissionsBoundaryPolicyInputList", n + 1, e))?;
    }
    if let Some(text) = params.optional("ResourcePolicy") {
        sim.set_resource_policy(text)
            .map_err(|e| invalid_input(format!("ResourcePolicy: {e}")))?;
    }
    Ok(())
}

/// `PolicyExclusionList.member.N.{PolicyArn | InlinePolicyIdentifier.{PolicyName,
/// AttachmentType, AttachmentName}}` (SimulatePrincipalPolicy only).
fn add_exclusions(sim: &mut Simulation, params: &Params) -> Result<(), ApiError> {
    for e in params.member_structs("PolicyExclusionList")? {
        if let Some(a) = e.optional("PolicyArn") {
            sim.exclude_managed(a);
        }
        if let Some(i) = e.structure("InlinePolicyIdentifier") {
            sim.exclude_inline(
                i.required("AttachmentType")?,
                i.required("AttachmentName")?,
                i.required("PolicyName")?,
            );
        }
    }
    Ok(())
}

/// Managed policies (by reference) and inline policies of one entity, into the simulation.
async fn add_entity_policies(
    app: &App,
    sim: &mut Simulation,
    account_id: &str,
    kind: EntityKind,
    entity_name: &str,
    inline: &std::collections::BTreeMap<String, String>,
    attached: &[String],
) -> Result<(), ApiError> {
    let source = SimSource::inline(kind);
    for (name, document) in inline {
        if !sim.is_inline_excluded(source.as_str(), entity_name, name) {
            add_stored(sim, name, source, document);
        }
    }
    for reference in attached {
        let policy_arn = if reference.starts_with("arn:") {
            reference.clone()
        } else {
            arn(account_id, EntityKind::Policy, "/", reference)
        };
        if sim.is_managed_excluded(&policy_arn) {
            continue;
        }
        match app.iam.get_policy(&policy_arn).await {
            Ok(p) => {
                if let Some(v) = p.default_version() {
                    add_stored(sim, &p.policy_name, SimSource::UserManaged, &v.document);
                }
            }
            // A dangling reference grants nothing.
            Err(IamError::NoSuchEntity(_) | IamError::InvalidInput(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn add_boundary(
    app: &App,
    sim: &mut Simulation,
    boundary: Option<&str>,
) -> Result<(), ApiError> {
    // A boundary given in the request replaces the stored one.
    if sim.has_boundary() {
        return Ok(());
    }
    let Some(b) = boundary.filter(|b| !sim.is_managed_excluded(b)) else {
        return Ok(());
    };
    let p = app.iam.get_policy(b).await?;
    let document = p.default_version().map(|v| {
        (
            p.policy_name.as_str(),
            SimSource::UserManaged,
            v.document.as_str(),
        )
    });
    if let Err((_, e)) = sim.set_boundary(document) {
        tracing::warn!(error = %e, "stored boundary does not parse; it allows nothing");
        // A boundary that cannot be read allows nothing: set, and empty.
        sim.set_boundary([]).ok();
    }
    Ok(())
}

/// The simulated caller named by `CallerArn` (a user of this account), if any.
async fn caller_principal(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<Option<PolicyPrincipal>, ApiError> {
    let Some(caller) = params.optional("CallerArn") else {
        return Ok(None);
    };
    let parsed = parse_arn(caller)
        .filter(|p| p.kind == EntityKind::User && p.account_id == account(ctx))
        .ok_or_else(|| {
            invalid_input(format!(
                "CallerArn {} is not a user of this account.",
                crate::error::truncate(caller, 256)
            ))
        })?;
    let user = app.iam.get_user(&parsed.account_id, &parsed.name).await?;
    Ok(Some(PolicyPrincipal::user(
        &user.account_id,
        &user.username,
        &user.user_id,
    )))
}

async fn simulate_principal_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let source = params.required("PolicySourceArn")?;
    let parsed = parse_arn(source)
        .filter(|p| p.kind != EntityKind::Policy)
        .ok_or_else(|| {
            invalid_input(format!(
                "Invalid ARN: {} is not a user, group or role.",
                crate::error::truncate(source, 256)
            ))
        })?;
    app.authorize(ctx, "iam:SimulatePrincipalPolicy", source)
        .await?;
    if parsed.account_id != account(ctx) {
        return Err(IamError::NoSuchEntity(format!(
            "The {} with name {} cannot be found.",
            parsed.kind, parsed.name
        ))
        .into());
    }
    let account_id = parsed.account_id.as_str();
    let mut sim = Simulation::default();
    add_supplied(&mut sim, params)?;
    add_exclusions(&mut sim, params)?;
    let caller = caller_principal(app, ctx, params).await?;
    let principal = match parsed.kind {
        EntityKind::User => {
            let u = app.iam.get_user(account_id, &parsed.name).await?;
            add_entity_policies(
                app,
                &mut sim,
                account_id,
                EntityKind::User,
                &u.username,
                &u.inline_policies,
                &u.policies,
            )
            .await?;
            for g in &u.groups {
                // A group deleted by hand leaves a dangling name: it grants nothing.
                if let Ok(group) = app.iam.get_group(account_id, g).await {
                    add_entity_policies(
                        app,
                        &mut sim,
                        account_id,
                        EntityKind::Group,
                        &group.group_name,
                        &group.inline_policies,
                        &group.policies,
                    )
                    .await?;
                }
            }
            add_boundary(app, &mut sim, u.permissions_boundary.as_deref()).await?;
            PolicyPrincipal::user(account_id, &u.username, &u.user_id)
        }
        EntityKind::Group => {
            let g = app.iam.get_group(account_id, &parsed.name).await?;
            add_entity_policies(
                app,
                &mut sim,
                account_id,
                EntityKind::Group,
                &g.group_name,
                &g.inline_policies,
                &g.policies,
            )
            .await?;
            caller
                .clone()
                .unwrap_or_else(|| PolicyPrincipal::root(account_id))
        }
        EntityKind::Role | EntityKind::Policy => {
            let r = app.iam.get_role(account_id, &parsed.name).await?;
            add_entity_policies(
                app,
                &mut sim,
                account_id,
                EntityKind::Role,
                &r.role_name,
                &r.inline_policies,
                &r.policies,
            )
            .await?;
            add_boundary(app, &mut sim, r.permissions_boundary.as_deref()).await?;
            PolicyPrincipal::assumed_role(account_id, &r.role_name, &r.role_id, &r.role_name)
        }
    };
    let principal = match (parsed.kind, caller) {
        (EntityKind::Group, _) | (_, None) => principal,
        (_, Some(c)) => c,
    };
    run_simulation(ctx, params, &sim, principal)
}

async fn simulate_custom_policy(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    if params.members("PolicyInputList")?.is_empty() {
        return Err(params.missing("PolicyInputList"));
    }
    app.authorize(ctx, "iam:SimulateCustomPolicy", "*").await?;
    let mut sim = Simulation::default();
    add_supplied(&mut sim, params)?;
    let principal = caller_principal(app, ctx, params)
        .await?
        .unwrap_or_else(|| PolicyPrincipal::root(account(ctx)));
    run_simulation(ctx, params, &sim, principal)
}

/// `ContextEntries.member.N.{ContextKeyName, ContextKeyValues.member.M, ContextKeyType}`.
fn context_entries(params: &Params) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    params
        .member_structs("ContextEntries")?
        .iter()
        .map(|e| {
            let name = e.required("ContextKeyName")?.to_owned();
            let values = e
                .members("ContextKeyValues")?
                .into_iter()
                .map(str::to_owned)
                .collect();
            Ok((name, values))
        })
        .collect()
}

fn run_simulation(
    ctx: &RequestContext,
    params: &Params,
    sim: &Simulation,
    principal: PolicyPrincipal,
) -> Result<String, ApiError> {
    let actions = params.members("ActionNames")?;
    if actions.is_empty() {
        return Err(params.missing("ActionNames"));
    }
    let resources = params.members("ResourceArns")?;
    let context = context_entries(params)?;
    let results = sim.run(&principal, &actions, &resources, &context);
    let (page, marker) = paginate(params, results)?;
    Ok(respond(ctx, |r| {
        r.list("EvaluationResults", &page, |w, res| {
            w.text("EvalActionName", &res.action)
                .opt_text("EvalResourceName", res.resource_name.as_deref())
                .text("EvalDecision", res.outcome.effect.simulator_name());
            write_sim_details(w, sim, &res.outcome);
            if let Some(per) = &res.per_resource {
                w.list("ResourceSpecificResults", per, |w, o| {
                    w.text("EvalResourceName", &o.resource)
                        .text("EvalResourceDecision", o.effect.simulator_name());
                    write_sim_details(w, sim, o);
                });
            }
        })
        .pagination(marker.as_deref());
    }))
}

fn write_sim_details(w: &mut XmlWriter, sim: &Simulation, o: &SimOutcome) {
    w.list("MatchedStatements", &o.matched, |w, &(p, index)| {
        let Some(policy) = sim.policy(p) else {
            return;
        };
        w.text("SourcePolicyId", &policy.id)
            .text("SourcePolicyType", policy.source.as_str());
        if let Some((start, end)) = policy.compiled.document().statement_position(index) {
            w.node("StartPosition", |w| {
                w.display("Line", start.line)
                    .display("Column", start.column);
            })
            .node("EndPosition", |w| {
                w.display("Line", end.line).display("Column", end.column);
            });
        }
    })
    .text_list("MissingContextValues", o.missing.iter().map(String::as_str));
    if let Some(allowed) = o.allowed_by_boundary {
        w.node("PermissionsBoundaryDecisionDetail", |w| {
            w.bool("AllowedByPermissionsBoundary", allowed);
        });
    }
}

// ----- account authorization details --------------------------------------------------------

/// One entry of `GetAccountAuthorizationDetails`, in listing order.
enum Detail {
    User(Box<UserRecord>),
    Group(Box<GroupRecord>),
    Role(Box<RoleRecord>),
    Policy(Box<PolicyRecord>, usize),
}

const ENTITY_TYPES: [&str; 5] = [
    "User",
    "Role",
    "Group",
    "LocalManagedPolicy",
    "AWSManagedPolicy",
];

async fn account_authorization_details(
    app: &App,
    ctx: &RequestContext,
    params: &Params,
) -> Result<String, ApiError> {
    let filter = params.members("Filter")?;
    if let Some(bad) = filter.iter().find(|f| !ENTITY_TYPES.contains(*f)) {
        return Err(params.invalid(
            "Filter",
            bad,
            "Member must satisfy enum value set: [User, Role, Group, LocalManagedPolicy, AWSManagedPolicy]",
        ));
    }
    let wants = |t: &str| filter.is_empty() || filter.contains(&t);
    app.authorize(ctx, "iam:GetAccountAuthorizationDetails", "*")
        .await?;
    let account_id = account(ctx);
    let mut details = Vec::new();
    if wants("User") {
        for mut u in app.iam.list_users(account_id, None).await? {
            if u.user_id.is_empty() {
                u.user_id = derived_unique_id(EntityKind::User, &u.arn);
            }
            details.push(Detail::User(Box::new(u)));
        }
    }
    if wants("Group") {
        for g in app.iam.list_groups(account_id, None).await? {
            details.push(Detail::Group(Box::new(g)));
        }
    }
    if wants("Role") {
        for r in app.iam.list_roles(account_id, None).await? {
            details.push(Detail::Role(Box::new(r)));
        }
    }
    // Hive has no AWS managed policies: `AWSManagedPolicy` adds nothing.
    if wants("LocalManagedPolicy") {
        let counts = app.iam.boundary_usage_counts(account_id).await?;
        for p in app.iam.list_policies(account_id, None).await? {
            let uses = counts.get(&p.arn).copied().unwrap_or(0);
            details.push(Detail::Policy(Box::new(p), uses));
        }
    }
    let (page, marker) = paginate(params, details)?;
    let users = page.iter().filter_map(|d| match d {
        Detail::User(u) => Some(u),
        _ => None,
    });
    let groups = page.iter().filter_map(|d| match d {
        Detail::Group(g) => Some(g),
        _ => None,
    });
    let roles = page.iter().filter_map(|d| match d {
        Detail::Role(r) => Some(r),
        _ => None,
    });
    let policies = page.iter().filter_map(|d| match d {
        Detail::Policy(p, uses) => Some((p, *uses)),
        _ => None,
    });
    Ok(respond(ctx, |r| {
        r.list("UserDetailList", users, |w, u| write_user_detail(w, u))
            .list("GroupDetailList", groups, |w, g| write_group_detail(w, g))
            .list("RoleDetailList", roles, |w, role| {
                write_role_detail(w, role)
            })
            .list("Policies", policies, |w, (p, uses)| {
                write_policy(w, p, uses, false);
                w.list("PolicyVersionList", &p.versions, |w, v| {
                    write_version(w, v, true);
                });
            })
            .pagination(marker.as_deref());
    }))
}

fn write_user_detail(w: &mut XmlWriter, u: &UserRecord) {
    let account_id = if u.account_id.is_empty() {
        DEFAULT_ACCOUNT_ID
    } else {
        &u.account_id
    };
    // Path, name, id, ARN, date, boundary and tags, as in `User`.
    super::identities::write_user(w, u);
    write_inline(w, "UserPolicyList", &u.inline_policies);
    w.text_list("GroupList", u.groups.iter().map(String::as_str));
    write_attached(w, "AttachedManagedPolicies", account_id, &u.policies);
}

fn write_group_detail(w: &mut XmlWriter, g: &GroupRecord) {
    super::identities::write_group(w, g);
    write_inline(w, "GroupPolicyList", &g.inline_policies);
    write_attached(w, "AttachedManagedPolicies", &g.account_id, &g.policies);
}

fn write_role_detail(w: &mut XmlWriter, r: &RoleRecord) {
    w.text("Path", &r.path)
        .text("RoleName", &r.role_name)
        .text("RoleId", &r.role_id)
        .text("Arn", &r.arn)
        .time("CreateDate", r.created_at)
        .text(
            "AssumeRolePolicyDocument",
            &encode_document(&r.assume_role_policy_document),
        )
        .list("InstanceProfileList", [(); 0], |_, ()| {});
    write_inline(w, "RolePolicyList", &r.inline_policies);
    write_attached(w, "AttachedManagedPolicies", &r.account_id, &r.policies);
    write_boundary(w, r.permissions_boundary.as_deref());
    write_tags(w, &r.tags);
    w.node("RoleLastUsed", |_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_percent_encoded_like_iam() {
        assert_eq!(
            encode_document(r#"{"Version": "2012-10-17"}"#),
            "%7B%22Version%22%3A%20%222012-10-17%22%7D"
        );
        assert_eq!(encode_document("a~b_c.d-é"), "a~b_c.d-%C3%A9");
    }

    #[test]
    fn pagination_walks_pages_and_rejects_bad_markers() {
        let items: Vec<u32> = (0..5).collect();
        let p = Params::from_pairs([("MaxItems", "2")]);
        assert_eq!(
            paginate(&p, items.clone()).expect("page"),
            (vec![0, 1], Some("2".to_owned()))
        );
        let p = Params::from_pairs([("MaxItems", "2"), ("Marker", "4")]);
        assert_eq!(paginate(&p, items.clone()).expect("page"), (vec![4], None));
        let p = Params::from_pairs([("Marker", "x")]);
        assert_eq!(
            paginate(&p, items.clone()).expect_err("bad").code(),
            "ValidationError"
        );
        let p = Params::from_pairs([("MaxItems", "0")]);
        assert_eq!(
            paginate(&p, items).expect_err("bad").code(),
            "ValidationError"
        );
    }

    #[test]
    fn policy_arns_are_checked_before_use() {
        let p = Params::from_pairs([("PolicyArn", "arn:aws:iam::123456789012:user/bob")]);
        assert_eq!(
            policy_arn_param(&p, "PolicyArn")
                .expect_err("not a policy")
                .code(),
            "InvalidInput"
        );
        let p = Params::from_pairs([("PolicyArn", "arn:aws:iam::aws:policy/ReadOnlyAccess")]);
        assert!(policy_arn_param(&p, "PolicyArn").is_ok());
        assert!(is_aws_managed(
            "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
        ));
    }

    #[test]
    fn managed_documents_must_be_current_version() {
        let old = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let e = check_managed_document(old).expect_err("2008");
        assert_eq!(
            (e.code(), e.message()),
            (
                "MalformedPolicyDocument",
                "Policy document must be version 2012-10-17 or greater."
            )
        );
        let e = check_managed_document("{").expect_err("syntax");
        assert_eq!(e.message(), "Syntax errors in policy.");
    }
}
