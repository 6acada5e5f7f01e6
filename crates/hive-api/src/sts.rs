//! The STS service (API version 2011-06-15): caller identity and temporary credentials, as
//! botocore's `sts` model describes them.
//!
//! | action | permission | what it returns |
//! |---|---|---|
//! | `GetCallerIdentity` | none (as on AWS) | `UserId`, `Account`, `Arn` of the caller |
//! | `GetSessionToken` | none; IAM users and the root only, never session credentials | `Credentials` acting as the caller with the caller's permissions |
//! | `AssumeRole` | the role's trust policy, plus `sts:AssumeRole` in the caller's policies unless the trust policy names the caller (same account) | `Credentials`, `AssumedRoleUser`, `PackedPolicySize` |
//!
//! `AssumeRole` is decided by
//! [`Authorizer::authorize_assume_role`](hive_iam::policy::Authorizer::authorize_assume_role):
//! the role's trust policy
//! plays the resource-based policy. A role that does not exist is refused exactly like a role
//! whose trust policy does not allow the caller, so callers cannot probe for role names. The
//! session may be narrowed with an inline session policy (`Policy`) and managed policies
//! (`PolicyArns`); the session's permissions are then the intersection of the role's policies
//! and the union of the session policies. `ExternalId` and `RoleSessionName` reach the trust
//! policy as `sts:ExternalId` and `sts:RoleSessionName`; `Tags` require `sts:TagSession` in
//! the trust policy and are kept with the session.
//!
//! ## Lifetime of temporary credentials
//!
//! Sessions live in the `sessions` KV bucket, whose records expire with the bucket-wide TTL
//! ([`hive_iam_store::buckets::SESSIONS_TTL`], one hour); the `hive-kv` port has no per-key TTL. A session
//! can therefore never outlive that TTL: a longer `DurationSeconds` is accepted within AWS's
//! limits (so requests valid on AWS stay valid here) and the credentials granted expire at the
//! TTL. The `Expiration` returned is the real one, so SDKs refresh in time. Expired credentials
//! whose record still exists are refused with `ExpiredToken`; after the record is gone the key
//! is unknown (`InvalidClientTokenId`).

use std::sync::Arc;

use async_trait::async_trait;
use hive_iam::error::IamError;
use hive_iam::identity::{Principal as IamPrincipal, RoleRecord, Tag};
use hive_iam::policy::{CompiledPolicy, PolicyKind, PolicySet, policy_size};
use hive_iam::request::{AssumeRole, decide_assume_role};
use hive_iam_store::{EffectivePolicies, TemporaryCredentials};

use crate::app::App;
use crate::error::ApiError;
use crate::server::handler::action_table;
use crate::server::{AwsService, RequestContext};
use crate::wire::query::Params;
use crate::wire::{Protocol, ServiceId, xml};

/// `GetSessionToken`'s limits for IAM users, in seconds (botocore `durationSecondsType`).
const USER_SESSION_SECONDS: (i64, i64) = (900, 129_600);
/// `GetSessionToken`'s default lifetime.
const DEFAULT_USER_SESSION_SECONDS: u32 = 43_200;
/// The account root's sessions last at most an hour (longer requests are shortened, as on AWS).
const ROOT_SESSION_SECONDS: u32 = 3_600;
/// `AssumeRole`'s limits (botocore `roleDurationSecondsType`; the role's
/// `MaxSessionDuration` narrows the upper one).
const ROLE_SESSION_SECONDS: (i64, i64) = (900, 43_200);
/// `AssumeRole`'s default lifetime.
const DEFAULT_ROLE_SESSION_SECONDS: u32 = 3_600;
/// A role session assuming another role (role chaining) gets at most an hour.
const CHAINED_SESSION_SECONDS: u32 = 3_600;
/// The plain-text budget of session policies, ARNs and tags that AWS packs into the token.
const PACKED_POLICY_BUDGET: usize = 2_048;
/// Most managed session policies (`PolicyArns`) per request.
const MAX_POLICY_ARNS: usize = 10;
/// Most session tags per request.
const MAX_SESSION_TAGS: usize = 50;

/// The STS service.
#[derive(Debug, Clone)]
pub struct StsService {
    app: Arc<App>,
}

impl StsService {
    /// STS over `app`.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The lifetime actually granted for a requested one: never beyond the sessions bucket's
    /// TTL (see the module documentation).
    fn granted_seconds(requested: u32) -> u32 {
        let ttl =
            u32::try_from(hive_iam_store::buckets::SESSIONS_TTL.as_secs()).unwrap_or(u32::MAX);
        requested.min(ttl)
    }

    async fn get_session_token(
        &self,
        ctx: &RequestContext,
        params: &Params,
    ) -> Result<String, ApiError> {
        let requested = params
            .int_in(
                "DurationSeconds",
                USER_SESSION_SECONDS.0,
                USER_SESSION_SECONDS.1,
            )?
            .map_or(DEFAULT_USER_SESSION_SECONDS, to_u32);
        if params.optional("SerialNumber").is_some() || params.optional("TokenCode").is_some() {
            // No MFA devices exist here, so no one-time code can be valid.
            return Err(ApiError::access_denied(
                "MultiFactorAuthentication failed with invalid MFA one time pass code. ",
            ));
        }
        let caller = &ctx.caller;
        let is_session = matches!(caller.identity, IamPrincipal::AssumedRole { .. })
            || caller
                .access_key_id
                .as_deref()
                .is_some_and(|k| k.starts_with("ASIA"));
        if is_session {
            return Err(ApiError::access_denied(
                "Cannot call GetSessionToken with session credentials",
            ));
        }
        let duration = match caller.identity {
            IamPrincipal::Root { .. } => requested.min(ROOT_SESSION_SECONDS),
            _ => requested,
        };
        let creds = self
            .app
            .iam
            .create_session(
                caller.identity.clone(),
                Self::granted_seconds(duration),
                None,
                Vec::new(),
                self.app.now(),
            )
            .await?;
        Ok(xml::query_response(
            ServiceId::Sts,
            ctx.action,
            &ctx.request_id,
            |r| {
                write_credentials(r, &creds);
            },
        ))
    }

    async fn assume_role(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        let role_arn = params.required("RoleArn")?;
        check_length("roleArn", role_arn, 20, 2048)?;
        let session_name = params.required("RoleSessionName")?;
        check_session_name(session_name)?;
        let requested = params
            .int_in(
                "DurationSeconds",
                ROLE_SESSION_SECONDS.0,
                ROLE_SESSION_SECONDS.1,
            )?
            .map(to_u32);
        let inline_policy = params.optional("Policy");
        let policy_arns = params
            .member_structs("PolicyArns")?
            .iter()
            .map(|p| p.required("arn").map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        if policy_arns.len() > MAX_POLICY_ARNS {
            return Err(too_many("policyArns", MAX_POLICY_ARNS));
        }
        let tags = crate::iam::member_tags(params)?;
        if tags.len() > MAX_SESSION_TAGS {
            return Err(too_many("tags", MAX_SESSION_TAGS));
        }
        let external_id = params.optional("ExternalId");
        if let Some(id) = external_id {
            check_length("externalId", id, 2, 1224)?;
        }

        let caller = &ctx.caller;
        let chained = match &caller.identity {
            IamPrincipal::Root { .. } => {
                return Err(ApiError::access_denied(
                    "Roles may not be assumed by root accounts.",
                ));
            }
            IamPrincipal::AssumedRole { .. } => true,
            IamPrincipal::User { .. } => false,
        };
        let denied = || {
            ApiError::access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ))
        };
        let Some(target) = hive_iam::identity::parse_arn(role_arn)
            .filter(|a| a.kind == hive_iam::identity::EntityKind::Role)
        else {
            return Err(ApiError::new(
                "ValidationError",
                format!(
                    "{} is not a valid role ARN",
                    crate::error::truncate(role_arn, 64)
                ),
                400,
            ));
        };
        let role = match self
            .app
            .iam
            .get_role(&target.account_id, &target.name)
            .await
        {
            Ok(role) if role.arn == role_arn => role,
            // Unknown roles look like untrusting ones.
            Ok(_) | Err(IamError::NoSuchEntity(_)) => return Err(denied()),
            Err(e) => return Err(e.into()),
        };
        self.check_trust(ctx, &role, session_name, external_id, &tags)
            .await?;

        let duration = requested.unwrap_or(DEFAULT_ROLE_SESSION_SECONDS);
        if chained && duration > CHAINED_SESSION_SECONDS {
            return Err(ApiError::new(
                "ValidationError",
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
                400,
            ));
        }
        if duration > role.max_session_duration {
            return Err(ApiError::new(
                "ValidationError",
                format!(
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({}).",
                    role.max_session_duration
                ),
                400,
            ));
        }

        let mut session_docs: Vec<String> = Vec::new();
        if let Some(p) = inline_policy {
            // Validated as an identity policy: the same rules as any session policy.
            hive_iam::policy::PolicyDocument::parse(p, PolicyKind::Identity)
                .map_err(IamError::from)?;
            session_docs.push(p.to_owned());
        }
        for arn in &policy_arns {
            session_docs.push(self.managed_session_policy(arn).await?);
        }
        let packed = packed_percent(inline_policy, &policy_arns, &tags);
        if packed > 100 {
            return Err(ApiError::new(
                "PackedPolicyTooLarge",
                format!(
                    "Packed policy consumes {packed}% of allotted space, please use smaller policy."
                ),
                400,
            ));
        }
        let session_policy = merge_session_policies(&session_docs)?;

        let principal = IamPrincipal::AssumedRole {
            account_id: role.account_id.clone(),
            role_name: role.role_name.clone(),
            role_id: role.role_id.clone(),
            session_name: session_name.to_owned(),
            role_arn: role.arn.clone(),
        };
        let creds = self
            .app
            .iam
            .create_session(
                principal.clone(),
                Self::granted_seconds(duration),
                session_policy.as_deref(),
                tags.clone(),
                self.app.now(),
            )
            .await
            .map_err(|e| match e {
                IamError::Policy(hive_iam::policy::PolicyError::TooLarge {
                    ..
                }) => ApiError::new(
                    "PackedPolicyTooLarge",
                    "Packed policy consumes more than 100% of allotted space, please use smaller policy.",
                    400,
                ),
                other => other.into(),
            })?;
        let report_packed = inline_policy.is_some() || !policy_arns.is_empty() || !tags.is_empty();
        Ok(xml::query_response(
            ServiceId::Sts,
            ctx.action,
            &ctx.request_id,
            |r| {
                write_credentials(r, &creds);
                r.node("AssumedRoleUser", |u| {
                    u.text("AssumedRoleId", &principal.user_id())
                        .text("Arn", &principal.arn());
                });
                if report_packed {
                    r.display("PackedPolicySize", packed);
                }
            },
        ))
    }

    /// Refuses with AWS's `AccessDenied` unless the caller may assume `role` (and tag the
    /// session, when tags are given).
    async fn check_trust(
        &self,
        ctx: &RequestContext,
        role: &RoleRecord,
        session_name: &str,
        external_id: Option<&str>,
        tags: &[Tag],
    ) -> Result<(), ApiError> {
        let caller = &ctx.caller;
        let trust = match CompiledPolicy::parse(
            &role.arn,
            &role.assume_role_policy_document,
            PolicyKind::Trust,
        ) {
            Ok(p) => PolicySet::new([Arc::new(p)]),
            Err(e) => {
                tracing::warn!(role = %role.arn, error = %e, "stored trust policy does not parse; denying");
                PolicySet::empty()
            }
        };
        // A caller deleted after it authenticated has no policies: nothing allows anything.
        let effective = match self
            .app
            .iam
            .effective_policies(&caller.identity, caller.session_policy.as_deref())
            .await
        {
            Ok(e) => e,
            Err(IamError::NoSuchEntity(_)) => EffectivePolicies::default(),
            Err(e) => return Err(e.into()),
        };
        let tags_of = match &caller.identity {
            IamPrincipal::User {
                account_id,
                username,
                ..
            } => Some(
                self.app
                    .iam
                    .get_user(account_id, username)
                    .await
                    .map(|u| u.tags),
            ),
            IamPrincipal::AssumedRole {
                account_id,
                role_name,
                ..
            } => Some(
                self.app
                    .iam
                    .get_role(account_id, role_name)
                    .await
                    .map(|r| r.tags),
            ),
            IamPrincipal::Root { .. } => None,
        };
        let principal_tags = match tags_of {
            Some(Ok(tags)) => tags,
            None | Some(Err(IamError::NoSuchEntity(_))) => Vec::new(),
            Some(Err(e)) => return Err(e.into()),
        };
        let layers = effective.compile().map_err(|e| {
            tracing::warn!(policy = %e.source_name, error = %e.error, "stored policy does not parse; denying");
            ApiError::internal()
        })?;
        let principal_tags: Vec<(String, String)> = principal_tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        let session_tags: Vec<(String, String)> = tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        let call = AssumeRole {
            role_arn: &role.arn,
            role_account_id: &role.account_id,
            session_name,
            external_id,
            session_tags: &session_tags,
        };
        decide_assume_role(
            &caller.identity,
            &principal_tags,
            layers.authorizer(),
            &trust,
            &call,
            &self.app.environment(ctx),
        )
        .map_err(|action| {
            // AWS gives no reason clause for AssumeRole denials.
            ApiError::access_denied(format!(
                "User: {} is not authorized to perform: {action} on resource: {}",
                caller.arn, role.arn
            ))
        })
    }

    /// The default version of the managed policy `arn`, as a session policy.
    async fn managed_session_policy(&self, arn: &str) -> Result<String, ApiError> {
        let not_found = || {
            ApiError::new(
                "ValidationError",
                format!(
                    "Policy {} does not exist or is not attachable.",
                    crate::error::truncate(arn, 2048)
                ),
                400,
            )
        };
        match self.app.iam.get_policy(arn).await {
            Ok(p) => p
                .default_version()
                .map(|v| v.document.clone())
                .ok_or_else(not_found),
            Err(IamError::NoSuchEntity(_) | IamError::InvalidInput(_)) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl AwsService for StsService {
    fn id(&self) -> ServiceId {
        ServiceId::Sts
    }

    fn action(&self, name: &str) -> Option<&'static str> {
        ACTIONS.iter().find(|a| **a == name).copied()
    }

    async fn call(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        dispatch(self, ctx, params).await
    }
}

action_table! {
    /// Serve `ctx.action`.
    async fn dispatch(sts: &StsService, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
        dispatch ctx.action => {
            // Needs no permission, as on AWS.
            "GetCallerIdentity" => Ok(xml::query_response(
                ServiceId::Sts,
                ctx.action,
                &ctx.request_id,
                |r| {
                    r.text("UserId", &ctx.caller.user_id)
                        .text("Account", &ctx.caller.account_id)
                        .text("Arn", &ctx.caller.arn);
                },
            )),
            "GetSessionToken" => sts.get_session_token(ctx, params).await,
            "AssumeRole" => sts.assume_role(ctx, params).await,
            _ => Err(ApiError::invalid_action(ctx.action, Protocol::Query)),
        }
    }
}

/// `<Credentials>` of new temporary credentials (the only place their secrets are written).
fn write_credentials(r: &mut xml::XmlWriter, creds: &TemporaryCredentials) {
    r.node("Credentials", |c| {
        c.text("AccessKeyId", &creds.access_key_id)
            .text("SecretAccessKey", creds.secret_access_key.expose())
            .text("SessionToken", creds.session_token.expose())
            .time("Expiration", creds.expiration);
    });
}

/// A range-checked `DurationSeconds` as `u32` (the ranges above all fit).
fn to_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// AWS's validation message for a length constraint on `member`.
fn check_length(member: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    let constraint = if len < min {
        format!("Member must have length greater than or equal to {min}")
    } else if len > max {
        format!("Member must have length less than or equal to {max}")
    } else {
        return Ok(());
    };
    Err(validation(member, value, &constraint))
}

/// `RoleSessionName`: 2-64 characters of `[\w+=,.@-]`.
fn check_session_name(name: &str) -> Result<(), ApiError> {
    check_length("roleSessionName", name, 2, 64)?;
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        Ok(())
    } else {
        Err(validation(
            "roleSessionName",
            name,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ))
    }
}

fn too_many(member: &str, max: usize) -> ApiError {
    ApiError::new(
        "ValidationError",
        format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        ),
        400,
    )
}

/// `1 validation error detected: Value 'v' at 'member' failed to satisfy constraint: ...`.
fn validation(member: &str, value: &str, constraint: &str) -> ApiError {
    ApiError::new(
        "ValidationError",
        format!(
            "1 validation error detected: Value '{}' at '{member}' failed to satisfy constraint: {constraint}",
            crate::error::truncate(value, 64)
        ),
        400,
    )
}

/// How much of AWS's packed-policy budget the session policies, policy ARNs and tags use, in
/// percent (rounded up). An approximation of AWS's compressed packing that errs on the large
/// side: the plain-text sizes against the 2,048-character budget.
fn packed_percent(inline: Option<&str>, arns: &[String], tags: &[Tag]) -> usize {
    let used = inline.map_or(0, policy_size)
        + arns.iter().map(String::len).sum::<usize>()
        + tags
            .iter()
            .map(|t| t.key.len() + t.value.len())
            .sum::<usize>();
    used.saturating_mul(100).div_ceil(PACKED_POLICY_BUDGET)
}

/// One session policy from several: the single document as written, or one document holding
/// every statement (session policies combine by union; statement ids are dropped because
/// they need not be unique across documents).
fn merge_session_policies(docs: &[String]) -> Result<Option<String>, ApiError> {
    match docs {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => {
            let mut statements = Vec::new();
            for doc in many {
                let value: serde_json::Value = serde_json::from_str(doc).map_err(|_| {
                    ApiError::new("MalformedPolicyDocument", "Syntax errors in policy.", 400)
                })?;
                let mut push = |s: &serde_json::Value| {
                    let mut s = s.clone();
                    if let Some(obj) = s.as_object_mut() {
                        obj.remove("Sid");
                    }
                    statements.push(s);
                };
                match value.get("Statement") {
                    Some(serde_json::Value::Array(list)) => list.iter().for_each(&mut push),
                    Some(one) => push(one),
                    None => {}
                }
            }
            let merged = serde_json::json!({ "Version": "2012-10-17", "Statement": statements });
            Ok(Some(merged.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_lifetime_never_exceeds_the_sessions_ttl() {
        assert_eq!(StsService::granted_seconds(900), 900);
        assert_eq!(StsService::granted_seconds(3600), 3600);
        assert_eq!(StsService::granted_seconds(43_200), 3600);
        assert_eq!(StsService::granted_seconds(129_600), 3600);
    }

    #[test]
    fn session_names_follow_the_model() {
        assert!(check_session_name("ci-run_1+x=y,z.w@v").is_ok());
        let e = check_session_name("a").unwrap_err();
        assert_eq!(e.code(), "ValidationError");
        assert!(
            e.message()
                .ends_with("Member must have length greater than or equal to 2"),
            "{e}"
        );
        let e = check_session_name("bad name").unwrap_err();
        assert!(e.message().contains("regular expression"), "{e}");
        assert!(check_session_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn packed_size_is_a_rounded_up_percentage() {
        assert_eq!(packed_percent(None, &[], &[]), 0);
        assert_eq!(packed_percent(Some("{ \"a\" : 1 }"), &[], &[]), 1);
        let big = format!("{{\"Id\":\"{}\"}}", "x".repeat(2100));
        assert!(packed_percent(Some(&big), &[], &[]) > 100);
        let tags = [Tag {
            key: "k".repeat(10),
            value: "v".repeat(10),
        }];
        assert_eq!(packed_percent(None, &[], &tags), 1);
    }

    #[test]
    fn several_session_policies_merge_into_one_valid_document() {
        let a = r#"{"Version":"2012-10-17","Statement":{"Sid":"S","Effect":"Allow","Action":"iam:GetUser","Resource":"*"}}"#;
        let b = r#"{"Version":"2012-10-17","Statement":[{"Sid":"S","Effect":"Deny","Action":"iam:ListUsers","Resource":"*"}]}"#;
        assert_eq!(merge_session_policies(&[]).unwrap(), None);
        assert_eq!(
            merge_session_policies(&[a.to_owned()]).unwrap().as_deref(),
            Some(a)
        );
        let merged = merge_session_policies(&[a.to_owned(), b.to_owned()])
            .unwrap()
            .unwrap();
        let doc = hive_iam::policy::PolicyDocument::parse(&merged, PolicyKind::Identity)
            .expect("merged document parses");
        assert_eq!(doc.statements().len(), 2);
    }
}
