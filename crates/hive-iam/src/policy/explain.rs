//! Decisions that explain themselves: which statements allowed or denied, or which layer failed
//! to allow, rendered the way AWS words `AccessDenied` messages.

use std::fmt;
use std::sync::Arc;

use super::document::Effect;

/// The kind of policy a statement came from (a layer of the evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySource {
    /// An identity-based policy (managed or inline) of the user, its groups, or the role.
    Identity,
    /// The principal's permissions boundary.
    PermissionsBoundary,
    /// A session policy passed when the session was created.
    Session,
    /// A resource-based policy (including a role's trust policy).
    Resource,
}

impl PolicySource {
    /// AWS's phrase for this kind of policy, with its article ("an identity-based policy").
    pub fn with_article(self) -> &'static str {
        match self {
            Self::Identity => "an identity-based policy",
            Self::PermissionsBoundary => "a permissions boundary",
            Self::Session => "a session policy",
            Self::Resource => "a resource-based policy",
        }
    }

    /// AWS's phrase after "no" ("no identity-based policy").
    pub fn bare(self) -> &'static str {
        match self {
            Self::Identity => "identity-based policy",
            Self::PermissionsBoundary => "permissions boundary",
            Self::Session => "session policy",
            Self::Resource => "resource-based policy",
        }
    }
}

/// A statement that took part in a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedStatement {
    /// The layer the policy belongs to.
    pub source: PolicySource,
    /// The policy's name (as given to [`super::CompiledPolicy::new`]).
    pub policy: Arc<str>,
    /// The statement's `Sid`, if it has one.
    pub sid: Option<Arc<str>>,
    /// The statement's zero-based position in its policy.
    pub index: usize,
    /// The statement's effect.
    pub effect: Effect,
}

impl fmt::Display for MatchedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sid {
            Some(sid) => write!(
                f,
                "{} statement {sid:?} ({})",
                self.policy,
                self.effect.as_str()
            ),
            None => write!(
                f,
                "{} statement #{} ({})",
                self.policy,
                self.index,
                self.effect.as_str()
            ),
        }
    }
}

const INLINE: usize = 4;

/// The statements behind a decision; up to four are kept without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchedStatements {
    inline: [Option<MatchedStatement>; INLINE],
    len: usize,
    spill: Vec<MatchedStatement>,
}

impl MatchedStatements {
    /// An empty list.
    pub fn new() -> MatchedStatements {
        MatchedStatements::default()
    }

    /// Appends a statement.
    pub fn push(&mut self, m: MatchedStatement) {
        if self.len < INLINE {
            self.inline[self.len] = Some(m);
        } else {
            self.spill.push(m);
        }
        self.len += 1;
    }

    /// Appends every statement of `other`.
    pub fn extend_from(&mut self, other: &MatchedStatements) {
        for m in other.iter() {
            self.push(m.clone());
        }
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The statements, in evaluation order.
    pub fn iter(&self) -> impl Iterator<Item = &MatchedStatement> {
        self.inline.iter().flatten().chain(self.spill.iter())
    }

    /// The statements as a vector.
    pub fn to_vec(&self) -> Vec<MatchedStatement> {
        self.iter().cloned().collect()
    }
}

/// The outcome of an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionEffect {
    /// The request is allowed.
    Allow,
    /// A statement explicitly denies the request.
    ExplicitDeny,
    /// Nothing (or not every required layer) allows the request.
    ImplicitDeny,
}

impl DecisionEffect {
    /// The name SimulatePrincipalPolicy uses (`allowed`, `explicitDeny`, `implicitDeny`).
    pub fn simulator_name(self) -> &'static str {
        match self {
            Self::Allow => "allowed",
            Self::ExplicitDeny => "explicitDeny",
            Self::ImplicitDeny => "implicitDeny",
        }
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionReason {
    /// Every required layer allowed and nothing denied.
    Allowed,
    /// A statement in a policy of this kind denied the request.
    ExplicitDeny(PolicySource),
    /// No policy of this kind allowed the request (and this kind had to).
    NoAllow(PolicySource),
}

/// An authorization decision that can explain itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, explicit deny or implicit deny.
    pub effect: DecisionEffect,
    /// Why.
    pub reason: DecisionReason,
    /// For an explicit deny, the denying statements; otherwise the allowing statements found
    /// (for an implicit deny these are allows from layers that were not enough on their own).
    pub matched: MatchedStatements,
}

impl Decision {
    pub(crate) fn allow(matched: MatchedStatements) -> Decision {
        Decision {
            effect: DecisionEffect::Allow,
            reason: DecisionReason::Allowed,
            matched,
        }
    }

    pub(crate) fn explicit_deny(source: PolicySource, matched: MatchedStatements) -> Decision {
        Decision {
            effect: DecisionEffect::ExplicitDeny,
            reason: DecisionReason::ExplicitDeny(source),
            matched,
        }
    }

    pub(crate) fn implicit_deny(source: PolicySource, matched: MatchedStatements) -> Decision {
        Decision {
            effect: DecisionEffect::ImplicitDeny,
            reason: DecisionReason::NoAllow(source),
            matched,
        }
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.effect == DecisionEffect::Allow
    }

    /// AWS's explanation clause for a denial, e.g. "because no identity-based policy allows the
    /// iam:CreateUser action" or "with an explicit deny in an identity-based policy"; `None`
    /// when allowed.
    ///
    /// ```
    /// use hive_iam::policy::{PolicySet, Principal, RequestContext};
    ///
    /// let req = RequestContext::new(Principal::user("123456789012", "bob", "AIDA1"), "iam:CreateUser", "*");
    /// let decision = PolicySet::empty().evaluate(&req);
    /// assert_eq!(
    ///     decision.denial_reason("iam:CreateUser").as_deref(),
    ///     Some("because no identity-based policy allows the iam:CreateUser action"),
    /// );
    /// ```
    pub fn denial_reason(&self, action: &str) -> Option<String> {
        match self.reason {
            DecisionReason::Allowed => None,
            DecisionReason::ExplicitDeny(source) => Some(format!(
                "with an explicit deny in {}",
                source.with_article()
            )),
            DecisionReason::NoAllow(source) => Some(format!(
                "because no {} allows the {action} action",
                source.bare()
            )),
        }
    }

    /// The full `AccessDenied` message AWS returns, e.g. "User: arn:aws:iam::123456789012:user/bob
    /// is not authorized to perform: iam:CreateUser on resource: arn:aws:iam::123456789012:user/x
    /// because no identity-based policy allows the iam:CreateUser action"; `None` when allowed.
    pub fn access_denied_message(
        &self,
        principal_arn: &str,
        action: &str,
        resource: &str,
    ) -> Option<String> {
        let reason = self.denial_reason(action)?;
        Some(format!(
            "User: {principal_arn} is not authorized to perform: {action} on resource: {resource} {reason}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> MatchedStatement {
        MatchedStatement {
            source: PolicySource::Identity,
            policy: Arc::from("p"),
            sid: None,
            index: i,
            effect: Effect::Allow,
        }
    }

    #[test]
    fn matched_statements_spill_beyond_inline() {
        let mut list = MatchedStatements::new();
        for i in 0..7 {
            list.push(m(i));
        }
        assert_eq!(list.len(), 7);
        assert_eq!(
            list.iter().map(|s| s.index).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        assert_eq!(list.to_vec().len(), 7);
        assert_eq!(m(3).to_string(), "p statement #3 (Allow)");
    }

    #[test]
    fn messages_follow_aws_wording() {
        let d =
            Decision::explicit_deny(PolicySource::PermissionsBoundary, MatchedStatements::new());
        assert_eq!(
            d.access_denied_message("arn:aws:iam::1:user/bob", "iam:CreateUser", "*")
                .as_deref(),
            Some(
                "User: arn:aws:iam::1:user/bob is not authorized to perform: iam:CreateUser on resource: * with an explicit deny in a permissions boundary"
            )
        );
        let d = Decision::implicit_deny(PolicySource::Session, MatchedStatements::new());
        assert_eq!(
            d.denial_reason("s3:GetObject").as_deref(),
            Some("because no session policy allows the s3:GetObject action")
        );
        assert_eq!(
            Decision::allow(MatchedStatements::new()).denial_reason("x"),
            None
        );
        assert_eq!(
            DecisionEffect::ExplicitDeny.simulator_name(),
            "explicitDeny"
        );
    }
}
