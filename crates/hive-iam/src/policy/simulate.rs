//! IAM's policy simulator (`SimulatePrincipalPolicy`, `SimulateCustomPolicy`) as a pure
//! decision: the caller gathers the policies (from a request, from storage), this module
//! evaluates every action over every resource and reports what IAM reports — the decision,
//! the statements behind it, the context keys the request lacked, and the permissions
//! boundary's own verdict.
//!
//! ```
//! use hive_iam::policy::{DecisionEffect, Principal};
//! use hive_iam::policy::simulate::{SimSource, Simulation};
//!
//! let mut sim = Simulation::default();
//! sim.add_identity(
//!     "PolicyInputList.1",
//!     SimSource::Supplied,
//!     r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#,
//! )?;
//! let alice = Principal::user("123456789012", "alice", "AIDAEXAMPLEALICE0001");
//! let results = sim.run(&alice, &["ec2:DescribeVpcs", "ec2:CreateVpc"], &[], &[]);
//! assert_eq!(results[0].outcome.effect, DecisionEffect::Allow);
//! assert_eq!(results[1].outcome.effect, DecisionEffect::ImplicitDeny);
//! # Ok::<(), hive_iam::policy::PolicyError>(())
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{
    ActionSpec, Authorizer, CompiledPolicy, Decision, DecisionEffect, PolicyError, PolicyKind,
    PolicySet, PolicySource, Principal, RequestContext, wildcard,
};

/// Where a simulated policy came from: IAM's `SourcePolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimSource {
    /// An inline policy of a user.
    User,
    /// An inline policy of a group.
    Group,
    /// An inline policy of a role.
    Role,
    /// A customer managed policy.
    UserManaged,
    /// The resource-based policy given to the simulation.
    Resource,
    /// A document supplied in the request.
    Supplied,
}

impl SimSource {
    /// The `SourcePolicyType` IAM answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Role => "role",
            Self::UserManaged => "user-managed",
            Self::Resource => "resource",
            Self::Supplied => "IAM Policy",
        }
    }

    /// The source of an inline policy of `kind` (`user`, `group`, `role`).
    pub fn inline(kind: crate::identity::EntityKind) -> Self {
        use crate::identity::EntityKind;
        match kind {
            EntityKind::User => Self::User,
            EntityKind::Group => Self::Group,
            EntityKind::Role | EntityKind::Policy => Self::Role,
        }
    }
}

/// One policy taking part in a simulation.
#[derive(Debug)]
pub struct SimPolicy {
    /// `SourcePolicyId`: a policy name, or `PolicyInputList.N` for a supplied document.
    pub id: String,
    /// `SourcePolicyType`.
    pub source: SimSource,
    /// The compiled policy (its statements keep their text positions).
    pub compiled: Arc<CompiledPolicy>,
}

/// The policies of a simulation. Each is compiled under its index in the table, so that a
/// matched statement leads back to its source.
#[derive(Debug, Default)]
pub struct Simulation {
    table: Vec<SimPolicy>,
    identity: Vec<usize>,
    boundary: Option<Vec<usize>>,
    resource: Option<usize>,
    excluded_arns: Vec<String>,
    excluded_inline: Vec<(String, String, String)>,
}

/// One simulated request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOutcome {
    /// The resource (empty for an action's combined outcome).
    pub resource: String,
    /// The decision.
    pub effect: DecisionEffect,
    /// Statements behind it: (policy index, statement index), deduplicated, in order. AWS
    /// lists them only for allowed and explicitly denied requests.
    pub matched: Vec<(usize, usize)>,
    /// Condition keys of applicable statements that the request lacked.
    pub missing: Vec<String>,
    /// The permissions boundary's own verdict, when there is a boundary.
    pub allowed_by_boundary: Option<bool>,
}

/// One `EvaluationResult`: an action over every requested resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResult {
    /// The action.
    pub action: String,
    /// `EvalResourceName`: the resource when exactly one was evaluated.
    pub resource_name: Option<String>,
    /// The most restrictive decision across the resources.
    pub outcome: SimOutcome,
    /// One outcome per resource, when resources were given.
    pub per_resource: Option<Vec<SimOutcome>>,
}

fn rank(effect: DecisionEffect) -> u8 {
    match effect {
        DecisionEffect::Allow => 0,
        DecisionEffect::ImplicitDeny => 1,
        DecisionEffect::ExplicitDeny => 2,
    }
}

impl Simulation {
    fn add(
        &mut self,
        id: &str,
        source: SimSource,
        text: &str,
        kind: PolicyKind,
    ) -> Result<usize, PolicyError> {
        let index = self.table.len();
        let compiled = CompiledPolicy::parse(&index.to_string(), text, kind)?;
        self.table.push(SimPolicy {
            id: id.to_owned(),
            source,
            compiled: Arc::new(compiled),
        });
        Ok(index)
    }

    /// An identity policy. A document that does not parse is an error and adds nothing; for a
    /// stored policy the caller leaves it out (it grants nothing).
    pub fn add_identity(
        &mut self,
        id: &str,
        source: SimSource,
        text: &str,
    ) -> Result<(), PolicyError> {
        let i = self.add(id, source, text, PolicyKind::Identity)?;
        self.identity.push(i);
        Ok(())
    }

    /// The permissions boundary, replacing any earlier one. Documents that do not parse are
    /// errors for supplied boundaries; for a stored one pass only those that parse (an
    /// unreadable boundary allows nothing, so an empty list is a boundary too).
    pub fn set_boundary<'a>(
        &mut self,
        documents: impl IntoIterator<Item = (&'a str, SimSource, &'a str)>,
    ) -> Result<(), (usize, PolicyError)> {
        let mut set = Vec::new();
        for (n, (id, source, text)) in documents.into_iter().enumerate() {
            set.push(
                self.add(id, source, text, PolicyKind::Identity)
                    .map_err(|e| (n, e))?,
            );
        }
        self.boundary = Some(set);
        Ok(())
    }

    /// The resource-based policy the simulation evaluates with.
    pub fn set_resource_policy(&mut self, text: &str) -> Result<(), PolicyError> {
        let i = self.add(
            "ResourcePolicy",
            SimSource::Resource,
            text,
            PolicyKind::Resource,
        )?;
        self.resource = Some(i);
        Ok(())
    }

    /// Whether a boundary was set.
    pub fn has_boundary(&self) -> bool {
        self.boundary.is_some()
    }

    /// Leaves the managed policy `policy_arn` out (`PolicyExclusionList`).
    pub fn exclude_managed(&mut self, policy_arn: &str) {
        self.excluded_arns.push(policy_arn.to_owned());
    }

    /// Leaves an inline policy out: attachment type (`user`, `group`, `role`), entity, name.
    pub fn exclude_inline(&mut self, kind: &str, entity: &str, policy: &str) {
        self.excluded_inline.push((
            kind.to_ascii_lowercase(),
            entity.to_ascii_lowercase(),
            policy.to_owned(),
        ));
    }

    /// Whether the managed policy is excluded.
    pub fn is_managed_excluded(&self, policy_arn: &str) -> bool {
        self.excluded_arns.iter().any(|a| a == policy_arn)
    }

    /// Whether the inline policy is excluded (entity names compare case-insensitively).
    pub fn is_inline_excluded(&self, kind: &str, entity: &str, policy: &str) -> bool {
        self.excluded_inline
            .iter()
            .any(|(k, e, p)| k == kind && *e == entity.to_ascii_lowercase() && p == policy)
    }

    /// The policy at `index` of the table (what [`SimOutcome::matched`] points into).
    pub fn policy(&self, index: usize) -> Option<&SimPolicy> {
        self.table.get(index)
    }

    fn set(&self, indices: &[usize]) -> PolicySet {
        PolicySet::new(
            indices
                .iter()
                .filter_map(|&i| self.table.get(i))
                .map(|p| p.compiled.clone()),
        )
    }

    /// Condition keys of statements applying to the request's action that the request lacks.
    fn missing_context(&self, req: &RequestContext) -> Vec<String> {
        let action = req.action();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in &self.table {
            for st in p.compiled.document().statements() {
                let applies = match &st.action {
                    ActionSpec::Action(patterns) => patterns
                        .iter()
                        .any(|a| wildcard::matches_ignore_ascii_case(a, action)),
                    ActionSpec::NotAction(patterns) => !patterns
                        .iter()
                        .any(|a| wildcard::matches_ignore_ascii_case(a, action)),
                };
                if !applies {
                    continue;
                }
                for c in &st.conditions {
                    if req.get(&c.key).is_none() && seen.insert(c.key.to_ascii_lowercase()) {
                        out.push(c.key.clone());
                    }
                }
            }
        }
        out
    }

    /// Evaluates every action of `actions` as `principal` over `resources` (`*` when none is
    /// given) with the `context` entries, as IAM's simulator does.
    pub fn run(
        &self,
        principal: &Principal,
        actions: &[&str],
        resources: &[&str],
        context: &[(String, Vec<String>)],
    ) -> Vec<SimResult> {
        let explicit = !resources.is_empty();
        let resources: &[&str] = if explicit { resources } else { &["*"] };
        let identity = self.set(&self.identity);
        let boundary = self.boundary.as_deref().map(|b| self.set(b));
        let resource_policy = self.resource.map(|i| self.set(&[i]));
        let mut authorizer = Authorizer::new(&identity);
        if let Some(b) = &boundary {
            authorizer = authorizer.with_permissions_boundary(b);
        }
        if let Some(r) = &resource_policy {
            authorizer = authorizer.with_resource_policy(r);
        }
        actions
            .iter()
            .map(|&action| {
                let outcomes: Vec<SimOutcome> = resources
                    .iter()
                    .map(|&resource| {
                        let mut req = RequestContext::new(principal.clone(), action, resource);
                        for (key, values) in context {
                            req.set_values(key, values.iter().map(String::as_str));
                        }
                        let decision = authorizer.authorize(&req);
                        SimOutcome {
                            resource: resource.to_owned(),
                            effect: decision.effect,
                            matched: matched_of(&decision),
                            missing: self.missing_context(&req),
                            allowed_by_boundary: boundary.as_ref().map(|b| {
                                b.evaluate_as(&req, PolicySource::PermissionsBoundary)
                                    .is_allowed()
                            }),
                        }
                    })
                    .collect();
                combine(action, outcomes, explicit, boundary.is_some())
            })
            .collect()
    }
}

/// The statements behind a decision, as (policy index, statement index).
fn matched_of(decision: &Decision) -> Vec<(usize, usize)> {
    if decision.effect == DecisionEffect::ImplicitDeny {
        return Vec::new();
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    for m in decision.matched.iter() {
        if let Ok(p) = m.policy.parse::<usize>()
            && !out.contains(&(p, m.index))
        {
            out.push((p, m.index));
        }
    }
    out
}

/// One action's result from its per-resource outcomes: the most restrictive decision, the
/// statements of the outcomes that share it, every missing key.
fn combine(action: &str, outcomes: Vec<SimOutcome>, explicit: bool, bounded: bool) -> SimResult {
    let effect = outcomes
        .iter()
        .map(|o| o.effect)
        .max_by_key(|e| rank(*e))
        .unwrap_or(DecisionEffect::ImplicitDeny);
    let mut matched = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for o in outcomes.iter().filter(|o| o.effect == effect) {
        for m in &o.matched {
            if !matched.contains(m) {
                matched.push(*m);
            }
        }
    }
    for o in &outcomes {
        for k in &o.missing {
            if !missing.contains(k) {
                missing.push(k.clone());
            }
        }
    }
    let allowed_by_boundary =
        bounded.then(|| outcomes.iter().all(|o| o.allowed_by_boundary == Some(true)));
    let resource_name = match outcomes.as_slice() {
        [one] => Some(one.resource.clone()),
        _ => None,
    };
    SimResult {
        action: action.to_owned(),
        resource_name,
        outcome: SimOutcome {
            resource: String::new(),
            effect,
            matched,
            missing,
            allowed_by_boundary,
        },
        per_resource: explicit.then_some(outcomes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW_DESCRIBE: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
        {"Effect":"Allow","Action":"ec2:CreateVpc","Resource":"*",
         "Condition":{"StringEquals":{"aws:RequestedRegion":"us-east-1"}}}]}"#;
    const DENY_ONE: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Deny","Action":"ec2:DescribeVpcs","Resource":"arn:aws:ec2:*:*:vpc/vpc-1"}]}"#;

    fn alice() -> Principal {
        Principal::user("123456789012", "alice", "AIDAEXAMPLEALICE0001")
    }

    #[test]
    fn the_most_restrictive_resource_decides_and_statements_lead_back() {
        let mut sim = Simulation::default();
        sim.add_identity("allow", SimSource::UserManaged, ALLOW_DESCRIBE)
            .expect("parses");
        sim.add_identity("deny", SimSource::User, DENY_ONE)
            .expect("parses");
        let r = sim.run(
            &alice(),
            &["ec2:DescribeVpcs"],
            &["arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1", "*"],
            &[],
        );
        assert_eq!(r[0].outcome.effect, DecisionEffect::ExplicitDeny);
        assert_eq!(r[0].resource_name, None);
        let per = r[0].per_resource.as_ref().expect("resources given");
        assert_eq!(per[1].effect, DecisionEffect::Allow);
        let (p, _) = r[0].outcome.matched[0];
        assert_eq!(sim.policy(p).map(|p| p.id.as_str()), Some("deny"));
    }

    #[test]
    fn missing_context_and_boundaries_are_reported() {
        let mut sim = Simulation::default();
        sim.add_identity("allow", SimSource::Supplied, ALLOW_DESCRIBE)
            .expect("parses");
        let r = sim.run(&alice(), &["ec2:CreateVpc"], &[], &[]);
        assert_eq!(r[0].outcome.effect, DecisionEffect::ImplicitDeny);
        assert_eq!(r[0].outcome.missing, ["aws:RequestedRegion"]);
        assert_eq!(r[0].resource_name.as_deref(), Some("*"));
        let context = [(
            "aws:RequestedRegion".to_owned(),
            vec!["us-east-1".to_owned()],
        )];
        let r = sim.run(&alice(), &["ec2:CreateVpc"], &[], &context);
        assert_eq!(r[0].outcome.effect, DecisionEffect::Allow);

        // An empty boundary (unreadable) allows nothing.
        sim.set_boundary([]).expect("no documents");
        let r = sim.run(&alice(), &["ec2:DescribeVpcs"], &[], &[]);
        assert_eq!(r[0].outcome.effect, DecisionEffect::ImplicitDeny);
        assert_eq!(r[0].outcome.allowed_by_boundary, Some(false));
    }

    #[test]
    fn exclusions_compare_as_iam_does() {
        let mut sim = Simulation::default();
        sim.exclude_inline("User", "Alice", "p1");
        sim.exclude_managed("arn:aws:iam::123456789012:policy/x");
        assert!(sim.is_inline_excluded("user", "alice", "p1"));
        assert!(!sim.is_inline_excluded("user", "alice", "P1"));
        assert!(sim.is_managed_excluded("arn:aws:iam::123456789012:policy/x"));
        assert!(sim.add_identity("bad", SimSource::Supplied, "{").is_err());
        assert!(
            sim.policy(0).is_none(),
            "a document that does not parse adds nothing"
        );
    }
}
