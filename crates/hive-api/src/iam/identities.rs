//! IAM identities: users, groups and membership, access keys, user and role tags, and
//! permissions boundaries of users and roles.
//!
//! Every action decodes its parameters as botocore's model shapes them (AWS's validation
//! messages, lower-camel member names), authorizes the caller on the AWS resource ARN of the
//! entity (`arn:aws:iam::<account>:user/<path><name>`, `group/...`, `role/...`; the List actions
//! on the path prefix, `arn:aws:iam::<account>:user/`), and only then reads or changes anything
//! else. The entity is looked up before authorization so that the ARN carries its path, as on
//! AWS; a caller who may not act on it learns only `AccessDenied`, never whether it exists.
//!
//! Lists are sorted by name (case-insensitively) and paginated with `MaxItems` (1-1000, default
//! 100) and an opaque `Marker`: the hex-encoded sort key of the first item of the next page, so
//! a page boundary survives items added or removed meanwhile.

use hive_iam::error::IamError;
use hive_iam::identity::{
    EntityKind, GroupRecord, KeyStatus, Principal as IamPrincipal, RoleRecord, Tag, UserRecord,
    arn, derived_unique_id, root_arn,
};
use hive_iam::policy::RequestContext as PolicyRequest;
use hive_iam_store::Target;
use time::OffsetDateTime;

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
        prepare {
            let h = Handler { app, ctx, params };
        }
        dispatch ctx.action => {
            "CreateUser" => h.create_user().await,
            "GetUser" => h.get_user().await,
            "ListUsers" => h.list_users().await,
            "UpdateUser" => h.update_user().await,
            "DeleteUser" => h.delete_user().await,
            "CreateGroup" => h.create_group().await,
            "GetGroup" => h.get_group().await,
            "ListGroups" => h.list_groups().await,
            "UpdateGroup" => h.update_group().await,
            "DeleteGroup" => h.delete_group().await,
            "AddUserToGroup" => h.membership(true).await,
            "RemoveUserFromGroup" => h.membership(false).await,
            "ListGroupsForUser" => h.list_groups_for_user().await,
            "CreateAccessKey" => h.create_access_key().await,
            "ListAccessKeys" => h.list_access_keys().await,
            "UpdateAccessKey" => h.update_access_key().await,
            "DeleteAccessKey" => h.delete_access_key().await,
            "GetAccessKeyLastUsed" => h.get_access_key_last_used().await,
            "TagUser" => h.tag(EntityKind::User).await,
            "UntagUser" => h.untag(EntityKind::User).await,
            "ListUserTags" => h.list_tags(EntityKind::User).await,
            "TagRole" => h.tag(EntityKind::Role).await,
            "UntagRole" => h.untag(EntityKind::Role).await,
            "ListRoleTags" => h.list_tags(EntityKind::Role).await,
            "PutUserPermissionsBoundary" => h.boundary(EntityKind::User, true).await,
            "DeleteUserPermissionsBoundary" => h.boundary(EntityKind::User, false).await,
            "PutRolePermissionsBoundary" => h.boundary(EntityKind::Role, true).await,
            "DeleteRolePermissionsBoundary" => h.boundary(EntityKind::Role, false).await,
            _ => Err(ApiError::invalid_action(ctx.action, Protocol::Query)),
        }
    }
}

// ----- response shapes ------------------------------------------------------------------

/// A `User` structure (GetUser, CreateUser; the common part of GetAccountAuthorizationDetails'
/// `UserDetail`): path, name, id, ARN, creation date, permissions boundary and tags.
pub(super) fn write_user(w: &mut XmlWriter, u: &UserRecord) {
    write_user_summary(w, u);
    if let Some(b) = &u.permissions_boundary {
        write_boundary(w, b);
    }
    write_tags_if_any(w, &u.tags);
}

/// A `User` as the List actions return it: without permissions boundary and tags, as AWS.
fn write_user_summary(w: &mut XmlWriter, u: &UserRecord) {
    let id = if u.user_id.is_empty() {
        derived_unique_id(EntityKind::User, &u.arn)
    } else {
        u.user_id.clone()
    };
    w.text("Path", &u.path)
        .text("UserName", &u.username)
        .text("UserId", &id)
        .text("Arn", &u.arn)
        .time("CreateDate", u.created_at);
}

/// A `Group` structure: path, name, id, ARN and creation date.
pub(super) fn write_group(w: &mut XmlWriter, g: &GroupRecord) {
    w.text("Path", &g.path)
        .text("GroupName", &g.group_name)
        .text("GroupId", &g.group_id)
        .text("Arn", &g.arn)
        .time("CreateDate", g.created_at);
}

/// `<PermissionsBoundary>` of a user or role.
pub(super) fn write_boundary(w: &mut XmlWriter, policy_arn: &str) {
    w.node("PermissionsBoundary", |w| {
        w.text("PermissionsBoundaryType", "PermissionsBoundaryPolicy")
            .text("PermissionsBoundaryArn", policy_arn);
    });
}

fn write_tags(w: &mut XmlWriter, tags: &[Tag]) {
    w.list("Tags", tags, |w, t| {
        w.text("Key", &t.key).text("Value", &t.value);
    });
}

fn write_tags_if_any(w: &mut XmlWriter, tags: &[Tag]) {
    if !tags.is_empty() {
        write_tags(w, tags);
    }
}

// ----- parameters -----------------------------------------------------------------------

/// The AWS name pattern `[\w+=,.@-]+`.
const NAME_PATTERN: &str = "[\\w+=,.@-]+";
/// Default and largest `MaxItems`.
const DEFAULT_MAX_ITEMS: usize = 100;
const MAX_MAX_ITEMS: i64 = 1000;
/// Longest marker accepted back (ours are hex of a sort key; generous for multi-byte tags).
const MAX_MARKER_LEN: usize = 1100;

/// AWS's member name in validation messages: `UserName` → `userName`.
fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationError", message, 400)
}

/// A required string parameter.
fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    p.optional(name)
        .ok_or_else(|| p.missing(&lower_camel(name)))
}

/// Checks a length range (in characters) as AWS reports it.
fn check_len(p: &Params, name: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min {
        return Err(p.invalid(
            &lower_camel(name),
            value,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(p.invalid(
            &lower_camel(name),
            value,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// A name parameter (`UserName`, `GroupName`, `RoleName`, ...): 1..=`max` characters of
/// `[\w+=,.@-]`.
fn name_value(p: &Params, name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    check_len(p, name, value, 1, max)?;
    if !value.chars().all(is_name_char) {
        return Err(p.invalid(
            &lower_camel(name),
            value,
            &format!("Member must satisfy regular expression pattern: {NAME_PATTERN}"),
        ));
    }
    Ok(())
}

fn required_name<'a>(p: &'a Params, name: &str, max: usize) -> Result<&'a str, ApiError> {
    let v = required(p, name)?;
    name_value(p, name, v, max)?;
    Ok(v)
}

fn optional_name<'a>(p: &'a Params, name: &str, max: usize) -> Result<Option<&'a str>, ApiError> {
    p.optional(name)
        .map(|v| name_value(p, name, v, max).map(|()| v))
        .transpose()
}

/// A `Path` or `NewPath`: `/` or `/.../` of printable ASCII, at most 512 characters.
fn optional_path<'a>(p: &'a Params, name: &str) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = p.optional(name) else {
        return Ok(None);
    };
    check_len(p, name, v, 1, 512)?;
    let ok = v == "/"
        || (v.len() >= 3
            && v.starts_with('/')
            && v.ends_with('/')
            && v.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if !ok {
        return Err(p.invalid(
            &lower_camel(name),
            v,
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(Some(v))
}

/// A `PathPrefix`: `/` followed by characters in `\u0021-\u007F`, at most 512.
fn path_prefix(p: &Params) -> Result<&str, ApiError> {
    let Some(v) = p.optional("PathPrefix") else {
        return Ok("/");
    };
    check_len(p, "PathPrefix", v, 1, 512)?;
    if !(v.starts_with('/') && v.bytes().all(|b| (0x21..=0x7f).contains(&b))) {
        return Err(p.invalid(
            "pathPrefix",
            v,
            "Member must satisfy regular expression pattern: \\u002F[\\u0021-\\u007F]*",
        ));
    }
    Ok(v)
}

/// An ARN parameter of 20..=2048 characters (`PermissionsBoundary`).
fn required_arn<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    let v = required(p, name)?;
    check_len(p, name, v, 20, 2048)?;
    Ok(v)
}

/// An `AccessKeyId`: 16..=128 word characters.
fn access_key_id(p: &Params) -> Result<&str, ApiError> {
    let v = required(p, "AccessKeyId")?;
    check_len(p, "AccessKeyId", v, 16, 128)?;
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(p.invalid(
            "accessKeyId",
            v,
            "Member must satisfy regular expression pattern: [\\w]+",
        ));
    }
    Ok(v)
}

/// `Tags.member.N.Key` / `.Value`; `required` when the action needs at least one tag.
fn tags(p: &Params, required: bool) -> Result<Vec<Tag>, ApiError> {
    let items = p.member_structs("Tags")?;
    if required && items.is_empty() {
        return Err(p.missing("tags"));
    }
    items
        .iter()
        .map(|t| {
            let key = t.optional("Key").ok_or_else(|| t.missing("key"))?;
            let value = t.get("Value").ok_or_else(|| t.missing("value"))?;
            Ok(Tag {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// `TagKeys.member.N` (1-50 keys).
fn tag_keys(p: &Params) -> Result<Vec<String>, ApiError> {
    let keys = p.members("TagKeys")?;
    if keys.is_empty() {
        return Err(p.missing("tagKeys"));
    }
    if keys.len() > 50 {
        return Err(validation(
            "1 validation error detected: Value at 'tagKeys' failed to satisfy constraint: \
             Member must have length less than or equal to 50",
        ));
    }
    Ok(keys.into_iter().map(str::to_owned).collect())
}

/// `MaxItems` (1-1000, default 100).
fn max_items(p: &Params) -> Result<usize, ApiError> {
    let Some(v) = p.optional("MaxItems") else {
        return Ok(DEFAULT_MAX_ITEMS);
    };
    let n: i64 = v
        .parse()
        .map_err(|_| p.invalid("maxItems", v, "Member must be an integer"))?;
    if n < 1 {
        return Err(p.invalid(
            "maxItems",
            v,
            "Member must have value greater than or equal to 1",
        ));
    }
    if n > MAX_MAX_ITEMS {
        return Err(p.invalid(
            "maxItems",
            v,
            &format!("Member must have value less than or equal to {MAX_MAX_ITEMS}"),
        ));
    }
    usize::try_from(n).map_err(|_| p.invalid("maxItems", v, "Member must be an integer"))
}

// ----- pagination -----------------------------------------------------------------------

/// One page of a sorted list and the marker of the next page.
#[derive(Debug, PartialEq, Eq)]
struct Page<T> {
    items: Vec<T>,
    marker: Option<String>,
}

fn encode_marker(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_marker(marker: &str) -> Option<String> {
    if marker.len() > MAX_MARKER_LEN || !marker.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..marker.len())
        .step_by(2)
        .map(|i| {
            marker
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Sorts `items` by `key` and returns the page that `Marker`/`MaxItems` ask for.
fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    p: &Params,
) -> Result<Page<T>, ApiError> {
    let max = max_items(p)?;
    let start = match p.optional("Marker") {
        None => None,
        Some(m) => Some(decode_marker(m).ok_or_else(|| {
            p.invalid(
                "marker",
                m,
                "Member must be a marker returned by an earlier call of this action",
            )
        })?),
    };
    let mut keyed: Vec<(String, T)> = items.drain(..).map(|t| (key(&t), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest = keyed
        .into_iter()
        .skip_while(|(k, _)| start.as_ref().is_some_and(|s| k < s))
        .peekable();
    let page: Vec<T> = rest.by_ref().take(max).map(|(_, t)| t).collect();
    let marker = rest.peek().map(|(k, _)| encode_marker(k));
    Ok(Page {
        items: page,
        marker,
    })
}

// ----- handlers -------------------------------------------------------------------------

/// The message AWS gives when an action needs a user name and the caller is not a user.
const NOT_A_USER: &str = "Must specify userName when calling with non-User credentials";

struct Handler<'a> {
    app: &'a App,
    ctx: &'a RequestContext,
    params: &'a Params,
}

/// Tags as condition keys of the request (`aws:RequestTag/<key>`, `aws:TagKeys`).
fn request_tags(req: &mut PolicyRequest, tags: &[Tag]) {
    for t in tags {
        req.set(&format!("aws:RequestTag/{}", t.key), t.value.as_str());
    }
    req.set_values("aws:TagKeys", tags.iter().map(|t| t.key.as_str()));
}

/// The tags of the resource as condition keys (`aws:ResourceTag/<key>`, `iam:ResourceTag/...`).
fn resource_tags(req: &mut PolicyRequest, tags: &[Tag]) {
    for t in tags {
        req.set(&format!("aws:ResourceTag/{}", t.key), t.value.as_str());
        req.set(&format!("iam:ResourceTag/{}", t.key), t.value.as_str());
    }
}

/// A not-found answer becomes `None`; anything else stays an error.
fn found<T>(r: Result<T, IamError>) -> Result<Option<T>, ApiError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(IamError::NoSuchEntity(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn no_such_user(name: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("The user with name {name} cannot be found."),
        404,
    )
}

fn no_such_group(name: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("The group with name {name} cannot be found."),
        404,
    )
}

fn no_such_role(name: &str) -> ApiError {
    ApiError::new(
        "NoSuchEntity",
        format!("The role with name {name} cannot be found."),
        404,
    )
}

impl Handler<'_> {
    fn account(&self) -> &str {
        &self.ctx.caller.account_id
    }

    fn arn_of(&self, kind: EntityKind, path: &str, name: &str) -> String {
        arn(self.account(), kind, path, name)
    }

    fn ok(&self, result: impl FnOnce(&mut XmlWriter)) -> String {
        xml::query_response(
            ServiceId::Iam,
            self.ctx.action,
            &self.ctx.request_id,
            result,
        )
    }

    fn empty(&self) -> String {
        xml::query_empty_response(ServiceId::Iam, self.ctx.action, &self.ctx.request_id)
    }

    fn action(&self) -> String {
        format!("iam:{}", self.ctx.action)
    }

    async fn authorize(&self, resource: &str) -> Result<(), ApiError> {
        self.app.authorize(self.ctx, &self.action(), resource).await
    }

    async fn authorize_with(
        &self,
        resource: &str,
        extend: impl FnOnce(&mut PolicyRequest),
    ) -> Result<(), ApiError> {
        self.app
            .authorize_with(self.ctx, &self.action(), resource, extend)
            .await
    }

    /// The user named `name`, after the caller was allowed this action on it (on its ARN with
    /// path when it exists, on `user/<name>` otherwise); `NoSuchEntity` only after that.
    async fn authorized_user(
        &self,
        name: &str,
        extend: impl FnOnce(&mut PolicyRequest),
    ) -> Result<UserRecord, ApiError> {
        let user = found(
            self.app
                .user(self.account(), name)
                .await
                .map(std::sync::Arc::unwrap_or_clone),
        )?;
        let resource = match &user {
            Some(u) => u.arn.clone(),
            None => self.arn_of(EntityKind::User, "/", name),
        };
        let tags = user.as_ref().map(|u| u.tags.clone()).unwrap_or_default();
        self.authorize_with(&resource, |req| {
            resource_tags(req, &tags);
            extend(req);
        })
        .await?;
        user.ok_or_else(|| no_such_user(name))
    }

    async fn authorized_group(&self, name: &str) -> Result<GroupRecord, ApiError> {
        let group = found(self.app.iam.get_group(self.account(), name).await)?;
        let resource = match &group {
            Some(g) => g.arn.clone(),
            None => self.arn_of(EntityKind::Group, "/", name),
        };
        self.authorize(&resource).await?;
        group.ok_or_else(|| no_such_group(name))
    }

    async fn authorized_role(
        &self,
        name: &str,
        extend: impl FnOnce(&mut PolicyRequest),
    ) -> Result<RoleRecord, ApiError> {
        let role = found(self.app.iam.get_role(self.account(), name).await)?;
        let resource = match &role {
            Some(r) => r.arn.clone(),
            None => self.arn_of(EntityKind::Role, "/", name),
        };
        let tags = role.as_ref().map(|r| r.tags.clone()).unwrap_or_default();
        self.authorize_with(&resource, |req| {
            resource_tags(req, &tags);
            extend(req);
        })
        .await?;
        role.ok_or_else(|| no_such_role(name))
    }

    /// `UserName`, or the calling user's own name when it is absent (access keys, GetUser).
    fn user_name_or_caller(&self) -> Result<Option<&str>, ApiError> {
        if let Some(name) = optional_name(self.params, "UserName", 128)? {
            return Ok(Some(name));
        }
        match &self.ctx.caller.identity {
            IamPrincipal::User { username, .. } => Ok(Some(username)),
            IamPrincipal::Root { .. } => Ok(None),
            IamPrincipal::AssumedRole { .. } => Err(validation(NOT_A_USER)),
        }
    }

    // ----- users --------------------------------------------------------------------

    async fn create_user(&self) -> Result<String, ApiError> {
        let p = self.params;
        let name = required_name(p, "UserName", 64)?;
        let path = optional_path(p, "Path")?;
        let boundary = match p.optional("PermissionsBoundary") {
            Some(_) => Some(required_arn(p, "PermissionsBoundary")?),
            None => None,
        };
        let tags = tags(p, false)?;
        let resource = self.arn_of(EntityKind::User, path.unwrap_or("/"), name);
        self.authorize_with(&resource, |req| {
            request_tags(req, &tags);
            if let Some(b) = boundary {
                req.set("iam:PermissionsBoundary", b);
            }
        })
        .await?;
        let user = self
            .app
            .iam
            .create_user_with_boundary(self.account(), name, path, tags, boundary)
            .await?;
        Ok(self.ok(|r| {
            r.node("User", |w| write_user(w, &user));
        }))
    }

    async fn get_user(&self) -> Result<String, ApiError> {
        let Some(name) = self.user_name_or_caller()? else {
            return self.get_root().await;
        };
        let user = self.authorized_user(name, |_| {}).await?;
        Ok(self.ok(|r| {
            r.node("User", |w| write_user(w, &user));
        }))
    }

    /// `GetUser` by the account root: AWS answers with the account's id and root ARN.
    async fn get_root(&self) -> Result<String, ApiError> {
        let account = self.account().to_owned();
        let created = self
            .app
            .iam
            .account_created_at(&account)
            .await?
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Ok(self.ok(|r| {
            r.node("User", |w| {
                w.text("UserId", &account)
                    .text("Arn", &root_arn(&account))
                    .time("CreateDate", created);
            });
        }))
    }

    async fn list_users(&self) -> Result<String, ApiError> {
        let prefix = path_prefix(self.params)?;
        let resource = format!("arn:aws:iam::{}:user{prefix}", self.account());
        self.authorize(&resource).await?;
        let users = self
            .app
            .iam
            .list_users(self.account(), Some(prefix))
            .await?;
        let page = paginate(users, |u| u.username.to_ascii_lowercase(), self.params)?;
        Ok(self.ok(|r| {
            r.list("Users", &page.items, write_user_summary)
                .pagination(page.marker.as_deref());
        }))
    }

    async fn update_user(&self) -> Result<String, ApiError> {
        let p = self.params;
        let name = required_name(p, "UserName", 128)?;
        let new_name = optional_name(p, "NewUserName", 64)?;
        let new_path = optional_path(p, "NewPath")?;
        let user = self.authorized_user(name, |_| {}).await?;
        // Renaming needs permission on the new identity too, as on AWS.
        let target = self.arn_of(
            EntityKind::User,
            new_path.unwrap_or(&user.path),
            new_name.unwrap_or(&user.username),
        );
        if target != user.arn {
            self.authorize(&target).await?;
        }
        self.app
            .iam
            .rename_user(self.account(), name, new_name, new_path)
            .await?;
        Ok(self.empty())
    }

    async fn delete_user(&self) -> Result<String, ApiError> {
        let name = required_name(self.params, "UserName", 128)?;
        self.authorized_user(name, |_| {}).await?;
        self.app.iam.delete_user(self.account(), name).await?;
        Ok(self.empty())
    }

    // ----- groups -------------------------------------------------------------------

    async fn create_group(&self) -> Result<String, ApiError> {
        let p = self.params;
        let name = required_name(p, "GroupName", 128)?;
        let path = optional_path(p, "Path")?;
        self.authorize(&self.arn_of(EntityKind::Group, path.unwrap_or("/"), name))
            .await?;
        let group = self
            .app
            .iam
            .create_group(self.account(), name, path)
            .await?;
        Ok(self.ok(|r| {
            r.node("Group", |w| write_group(w, &group));
        }))
    }

    async fn get_group(&self) -> Result<String, ApiError> {
        let name = required_name(self.params, "GroupName", 128)?;
        let group = self.authorized_group(name).await?;
        let page = paginate(
            group.members.clone(),
            |m| m.to_ascii_lowercase(),
            self.params,
        )?;
        let mut users = Vec::with_capacity(page.items.len());
        for member in &page.items {
            // A member deleted by hand leaves a dangling name: not listed.
            if let Some(u) = found(self.app.iam.get_user(self.account(), member).await)? {
                users.push(u);
            }
        }
        Ok(self.ok(|r| {
            r.node("Group", |w| write_group(w, &group))
                .list("Users", &users, write_user_summary)
                .pagination(page.marker.as_deref());
        }))
    }

    async fn list_groups(&self) -> Result<String, ApiError> {
        let prefix = path_prefix(self.params)?;
        let resource = format!("arn:aws:iam::{}:group{prefix}", self.account());
        self.authorize(&resource).await?;
        let groups = self
            .app
            .iam
            .list_groups(self.account(), Some(prefix))
            .await?;
        let page = paginate(groups, |g| g.group_name.to_ascii_lowercase(), self.params)?;
        Ok(self.ok(|r| {
            r.list("Groups", &page.items, write_group)
                .pagination(page.marker.as_deref());
        }))
    }

    async fn update_group(&self) -> Result<String, ApiError> {
        let p = self.params;
        let name = required_name(p, "GroupName", 128)?;
        let new_name = optional_name(p, "NewGroupName", 128)?;
        let new_path = optional_path(p, "NewPath")?;
        let group = self.authorized_group(name).await?;
        let target = self.arn_of(
            EntityKind::Group,
            new_path.unwrap_or(&group.path),
            new_name.unwrap_or(&group.group_name),
        );
        if target != group.arn {
            self.authorize(&target).await?;
        }
        self.app
            .iam
            .rename_group(self.account(), name, new_name, new_path)
            .await?;
        Ok(self.empty())
    }

    async fn delete_group(&self) -> Result<String, ApiError> {
        let name = required_name(self.params, "GroupName", 128)?;
        self.authorized_group(name).await?;
        self.app.iam.delete_group(self.account(), name).await?;
        Ok(self.empty())
    }

    /// `AddUserToGroup` (`add`) and `RemoveUserFromGroup`: authorized on the group.
    async fn membership(&self, add: bool) -> Result<String, ApiError> {
        let p = self.params;
        let group = required_name(p, "GroupName", 128)?;
        let user = required_name(p, "UserName", 128)?;
        self.authorized_group(group).await?;
        if found(self.app.iam.get_user(self.account(), user).await)?.is_none() {
            return Err(no_such_user(user));
        }
        if add {
            self.app
                .iam
                .add_user_to_group(self.account(), group, user)
                .await?;
        } else {
            self.app
                .iam
                .remove_user_from_group(self.account(), group, user)
                .await?;
        }
        Ok(self.empty())
    }

    async fn list_groups_for_user(&self) -> Result<String, ApiError> {
        let name = required_name(self.params, "UserName", 128)?;
        self.authorized_user(name, |_| {}).await?;
        let groups = self
            .app
            .iam
            .list_groups_for_user(self.account(), name)
            .await?;
        let page = paginate(groups, |g| g.group_name.to_ascii_lowercase(), self.params)?;
        Ok(self.ok(|r| {
            r.list("Groups", &page.items, write_group)
                .pagination(page.marker.as_deref());
        }))
    }

    // ----- access keys --------------------------------------------------------------

    /// The user an access-key action is about: `UserName` or the calling user.
    async fn key_owner(&self) -> Result<UserRecord, ApiError> {
        let name = self
            .user_name_or_caller()?
            .ok_or_else(|| validation(NOT_A_USER))?;
        self.authorized_user(name, |_| {}).await
    }

    async fn create_access_key(&self) -> Result<String, ApiError> {
        let user = self.key_owner().await?;
        let key = self
            .app
            .iam
            .create_access_key(self.account(), &user.username)
            .await?;
        Ok(self.ok(|r| {
            r.node("AccessKey", |w| {
                w.text("UserName", &key.record.username)
                    .text("AccessKeyId", &key.record.access_key_id)
                    .text("Status", key.record.status.as_str())
                    .text("SecretAccessKey", key.secret_access_key.expose())
                    .time("CreateDate", key.record.created_at);
            });
        }))
    }

    async fn list_access_keys(&self) -> Result<String, ApiError> {
        let keys = match self.user_name_or_caller()? {
            // The account root holds no long-term keys here.
            None => Vec::new(),
            Some(name) => {
                let user = self.authorized_user(name, |_| {}).await?;
                self.app
                    .iam
                    .list_access_keys(self.account(), &user.username)
                    .await?
            }
        };
        let page = paginate(keys, |k| k.access_key_id.clone(), self.params)?;
        Ok(self.ok(|r| {
            r.list("AccessKeyMetadata", &page.items, |w, k| {
                w.text("UserName", &k.username)
                    .text("AccessKeyId", &k.access_key_id)
                    .text("Status", k.status.as_str())
                    .time("CreateDate", k.created_at);
            })
            .pagination(page.marker.as_deref());
        }))
    }

    async fn update_access_key(&self) -> Result<String, ApiError> {
        let id = access_key_id(self.params)?;
        let status_text = required(self.params, "Status")?;
        let status = KeyStatus::parse(status_text).map_err(ApiError::from)?;
        let user = self.key_owner().await?;
        self.app
            .iam
            .update_access_key(self.account(), &user.username, id, status)
            .await?;
        Ok(self.empty())
    }

    async fn delete_access_key(&self) -> Result<String, ApiError> {
        let id = access_key_id(self.params)?;
        let user = self.key_owner().await?;
        self.app
            .iam
            .delete_access_key(self.account(), &user.username, id)
            .await?;
        Ok(self.empty())
    }

    async fn get_access_key_last_used(&self) -> Result<String, ApiError> {
        let id = access_key_id(self.params)?;
        let key = found(self.app.iam.get_access_key(self.account(), id).await)?;
        let owner = match &key {
            Some(k) => found(self.app.iam.get_user(self.account(), &k.username).await)?,
            None => None,
        };
        // Authorized on the owner; an unknown key on the account's users.
        let resource = match (&key, &owner) {
            (_, Some(u)) => u.arn.clone(),
            (Some(k), None) => self.arn_of(EntityKind::User, "/", &k.username),
            (None, None) => format!("arn:aws:iam::{}:user/*", self.account()),
        };
        self.authorize(&resource).await?;
        let key = key.ok_or_else(|| {
            ApiError::new(
                "NoSuchEntity",
                format!("The Access Key with id {id} cannot be found."),
                404,
            )
        })?;
        Ok(self.ok(|r| {
            r.text("UserName", &key.username)
                .node("AccessKeyLastUsed", |w| match &key.last_used {
                    Some(l) => {
                        w.time("LastUsedDate", l.time)
                            .text("ServiceName", &l.service)
                            .text("Region", &l.region);
                    }
                    None => {
                        w.text("ServiceName", "N/A").text("Region", "N/A");
                    }
                });
        }))
    }

    // ----- tags ---------------------------------------------------------------------

    fn entity_name(&self, kind: EntityKind) -> Result<&str, ApiError> {
        match kind {
            EntityKind::Role => required_name(self.params, "RoleName", 64),
            _ => required_name(self.params, "UserName", 128),
        }
    }

    async fn tag(&self, kind: EntityKind) -> Result<String, ApiError> {
        let name = self.entity_name(kind)?;
        let tags = tags(self.params, true)?;
        let extend = |req: &mut PolicyRequest| request_tags(req, &tags);
        if kind == EntityKind::Role {
            self.authorized_role(name, extend).await?;
            self.app.iam.tag_role(self.account(), name, &tags).await?;
        } else {
            self.authorized_user(name, extend).await?;
            self.app.iam.tag_user(self.account(), name, &tags).await?;
        }
        Ok(self.empty())
    }

    async fn untag(&self, kind: EntityKind) -> Result<String, ApiError> {
        let name = self.entity_name(kind)?;
        let keys = tag_keys(self.params)?;
        let extend = |req: &mut PolicyRequest| {
            req.set_values("aws:TagKeys", keys.iter().map(String::as_str));
        };
        if kind == EntityKind::Role {
            self.authorized_role(name, extend).await?;
            self.app.iam.untag_role(self.account(), name, &keys).await?;
        } else {
            self.authorized_user(name, extend).await?;
            self.app.iam.untag_user(self.account(), name, &keys).await?;
        }
        Ok(self.empty())
    }

    async fn list_tags(&self, kind: EntityKind) -> Result<String, ApiError> {
        let name = self.entity_name(kind)?;
        let tags = if kind == EntityKind::Role {
            self.authorized_role(name, |_| {}).await?.tags
        } else {
            self.authorized_user(name, |_| {}).await?.tags
        };
        let page = paginate(tags, |t| t.key.to_lowercase(), self.params)?;
        Ok(self.ok(|r| {
            write_tags(r, &page.items);
            r.pagination(page.marker.as_deref());
        }))
    }

    // ----- permissions boundaries ---------------------------------------------------

    /// `Put*PermissionsBoundary` (`put`) and `Delete*PermissionsBoundary` for users and roles.
    async fn boundary(&self, kind: EntityKind, put: bool) -> Result<String, ApiError> {
        let name = match kind {
            EntityKind::Role => required_name(self.params, "RoleName", 64)?,
            _ => required_name(self.params, "UserName", 64)?,
        };
        let policy = if put {
            Some(required_arn(self.params, "PermissionsBoundary")?)
        } else {
            None
        };
        let extend = |req: &mut PolicyRequest| {
            if let Some(b) = policy {
                req.set("iam:PermissionsBoundary", b);
            }
        };
        let target = if kind == EntityKind::Role {
            self.authorized_role(name, extend).await?;
            Target::Role(name.to_owned())
        } else {
            self.authorized_user(name, extend).await?;
            Target::User(name.to_owned())
        };
        self.app
            .iam
            .set_permissions_boundary(self.account(), &target, policy)
            .await?;
        Ok(self.empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn names_follow_the_model() {
        let ok = p(&[("UserName", "bob.smith+ops@x=y,z-1")]);
        assert_eq!(
            required_name(&ok, "UserName", 64).expect("valid"),
            "bob.smith+ops@x=y,z-1"
        );
        let e = required_name(&p(&[]), "UserName", 64).expect_err("missing");
        assert_eq!(e.code(), "ValidationError");
        assert!(e.message().contains("at 'userName'"), "{}", e.message());
        let e = required_name(&p(&[("UserName", "a b")]), "UserName", 64).expect_err("space");
        assert!(
            e.message()
                .ends_with("Member must satisfy regular expression pattern: [\\w+=,.@-]+"),
            "{}",
            e.message()
        );
        let long = "a".repeat(65);
        let e = required_name(&p(&[("UserName", &long)]), "UserName", 64).expect_err("long");
        assert!(e.message().contains("less than or equal to 64"));
        assert!(required_name(&p(&[("UserName", &long)]), "UserName", 128).is_ok());
        assert!(
            optional_name(&p(&[]), "NewUserName", 64)
                .expect("absent")
                .is_none()
        );
    }

    #[test]
    fn paths_and_prefixes() {
        assert_eq!(
            optional_path(&p(&[("Path", "/a/b/")]), "Path").expect("ok"),
            Some("/a/b/")
        );
        assert_eq!(
            optional_path(&p(&[("Path", "/")]), "Path").expect("ok"),
            Some("/")
        );
        for bad in ["a/", "/a", "//x y/", "/\u{e9}/"] {
            let e = optional_path(&p(&[("NewPath", bad)]), "NewPath").expect_err(bad);
            assert!(e.message().contains("'newPath'"), "{}", e.message());
        }
        assert_eq!(path_prefix(&p(&[])).expect("default"), "/");
        assert_eq!(
            path_prefix(&p(&[("PathPrefix", "/eng")])).expect("ok"),
            "/eng"
        );
        assert!(path_prefix(&p(&[("PathPrefix", "eng")])).is_err());
    }

    #[test]
    fn max_items_and_access_key_ids() {
        assert_eq!(max_items(&p(&[])).expect("default"), 100);
        assert_eq!(max_items(&p(&[("MaxItems", "1000")])).expect("max"), 1000);
        for (bad, text) in [
            ("0", "greater than or equal to 1"),
            ("1001", "less than or equal to 1000"),
            ("x", "must be an integer"),
        ] {
            let e = max_items(&p(&[("MaxItems", bad)])).expect_err(bad);
            assert!(e.message().contains(text), "{}", e.message());
            assert!(e.message().contains("'maxItems'"));
        }
        assert!(access_key_id(&p(&[("AccessKeyId", "AKIAABCDEFGHIJKLMNOP")])).is_ok());
        assert!(access_key_id(&p(&[("AccessKeyId", "short")])).is_err());
        assert!(access_key_id(&p(&[("AccessKeyId", "AKIA-ABCDEFGHIJKLMNO")])).is_err());
    }

    #[test]
    fn tags_and_tag_keys() {
        let params = p(&[
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "net"),
            ("Tags.member.2.Key", "empty"),
            ("Tags.member.2.Value", ""),
        ]);
        let t = tags(&params, true).expect("tags");
        assert_eq!(t.len(), 2);
        assert_eq!((t[1].key.as_str(), t[1].value.as_str()), ("empty", ""));
        assert!(tags(&p(&[]), false).expect("none").is_empty());
        assert_eq!(
            tags(&p(&[]), true).expect_err("required").code(),
            "ValidationError"
        );
        let e = tags(&p(&[("Tags.member.1.Key", "k")]), false).expect_err("no value");
        assert!(
            e.message().contains("Tags.member.1.value"),
            "{}",
            e.message()
        );
        let keys =
            tag_keys(&p(&[("TagKeys.member.2", "b"), ("TagKeys.member.1", "a")])).expect("keys");
        assert_eq!(keys, ["a", "b"]);
        assert!(tag_keys(&p(&[])).is_err());
    }

    #[test]
    fn markers_round_trip_and_reject_garbage() {
        for key in ["", "bob", "tag key ü/=+"] {
            assert_eq!(decode_marker(&encode_marker(key)).as_deref(), Some(key));
        }
        assert_eq!(decode_marker("abc"), None);
        assert_eq!(decode_marker("zz"), None);
        assert_eq!(decode_marker("ff"), None, "not UTF-8");
    }

    #[test]
    fn pagination_walks_every_item_once() {
        let items: Vec<String> = ["d", "B", "a", "c", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..10 {
            let mut pairs = vec![("MaxItems".to_owned(), "2".to_owned())];
            if let Some(m) = &marker {
                pairs.push(("Marker".to_owned(), m.clone()));
            }
            let page = paginate(
                items.clone(),
                |s| s.to_ascii_lowercase(),
                &Params::from_pairs(pairs),
            )
            .expect("page");
            assert!(page.items.len() <= 2);
            seen.extend(page.items);
            marker = page.marker;
            if marker.is_none() {
                break;
            }
        }
        assert_eq!(seen, ["a", "B", "c", "d", "e"]);
        let e = paginate(items, |s| s.clone(), &p(&[("Marker", "nothex")])).expect_err("bad");
        assert!(e.message().contains("'marker'"));
    }

    #[test]
    fn user_shapes() {
        let u = UserRecord {
            username: "bob".into(),
            arn: "arn:aws:iam::000000000000:user/eng/bob".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            groups: vec![],
            policies: vec![],
            access_keys: vec![],
            user_id: String::new(),
            account_id: "000000000000".into(),
            path: "/eng/".into(),
            tags: vec![Tag {
                key: "k".into(),
                value: "v".into(),
            }],
            permissions_boundary: Some("arn:aws:iam::000000000000:policy/b".into()),
            inline_policies: Default::default(),
            login_profile: None,
        };
        let mut w = XmlWriter::new(Protocol::Query);
        write_user(&mut w, &u);
        let full = w.finish();
        assert!(full.starts_with("<Path>/eng/</Path><UserName>bob</UserName><UserId>AIDA"));
        assert!(full.contains(
            "<PermissionsBoundary><PermissionsBoundaryType>PermissionsBoundaryPolicy\
             </PermissionsBoundaryType><PermissionsBoundaryArn>arn:aws:iam::000000000000:policy/b\
             </PermissionsBoundaryArn></PermissionsBoundary>"
        ));
        assert!(full.ends_with("<Tags><member><Key>k</Key><Value>v</Value></member></Tags>"));
        let mut w = XmlWriter::new(Protocol::Query);
        write_user_summary(&mut w, &u);
        let summary = w.finish();
        assert!(!summary.contains("Tags") && !summary.contains("PermissionsBoundary"));
        assert!(summary.ends_with("<CreateDate>1970-01-01T00:00:00Z</CreateDate>"));
    }
}
