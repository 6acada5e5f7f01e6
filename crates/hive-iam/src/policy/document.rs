//! Parsing and validation of policy documents into a typed syntax tree.
//!
//! [`PolicyDocument::parse`] checks a document the way IAM does when a policy is written
//! (CreatePolicy, PutUserPolicy, CreateRole, ...), and reports the first problem with the message
//! IAM uses for `MalformedPolicyDocument`. The original text is kept byte for byte so that reads
//! (GetPolicyVersion, GetRolePolicy) return what was written.

use serde_json::{Map, Value};

use super::PolicyError;
use super::context::parse_date;

/// Which kind of policy a document is; the kinds differ in required and prohibited elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Identity-based policy (managed or inline on a user, group or role; also permissions
    /// boundaries and session policies): no `Principal`, `Resource` required.
    Identity,
    /// Resource-based policy (for example a bucket policy): `Principal` and `Resource` required.
    Resource,
    /// A role's trust policy: `Principal` required, `Resource` prohibited.
    Trust,
}

/// The policy language version (the `Version` element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyVersion {
    /// `2008-10-17`, also assumed when `Version` is absent: policy variables are plain text.
    V2008_10_17,
    /// `2012-10-17`: policy variables (`${aws:username}`, ...) are substituted.
    V2012_10_17,
}

impl PolicyVersion {
    /// The version as written in a document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2008_10_17 => "2008-10-17",
            Self::V2012_10_17 => "2012-10-17",
        }
    }

    /// Whether policy variables are substituted in this version.
    pub fn supports_variables(self) -> bool {
        self == Self::V2012_10_17
    }
}

/// The effect of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The statement grants access.
    Allow,
    /// The statement denies access (an explicit deny).
    Deny,
}

impl Effect {
    /// The effect as written in a document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

/// The `Action` or `NotAction` element of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// `Action`: the statement applies to these action patterns.
    Action(Vec<String>),
    /// `NotAction`: the statement applies to every action except these patterns.
    NotAction(Vec<String>),
}

/// The `Resource` or `NotResource` element of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceSpec {
    /// `Resource`: the statement applies to these resource patterns.
    Resource(Vec<String>),
    /// `NotResource`: the statement applies to every resource except these patterns.
    NotResource(Vec<String>),
}

/// The principals named by a `Principal` or `NotPrincipal` element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principals {
    /// `"*"` given as the whole element: everyone, including anonymous callers.
    pub any: bool,
    /// `AWS` entries: `"*"`, account ids (normalised to `arn:aws:iam::<id>:root`) or ARNs.
    pub aws: Vec<String>,
    /// `Service` entries such as `ec2.amazonaws.com`.
    pub service: Vec<String>,
    /// `Federated` entries (identity provider ARNs or names such as `cognito-identity.amazonaws.com`).
    pub federated: Vec<String>,
    /// `CanonicalUser` entries.
    pub canonical_user: Vec<String>,
}

/// The `Principal` or `NotPrincipal` element of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSpec {
    /// `Principal`: the statement applies to these principals.
    Principal(Principals),
    /// `NotPrincipal`: the statement applies to every principal except these.
    NotPrincipal(Principals),
}

/// How a condition operator treats multi-valued request keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetQualifier {
    /// No set operator: the key is treated as single-valued (any request value may match).
    Single,
    /// `ForAllValues:`: every request value must match; a missing or empty key matches.
    ForAllValues,
    /// `ForAnyValue:`: at least one request value must match; a missing or empty key fails.
    ForAnyValue,
}

/// The base condition operators of the IAM policy language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variant names are AWS's operator names
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

impl Operator {
    /// Every operator, in AWS's documentation order.
    pub const ALL: [Operator; 27] = [
        Self::StringEquals,
        Self::StringNotEquals,
        Self::StringEqualsIgnoreCase,
        Self::StringNotEqualsIgnoreCase,
        Self::StringLike,
        Self::StringNotLike,
        Self::NumericEquals,
        Self::NumericNotEquals,
        Self::NumericLessThan,
        Self::NumericLessThanEquals,
        Self::NumericGreaterThan,
        Self::NumericGreaterThanEquals,
        Self::DateEquals,
        Self::DateNotEquals,
        Self::DateLessThan,
        Self::DateLessThanEquals,
        Self::DateGreaterThan,
        Self::DateGreaterThanEquals,
        Self::Bool,
        Self::BinaryEquals,
        Self::IpAddress,
        Self::NotIpAddress,
        Self::ArnEquals,
        Self::ArnLike,
        Self::ArnNotEquals,
        Self::ArnNotLike,
        Self::Null,
    ];

    /// The operator's name as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StringEquals => "StringEquals",
            Self::StringNotEquals => "StringNotEquals",
            Self::StringEqualsIgnoreCase => "StringEqualsIgnoreCase",
            Self::StringNotEqualsIgnoreCase => "StringNotEqualsIgnoreCase",
            Self::StringLike => "StringLike",
            Self::StringNotLike => "StringNotLike",
            Self::NumericEquals => "NumericEquals",
            Self::NumericNotEquals => "NumericNotEquals",
            Self::NumericLessThan => "NumericLessThan",
            Self::NumericLessThanEquals => "NumericLessThanEquals",
            Self::NumericGreaterThan => "NumericGreaterThan",
            Self::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Self::DateEquals => "DateEquals",
            Self::DateNotEquals => "DateNotEquals",
            Self::DateLessThan => "DateLessThan",
            Self::DateLessThanEquals => "DateLessThanEquals",
            Self::DateGreaterThan => "DateGreaterThan",
            Self::DateGreaterThanEquals => "DateGreaterThanEquals",
            Self::Bool => "Bool",
            Self::BinaryEquals => "BinaryEquals",
            Self::IpAddress => "IpAddress",
            Self::NotIpAddress => "NotIpAddress",
            Self::ArnEquals => "ArnEquals",
            Self::ArnLike => "ArnLike",
            Self::ArnNotEquals => "ArnNotEquals",
            Self::ArnNotLike => "ArnNotLike",
            Self::Null => "Null",
        }
    }

    /// Whether this is a negated operator, which also matches when the key is missing.
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Self::StringNotEquals
                | Self::StringNotEqualsIgnoreCase
                | Self::StringNotLike
                | Self::NumericNotEquals
                | Self::DateNotEquals
                | Self::NotIpAddress
                | Self::ArnNotEquals
                | Self::ArnNotLike
        )
    }

    /// The positive operator a negated one is the complement of (itself when not negated).
    pub fn positive(self) -> Operator {
        match self {
            Self::StringNotEquals => Self::StringEquals,
            Self::StringNotEqualsIgnoreCase => Self::StringEqualsIgnoreCase,
            Self::StringNotLike => Self::StringLike,
            Self::NumericNotEquals => Self::NumericEquals,
            Self::DateNotEquals => Self::DateEquals,
            Self::NotIpAddress => Self::IpAddress,
            Self::ArnNotEquals => Self::ArnEquals,
            Self::ArnNotLike => Self::ArnLike,
            other => other,
        }
    }

    fn from_name(name: &str) -> Option<Operator> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// A condition operator with its set qualifier and `IfExists` suffix, e.g.
/// `ForAnyValue:StringLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConditionOperator {
    /// `ForAllValues:` / `ForAnyValue:` / none.
    pub qualifier: SetQualifier,
    /// The base operator.
    pub operator: Operator,
    /// Whether the `IfExists` suffix was given: a missing key then matches.
    pub if_exists: bool,
}

impl ConditionOperator {
    /// Parses an operator name as written in a policy; `None` if IAM does not know it.
    pub fn parse(name: &str) -> Option<ConditionOperator> {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, rest)
        } else if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, rest)
        } else {
            (SetQualifier::Single, name)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let operator = Operator::from_name(base)?;
        Some(ConditionOperator {
            qualifier,
            operator,
            if_exists,
        })
    }
}

/// One condition: operator, key and the values it is compared with (ORed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The operator as written (kept for display and round-trips).
    pub operator_name: String,
    /// The parsed operator.
    pub operator: ConditionOperator,
    /// The condition key as written (compared case-insensitively).
    pub key: String,
    /// The values; JSON numbers and booleans are kept in their textual form.
    pub values: Vec<String>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The `Sid`, if given.
    pub sid: Option<String>,
    /// `Allow` or `Deny`.
    pub effect: Effect,
    /// `Action` or `NotAction`.
    pub action: ActionSpec,
    /// `Resource` or `NotResource`; absent in trust policies.
    pub resource: Option<ResourceSpec>,
    /// `Principal` or `NotPrincipal`; absent in identity-based policies.
    pub principal: Option<PrincipalSpec>,
    /// The conditions, all of which must hold (AND).
    pub conditions: Vec<Condition>,
}

/// A parsed and validated policy document that keeps its original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    text: String,
    kind: PolicyKind,
    version: PolicyVersion,
    version_given: bool,
    id: Option<String>,
    statements: Vec<Statement>,
    /// Byte ranges of each statement object in `text` (empty if they could not be located).
    spans: Vec<(usize, usize)>,
}

/// A position in a policy document, as SimulatePrincipalPolicy reports it (1-based line and
/// column, columns counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextPosition {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

const MSG_SYNTAX: &str = "Syntax errors in policy.";
const MSG_LEGACY: &str = "The policy failed legacy parsing";
const MSG_VERSION: &str = "Policy document must be version 2012-10-17 or greater.";
const MSG_NO_PRINCIPAL: &str = "Policy document should not specify a principal.";
const MSG_MISSING_PRINCIPAL: &str = "Missing required field Principal";
const MSG_PROHIBITED_RESOURCE: &str = "Has prohibited field Resource";
const MSG_ACTIONS: &str = "Policy statement must contain actions.";
const MSG_RESOURCES: &str = "Policy statement must contain resources.";
const MSG_SID_UNIQUE: &str = "Statement IDs (SID) in a single policy must be unique.";
const MSG_SID_ALNUM: &str = "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*";
const MSG_VENDOR: &str =
    "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.";
const MSG_ONE_COLON: &str = "Actions/Condition can contain only one colon.";
const MSG_TRUST_ACTIONS: &str = "Trust Policy statement actions can only be sts:AssumeRole, sts:AssumeRoleWithSAML,  and sts:AssumeRoleWithWebIdentity";
const MSG_RESOURCE_VENDOR: &str =
    "Resource vendor must be fully qualified and cannot contain regexes.";

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(msg.into())
}

fn syntax() -> PolicyError {
    malformed(MSG_SYNTAX)
}

impl PolicyDocument {
    /// Parses and validates a policy document of the given kind.
    ///
    /// Checks run in IAM's order: JSON and element syntax first ("Syntax errors in policy."),
    /// then the kind's required and prohibited elements, Sid rules, actions, resources and
    /// principals. Size limits are separate: see [`super::validate_size`].
    ///
    /// ```
    /// use hive_iam::policy::{PolicyDocument, PolicyError, PolicyKind};
    ///
    /// let doc = PolicyDocument::parse(
    ///     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}}"#,
    ///     PolicyKind::Identity,
    /// )?;
    /// assert_eq!(doc.statements().len(), 1);
    ///
    /// let err = PolicyDocument::parse(
    ///     r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
    ///     PolicyKind::Identity,
    /// )
    /// .unwrap_err();
    /// assert_eq!(err.to_string(), "Policy document should not specify a principal.");
    /// # Ok::<(), PolicyError>(())
    /// ```
    pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
        let value: Value = serde_json::from_str(text).map_err(|_| syntax())?;
        let Value::Object(top) = value else {
            return Err(syntax());
        };
        for key in top.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(syntax());
            }
        }
        let (version, version_given) = match top.get("Version") {
            None => (PolicyVersion::V2008_10_17, false),
            Some(Value::String(v)) if v == "2012-10-17" => (PolicyVersion::V2012_10_17, true),
            Some(Value::String(v)) if v == "2008-10-17" => (PolicyVersion::V2008_10_17, true),
            Some(_) => return Err(syntax()),
        };
        let id = match top.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(syntax()),
        };
        let raw_statements: Vec<&Map<String, Value>> = match top.get("Statement") {
            Some(Value::Object(one)) => vec![one],
            Some(Value::Array(many)) if !many.is_empty() => many
                .iter()
                .map(|v| v.as_object().ok_or_else(syntax))
                .collect::<Result<_, _>>()?,
            _ => return Err(syntax()),
        };
        // Pass 1: element syntax of every statement.
        let mut statements = Vec::with_capacity(raw_statements.len());
        for raw in &raw_statements {
            statements.push(parse_statement_syntax(raw)?);
        }
        // Pass 2: IAM's later stages, in its order; each stage reports its first failure.
        // Stage: the legacy parser (case-sensitive effect, date values, resource shapes). Resource
        // format errors found on the way are reported after the Sid and action stages.
        let mut resource_error: Option<String> = None;
        for (raw, st) in raw_statements.iter().zip(&statements) {
            if !matches!(
                raw.get("Effect").and_then(Value::as_str),
                Some("Allow" | "Deny")
            ) {
                return Err(malformed(MSG_LEGACY));
            }
            for c in &st.conditions {
                let is_date = c.operator.operator.positive() == Operator::DateEquals
                    || matches!(
                        c.operator.operator,
                        Operator::DateLessThan
                            | Operator::DateLessThanEquals
                            | Operator::DateGreaterThan
                            | Operator::DateGreaterThanEquals
                    );
                if is_date && c.values.iter().any(|v| parse_date(v).is_none()) {
                    return Err(malformed(MSG_LEGACY));
                }
            }
        }
        for (raw, st) in raw_statements.iter().zip(&statements) {
            let (single, resources) = match &st.resource {
                Some(ResourceSpec::Resource(r) | ResourceSpec::NotResource(r)) => {
                    let single = matches!(
                        raw.get("Resource").or_else(|| raw.get("NotResource")),
                        Some(Value::String(_))
                    );
                    (single, r)
                }
                None => continue,
            };
            let mut sorted: Vec<&String> = resources.iter().collect();
            sorted.sort_by(|a, b| b.cmp(a));
            for r in sorted {
                if let Some(e) = resource_format_error(r) {
                    resource_error = Some(e);
                }
            }
            if resource_error.is_none() && !legacy_resources_ok(resources, single) {
                return Err(malformed(MSG_LEGACY));
            }
        }
        // Stage: unique (and, for IAM policies, alphanumeric) statement ids.
        let mut seen: Vec<&str> = Vec::new();
        for st in &statements {
            if let Some(sid) = st.sid.as_deref().filter(|s| !s.is_empty()) {
                if seen.contains(&sid) {
                    return Err(malformed(MSG_SID_UNIQUE));
                }
                seen.push(sid);
            }
        }
        if kind == PolicyKind::Identity
            && statements
                .iter()
                .filter_map(|st| st.sid.as_deref())
                .any(|sid| !sid.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(malformed(MSG_SID_ALNUM));
        }
        // Stage: actions present.
        for st in &statements {
            if actions_of(st).is_empty() {
                return Err(malformed(MSG_ACTIONS));
            }
        }
        // Stage: resource formats.
        if let Some(e) = resource_error {
            return Err(malformed(e));
        }
        // Stage: action vendors (Action before NotAction, as IAM walks them).
        for not in [false, true] {
            for st in &statements {
                if matches!(st.action, ActionSpec::NotAction(_)) == not {
                    for a in actions_of(st) {
                        validate_action(a)?;
                    }
                }
            }
        }
        // Stage: the kind's required and prohibited elements.
        for (raw, st) in raw_statements.iter().zip(&statements) {
            let has_principal = raw.contains_key("Principal") || raw.contains_key("NotPrincipal");
            match kind {
                PolicyKind::Identity if has_principal => return Err(malformed(MSG_NO_PRINCIPAL)),
                PolicyKind::Resource | PolicyKind::Trust if !has_principal => {
                    return Err(malformed(MSG_MISSING_PRINCIPAL));
                }
                _ => {}
            }
            if kind == PolicyKind::Trust {
                let trust_ok = match &st.action {
                    ActionSpec::Action(a) => a.iter().all(|a| is_trust_action(a)),
                    ActionSpec::NotAction(_) => false,
                };
                if !trust_ok {
                    return Err(malformed(MSG_TRUST_ACTIONS));
                }
            }
        }
        for st in &statements {
            let resources = match &st.resource {
                Some(ResourceSpec::Resource(r) | ResourceSpec::NotResource(r)) => Some(r),
                None => None,
            };
            match (kind, resources) {
                (PolicyKind::Trust, Some(_)) => return Err(malformed(MSG_PROHIBITED_RESOURCE)),
                (PolicyKind::Identity | PolicyKind::Resource, None) => {
                    return Err(malformed(MSG_RESOURCES));
                }
                (PolicyKind::Identity | PolicyKind::Resource, Some(r)) if r.is_empty() => {
                    return Err(malformed(MSG_RESOURCES));
                }
                _ => {}
            }
        }
        let mut spans = statement_spans(text);
        if spans.len() != statements.len() {
            spans.clear();
        }
        Ok(PolicyDocument {
            text: text.to_owned(),
            kind,
            version,
            version_given,
            id,
            statements,
            spans,
        })
    }

    /// The document exactly as it was written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The document exactly as it was written (alias of [`PolicyDocument::text`]).
    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// The kind the document was validated as.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The language version (`2008-10-17` when the document gives none).
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// IAM's extra rule for customer managed policies (CreatePolicy, CreatePolicyVersion):
    /// the document must say `"Version": "2012-10-17"`. AWS refuses a missing or `2008-10-17`
    /// version there with "Policy document must be version 2012-10-17 or greater.", while
    /// trust and resource-based policies accept `2008-10-17`; [`PolicyDocument::parse`] accepts
    /// both so that the caller applies this where AWS does.
    ///
    /// ```
    /// use hive_iam::policy::{PolicyDocument, PolicyKind};
    ///
    /// let old = PolicyDocument::parse(
    ///     r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
    ///     PolicyKind::Identity,
    /// )?;
    /// assert_eq!(
    ///     old.require_current_version().unwrap_err().to_string(),
    ///     "Policy document must be version 2012-10-17 or greater."
    /// );
    /// # Ok::<(), hive_iam::policy::PolicyError>(())
    /// ```
    pub fn require_current_version(&self) -> Result<(), PolicyError> {
        match self.version {
            PolicyVersion::V2012_10_17 => Ok(()),
            PolicyVersion::V2008_10_17 => Err(malformed(MSG_VERSION)),
        }
    }

    /// Whether the document has a `Version` element.
    pub fn version_given(&self) -> bool {
        self.version_given
    }

    /// The `Id` element, if given.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Where statement `index` starts (its `{`) and ends (just after its `}`) in the text, for
    /// SimulatePrincipalPolicy's `StartPosition`/`EndPosition`; `None` if out of range or if
    /// the statements could not be located (for example a `Statement` key written with
    /// escapes).
    ///
    /// ```
    /// use hive_iam::policy::{PolicyDocument, PolicyKind, TextPosition};
    ///
    /// let text = "{\"Statement\": [\n  {\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}\n]}";
    /// let doc = PolicyDocument::parse(text, PolicyKind::Identity)?;
    /// assert_eq!(
    ///     doc.statement_position(0),
    ///     Some((TextPosition { line: 2, column: 3 }, TextPosition { line: 2, column: 49 })),
    /// );
    /// # Ok::<(), hive_iam::policy::PolicyError>(())
    /// ```
    pub fn statement_position(&self, index: usize) -> Option<(TextPosition, TextPosition)> {
        let &(start, end) = self.spans.get(index)?;
        Some((position_at(&self.text, start), position_at(&self.text, end)))
    }
}

fn position_at(text: &str, byte: usize) -> TextPosition {
    let before = text.get(..byte).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    TextPosition { line, column }
}

/// Byte offset just after the JSON value starting at `i` (the text is known-valid JSON).
fn skip_value(b: &[u8], mut i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => {
            i += 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return i + 1,
                    _ => i += 1,
                }
            }
            i
        }
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_value(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Locates the statement objects of a valid policy document.
fn statement_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return spans;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return spans;
        }
        let key_end = skip_value(b, i);
        let is_statement = &b[i..key_end] == b"\"Statement\"";
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return spans;
        }
        i = skip_ws(b, i + 1);
        let value_end = skip_value(b, i);
        if is_statement {
            // Duplicate keys: the last one wins, as in the parsed document.
            spans.clear();
            if b.get(i) == Some(&b'{') {
                spans.push((i, value_end));
            } else if b.get(i) == Some(&b'[') {
                let mut j = i + 1;
                loop {
                    j = skip_ws(b, j);
                    if b.get(j) != Some(&b'{') {
                        break;
                    }
                    let end = skip_value(b, j);
                    spans.push((j, end));
                    j = skip_ws(b, end);
                    if b.get(j) != Some(&b',') {
                        break;
                    }
                    j += 1;
                }
            }
        }
        i = skip_ws(b, value_end);
        if b.get(i) != Some(&b',') {
            return spans;
        }
        i += 1;
    }
}

fn parse_statement_syntax(raw: &Map<String, Value>) -> Result<Statement, PolicyError> {
    for key in raw.keys() {
        if !matches!(
            key.as_str(),
            "Sid"
                | "Effect"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Principal"
                | "NotPrincipal"
                | "Condition"
        ) {
            return Err(syntax());
        }
    }
    let pairs = [
        ("Action", "NotAction"),
        ("Resource", "NotResource"),
        ("Principal", "NotPrincipal"),
    ];
    for (a, b) in pairs {
        if raw.contains_key(a) && raw.contains_key(b) {
            return Err(syntax());
        }
    }
    let sid = match raw.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(syntax()),
    };
    let effect = match raw.get("Effect") {
        Some(Value::String(e)) if e.eq_ignore_ascii_case("allow") => Effect::Allow,
        Some(Value::String(e)) if e.eq_ignore_ascii_case("deny") => Effect::Deny,
        _ => return Err(syntax()),
    };
    let action = if let Some(v) = raw.get("Action") {
        ActionSpec::Action(string_list(v)?)
    } else if let Some(v) = raw.get("NotAction") {
        ActionSpec::NotAction(string_list(v)?)
    } else {
        // Reported after the kind checks, as IAM does.
        ActionSpec::Action(Vec::new())
    };
    let resource = if let Some(v) = raw.get("Resource") {
        Some(ResourceSpec::Resource(string_list(v)?))
    } else if let Some(v) = raw.get("NotResource") {
        Some(ResourceSpec::NotResource(string_list(v)?))
    } else {
        None
    };
    let principal = if let Some(v) = raw.get("Principal") {
        Some(PrincipalSpec::Principal(parse_principals(v)?))
    } else if let Some(v) = raw.get("NotPrincipal") {
        Some(PrincipalSpec::NotPrincipal(parse_principals(v)?))
    } else {
        None
    };
    let conditions = match raw.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(block)) => parse_conditions(block)?,
        Some(_) => return Err(syntax()),
    };
    Ok(Statement {
        sid,
        effect,
        action,
        resource,
        principal,
        conditions,
    })
}

/// A string or an array of strings.
fn string_list(v: &Value) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(syntax()),
            })
            .collect(),
        _ => Err(syntax()),
    }
}

/// A scalar (string, number, boolean) or an array of scalars, as text.
fn scalar_list(v: &Value) -> Result<Vec<String>, PolicyError> {
    fn scalar(v: &Value) -> Result<String, PolicyError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(syntax()),
        }
    }
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        // IAM's grammar takes a string, a boolean or a list here, but not a bare number.
        Value::Number(_) => Err(syntax()),
        other => Ok(vec![scalar(other)?]),
    }
}

fn parse_conditions(block: &Map<String, Value>) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (op_name, keys) in block {
        let Value::Object(keys) = keys else {
            return Err(syntax());
        };
        let Some(operator) = ConditionOperator::parse(op_name) else {
            // IAM accepts an unknown operator only with an empty block (it has no effect).
            if keys.is_empty() {
                continue;
            }
            return Err(syntax());
        };
        for (key, values) in keys {
            out.push(Condition {
                operator_name: op_name.clone(),
                operator,
                key: key.clone(),
                values: scalar_list(values)?,
            });
        }
    }
    Ok(out)
}

fn invalid_principal(kind: &str, value: &str) -> PolicyError {
    malformed(format!(
        "Invalid principal in policy: \"{kind}\":\"{value}\""
    ))
}

fn parse_principals(v: &Value) -> Result<Principals, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals {
            any: true,
            ..Principals::default()
        }),
        Value::String(s) => Err(malformed(format!("Invalid principal in policy: \"{s}\""))),
        Value::Object(map) => {
            if map.is_empty() {
                return Err(syntax());
            }
            let mut p = Principals::default();
            for (kind, values) in map {
                let values = string_list(values)?;
                match kind.as_str() {
                    "AWS" => {
                        for value in values {
                            p.aws.push(normalise_aws_principal(&value)?);
                        }
                    }
                    "Service" => {
                        for value in values {
                            if value.is_empty() || value.contains(char::is_whitespace) {
                                return Err(invalid_principal("Service", &value));
                            }
                            p.service.push(value);
                        }
                    }
                    "Federated" => {
                        for value in values {
                            if value.is_empty() {
                                return Err(invalid_principal("Federated", &value));
                            }
                            p.federated.push(value);
                        }
                    }
                    "CanonicalUser" => {
                        for value in values {
                            if value.is_empty() {
                                return Err(invalid_principal("CanonicalUser", &value));
                            }
                            p.canonical_user.push(value);
                        }
                    }
                    _ => return Err(syntax()),
                }
            }
            Ok(p)
        }
        _ => Err(syntax()),
    }
}

/// `"*"`, a 12-digit account id (normalised to the account's root ARN) or an ARN.
fn normalise_aws_principal(value: &str) -> Result<String, PolicyError> {
    if value == "*" {
        return Ok(value.to_owned());
    }
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(format!("arn:aws:iam::{value}:root"));
    }
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    let valid = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && matches!(parts[2], "iam" | "sts")
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        // Wildcards are not allowed inside principal ARNs (only "*" alone).
        && !value.contains(['*', '?']);
    if valid {
        Ok(value.to_owned())
    } else {
        Err(invalid_principal("AWS", value))
    }
}

fn validate_action(action: &str) -> Result<(), PolicyError> {
    if action == "*" {
        return Ok(());
    }
    let mut parts = action.split(':');
    let vendor = parts.next().unwrap_or_default();
    let Some(_name) = parts.next() else {
        return Err(malformed(MSG_VENDOR));
    };
    if parts.next().is_some() {
        return Err(malformed(MSG_ONE_COLON));
    }
    let vendor_ok = !vendor.is_empty()
        && vendor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b'?'));
    if !vendor_ok {
        return Err(malformed(format!("Vendor {vendor} is not valid")));
    }
    Ok(())
}

fn actions_of(st: &Statement) -> &[String] {
    match &st.action {
        ActionSpec::Action(a) | ActionSpec::NotAction(a) => a,
    }
}

/// The actions IAM accepts in a role's trust policy.
const TRUST_ACTIONS: [&str; 11] = [
    "sts:AssumeRole",
    "sts:AssumeRoleWithSAML",
    "sts:AssumeRoleWithWebIdentity",
    "sts:DecodeAuthorizationMessage",
    "sts:GetAccessKeyInfo",
    "sts:GetCallerIdentity",
    "sts:GetFederationToken",
    "sts:GetServiceBearerToken",
    "sts:GetSessionToken",
    "sts:SetSourceIdentity",
    "sts:TagSession",
];

/// A trust action, or a pattern (`sts:AssumeRole*`) that only covers trust actions' names.
fn is_trust_action(action: &str) -> bool {
    if action.contains(['*', '?']) {
        let Some(rest) = action.strip_prefix("sts:") else {
            return false;
        };
        return !rest.is_empty()
            && TRUST_ACTIONS
                .iter()
                .any(|t| super::wildcard::matches(action, t));
    }
    TRUST_ACTIONS.contains(&action)
}

const PARTITIONS: [&str; 6] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-eusc",
];

const IAM_PATH_STARTS: [&str; 13] = [
    "user/",
    "federated-user/",
    "role/",
    "group/",
    "instance-profile/",
    "mfa/",
    "server-certificate/",
    "policy/",
    "sms-mfa/",
    "saml-provider/",
    "oidc-provider/",
    "report/",
    "access-report/",
];

/// IAM's message for a resource that is not a usable ARN, if any.
fn resource_format_error(r: &str) -> Option<String> {
    if r == "*" {
        return None;
    }
    let Some((_, rest)) = r.split_once(':') else {
        return Some(format!("Resource {r} must be in ARN format or \"*\"."));
    };
    let (partition, rest) = match rest.split_once(':') {
        Some((p, rest)) => (p, Some(rest)),
        None => (rest, None),
    };
    if partition != "*" && !PARTITIONS.contains(&partition) {
        let rem: Vec<&str> = rest.unwrap_or("").split(':').collect();
        let get = |i: usize| rem.get(i).copied().unwrap_or("*");
        let a1 = if rem.len() == 1 && rem[0].is_empty() {
            "*"
        } else {
            get(0)
        };
        let a4 = if rem.len() > 3 {
            rem[3..].join(":")
        } else {
            "*".to_owned()
        };
        return Some(format!(
            "Partition \"{partition}\" is not valid for resource \"arn:{partition}:{a1}:{}:{}:{a4}\".",
            get(1),
            get(2)
        ));
    }
    let Some(rest) = rest else {
        return Some(MSG_RESOURCE_VENDOR.to_owned());
    };
    let (service, after_service) = rest.split_once(':').unwrap_or((rest, ""));
    let after_region = after_service.split_once(':').map_or("", |(_, a)| a);
    let resource_id = after_region.split_once(':').map_or("", |(_, a)| a);
    if (service == "iam" || service == "s3")
        && !after_service.starts_with(':')
        && !(service == "s3" && resource_id.starts_with("accesspoint/"))
    {
        return Some(if service == "iam" {
            format!("IAM resource {r} cannot contain region information.")
        } else {
            format!("Resource {r} can not contain region information.")
        });
    }
    if service == "iam" && !IAM_PATH_STARTS.iter().any(|p| resource_id.starts_with(p)) {
        return Some(format!(
            "IAM resource path must either be \"*\" or start with {}.",
            IAM_PATH_STARTS.join(", ")
        ));
    }
    None
}

/// IAM's legacy parser's view of resource strings.
fn legacy_resources_ok(resources: &[String], single: bool) -> bool {
    let short_arn = |s: &str| s.matches(':').count() < 5 && s.contains("::");
    if single {
        let Some(s) = resources.first() else {
            return true;
        };
        if s == "*" {
            return true;
        }
        if short_arn(s) {
            return false;
        }
        let parts: Vec<&str> = s.split(':').collect();
        return parts.len() > 2 && !parts[2].is_empty();
    }
    resources
        .iter()
        .filter(|s| !s.is_empty() && *s != "*")
        .all(|s| !short_arn(s) && s.len() >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, kind: PolicyKind) -> String {
        match PolicyDocument::parse(text, kind) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        }
    }

    fn ok(text: &str, kind: PolicyKind) -> PolicyDocument {
        match PolicyDocument::parse(text, kind) {
            Ok(d) => d,
            Err(e) => panic!("expected {text} to parse, got {e}"),
        }
    }

    const ID: PolicyKind = PolicyKind::Identity;

    #[test]
    fn minimal_identity_policy_parses_and_keeps_text() {
        let text = "{ \"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\":\"Allow\",\"Action\":[\"iam:*\"],\"Resource\":\"*\"}] }";
        let d = ok(text, ID);
        assert_eq!(d.text(), text);
        assert_eq!(d.as_json(), text);
        assert_eq!(d.version(), PolicyVersion::V2012_10_17);
        assert_eq!(d.statements()[0].effect, Effect::Allow);
        assert_eq!(
            d.statements()[0].action,
            ActionSpec::Action(vec!["iam:*".into()])
        );
    }

    #[test]
    fn missing_version_is_2008() {
        let d = ok(
            r#"{"Statement":{"Effect":"Deny","NotAction":"s3:*","NotResource":"*"}}"#,
            ID,
        );
        assert_eq!(d.version(), PolicyVersion::V2008_10_17);
        assert!(!d.version_given());
        assert_eq!(d.statements()[0].effect, Effect::Deny);
    }

    #[test]
    fn syntax_errors() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Version":"2012-10-17","Statement":[]}"#,
            r#"{"Version":"2011-01-01","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Foo":1,"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Foo":"x"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Action":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":5,"Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":["*",1]}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Sid":1,"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":"x"}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bogus":{"a:b":"c"}}}}"#,
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"a:b":{"x":1}}}}}"#,
            r#"{"Version":"2012-10-17","Statement":[1]}"#,
            r#"{"Version":"2012-10-17","Id":7,"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
        ] {
            assert_eq!(err(text, ID), MSG_SYNTAX, "{text}");
        }
    }

    #[test]
    fn effect_case_fails_legacy_parsing_and_version_rule() {
        let lower = r#"{"Version":"2012-10-17","Statement":{"Effect":"allow","Action":"s3:*","Resource":"*"}}"#;
        assert_eq!(err(lower, ID), MSG_LEGACY);
        let d = ok(
            r#"{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            ID,
        );
        assert_eq!(d.require_current_version(), Err(malformed(MSG_VERSION)));
        let d = ok(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}"#,
            ID,
        );
        assert_eq!(d.require_current_version(), Ok(()));
    }

    #[test]
    fn unknown_operator_with_empty_block_is_ignored() {
        let d = ok(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"Bogus":{}}}}"#,
            ID,
        );
        assert!(d.statements()[0].conditions.is_empty());
    }

    #[test]
    fn kind_rules() {
        let with_principal = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"s3:*","Resource":"*"}}"#;
        assert_eq!(err(with_principal, ID), MSG_NO_PRINCIPAL);
        ok(with_principal, PolicyKind::Resource);
        assert_eq!(err(with_principal, PolicyKind::Trust), MSG_TRUST_ACTIONS);
        let trust_with_resource = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole","Resource":"*"}}"#;
        assert_eq!(
            err(trust_with_resource, PolicyKind::Trust),
            MSG_PROHIBITED_RESOURCE
        );
        let not_action = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","NotAction":"s3:*"}}"#;
        assert_eq!(err(not_action, PolicyKind::Trust), MSG_TRUST_ACTIONS);
        let wildcard = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":["sts:AssumeRole*","sts:TagSession"]}}"#;
        ok(wildcard, PolicyKind::Trust);
        let no_principal =
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}"#;
        assert_eq!(err(no_principal, PolicyKind::Trust), MSG_MISSING_PRINCIPAL);
        assert_eq!(
            err(no_principal, PolicyKind::Resource),
            MSG_MISSING_PRINCIPAL
        );
        assert_eq!(err(no_principal, ID), MSG_RESOURCES);
        let trust = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com","AWS":["arn:aws:iam::123456789012:user/bob","*"]},"Action":"sts:AssumeRole"}}"#;
        let d = ok(trust, PolicyKind::Trust);
        let Some(PrincipalSpec::Principal(p)) = &d.statements()[0].principal else {
            panic!("principal expected");
        };
        assert_eq!(p.service, vec!["ec2.amazonaws.com".to_owned()]);
        assert_eq!(p.aws.len(), 2);
    }

    #[test]
    fn account_principal_is_normalised() {
        let d = ok(
            r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}}"#,
            PolicyKind::Trust,
        );
        let Some(PrincipalSpec::Principal(p)) = &d.statements()[0].principal else {
            panic!("principal expected");
        };
        assert_eq!(p.aws, vec!["arn:aws:iam::123456789012:root".to_owned()]);
    }

    #[test]
    fn invalid_principals() {
        for (principal, msg) in [
            (
                r#"{"AWS":"bob"}"#,
                "Invalid principal in policy: \"AWS\":\"bob\"",
            ),
            (
                r#"{"AWS":"arn:aws:iam::123456789012:user/*"}"#,
                "Invalid principal in policy: \"AWS\":\"arn:aws:iam::123456789012:user/*\"",
            ),
            (r#""bob""#, "Invalid principal in policy: \"bob\""),
            (r#"{"Foo":"x"}"#, MSG_SYNTAX),
        ] {
            let text = format!(
                r#"{{"Statement":{{"Effect":"Allow","Principal":{principal},"Action":"sts:AssumeRole"}}}}"#
            );
            assert_eq!(err(&text, PolicyKind::Trust), msg, "{principal}");
        }
    }

    #[test]
    fn sid_rules() {
        let dup = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"*"}]}"#;
        assert_eq!(err(dup, ID), MSG_SID_UNIQUE);
        let bad = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a b","Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        assert_eq!(err(bad, ID), MSG_SID_ALNUM);
        let spaced = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a b","Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
        ok(spaced, PolicyKind::Resource);
    }

    #[test]
    fn action_rules() {
        let tpl = |a: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":{a},"Resource":"*"}}}}"#
            )
        };
        assert_eq!(err(&tpl("[]"), ID), MSG_ACTIONS);
        assert_eq!(
            err(
                r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}"#,
                ID
            ),
            MSG_ACTIONS
        );
        assert_eq!(err(&tpl("\"GetObject\""), ID), MSG_VENDOR);
        assert_eq!(err(&tpl("\"s3:Get:Object\""), ID), MSG_ONE_COLON);
        assert_eq!(err(&tpl("\"s 3:Get\""), ID), "Vendor s 3 is not valid");
        ok(&tpl("\"*\""), ID);
        ok(&tpl("[\"s3:*\", \"ec2:Describe*\", \"*:Get?\"]"), ID);
    }

    #[test]
    fn resource_rules() {
        let tpl = |r: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"s3:*","Resource":{r}}}}}"#
            )
        };
        assert_eq!(err(&tpl("[]"), ID), MSG_RESOURCES);
        assert_eq!(
            err(&tpl("\"bucket\""), ID),
            "Resource bucket must be in ARN format or \"*\"."
        );
        assert_eq!(err(&tpl("\"arn:aws\""), ID), MSG_RESOURCE_VENDOR);
        assert_eq!(
            err(&tpl("\"arn:foo:s3:::b\""), ID),
            "Partition \"foo\" is not valid for resource \"arn:foo:s3:::b\"."
        );
        assert_eq!(
            err(&tpl("\"arn:aws:iam:us-east-1:123456789012:user/x\""), ID),
            "IAM resource arn:aws:iam:us-east-1:123456789012:user/x cannot contain region information."
        );
        assert_eq!(
            err(&tpl("\"arn:aws:s3:eu-west-1::b\""), ID),
            "Resource arn:aws:s3:eu-west-1::b can not contain region information."
        );
        assert!(
            err(&tpl("\"arn:aws:iam::123456789012:thing/x\""), ID)
                .starts_with("IAM resource path must either be \"*\" or start with user/, ")
        );
        assert_eq!(err(&tpl("\"arn:aws:s3::b\""), ID), MSG_LEGACY);
        // Later resources (in reverse sorted order) win.
        assert_eq!(
            err(&tpl("[\"a\", \"b\"]"), ID),
            "Resource a must be in ARN format or \"*\"."
        );
        ok(
            &tpl(
                "[\"arn:aws:s3:::bucket/*\", \"arn:aws:iam::*:user/${aws:username}\", \"arn:aws:s3:eu-west-1:1:accesspoint/x\"]",
            ),
            ID,
        );
    }

    #[test]
    fn condition_value_types_and_dates() {
        let tpl = |c: &str| {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{c}}}}}"#
            )
        };
        assert_eq!(
            err(&tpl(r#"{"NumericEquals":{"s3:max-keys":5}}"#), ID),
            MSG_SYNTAX
        );
        ok(&tpl(r#"{"Bool":{"aws:SecureTransport":true}}"#), ID);
        ok(&tpl(r#"{"NumericEquals":{"s3:max-keys":[5, "6"]}}"#), ID);
        assert_eq!(
            err(&tpl(r#"{"DateLessThan":{"aws:CurrentTime":"soon"}}"#), ID),
            MSG_LEGACY
        );
        ok(
            &tpl(r#"{"DateLessThan":{"aws:CurrentTime":["2030-01-01T00:00:00Z","1700000000"]}}"#),
            ID,
        );
    }

    #[test]
    fn conditions_parse_with_qualifiers() {
        let d = ok(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"ForAnyValue:StringLikeIfExists":{"aws:TagKeys":["a*","b"]},"Bool":{"aws:SecureTransport":true},"NumericLessThan":{"s3:max-keys":[10]}}}}"#,
            ID,
        );
        let c = &d.statements()[0].conditions;
        assert_eq!(c.len(), 3);
        let any = c
            .iter()
            .find(|c| c.key == "aws:TagKeys")
            .expect("tag keys condition");
        assert_eq!(any.operator.qualifier, SetQualifier::ForAnyValue);
        assert_eq!(any.operator.operator, Operator::StringLike);
        assert!(any.operator.if_exists);
        let b = c
            .iter()
            .find(|c| c.key == "aws:SecureTransport")
            .expect("bool condition");
        assert_eq!(b.values, vec!["true".to_owned()]);
        let n = c
            .iter()
            .find(|c| c.key == "s3:max-keys")
            .expect("numeric condition");
        assert_eq!(n.values, vec!["10".to_owned()]);
    }

    #[test]
    fn statement_positions() {
        let text = "{\n \"Version\": \"2012-10-17\",\n \"Statement\": [\n  {\"Sid\": \"ab\", \"Effect\": \"Allow\", \"Action\": [\"s3:*\"], \"Resource\": \"arn:aws:s3:::x/{\\\"}\"},\n  {\"Effect\": \"Deny\", \"Action\": \"s3:Delete*\", \"Resource\": \"*\",\n   \"Condition\": {\"Bool\": {\"aws:SecureTransport\": \"false\"}}}\n ]\n}";
        let d = ok(text, ID);
        let pos = |line, column| TextPosition { line, column };
        let first = d.statement_position(0).expect("first statement located");
        assert_eq!(first.0, pos(4, 3));
        let line4 = text.lines().nth(3).expect("line 4");
        assert_eq!(first.1, pos(4, line4.chars().count() + 1 - 1));
        let second = d.statement_position(1).expect("second statement located");
        assert_eq!(second.0, pos(5, 3));
        assert_eq!(
            second.1,
            pos(6, text.lines().nth(5).expect("line 6").chars().count() + 1)
        );
        assert_eq!(d.statement_position(2), None);
        let single = ok(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"},"Version":"2012-10-17"}"#,
            ID,
        );
        assert_eq!(single.statement_position(0), Some((pos(1, 14), pos(1, 60))));
    }

    #[test]
    fn operator_names_round_trip() {
        for op in Operator::ALL {
            let parsed = ConditionOperator::parse(op.as_str()).expect("known operator");
            assert_eq!(parsed.operator, op);
            let q = ConditionOperator::parse(&format!("ForAllValues:{}IfExists", op.as_str()))
                .expect("qualified operator");
            assert_eq!(q.qualifier, SetQualifier::ForAllValues);
            assert!(q.if_exists);
        }
        assert!(ConditionOperator::parse("StringEqualz").is_none());
    }
}
