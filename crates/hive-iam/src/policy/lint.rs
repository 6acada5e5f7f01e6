//! Linting policy documents: IAM's own validation (the `MalformedPolicyDocument` and quota
//! messages AWS would answer) plus warnings for grants that are valid but risky.
//!
//! ```
//! use hive_iam::policy::PolicyKind;
//! use hive_iam::policy::lint::{lint, LintRule};
//!
//! let report = lint(
//!     r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
//!     PolicyKind::Identity,
//! );
//! assert!(report.error.is_none());
//! assert_eq!(report.warnings[0].rule, LintRule::FullAdmin);
//! ```

use std::fmt;

use super::document::{
    ActionSpec, Effect, PolicyDocument, PolicyKind, PrincipalSpec, ResourceSpec,
};
use super::{PolicyError, SizeLimit, validate_size};

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LintRule {
    /// `Allow` of every action on every resource: full administrator.
    FullAdmin,
    /// `Allow` of every action of a service (`iam:*`, `s3:*`) on every resource.
    ServiceWildcard,
    /// `Allow` of `iam:PassRole` on every resource: the holder can hand any role to a service.
    PassRoleOnAny,
    /// `Allow` with `NotAction`: grants everything not listed, including future actions.
    AllowNotAction,
    /// `Allow` with `NotResource`: grants every resource not listed.
    AllowNotResource,
    /// A trust or resource policy that lets anyone (`"*"`) in.
    AnyPrincipal,
    /// The document has no `Version` or the old `2008-10-17` one: policy variables are plain text.
    OldVersion,
}

impl LintRule {
    /// A stable identifier for machine-readable output.
    pub fn id(self) -> &'static str {
        match self {
            Self::FullAdmin => "full-admin",
            Self::ServiceWildcard => "service-wildcard",
            Self::PassRoleOnAny => "passrole-on-any",
            Self::AllowNotAction => "allow-not-action",
            Self::AllowNotResource => "allow-not-resource",
            Self::AnyPrincipal => "any-principal",
            Self::OldVersion => "old-version",
        }
    }
}

impl fmt::Display for LintRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One risky grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintWarning {
    /// Which rule.
    pub rule: LintRule,
    /// The statement (0-based), when the warning is about one.
    pub statement: Option<usize>,
    /// Its `Sid`, if it has one.
    pub sid: Option<String>,
    /// What is risky, in a sentence.
    pub message: String,
}

/// The result of [`lint`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LintReport {
    /// IAM's error when the document would be refused (its message is AWS's, word for word).
    pub error: Option<LintError>,
    /// Risky grants in a valid document.
    pub warnings: Vec<LintWarning>,
}

impl LintReport {
    /// Whether IAM would accept the document.
    pub fn is_valid(&self) -> bool {
        self.error.is_none()
    }
}

/// Why IAM would refuse a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintError {
    /// The AWS error code: `MalformedPolicyDocument` or `LimitExceeded`.
    pub code: &'static str,
    /// The AWS message.
    pub message: String,
}

impl From<PolicyError> for LintError {
    fn from(e: PolicyError) -> Self {
        let code = match e {
            PolicyError::Malformed(_) => "MalformedPolicyDocument",
            PolicyError::TooLarge { .. } => "LimitExceeded",
        };
        Self {
            code,
            message: e.to_string(),
        }
    }
}

/// Validate `text` as a policy of `kind` the way IAM does when it is stored (the size quota of
/// a managed policy or a trust policy, then the grammar), then look for risky grants.
pub fn lint(text: &str, kind: PolicyKind) -> LintReport {
    let limit = match kind {
        PolicyKind::Trust => SizeLimit::TrustPolicy,
        PolicyKind::Identity | PolicyKind::Resource => SizeLimit::Managed,
    };
    let parsed = validate_size(text, limit).and_then(|()| PolicyDocument::parse(text, kind));
    let doc = match parsed {
        Ok(doc) => doc,
        Err(e) => {
            return LintReport {
                error: Some(e.into()),
                warnings: Vec::new(),
            };
        }
    };
    LintReport {
        error: None,
        warnings: warnings(&doc),
    }
}

/// The risky grants of a parsed document.
pub fn warnings(doc: &PolicyDocument) -> Vec<LintWarning> {
    let mut out = Vec::new();
    if !doc.version().supports_variables() {
        out.push(LintWarning {
            rule: LintRule::OldVersion,
            statement: None,
            sid: None,
            message: "Version is missing or 2008-10-17: policy variables such as ${aws:username} are matched literally; use \"Version\": \"2012-10-17\"".into(),
        });
    }
    for (index, st) in doc.statements().iter().enumerate() {
        if st.effect != Effect::Allow {
            continue;
        }
        let mut warn = |rule: LintRule, message: String| {
            out.push(LintWarning {
                rule,
                statement: Some(index),
                sid: st.sid.clone(),
                message,
            });
        };
        let any_resource = match &st.resource {
            Some(ResourceSpec::Resource(r)) => r.iter().any(|r| r == "*"),
            Some(ResourceSpec::NotResource(_)) => {
                warn(
                    LintRule::AllowNotResource,
                    "Allow with NotResource grants every resource that is not listed, including ones created later".into(),
                );
                false
            }
            // Trust policies have no Resource: the role itself is the resource.
            None => false,
        };
        match &st.action {
            ActionSpec::NotAction(_) => warn(
                LintRule::AllowNotAction,
                "Allow with NotAction grants every action that is not listed, including ones added later".into(),
            ),
            ActionSpec::Action(actions) if any_resource => {
                let lower: Vec<String> = actions.iter().map(|a| a.to_ascii_lowercase()).collect();
                if lower.iter().any(|a| a == "*") {
                    warn(
                        LintRule::FullAdmin,
                        "Allow of \"*\" on \"*\" grants full administrator access".into(),
                    );
                } else {
                    for a in actions {
                        if let Some(service) = a.strip_suffix(":*") {
                            warn(
                                LintRule::ServiceWildcard,
                                format!("Allow of every {service} action (\"{a}\") on \"*\""),
                            );
                        }
                    }
                    if lower.iter().any(|a| {
                        a == "iam:passrole" || a == "iam:*" || a == "iam:pass*" || a == "iam:passr*"
                    }) {
                        warn(
                            LintRule::PassRoleOnAny,
                            "Allow of iam:PassRole on \"*\" lets the holder pass any role (and its permissions) to a service; name the roles".into(),
                        );
                    }
                }
            }
            ActionSpec::Action(_) => {}
        }
        if let Some(PrincipalSpec::Principal(p)) = &st.principal
            && (p.any || p.aws.iter().any(|a| a == "*"))
        {
            warn(
                LintRule::AnyPrincipal,
                "Principal \"*\" lets anyone, in any account, in unless a condition limits it"
                    .into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
    }

    fn rules(text: &str, kind: PolicyKind) -> Vec<LintRule> {
        let report = lint(text, kind);
        assert!(report.is_valid(), "{:?}", report.error);
        report.warnings.iter().map(|w| w.rule).collect()
    }

    #[test]
    fn full_admin_and_passrole_are_flagged() {
        assert_eq!(
            rules(
                &doc(r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#),
                PolicyKind::Identity
            ),
            [LintRule::FullAdmin]
        );
        assert_eq!(
            rules(
                &doc(r#"{"Sid":"Pass","Effect":"Allow","Action":"iam:PassRole","Resource":"*"}"#),
                PolicyKind::Identity
            ),
            [LintRule::PassRoleOnAny]
        );
        assert_eq!(
            rules(
                &doc(r#"{"Effect":"Allow","Action":"iam:*","Resource":"*"}"#),
                PolicyKind::Identity
            ),
            [LintRule::ServiceWildcard, LintRule::PassRoleOnAny]
        );
    }

    #[test]
    fn scoped_grants_and_denies_are_quiet() {
        assert!(
            rules(
                &doc(
                    r#"{"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::000000000000:role/app"},
                       {"Effect":"Deny","Action":"*","Resource":"*"},
                       {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}"#
                ),
                PolicyKind::Identity
            )
            .is_empty()
        );
    }

    #[test]
    fn not_action_not_resource_any_principal_and_old_version() {
        assert_eq!(
            rules(
                &doc(r#"{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:s3:::x"}"#),
                PolicyKind::Identity
            ),
            [LintRule::AllowNotResource, LintRule::AllowNotAction]
        );
        assert_eq!(
            rules(
                &doc(r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}"#),
                PolicyKind::Trust
            ),
            [LintRule::AnyPrincipal]
        );
        assert_eq!(
            rules(
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}"#,
                PolicyKind::Identity
            ),
            [LintRule::OldVersion]
        );
    }

    #[test]
    fn malformed_documents_carry_aws_messages() {
        let report = lint("{", PolicyKind::Identity);
        let e = report.error.expect("malformed");
        assert_eq!(e.code, "MalformedPolicyDocument");
        assert_eq!(e.message, "Syntax errors in policy.");
        let report = lint(
            &doc(r#"{"Effect":"Allow","Action":"s3:GetObject"}"#),
            PolicyKind::Identity,
        );
        assert_eq!(
            report.error.expect("no resource").message,
            "Policy statement must contain resources."
        );
        let big = doc(&format!(
            r#"{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{}"}}"#,
            "a".repeat(7000)
        ));
        assert_eq!(
            lint(&big, PolicyKind::Identity)
                .error
                .expect("too big")
                .code,
            "LimitExceeded"
        );
    }
}
