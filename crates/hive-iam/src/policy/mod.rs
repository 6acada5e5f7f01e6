//! The IAM policy language: parsing, validation, compilation and evaluation with AWS semantics.
//!
//! A policy's life has two halves.
//!
//! **When written** (CreatePolicy, PutUserPolicy, CreateRole, ...), [`PolicyDocument::parse`]
//! validates the text with IAM's rules and `MalformedPolicyDocument` messages, and
//! [`validate_size`] applies IAM's size quotas. The document keeps its original text.
//!
//! ```
//! use hive_iam::policy::{PolicyDocument, PolicyKind, SizeLimit, validate_size};
//!
//! let text = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":"s3:Get*","Resource":"*"}]}"#;
//! validate_size(text, SizeLimit::Managed)?;
//! let doc = PolicyDocument::parse(text, PolicyKind::Identity)?;
//! assert_eq!(doc.statements()[0].sid.as_deref(), Some("Read"));
//! assert_eq!(doc.text(), text);
//! # Ok::<(), hive_iam::policy::PolicyError>(())
//! ```
//!
//! **When a request arrives**, the policies that apply were compiled beforehand
//! ([`CompiledPolicy`]) and grouped per layer into indexed [`PolicySet`]s; an [`Authorizer`]
//! combines the layers (identity policies, permissions boundary, session policies,
//! resource-based or trust policy) and returns a [`Decision`] that names the statements behind
//! it and renders AWS's `AccessDenied` wording.
//!
//! ```
//! use std::sync::Arc;
//! use hive_iam::policy::{Authorizer, CompiledPolicy, DecisionEffect, PolicyKind, PolicySet, Principal, RequestContext};
//!
//! let policy = CompiledPolicy::parse(
//!     "HomeFolder",
//!     r#"{"Version":"2012-10-17","Statement":[
//!         {"Sid":"Home","Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*",
//!          "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
//!         {"Sid":"NoDelete","Effect":"Deny","Action":"s3:Delete*","Resource":"*"}]}"#,
//!     PolicyKind::Identity,
//! )?;
//! let identity = PolicySet::new([Arc::new(policy)]);
//! let bob = Principal::user("123456789012", "bob", "AIDAEXAMPLEBOB000001");
//! let req = RequestContext::new(bob, "s3:PutObject", "arn:aws:s3:::home/bob/notes.txt")
//!     .with_source_ip("10.1.2.3".parse().expect("literal address"));
//! let decision = Authorizer::new(&identity).authorize(&req);
//! assert_eq!(decision.effect, DecisionEffect::Allow);
//! assert_eq!(decision.matched.iter().next().and_then(|m| m.sid.as_deref()), Some("Home"));
//! # Ok::<(), hive_iam::policy::PolicyError>(())
//! ```
//!
//! # Semantics
//!
//! - Explicit `Deny` beats `Allow`, which beats the default implicit deny. A statement applies
//!   when its action, resource, principal (resource and trust policies) and every condition match.
//! - Actions compare ASCII-case-insensitively, resources case-sensitively; `*` and `?` work in
//!   both, and in resources stay within an ARN segment unless the `*` ends its segment
//!   ([`wildcard`]).
//! - Conditions: AND across operators and keys, OR across a key's values; keys are
//!   case-insensitive; a missing key fails positive operators and satisfies negated ones
//!   (`StringNotEquals`, `NotIpAddress`, ...); `...IfExists` satisfies any operator on a missing
//!   key; `ForAllValues:` holds on a missing or empty key, `ForAnyValue:` does not; `Null`
//!   tests presence. Values that do not parse as the operator's type never match.
//! - Policy variables (`2012-10-17` only): `${key}`, `${key, 'default'}`, `${*}`, `${?}`,
//!   `${$}` in `Resource` and condition values. Substituted text is literal; an unresolvable
//!   variable makes that resource entry or condition value match nothing.
//! - Layers: see [`Authorizer`].

mod authorize;
mod compile;
mod condition;
mod context;
mod document;
mod effective;
mod explain;
pub mod lint;
pub mod simulate;
mod variables;
pub mod wildcard;

pub use authorize::Authorizer;
pub use compile::{CompiledPolicy, PolicySet};
pub use context::{ContextValue, Principal, PrincipalType, RequestContext};
pub use effective::{CompiledEffective, EffectivePolicies, SourcedPolicy, StoredPolicyError};
pub use explain::{
    Decision, DecisionEffect, DecisionReason, MatchedStatement, MatchedStatements, PolicySource,
};

pub use document::{
    ActionSpec, Condition, ConditionOperator, Effect, Operator, PolicyDocument, PolicyKind,
    PolicyVersion, PrincipalSpec, Principals, ResourceSpec, SetQualifier, Statement, TextPosition,
};

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document is not a valid policy (`MalformedPolicyDocument`); the message is IAM's.
    #[error("{0}")]
    Malformed(String),
    /// The document exceeds a size quota (`LimitExceeded`); whitespace is not counted.
    #[error("Cannot exceed quota for {quota}: {limit}")]
    TooLarge {
        /// IAM's name of the quota (`PolicySize`, `UserPolicySize`, ...).
        quota: &'static str,
        /// The limit, in non-whitespace characters.
        limit: usize,
        /// The document's size, in non-whitespace characters.
        size: usize,
    },
}

/// Where a policy document is stored; each place has its own size quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SizeLimit {
    /// A customer managed policy version: 6,144 characters.
    Managed,
    /// All inline policies of one user together: 2,048 characters.
    UserInline,
    /// All inline policies of one group together: 5,120 characters.
    GroupInline,
    /// All inline policies of one role together: 10,240 characters.
    RoleInline,
    /// A role's trust policy: 2,048 characters (IAM's default `ACLSizePerRole`).
    TrustPolicy,
}

impl SizeLimit {
    /// The limit in characters, whitespace excluded.
    pub fn limit(self) -> usize {
        match self {
            Self::Managed => 6144,
            Self::UserInline => 2048,
            Self::GroupInline => 5120,
            Self::RoleInline => 10240,
            Self::TrustPolicy => 2048,
        }
    }

    /// IAM's name of the quota, as it appears in `LimitExceeded` messages.
    pub fn quota_name(self) -> &'static str {
        match self {
            Self::Managed => "PolicySize",
            Self::UserInline => "UserPolicySize",
            Self::GroupInline => "GroupPolicySize",
            Self::RoleInline => "RolePolicySize",
            Self::TrustPolicy => "ACLSizePerRole",
        }
    }
}

/// The size of a document as IAM counts it: characters that are not whitespace.
pub fn policy_size(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace()).count()
}

/// Checks a document (or, for inline quotas, the concatenation the caller sums) against a quota.
///
/// ```
/// use hive_iam::policy::{PolicyError, SizeLimit, validate_size};
///
/// let big = format!("{{\"Id\":\"{}\"}}", "x".repeat(7000));
/// let err = validate_size(&big, SizeLimit::Managed).unwrap_err();
/// assert_eq!(err.to_string(), "Cannot exceed quota for PolicySize: 6144");
/// assert!(validate_size(&big, SizeLimit::RoleInline).is_ok());
/// ```
pub fn validate_size(text: &str, limit: SizeLimit) -> Result<(), PolicyError> {
    validate_size_total(policy_size(text), limit)
}

/// Checks an already computed size (for example the sum over a user's inline policies).
pub fn validate_size_total(size: usize, limit: SizeLimit) -> Result<(), PolicyError> {
    if size > limit.limit() {
        return Err(PolicyError::TooLarge {
            quota: limit.quota_name(),
            limit: limit.limit(),
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_ignores_whitespace_and_checks_each_quota() {
        assert_eq!(policy_size(" { \n\t\"a\" : 1 } "), 7);
        let text = "x".repeat(6144) + &" ".repeat(100);
        assert!(validate_size(&text, SizeLimit::Managed).is_ok());
        let text = "x".repeat(6145);
        assert_eq!(
            validate_size(&text, SizeLimit::Managed),
            Err(PolicyError::TooLarge {
                quota: "PolicySize",
                limit: 6144,
                size: 6145
            })
        );
        for (limit, n) in [
            (SizeLimit::UserInline, 2048),
            (SizeLimit::GroupInline, 5120),
            (SizeLimit::RoleInline, 10240),
            (SizeLimit::TrustPolicy, 2048),
        ] {
            assert!(validate_size_total(n, limit).is_ok());
            assert!(validate_size_total(n + 1, limit).is_err());
        }
    }
}
