//! Whole-request authorization across policy layers: identity policies, permissions boundary,
//! session policies, a resource-based policy, and a role's trust policy for `sts:AssumeRole`.
//!
//! The rules implemented (AWS's policy evaluation logic, restricted to what Hive has: no
//! organizations SCPs/RCPs):
//!
//! 1. An explicit `Deny` in any layer denies. The reason names the first denying layer in the
//!    order identity, resource, permissions boundary, session.
//! 2. Same account (the default): a resource-based policy statement that allows the caller is
//!    enough on its own. (AWS refines this for role sessions and boundaries depending on whether
//!    the statement names the session, the role or the account; Hive grants on any match.)
//! 3. Otherwise the identity-based policies must allow, and then the permissions boundary (if
//!    set) and the session policies (if the principal is a session with session policies) must
//!    also allow: the effective permissions are the intersection.
//! 4. Cross-account ([`Authorizer::cross_account`]): the resource-based policy **and** the
//!    identity layers must allow.
//!
//! For `sts:AssumeRole` ([`Authorizer::authorize_assume_role`]) the role's trust policy plays
//! the resource-based policy: in the same account a trust statement that names the caller (its
//! ARN, or a service or identity provider) is enough; one that matches only through `*` or the
//! account root also needs the caller's identity layers to allow `sts:AssumeRole`; across
//! accounts both are always needed.
//!
//! ```
//! use std::sync::Arc;
//! use hive_iam::policy::{Authorizer, CompiledPolicy, PolicyKind, PolicySet, Principal, RequestContext};
//!
//! let allow_all = CompiledPolicy::parse(
//!     "AdministratorAccess",
//!     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
//!     PolicyKind::Identity,
//! )?;
//! let boundary = CompiledPolicy::parse(
//!     "OnlyS3",
//!     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
//!     PolicyKind::Identity,
//! )?;
//! let identity = PolicySet::new([Arc::new(allow_all)]);
//! let boundary = PolicySet::new([Arc::new(boundary)]);
//! let auth = Authorizer::new(&identity).with_permissions_boundary(&boundary);
//!
//! let bob = Principal::user("123456789012", "bob", "AIDA1");
//! let req = RequestContext::new(bob, "iam:CreateUser", "arn:aws:iam::123456789012:user/eve");
//! let decision = auth.authorize(&req);
//! assert!(!decision.is_allowed());
//! assert_eq!(
//!     decision.access_denied_message(&req.principal().arn, req.action(), req.resource()).as_deref(),
//!     Some("User: arn:aws:iam::123456789012:user/bob is not authorized to perform: iam:CreateUser \
//!           on resource: arn:aws:iam::123456789012:user/eve because no permissions boundary allows \
//!           the iam:CreateUser action"),
//! );
//! # Ok::<(), hive_iam::policy::PolicyError>(())
//! ```

use super::compile::{LayerOutcome, PolicySet};
use super::context::RequestContext;
use super::explain::{Decision, MatchedStatements, PolicySource};

/// The policy layers that apply to one principal, borrowed for evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Authorizer<'a> {
    identity: &'a PolicySet,
    boundary: Option<&'a PolicySet>,
    session: Option<&'a PolicySet>,
    resource: Option<&'a PolicySet>,
    cross_account: bool,
}

/// Outcomes of the identity-side layers.
struct IdentitySide {
    identity: LayerOutcome,
    boundary: Option<LayerOutcome>,
    session: Option<LayerOutcome>,
}

impl IdentitySide {
    fn first_deny(&self) -> Option<PolicySource> {
        if self.identity.deny {
            return Some(PolicySource::Identity);
        }
        if self.boundary.is_some_and(|b| b.deny) {
            return Some(PolicySource::PermissionsBoundary);
        }
        if self.session.is_some_and(|s| s.deny) {
            return Some(PolicySource::Session);
        }
        None
    }

    /// The first identity-side layer that does not allow, if any.
    fn first_missing_allow(&self) -> Option<PolicySource> {
        if !self.identity.allow {
            return Some(PolicySource::Identity);
        }
        if self.boundary.is_some_and(|b| !b.allow) {
            return Some(PolicySource::PermissionsBoundary);
        }
        if self.session.is_some_and(|s| !s.allow) {
            return Some(PolicySource::Session);
        }
        None
    }
}

impl<'a> Authorizer<'a> {
    /// An authorizer over the principal's identity-based policies (user + groups, or role).
    pub fn new(identity: &'a PolicySet) -> Authorizer<'a> {
        Authorizer {
            identity,
            boundary: None,
            session: None,
            resource: None,
            cross_account: false,
        }
    }

    /// Adds the principal's permissions boundary.
    pub fn with_permissions_boundary(mut self, boundary: &'a PolicySet) -> Authorizer<'a> {
        self.boundary = Some(boundary);
        self
    }

    /// Adds the session policies of a temporary-credential session.
    pub fn with_session_policies(mut self, session: &'a PolicySet) -> Authorizer<'a> {
        self.session = Some(session);
        self
    }

    /// Adds the target resource's resource-based policy.
    pub fn with_resource_policy(mut self, resource: &'a PolicySet) -> Authorizer<'a> {
        self.resource = Some(resource);
        self
    }

    /// Whether the principal and the resource are in different accounts (default `false`).
    pub fn cross_account(mut self, cross_account: bool) -> Authorizer<'a> {
        self.cross_account = cross_account;
        self
    }

    fn identity_side(
        &self,
        req: &RequestContext,
        allows: &mut MatchedStatements,
        denies: &mut MatchedStatements,
    ) -> IdentitySide {
        IdentitySide {
            identity: self
                .identity
                .evaluate_layer(req, PolicySource::Identity, allows, denies),
            boundary: self
                .boundary
                .map(|b| b.evaluate_layer(req, PolicySource::PermissionsBoundary, allows, denies)),
            session: self
                .session
                .map(|s| s.evaluate_layer(req, PolicySource::Session, allows, denies)),
        }
    }

    /// Decides a request. See the module documentation for the rules.
    pub fn authorize(&self, req: &RequestContext) -> Decision {
        let mut allows = MatchedStatements::new();
        let mut denies = MatchedStatements::new();
        let side = self.identity_side(req, &mut allows, &mut denies);
        let resource = self
            .resource
            .map(|r| r.evaluate_layer(req, PolicySource::Resource, &mut allows, &mut denies));
        self.combine(&side, resource, false, allows, denies)
    }

    /// Decides `sts:AssumeRole` (or `sts:AssumeRoleWithSAML`/`...WebIdentity`, `sts:TagSession`)
    /// against the role's trust policy; `req.resource()` is the role's ARN.
    pub fn authorize_assume_role(&self, trust: &PolicySet, req: &RequestContext) -> Decision {
        let mut allows = MatchedStatements::new();
        let mut denies = MatchedStatements::new();
        let side = self.identity_side(req, &mut allows, &mut denies);
        let trust = trust.evaluate_layer(req, PolicySource::Resource, &mut allows, &mut denies);
        self.combine(&side, Some(trust), true, allows, denies)
    }

    fn combine(
        &self,
        side: &IdentitySide,
        resource: Option<LayerOutcome>,
        trust: bool,
        allows: MatchedStatements,
        denies: MatchedStatements,
    ) -> Decision {
        // 1. Explicit deny anywhere.
        if let Some(source) = side.first_deny() {
            return Decision::explicit_deny(source, denies);
        }
        if resource.is_some_and(|r| r.deny) {
            return Decision::explicit_deny(PolicySource::Resource, denies);
        }
        let missing = side.first_missing_allow();
        match resource {
            // Trust policies must always allow.
            Some(r) if trust => {
                if !r.allow {
                    return Decision::implicit_deny(PolicySource::Resource, allows);
                }
                if r.allow_named && !self.cross_account {
                    return Decision::allow(allows);
                }
                match missing {
                    None => Decision::allow(allows),
                    Some(source) => Decision::implicit_deny(source, allows),
                }
            }
            Some(r) if self.cross_account => match (r.allow, missing) {
                (true, None) => Decision::allow(allows),
                (false, _) => Decision::implicit_deny(PolicySource::Resource, allows),
                (true, Some(source)) => Decision::implicit_deny(source, allows),
            },
            Some(r) if r.allow => Decision::allow(allows),
            _ => match missing {
                None => Decision::allow(allows),
                Some(source) => Decision::implicit_deny(source, allows),
            },
        }
    }
}
