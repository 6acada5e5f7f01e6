//! Turning a principal's stored policies into a decision: the one place where the layers of
//! [`EffectivePolicies`] (identity, permissions boundary, session) are compiled and handed to
//! the [`Authorizer`]. The server's authorization, IAM's simulation and `hive-cli iam
//! simulate` all decide through it, so they cannot disagree.

use std::sync::Arc;

use super::{
    Authorizer, CompiledPolicy, Decision, PolicyError, PolicyKind, PolicySet, RequestContext,
};

/// One policy document that applies to a principal, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedPolicy {
    /// The policy's ARN for managed policies, or `<entity ARN>:inline/<name>` for inline ones.
    pub source: String,
    /// The document text.
    pub document: String,
}

/// The policies that decide a principal's requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectivePolicies {
    /// Identity policies: inline and attached managed policies of the user and its groups, or
    /// of the role.
    pub identity: Vec<SourcedPolicy>,
    /// The permissions boundary, when one is set.
    pub boundary: Option<SourcedPolicy>,
    /// The session policy of temporary credentials.
    pub session: Option<String>,
}

/// The compiled layers of a principal's policies.
#[derive(Debug, Clone)]
pub struct CompiledEffective {
    /// Identity policies (inline and managed, of the user and its groups, or of the role).
    pub identity: PolicySet,
    /// The permissions boundary, when one is set.
    pub boundary: Option<PolicySet>,
    /// The session policy of temporary credentials.
    pub session: Option<PolicySet>,
}

/// A stored policy that does not compile: the layer it belongs to and its source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stored policy {source_name} does not parse: {error}")]
pub struct StoredPolicyError {
    /// The policy's ARN, `<entity ARN>:inline/<name>`, or `session`.
    pub source_name: String,
    /// Why.
    pub error: PolicyError,
}

impl EffectivePolicies {
    /// Compile every layer; a stored document that no longer parses is an error (callers
    /// deny: a policy that cannot be read must not silently grant or withhold less).
    pub fn compile(&self) -> Result<CompiledEffective, StoredPolicyError> {
        let compile = |source: &str, text: &str| {
            CompiledPolicy::parse(source, text, PolicyKind::Identity)
                .map(Arc::new)
                .map_err(|error| StoredPolicyError {
                    source_name: source.to_owned(),
                    error,
                })
        };
        let identity = PolicySet::new(
            self.identity
                .iter()
                .map(|p| compile(&p.source, &p.document))
                .collect::<Result<Vec<_>, _>>()?,
        );
        let boundary = match &self.boundary {
            Some(b) => Some(PolicySet::new([compile(&b.source, &b.document)?])),
            None => None,
        };
        let session = match &self.session {
            Some(s) => Some(PolicySet::new([compile("session", s)?])),
            None => None,
        };
        Ok(CompiledEffective {
            identity,
            boundary,
            session,
        })
    }
}

impl CompiledEffective {
    /// An authorizer over these layers (add a resource policy with
    /// [`Authorizer::with_resource_policy`] where one applies).
    pub fn authorizer(&self) -> Authorizer<'_> {
        let mut authorizer = Authorizer::new(&self.identity);
        if let Some(b) = &self.boundary {
            authorizer = authorizer.with_permissions_boundary(b);
        }
        if let Some(s) = &self.session {
            authorizer = authorizer.with_session_policies(s);
        }
        authorizer
    }

    /// Decide `request`.
    pub fn authorize(&self, request: &RequestContext) -> Decision {
        self.authorizer().authorize(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DecisionEffect, Principal};

    fn sourced(source: &str, statement: &str) -> SourcedPolicy {
        SourcedPolicy {
            source: source.into(),
            document: format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#),
        }
    }

    fn decide(policies: &EffectivePolicies, action: &str) -> DecisionEffect {
        let request = RequestContext::new(
            Principal::user("000000000000", "bob", "AIDAEXAMPLEBOB000001"),
            action,
            "*",
        );
        policies
            .compile()
            .expect("compiles")
            .authorize(&request)
            .effect
    }

    #[test]
    fn every_layer_takes_part() {
        let mut p = EffectivePolicies {
            identity: vec![sourced(
                "arn:aws:iam::000000000000:policy/all",
                r#"{"Effect":"Allow","Action":["iam:*","ec2:*"],"Resource":"*"}"#,
            )],
            ..EffectivePolicies::default()
        };
        assert_eq!(decide(&p, "ec2:CreateVpc"), DecisionEffect::Allow);
        p.boundary = Some(sourced(
            "arn:aws:iam::000000000000:policy/boundary",
            r#"{"Effect":"Allow","Action":"iam:*","Resource":"*"}"#,
        ));
        assert_eq!(decide(&p, "ec2:CreateVpc"), DecisionEffect::ImplicitDeny);
        assert_eq!(decide(&p, "iam:GetUser"), DecisionEffect::Allow);
        p.session = Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:List*","Resource":"*"}]}"#
                .into(),
        );
        assert_eq!(decide(&p, "iam:GetUser"), DecisionEffect::ImplicitDeny);
        assert_eq!(decide(&p, "iam:ListUsers"), DecisionEffect::Allow);
    }

    #[test]
    fn an_unparsable_stored_policy_is_an_error_naming_it() {
        let p = EffectivePolicies {
            identity: vec![SourcedPolicy {
                source: "arn:aws:iam::000000000000:policy/broken".into(),
                document: "{".into(),
            }],
            ..EffectivePolicies::default()
        };
        let e = p.compile().expect_err("broken");
        assert_eq!(e.source_name, "arn:aws:iam::000000000000:policy/broken");
    }
}
