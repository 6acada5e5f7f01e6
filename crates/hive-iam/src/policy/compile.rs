//! Compiled policies and policy sets: what evaluation actually runs.
//!
//! A [`CompiledPolicy`] is built once when a policy is written (or loaded), with actions
//! lower-cased, wildcard patterns ready, condition values parsed and policy variables
//! pre-split. A [`PolicySet`] groups the policies of one layer (for example every identity
//! policy of a user and their groups) and indexes their statements by action:
//!
//! - statements whose actions for a service are all exact names sit in a hash map keyed by
//!   `(service, action)`;
//! - statements with a wildcard in the action name sit in per-service lists, bucketed by the
//!   first character of the name when it is literal (`iam:Get*` under `g`);
//! - statements matching every service (`*`, `*:Get*`, `NotAction`) sit in a global list.
//!
//! A request looks up its service and action once and evaluates only those candidates, so the
//! cost grows with the statements that could match rather than with all statements. Each
//! statement is a candidate at most once per request. Two further shortcuts keep candidates
//! cheap: an index entry carries an eight-byte fingerprint of the statement's literal resource
//! prefix (so `arn:aws:s3:::bucket-7/*` rejects `bucket-3` without touching the statement), and
//! identical conditions across the set (a guardrail repeated in many policies) are evaluated
//! once per request. Evaluation allocates nothing unless a candidate uses policy variables or a
//! decision names more than four statements.

use std::sync::Arc;

use super::PolicyError;
use super::condition::CompiledCondition;
use super::context::{FnvMap, Principal, PrincipalType, RequestContext};
use super::document::{
    ActionSpec, Effect, PolicyDocument, PolicyKind, PrincipalSpec, Principals, ResourceSpec,
    Statement,
};
use super::explain::{Decision, MatchedStatement, MatchedStatements, PolicySource};
use super::variables::Template;
use super::wildcard::{glob, resource_glob};

/// How a statement's `Principal` element matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalMatch {
    /// The statement has no principal element (identity-based policies).
    NotApplicable,
    /// The caller is named: its ARN (or its role's ARN), service or identity provider.
    Named,
    /// The caller matched through `*`, its account, or a `NotPrincipal`.
    Broad,
}

#[derive(Debug, Clone)]
struct CompiledPrincipals {
    any: bool,
    aws: Vec<Box<str>>,
    services: Vec<Box<str>>,
    federated: Vec<Box<str>>,
}

impl CompiledPrincipals {
    fn compile(p: &Principals) -> CompiledPrincipals {
        CompiledPrincipals {
            // AWS documents `"Principal": "*"` and `{"AWS": "*"}` as equivalent: everyone,
            // including anonymous callers.
            any: p.any || p.aws.iter().any(|a| a == "*"),
            aws: p
                .aws
                .iter()
                .filter(|a| *a != "*")
                .map(|a| a.as_str().into())
                .collect(),
            services: p.service.iter().map(|s| s.as_str().into()).collect(),
            federated: p.federated.iter().map(|s| s.as_str().into()).collect(),
        }
    }

    fn matches(&self, p: &Principal) -> Option<PrincipalMatch> {
        let aws_principal = !matches!(
            p.principal_type,
            PrincipalType::Service | PrincipalType::Anonymous
        );
        if aws_principal {
            let mut broad = false;
            for a in &self.aws {
                if **a == *p.arn || p.role_arn.as_deref() == Some(&**a) {
                    return Some(PrincipalMatch::Named);
                }
                // `arn:aws:iam::<account>:root` stands for every principal of the account.
                let account = a
                    .strip_prefix("arn:aws:iam::")
                    .and_then(|r| r.strip_suffix(":root"));
                if account.is_some_and(|acct| !acct.is_empty() && acct == p.account) {
                    broad = true;
                }
            }
            if broad {
                return Some(PrincipalMatch::Broad);
            }
        }
        if let Some(service) = &p.service
            && self
                .services
                .iter()
                .any(|s| s.eq_ignore_ascii_case(service))
        {
            return Some(PrincipalMatch::Named);
        }
        if let Some(idp) = &p.federated_provider
            && self.federated.iter().any(|f| **f == **idp)
        {
            return Some(PrincipalMatch::Named);
        }
        self.any.then_some(PrincipalMatch::Broad)
    }
}

/// A resource pattern without variables, with its literal prefix for a cheap first test.
#[derive(Debug, Clone)]
struct StaticResource {
    bytes: Box<[u8]>,
    /// Length of the literal text before the first wildcard.
    prefix: usize,
    /// The only wildcard is one `*` at the very end (`arn:aws:s3:::bucket/*`): a prefix test
    /// decides, since a final `*` may expand across colons.
    prefix_only: bool,
}

impl StaticResource {
    fn new(text: &str) -> StaticResource {
        let bytes: Box<[u8]> = text.as_bytes().into();
        let prefix = bytes
            .iter()
            .position(|&b| b == b'*' || b == b'?')
            .unwrap_or(bytes.len());
        let prefix_only = prefix + 1 == bytes.len() && bytes[prefix] == b'*';
        StaticResource {
            bytes,
            prefix,
            prefix_only,
        }
    }

    #[inline]
    fn matches(&self, resource: &[u8]) -> bool {
        if !resource.starts_with(&self.bytes[..self.prefix]) {
            return false;
        }
        if self.prefix == self.bytes.len() {
            return resource.len() == self.prefix;
        }
        self.prefix_only || resource_glob(&self.bytes, resource)
    }
}

#[derive(Debug, Clone)]
enum ResourcePattern {
    Static(StaticResource),
    Template(Template),
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledStatement {
    sid: Option<Arc<str>>,
    effect: Effect,
    not_action: bool,
    /// Lower-cased action patterns.
    actions: Vec<Box<[u8]>>,
    /// `(is NotResource, patterns)`; `None` in trust policies.
    resources: Option<(bool, Vec<ResourcePattern>)>,
    /// `(is NotPrincipal, principals)`; `None` in identity-based policies.
    principal: Option<(bool, CompiledPrincipals)>,
    conditions: Vec<CompiledCondition>,
}

impl CompiledStatement {
    fn compile(st: &Statement, variables: bool) -> CompiledStatement {
        let (not_action, actions) = match &st.action {
            ActionSpec::Action(a) => (false, a),
            ActionSpec::NotAction(a) => (true, a),
        };
        let resource_pattern = |r: &String| match variables.then(|| Template::parse(r)).flatten() {
            Some(t) => ResourcePattern::Template(t),
            None => ResourcePattern::Static(StaticResource::new(r)),
        };
        let resources = st.resource.as_ref().map(|r| match r {
            ResourceSpec::Resource(r) => (false, r.iter().map(resource_pattern).collect()),
            ResourceSpec::NotResource(r) => (true, r.iter().map(resource_pattern).collect()),
        });
        let principal = st.principal.as_ref().map(|p| match p {
            PrincipalSpec::Principal(p) => (false, CompiledPrincipals::compile(p)),
            PrincipalSpec::NotPrincipal(p) => (true, CompiledPrincipals::compile(p)),
        });
        CompiledStatement {
            sid: st.sid.as_deref().map(Arc::from),
            effect: st.effect,
            not_action,
            actions: actions
                .iter()
                .map(|a| a.to_ascii_lowercase().into_bytes().into())
                .collect(),
            resources,
            principal,
            conditions: st
                .conditions
                .iter()
                .map(|c| CompiledCondition::compile(c, variables))
                .collect(),
        }
    }

    #[inline]
    fn action_matches(&self, action_lower: &str) -> bool {
        self.actions
            .iter()
            .any(|p| glob(p, action_lower.as_bytes(), false))
            != self.not_action
    }

    #[inline]
    fn resource_matches(&self, req: &RequestContext) -> bool {
        let Some((not, patterns)) = &self.resources else {
            return true;
        };
        let resource = req.resource().as_bytes();
        let hit = patterns.iter().any(|p| match p {
            ResourcePattern::Static(p) => p.matches(resource),
            ResourcePattern::Template(t) => t
                .render_pattern(req)
                .is_some_and(|p| resource_glob(&p, resource)),
        });
        hit != *not
    }

    #[inline]
    fn principal_match(&self, p: &Principal) -> Option<PrincipalMatch> {
        match &self.principal {
            None => Some(PrincipalMatch::NotApplicable),
            Some((false, ps)) => ps.matches(p),
            Some((true, ps)) => match ps.matches(p) {
                Some(_) => None,
                None => Some(PrincipalMatch::Broad),
            },
        }
    }
}

/// A policy compiled for evaluation, with the name used in explanations.
///
/// ```
/// use hive_iam::policy::{CompiledPolicy, PolicyKind};
///
/// let p = CompiledPolicy::parse(
///     "ReadOnly",
///     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}}"#,
///     PolicyKind::Identity,
/// )?;
/// assert_eq!(p.name(), "ReadOnly");
/// # Ok::<(), hive_iam::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    name: Arc<str>,
    document: PolicyDocument,
    statements: Vec<CompiledStatement>,
}

impl CompiledPolicy {
    /// Compiles a validated document under `name` (a policy name or ARN, shown in explanations).
    pub fn new(name: &str, document: PolicyDocument) -> CompiledPolicy {
        let variables = document.version().supports_variables();
        let statements = document
            .statements()
            .iter()
            .map(|s| CompiledStatement::compile(s, variables))
            .collect();
        CompiledPolicy {
            name: name.into(),
            document,
            statements,
        }
    }

    /// Parses, validates and compiles in one step.
    pub fn parse(name: &str, text: &str, kind: PolicyKind) -> Result<CompiledPolicy, PolicyError> {
        Ok(Self::new(name, PolicyDocument::parse(text, kind)?))
    }

    /// The name shown in explanations.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source document.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }
}

/// One indexed statement: which policy, which statement, and a resource pre-filter so that
/// most non-matching candidates are rejected without touching the statement itself.
#[derive(Debug, Clone, Copy)]
struct Entry {
    policy: u32,
    statement: u32,
    filter: ResourceFilter,
}

/// For a statement with one static `Resource` pattern whose literal prefix is at least eight
/// bytes long: the last eight bytes of that prefix (usually the distinctive part, such as
/// `bucket-7/`), which a matching resource must have at the same offset.
#[derive(Debug, Clone, Copy, Default)]
struct ResourceFilter {
    /// End offset of the literal prefix; 0 when the statement has no filter.
    end: u32,
    tail: u64,
}

impl ResourceFilter {
    fn of(st: &CompiledStatement) -> ResourceFilter {
        let Some((false, patterns)) = &st.resources else {
            return ResourceFilter::default();
        };
        let [ResourcePattern::Static(p)] = patterns.as_slice() else {
            return ResourceFilter::default();
        };
        let tail = p
            .prefix
            .checked_sub(8)
            .and_then(|start| p.bytes.get(start..p.prefix));
        match (
            tail.and_then(|t| <[u8; 8]>::try_from(t).ok()),
            u32::try_from(p.prefix),
        ) {
            (Some(tail), Ok(end)) => ResourceFilter {
                end,
                tail: u64::from_le_bytes(tail),
            },
            _ => ResourceFilter::default(),
        }
    }

    #[inline]
    fn may_match(&self, resource: &[u8]) -> bool {
        if self.end == 0 {
            return true;
        }
        let end = self.end as usize;
        resource
            .get(end - 8..end)
            .and_then(|t| <[u8; 8]>::try_from(t).ok())
            .is_some_and(|t| u64::from_le_bytes(t) == self.tail)
    }
}

#[derive(Debug, Clone, Default)]
struct ServiceIndex {
    /// Lower-cased action name (after the colon) → statements naming it exactly.
    exact: FnvMap<Box<str>, Vec<Entry>>,
    /// Statements whose wildcard action names of this service all start with a literal
    /// character, by that (lower-cased) character: `iam:Get*` is only a candidate for actions
    /// starting with `g`.
    wildcard_by_first: FnvMap<u8, Vec<Entry>>,
    /// Statements with an action name of this service starting with a wildcard (`iam:*User`).
    wildcard_any: Vec<Entry>,
}

/// What one layer of policies said about a request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LayerOutcome {
    pub(crate) allow: bool,
    /// Some allowing statement named the caller (resource and trust policies).
    pub(crate) allow_named: bool,
    pub(crate) deny: bool,
}

/// The policies of one evaluation layer, with their statements indexed by action.
///
/// Build one per principal and layer when policies or attachments change, and share it (it is
/// `Send + Sync`); evaluating a request against it allocates nothing in the common case.
///
/// ```
/// use std::sync::Arc;
/// use hive_iam::policy::{CompiledPolicy, DecisionEffect, PolicyKind, PolicySet, Principal, RequestContext};
///
/// let admin = CompiledPolicy::parse(
///     "AdministratorAccess",
///     r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
///     PolicyKind::Identity,
/// )?;
/// let set = PolicySet::new([Arc::new(admin)]);
/// let req = RequestContext::new(Principal::user("000000000000", "admin", "AIDAADMIN"), "iam:CreateUser", "*");
/// assert_eq!(set.evaluate(&req).effect, DecisionEffect::Allow);
/// # Ok::<(), hive_iam::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Arc<CompiledPolicy>>,
    services: FnvMap<Box<str>, ServiceIndex>,
    global: Vec<Entry>,
    /// For each policy and statement, the set-wide ids of its conditions: identical conditions
    /// (a guardrail repeated in many policies) share an id and are evaluated once per request.
    condition_ids: Vec<Vec<Box<[u32]>>>,
    /// The distinct conditions of the set, by id.
    conditions: Vec<CompiledCondition>,
}

/// Conditions with an id below this are memoized per evaluation (two `u64` bit sets).
const MEMO_CONDITIONS: u32 = 64;

fn has_wildcard(s: &[u8]) -> bool {
    s.iter().any(|&b| b == b'*' || b == b'?')
}

impl PolicySet {
    /// Indexes the given policies.
    pub fn new(policies: impl IntoIterator<Item = Arc<CompiledPolicy>>) -> PolicySet {
        let mut set = PolicySet {
            policies: policies.into_iter().collect(),
            ..PolicySet::default()
        };
        let mut ids_by_condition: FnvMap<String, u32> = FnvMap::default();
        for policy in &set.policies {
            let mut per_statement = Vec::with_capacity(policy.statements.len());
            for st in &policy.statements {
                let ids: Box<[u32]> = st
                    .conditions
                    .iter()
                    .map(|c| {
                        let next = u32::try_from(set.conditions.len()).unwrap_or(u32::MAX);
                        let id = *ids_by_condition.entry(format!("{c:?}")).or_insert(next);
                        if id == next {
                            set.conditions.push(c.clone());
                        }
                        id
                    })
                    .collect();
                per_statement.push(ids);
            }
            set.condition_ids.push(per_statement);
        }
        for (pi, policy) in set.policies.iter().enumerate() {
            for (si, st) in policy.statements.iter().enumerate() {
                let entry = Entry {
                    policy: u32::try_from(pi).unwrap_or(u32::MAX),
                    statement: u32::try_from(si).unwrap_or(u32::MAX),
                    filter: ResourceFilter::of(st),
                };
                Self::index_statement(&mut set.services, &mut set.global, st, entry);
            }
        }
        set
    }

    fn index_statement(
        services: &mut FnvMap<Box<str>, ServiceIndex>,
        global: &mut Vec<Entry>,
        st: &CompiledStatement,
        entry: Entry,
    ) {
        let split = |a: &[u8]| -> Option<(Box<str>, Box<str>)> {
            let text = std::str::from_utf8(a).ok()?;
            let (svc, name) = text.split_once(':')?;
            (!has_wildcard(svc.as_bytes())).then(|| (svc.into(), name.into()))
        };
        if st.not_action || st.actions.iter().any(|a| split(a).is_none()) {
            global.push(entry);
            return;
        }
        let mut wildcard_services: Vec<Box<str>> = Vec::new();
        for a in &st.actions {
            if let Some((svc, name)) = split(a)
                && has_wildcard(name.as_bytes())
                && !wildcard_services.contains(&svc)
            {
                wildcard_services.push(svc);
            }
        }
        for svc in &wildcard_services {
            let names: Vec<&[u8]> = st
                .actions
                .iter()
                .filter_map(|a| {
                    let (s, name) = split(a)?;
                    // Every name of this service, exact ones included: the statement is indexed
                    // for this service only here.
                    (s == *svc).then(|| {
                        let start = a.len() - name.len();
                        &a[start..]
                    })
                })
                .collect();
            let index = services.entry(svc.clone()).or_default();
            let firsts: Option<Vec<u8>> = names
                .iter()
                .map(|n| n.first().copied().filter(|&c| c != b'*' && c != b'?'))
                .collect();
            match firsts {
                Some(mut firsts) => {
                    firsts.sort_unstable();
                    firsts.dedup();
                    for c in firsts {
                        index.wildcard_by_first.entry(c).or_default().push(entry);
                    }
                }
                None => index.wildcard_any.push(entry),
            }
        }
        let mut seen: Vec<(Box<str>, Box<str>)> = Vec::new();
        for a in &st.actions {
            let Some((svc, name)) = split(a) else {
                continue;
            };
            if wildcard_services.contains(&svc) || seen.contains(&(svc.clone(), name.clone())) {
                continue;
            }
            seen.push((svc.clone(), name.clone()));
            services
                .entry(svc)
                .or_default()
                .exact
                .entry(name)
                .or_default()
                .push(entry);
        }
    }

    /// An empty set (allows nothing, denies nothing).
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// The policies, in the order given.
    pub fn policies(&self) -> &[Arc<CompiledPolicy>] {
        &self.policies
    }

    /// Whether the set has no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Evaluates the candidates for the request's action, recording matching statements.
    pub(crate) fn evaluate_layer(
        &self,
        req: &RequestContext,
        source: PolicySource,
        allows: &mut MatchedStatements,
        denies: &mut MatchedStatements,
    ) -> LayerOutcome {
        let mut out = LayerOutcome::default();
        let action = req.action_lower();
        let resource = req.resource().as_bytes();
        // Memo of condition results for this request: which ids are known, and their values.
        let (mut known, mut value) = (0u64, 0u64);
        let mut visit = |e: Entry, check_action: bool| {
            if !e.filter.may_match(resource) {
                return;
            }
            let Some(policy) = self.policies.get(e.policy as usize) else {
                return;
            };
            let Some(st) = policy.statements.get(e.statement as usize) else {
                return;
            };
            if check_action && !st.action_matches(action) {
                return;
            }
            if !st.resource_matches(req) {
                return;
            }
            let Some(m) = st.principal_match(req.principal()) else {
                return;
            };
            let ids = self
                .condition_ids
                .get(e.policy as usize)
                .and_then(|p| p.get(e.statement as usize))
                .map_or(&[][..], |ids| &ids[..]);
            for &id in ids {
                let holds = if id < MEMO_CONDITIONS {
                    let bit = 1u64 << id;
                    if known & bit == 0 {
                        known |= bit;
                        if self
                            .conditions
                            .get(id as usize)
                            .is_some_and(|c| c.evaluate(req))
                        {
                            value |= bit;
                        }
                    }
                    value & bit != 0
                } else {
                    self.conditions
                        .get(id as usize)
                        .is_some_and(|c| c.evaluate(req))
                };
                if !holds {
                    return;
                }
            }
            let matched = MatchedStatement {
                source,
                policy: policy.name.clone(),
                sid: st.sid.clone(),
                index: e.statement as usize,
                effect: st.effect,
            };
            match st.effect {
                Effect::Deny => {
                    out.deny = true;
                    denies.push(matched);
                }
                Effect::Allow => {
                    out.allow = true;
                    out.allow_named |= m == PrincipalMatch::Named;
                    allows.push(matched);
                }
            }
        };
        for &e in &self.global {
            visit(e, true);
        }
        let (svc, name) = action.split_once(':').unwrap_or((action, ""));
        if let Some(index) = self.services.get(svc) {
            if let Some(entries) = index.exact.get(name) {
                for &e in entries {
                    visit(e, false);
                }
            }
            if let Some(entries) = name
                .bytes()
                .next()
                .and_then(|c| index.wildcard_by_first.get(&c))
            {
                for &e in entries {
                    visit(e, true);
                }
            }
            for &e in &index.wildcard_any {
                visit(e, true);
            }
        }
        out
    }

    /// Evaluates the set alone: explicit deny, else allow, else implicit deny (reported as
    /// "no identity-based policy allows").
    pub fn evaluate(&self, req: &RequestContext) -> Decision {
        self.evaluate_as(req, PolicySource::Identity)
    }

    /// Like [`PolicySet::evaluate`], naming the layer in the explanation.
    pub fn evaluate_as(&self, req: &RequestContext, source: PolicySource) -> Decision {
        let mut allows = MatchedStatements::new();
        let mut denies = MatchedStatements::new();
        let out = self.evaluate_layer(req, source, &mut allows, &mut denies);
        if out.deny {
            Decision::explicit_deny(source, denies)
        } else if out.allow {
            Decision::allow(allows)
        } else {
            Decision::implicit_deny(source, allows)
        }
    }
}
