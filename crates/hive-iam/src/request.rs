//! Authorization of one request, decided here for every frontend (the server and the CLI): the
//! one request-context builder (which global condition keys a request carries), the account
//! root's rule, and the `AssumeRole` decision (trust policy, caller's policies, cross-account).
//!
//! The clock and the network are inputs ([`Environment`]); nothing here reads them.
//!
//! ```
//! use hive_iam::identity::Principal;
//! use hive_iam::request::{Environment, request_context};
//!
//! let alice = Principal::User {
//!     account_id: "123456789012".into(),
//!     username: "alice".into(),
//!     user_id: "AIDAEXAMPLEALICE0001".into(),
//!     arn: "arn:aws:iam::123456789012:user/alice".into(),
//! };
//! let env = Environment::at(time::OffsetDateTime::UNIX_EPOCH).with_region("us-east-1");
//! let req = request_context(&alice, &[("team", "net")], "ec2:CreateVpc", "*", &env);
//! assert!(req.get("aws:username").is_some());
//! assert!(req.get("aws:PrincipalTag/team").is_some());
//! assert!(req.get("aws:RequestedRegion").is_some());
//! ```

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::identity::Principal;
use crate::policy::{
    Authorizer, Decision, PolicySet, Principal as PolicyPrincipal, RequestContext,
};

/// What the server knows of a request besides who asks for what: the global condition keys
/// `aws:CurrentTime`/`aws:EpochTime`, `aws:SourceIp`, `aws:SecureTransport`,
/// `aws:RequestedRegion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment<'a> {
    /// When the request arrived.
    pub now: OffsetDateTime,
    /// The client's address, when known.
    pub source_ip: Option<IpAddr>,
    /// Whether the request came over TLS.
    pub secure_transport: bool,
    /// The region the request was signed for, when known.
    pub region: Option<&'a str>,
}

impl<'a> Environment<'a> {
    /// A request at `now`, nothing else known (what the CLI evaluates).
    pub fn at(now: OffsetDateTime) -> Self {
        Self {
            now,
            source_ip: None,
            secure_transport: false,
            region: None,
        }
    }

    /// The same, from `ip`.
    #[must_use]
    pub fn with_source_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.source_ip = ip;
        self
    }

    /// The same, over TLS or not.
    #[must_use]
    pub fn with_secure_transport(mut self, secure: bool) -> Self {
        self.secure_transport = secure;
        self
    }

    /// The same, for `region`.
    #[must_use]
    pub fn with_region(mut self, region: &'a str) -> Self {
        self.region = Some(region);
        self
    }
}

/// The policy engine's view of an authenticated identity, with its tags
/// (`aws:PrincipalTag/...`).
pub fn policy_principal<'a>(
    identity: &Principal,
    tags: impl IntoIterator<Item = &'a (impl AsRef<str> + 'a, impl AsRef<str> + 'a)>,
) -> PolicyPrincipal {
    let mut principal = match identity {
        Principal::Root { account_id } => PolicyPrincipal::root(account_id),
        Principal::User {
            account_id,
            username,
            user_id,
            ..
        } => PolicyPrincipal::user(account_id, username, user_id),
        Principal::AssumedRole {
            account_id,
            role_name,
            role_id,
            session_name,
            ..
        } => PolicyPrincipal::assumed_role(account_id, role_name, role_id, session_name),
    };
    for (k, v) in tags {
        principal = principal.with_tag(k.as_ref(), v.as_ref());
    }
    principal
}

/// The request the policy engine evaluates for `identity` (with its `tags`) performing
/// `action` on `resource`: the principal's keys and the environment's global keys. Callers add
/// the action's own keys (`ec2:Vpc`, `iam:PolicyARN`, ...).
pub fn request_context<'a>(
    identity: &Principal,
    tags: impl IntoIterator<Item = &'a (impl AsRef<str> + 'a, impl AsRef<str> + 'a)>,
    action: &str,
    resource: &str,
    env: &Environment<'_>,
) -> RequestContext {
    let mut request = RequestContext::new(policy_principal(identity, tags), action, resource)
        .with_current_time(env.now)
        .with_secure_transport(env.secure_transport);
    if let Some(region) = env.region {
        request = request.with_requested_region(region);
    }
    if let Some(ip) = env.source_ip {
        request = request.with_source_ip(ip);
    }
    request
}

/// The account root may do anything in its account, as on AWS: no policy is consulted.
pub fn is_unrestricted(identity: &Principal) -> bool {
    matches!(identity, Principal::Root { .. })
}

/// An `AssumeRole` call, as the trust decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRole<'a> {
    /// The role's ARN.
    pub role_arn: &'a str,
    /// The role's account.
    pub role_account_id: &'a str,
    /// `RoleSessionName` (`sts:RoleSessionName`).
    pub session_name: &'a str,
    /// `ExternalId` (`sts:ExternalId`).
    pub external_id: Option<&'a str>,
    /// Session tags (`aws:RequestTag/...`, `aws:TagKeys`); with any, `sts:TagSession` is
    /// needed too.
    pub session_tags: &'a [(String, String)],
}

/// Whether `caller` may assume the role: for `sts:AssumeRole` (and `sts:TagSession` when the
/// call carries tags), the role's `trust` policy and, unless it names the caller in its own
/// account, the caller's policies (`caller_policies`: an authorizer over the caller's
/// identity layers; cross-account calls always need both). `Err` names the refused action.
pub fn decide_assume_role(
    caller: &Principal,
    caller_tags: &[(String, String)],
    caller_policies: Authorizer<'_>,
    trust: &PolicySet,
    call: &AssumeRole<'_>,
    env: &Environment<'_>,
) -> Result<(), &'static str> {
    let authorizer = caller_policies.cross_account(caller.account_id() != call.role_account_id);
    let mut actions = vec!["sts:AssumeRole"];
    if !call.session_tags.is_empty() {
        actions.push("sts:TagSession");
    }
    for action in actions {
        let mut request = request_context(caller, caller_tags, action, call.role_arn, env)
            .with("sts:RoleSessionName", call.session_name);
        if let Some(id) = call.external_id {
            request.set("sts:ExternalId", id);
        }
        if !call.session_tags.is_empty() {
            for (k, v) in call.session_tags {
                request.set(&format!("aws:RequestTag/{k}"), v.as_str());
            }
            request.set_values(
                "aws:TagKeys",
                call.session_tags.iter().map(|(k, _)| k.as_str()),
            );
        }
        let decision: Decision = authorizer.authorize_assume_role(trust, &request);
        if !decision.is_allowed() {
            return Err(action);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{CompiledPolicy, PolicyKind};

    fn user(account: &str, name: &str) -> Principal {
        Principal::User {
            account_id: account.into(),
            username: name.into(),
            user_id: "AIDAEXAMPLE000000001".into(),
            arn: format!("arn:aws:iam::{account}:user/{name}"),
        }
    }

    fn trust(text: &str) -> PolicySet {
        let p = CompiledPolicy::parse("trust", text, PolicyKind::Trust).expect("parses");
        PolicySet::new([Arc::new(p)])
    }

    const ROLE: &str = "arn:aws:iam::111111111111:role/ops";

    fn call(tags: &[(String, String)]) -> AssumeRole<'_> {
        AssumeRole {
            role_arn: ROLE,
            role_account_id: "111111111111",
            session_name: "s",
            external_id: None,
            session_tags: tags,
        }
    }

    #[test]
    fn a_trust_policy_naming_the_caller_suffices_in_its_account_but_not_across() {
        let none = PolicySet::empty();
        let env = Environment::at(OffsetDateTime::UNIX_EPOCH);
        let names_bob = trust(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole",
                "Principal":{"AWS":["arn:aws:iam::111111111111:user/bob","arn:aws:iam::222222222222:user/eve"]}}]}"#,
        );
        let bob = user("111111111111", "bob");
        let eve = user("222222222222", "eve");
        assert_eq!(
            decide_assume_role(
                &bob,
                &[],
                Authorizer::new(&none),
                &names_bob,
                &call(&[]),
                &env
            ),
            Ok(())
        );
        assert_eq!(
            decide_assume_role(
                &eve,
                &[],
                Authorizer::new(&none),
                &names_bob,
                &call(&[]),
                &env
            ),
            Err("sts:AssumeRole"),
            "across accounts the caller's own policies must allow it too"
        );
        let tags = [("team".to_owned(), "net".to_owned())];
        assert_eq!(
            decide_assume_role(
                &bob,
                &[],
                Authorizer::new(&none),
                &names_bob,
                &call(&tags),
                &env
            ),
            Err("sts:TagSession")
        );
    }

    #[test]
    fn only_the_root_is_unrestricted() {
        assert!(is_unrestricted(&Principal::Root {
            account_id: "111111111111".into()
        }));
        assert!(!is_unrestricted(&user("111111111111", "bob")));
    }
}
