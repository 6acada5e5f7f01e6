//! Property tests of the policy engine:
//!
//! - a deliberately naive reference evaluator, written straight from the IAM user guide and
//!   interpreting the JSON documents directly, agrees with the compiled, indexed evaluator on
//!   random policies and requests (differential testing), alone and with a permissions boundary;
//! - adding a `Deny` statement never widens access;
//! - the order of statements and of policies never changes a decision.

use std::collections::HashMap;
use std::sync::Arc;

use hive_iam::policy::{
    Authorizer, CompiledPolicy, DecisionEffect, PolicyKind, PolicySet, Principal, RequestContext,
};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The reference evaluator. Slow and simple on purpose: recursion over characters, strings
// re-parsed on every use, no index.
// ---------------------------------------------------------------------------------------------

/// A request as the reference sees it: action, resource, and lower-cased condition keys.
#[derive(Debug, Clone)]
struct RefRequest {
    action: String,
    resource: String,
    keys: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Ch(char),
    Star,
    Any,
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Number(n) => vec![n.to_string()],
        _ => vec![],
    }
}

/// Expands policy variables. Wildcards written in the policy stay wildcards; escapes and
/// substituted values become literal characters. `None` when a variable has no value.
fn substitute(text: &str, req: &RefRequest, variables: bool) -> Option<Vec<Tok>> {
    let lit = |s: &str| s.chars().map(Tok::Ch).collect::<Vec<_>>();
    let raw = |s: &str| {
        s.chars()
            .map(|c| match c {
                '*' => Tok::Star,
                '?' => Tok::Any,
                c => Tok::Ch(c),
            })
            .collect::<Vec<_>>()
    };
    if !variables {
        return Some(raw(text));
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.extend(raw(&rest[..start]));
        let inner = rest[start + 2..start + len].trim();
        match inner {
            "*" => out.push(Tok::Ch('*')),
            "?" => out.push(Tok::Ch('?')),
            "$" => out.push(Tok::Ch('$')),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => (k.trim(), Some(d.trim().trim_matches('\''))),
                    None => (inner, None),
                };
                match (
                    req.keys.get(&key.to_lowercase()).map(Vec::as_slice),
                    default,
                ) {
                    (Some([one]), _) => out.extend(lit(one)),
                    (_, Some(d)) => out.extend(lit(d)),
                    _ => return None,
                }
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.extend(raw(rest));
    Some(out)
}

fn tok_match(p: &[Tok], t: &[char], ci: bool) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((Tok::Star, rest)) => (0..=t.len()).any(|i| tok_match(rest, &t[i..], ci)),
        Some((Tok::Any, rest)) => !t.is_empty() && tok_match(rest, &t[1..], ci),
        Some((Tok::Ch(c), rest)) => {
            !t.is_empty()
                && (if ci {
                    c.eq_ignore_ascii_case(&t[0])
                } else {
                    *c == t[0]
                })
                && tok_match(rest, &t[1..], ci)
        }
    }
}

/// The Resource rule from the user guide: wildcards stay within an ARN segment, except a `*`
/// that ends its segment, which may expand across colons.
fn resource_tok_match(p: &[Tok], t: &[char]) -> bool {
    if p == [Tok::Star] {
        return true;
    }
    match p.split_first() {
        None => t.is_empty(),
        Some((Tok::Star, rest)) => {
            let ends_segment = rest.is_empty() || rest[0] == Tok::Ch(':');
            (0..=t.len())
                .filter(|&i| ends_segment || !t[..i].contains(&':'))
                .any(|i| resource_tok_match(rest, &t[i..]))
        }
        Some((Tok::Any, rest)) => !t.is_empty() && t[0] != ':' && resource_tok_match(rest, &t[1..]),
        Some((Tok::Ch(c), rest)) => {
            !t.is_empty() && *c == t[0] && resource_tok_match(rest, &t[1..])
        }
    }
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn ref_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn ref_date(s: &str) -> Option<i128> {
    if let Ok(secs) = s.parse::<i64>() {
        return Some(i128::from(secs) * 1_000_000_000);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

fn ref_in_cidr(cidr: &str, ip: &str) -> bool {
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<std::net::IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32);
            if bits > 32 {
                return false;
            }
            (0..bits).all(|b| (u32::from(n) >> (31 - b)) & 1 == (u32::from(i) >> (31 - b)) & 1)
        }
        (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128);
            if bits > 128 {
                return false;
            }
            (0..bits).all(|b| (u128::from(n) >> (127 - b)) & 1 == (u128::from(i) >> (127 - b)) & 1)
        }
        _ => false,
    }
}

fn ref_arn_like(p: &[Tok], arn: &str) -> bool {
    // Split the pattern on literal colons into at most six components.
    let mut comps: Vec<Vec<Tok>> = vec![vec![]];
    for &t in p {
        if t == Tok::Ch(':') && comps.len() < 6 {
            comps.push(vec![]);
        } else if let Some(last) = comps.last_mut() {
            last.push(t);
        }
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    comps.len() == 6
        && parts.len() == 6
        && comps
            .iter()
            .zip(&parts)
            .all(|(c, part)| tok_match(c, &chars(part), false))
}

/// Whether a request value matches a policy value under the positive form of `op`.
fn ref_value(op: &str, policy: &str, value: &str, req: &RefRequest, variables: bool) -> bool {
    let glob_ops = ["StringLike", "ArnLike", "ArnEquals"];
    if glob_ops.contains(&op) {
        let Some(p) = substitute(policy, req, variables) else {
            return false;
        };
        return if op == "StringLike" {
            tok_match(&p, &chars(value), false)
        } else {
            ref_arn_like(&p, value)
        };
    }
    let Some(p) = substitute(policy, req, variables) else {
        return false;
    };
    let policy: String = p
        .iter()
        .map(|t| match t {
            Tok::Ch(c) => *c,
            Tok::Star => '*',
            Tok::Any => '?',
        })
        .collect();
    let num = |f: fn(f64, f64) -> bool| match (ref_number(value), ref_number(&policy)) {
        (Some(v), Some(p)) => f(v, p),
        _ => false,
    };
    let date = |f: fn(i128, i128) -> bool| match (ref_date(value), ref_date(&policy)) {
        (Some(v), Some(p)) => f(v, p),
        _ => false,
    };
    match op {
        "StringEquals" | "BinaryEquals" => value == policy,
        "StringEqualsIgnoreCase" => value.eq_ignore_ascii_case(&policy),
        "NumericEquals" => num(|v, p| v == p),
        "NumericLessThan" => num(|v, p| v < p),
        "NumericLessThanEquals" => num(|v, p| v <= p),
        "NumericGreaterThan" => num(|v, p| v > p),
        "NumericGreaterThanEquals" => num(|v, p| v >= p),
        "DateEquals" => date(|v, p| v == p),
        "DateLessThan" => date(|v, p| v < p),
        "DateLessThanEquals" => date(|v, p| v <= p),
        "DateGreaterThan" => date(|v, p| v > p),
        "DateGreaterThanEquals" => date(|v, p| v >= p),
        "Bool" => {
            let b = |s: &str| s.to_lowercase();
            matches!(b(&policy).as_str(), "true" | "false") && b(value) == b(&policy)
        }
        "IpAddress" => ref_in_cidr(&policy, value),
        _ => false,
    }
}

/// A negated operator and its positive form.
fn negation(op: &str) -> Option<&'static str> {
    Some(match op {
        "StringNotEquals" => "StringEquals",
        "StringNotEqualsIgnoreCase" => "StringEqualsIgnoreCase",
        "StringNotLike" => "StringLike",
        "NumericNotEquals" => "NumericEquals",
        "DateNotEquals" => "DateEquals",
        "NotIpAddress" => "IpAddress",
        "ArnNotEquals" => "ArnEquals",
        "ArnNotLike" => "ArnLike",
        _ => return None,
    })
}

fn ref_condition(
    op_name: &str,
    key: &str,
    values: &[String],
    req: &RefRequest,
    vars: bool,
) -> bool {
    let (set, rest) = if let Some(r) = op_name.strip_prefix("ForAllValues:") {
        ("all", r)
    } else if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
        ("any", r)
    } else {
        ("", op_name)
    };
    let (if_exists, base) = match rest.strip_suffix("IfExists") {
        Some(b) => (true, b),
        None => (false, rest),
    };
    let request_values = req
        .keys
        .get(&key.to_lowercase())
        .cloned()
        .unwrap_or_default();
    let present = !request_values.is_empty();
    if base == "Null" {
        return values.iter().any(|v| {
            let v = substitute(v, req, vars)
                .map(|t| {
                    t.iter()
                        .map(|t| if let Tok::Ch(c) = t { *c } else { '*' })
                        .collect::<String>()
                })
                .unwrap_or_default()
                .to_lowercase();
            (v == "true" && !present) || (v == "false" && present)
        });
    }
    let negated = negation(base);
    if !present {
        return if_exists || set == "all" || (set.is_empty() && negated.is_some());
    }
    let positive = negated.unwrap_or(base);
    let matches_any_policy_value = |rv: &String| {
        values
            .iter()
            .any(|pv| ref_value(positive, pv, rv, req, vars))
    };
    let per_value = |rv: &String| matches_any_policy_value(rv) != negated.is_some();
    match set {
        "all" => request_values.iter().all(per_value),
        "any" => request_values.iter().any(per_value),
        _ => request_values.iter().any(matches_any_policy_value) != negated.is_some(),
    }
}

/// Returns (any allow, any deny) over the documents.
fn ref_evaluate(policies: &[Value], req: &RefRequest) -> (bool, bool) {
    let (mut allow, mut deny) = (false, false);
    for p in policies {
        let vars = p.get("Version").and_then(Value::as_str) == Some("2012-10-17");
        let statements = match &p["Statement"] {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for st in statements {
            let action_ok = if let Some(a) = st.get("Action") {
                as_list(a).iter().any(|p| {
                    tok_match(
                        &substitute(p, req, false).unwrap_or_default(),
                        &chars(&req.action),
                        true,
                    )
                })
            } else {
                !as_list(&st["NotAction"]).iter().any(|p| {
                    tok_match(
                        &substitute(p, req, false).unwrap_or_default(),
                        &chars(&req.action),
                        true,
                    )
                })
            };
            let res_hit = |list: &Value| {
                as_list(list).iter().any(|p| {
                    substitute(p, req, vars)
                        .is_some_and(|t| resource_tok_match(&t, &chars(&req.resource)))
                })
            };
            let resource_ok = if let Some(r) = st.get("Resource") {
                res_hit(r)
            } else {
                !res_hit(&st["NotResource"])
            };
            let conditions_ok = match st.get("Condition") {
                None => true,
                Some(Value::Object(ops)) => ops.iter().all(|(op, keys)| {
                    keys.as_object().is_some_and(|keys| {
                        keys.iter()
                            .all(|(k, v)| ref_condition(op, k, &as_list(v), req, vars))
                    })
                }),
                Some(_) => false,
            };
            if action_ok && resource_ok && conditions_ok {
                if st["Effect"] == "Deny" {
                    deny = true;
                } else {
                    allow = true;
                }
            }
        }
    }
    (allow, deny)
}

fn ref_effect(policies: &[Value], req: &RefRequest) -> DecisionEffect {
    match ref_evaluate(policies, req) {
        (_, true) => DecisionEffect::ExplicitDeny,
        (true, false) => DecisionEffect::Allow,
        _ => DecisionEffect::ImplicitDeny,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators: small vocabularies so that random policies and requests often interact.
// ---------------------------------------------------------------------------------------------

const ACTION_PATTERNS: &[&str] = &[
    "*",
    "s3:*",
    "s3:Get*",
    "S3:getobject",
    "s3:PutObject",
    "iam:*User",
    "iam:CreateUser",
    "iam:Create*",
    "ec2:Run?nstances",
    "*:Get*",
    "ec2:*",
    "sts:AssumeRole",
];
const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "iam:CreateUser",
    "iam:DeleteUser",
    "ec2:RunInstances",
    "ec2:GetConsoleOutput",
    "sts:AssumeRole",
    "IAM:CREATEUSER",
];
const RESOURCE_PATTERNS: &[&str] = &[
    "*",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/${aws:username}/*",
    "arn:aws:s3:::b/x",
    "arn:aws:iam::123456789012:user/*",
    "arn:aws:iam::123456789012:user/${aws:username}",
    "arn:aws:iam::*:user/a*",
    "arn:aws:ec2:*:123456789012:instance/*",
    "arn:aws:s3:::b/${aws:PrincipalTag/team, 'none'}/*",
    "arn:aws:s3:::b/${*}",
    "arn:aws:s3:::b/?",
    "arn:aws:logs:*:*:log-group:*",
    "arn:aws:logs:*:123456789012:log-group:a*b",
];
const RESOURCES: &[&str] = &[
    "arn:aws:s3:::b/bob/f",
    "arn:aws:s3:::b/x",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/none/k",
    "arn:aws:s3:::b/blue/k",
    "arn:aws:iam::123456789012:user/bob",
    "arn:aws:iam::123456789012:user/alice",
    "arn:aws:ec2:eu-west-1:123456789012:instance/i-1",
    "arn:aws:logs:eu-west-1:123456789012:log-group:a:b",
    "arn:aws:logs:eu-west-1:123456789012:log-group:axb",
    "*",
];
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];
const KEYS: &[&str] = &[
    "aws:RequestedRegion",
    "aws:SourceIp",
    "aws:TagKeys",
    "aws:username",
    "aws:SecureTransport",
    "aws:EpochTime",
    "aws:CurrentTime",
    "aws:PrincipalArn",
    "test:Number",
];
const VALUES: &[&str] = &[
    "eu-west-1",
    "EU-WEST-1",
    "us-*",
    "10.0.0.0/8",
    "10.1.2.3",
    "2001:db8::/32",
    "team",
    "env",
    "bob",
    "b?b",
    "${aws:username}",
    "${aws:PrincipalTag/team}",
    "true",
    "false",
    "10",
    "1700000000",
    "2023-11-14T22:13:20Z",
    "2030-01-01T00:00:00Z",
    "arn:aws:iam::123456789012:user/*",
    "arn:aws:iam::*:user/bob",
    "QmluYXJ5",
    "5.5",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(list).prop_map(str::to_owned)
}

fn list_value(items: Vec<String>) -> Value {
    if items.len() == 1 {
        json!(items[0])
    } else {
        json!(items)
    }
}

/// Date values (IAM refuses a policy whose date condition values are not dates).
const DATE_VALUES: &[&str] = &[
    "1700000000",
    "2023-11-14T22:13:20Z",
    "2030-01-01T00:00:00Z",
    "10",
];

fn condition() -> impl Strategy<Value = (String, String, Value)> {
    (
        prop_oneof![Just(""), Just("ForAllValues:"), Just("ForAnyValue:")],
        pick(OPERATORS),
        any::<bool>(),
        pick(KEYS),
        proptest::collection::vec(pick(VALUES), 1..3),
        proptest::collection::vec(pick(DATE_VALUES), 1..3),
    )
        .prop_map(|(set, op, if_exists, key, values, dates)| {
            let suffix = if if_exists && op != "Null" {
                "IfExists"
            } else {
                ""
            };
            let values = if op.starts_with("Date") {
                dates
            } else {
                values
            };
            (format!("{set}{op}{suffix}"), key, list_value(values))
        })
}

fn statement() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(pick(ACTION_PATTERNS), 1..3),
        any::<bool>(),
        proptest::collection::vec(pick(RESOURCE_PATTERNS), 1..3),
        proptest::collection::vec(condition(), 0..3),
    )
        .prop_map(
            |(deny, not_action, actions, not_resource, resources, conditions)| {
                let mut st = serde_json::Map::new();
                st.insert("Effect".into(), json!(if deny { "Deny" } else { "Allow" }));
                st.insert(
                    if not_action { "NotAction" } else { "Action" }.into(),
                    list_value(actions),
                );
                st.insert(
                    if not_resource {
                        "NotResource"
                    } else {
                        "Resource"
                    }
                    .into(),
                    list_value(resources),
                );
                if !conditions.is_empty() {
                    let mut block = serde_json::Map::new();
                    for (op, key, values) in conditions {
                        let entry = block.entry(op).or_insert_with(|| json!({}));
                        if let Some(map) = entry.as_object_mut() {
                            map.insert(key, values);
                        }
                    }
                    st.insert("Condition".into(), Value::Object(block));
                }
                Value::Object(st)
            },
        )
}

fn policy_doc() -> impl Strategy<Value = Value> {
    (any::<bool>(), proptest::collection::vec(statement(), 1..4)).prop_map(|(v2012, statements)| {
        if v2012 {
            json!({"Version": "2012-10-17", "Statement": statements})
        } else {
            json!({"Version": "2008-10-17", "Statement": statements})
        }
    })
}

#[derive(Debug, Clone)]
struct Req {
    user: String,
    team: Option<String>,
    action: String,
    resource: String,
    keys: Vec<(String, Vec<String>)>,
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop_oneof![Just("bob"), Just("alice")],
        proptest::option::of(prop_oneof![Just("blue"), Just("none")]),
        pick(ACTIONS),
        pick(RESOURCES),
        proptest::collection::vec(
            (
                prop_oneof![
                    Just("aws:RequestedRegion"),
                    Just("aws:SourceIp"),
                    Just("aws:TagKeys"),
                    Just("aws:SecureTransport"),
                    Just("aws:EpochTime"),
                    Just("aws:CurrentTime"),
                    Just("test:Number")
                ],
                proptest::collection::vec(pick(VALUES), 0..3),
            ),
            0..5,
        ),
    )
        .prop_map(|(user, team, action, resource, keys)| Req {
            user: user.to_owned(),
            team: team.map(str::to_owned),
            action,
            resource,
            keys: keys.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
}

fn build(req: &Req) -> (RequestContext, RefRequest) {
    let mut p = Principal::user("123456789012", &req.user, "AIDAEXAMPLE");
    if let Some(team) = &req.team {
        p = p.with_tag("team", team);
    }
    let mut ctx = RequestContext::new(p, &req.action, &req.resource);
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    keys.insert("aws:username".into(), vec![req.user.clone()]);
    keys.insert("aws:userid".into(), vec!["AIDAEXAMPLE".into()]);
    keys.insert(
        "aws:principalarn".into(),
        vec![format!("arn:aws:iam::123456789012:user/{}", req.user)],
    );
    keys.insert("aws:principalaccount".into(), vec!["123456789012".into()]);
    keys.insert("aws:principaltype".into(), vec!["User".into()]);
    if let Some(team) = &req.team {
        keys.insert("aws:principaltag/team".into(), vec![team.clone()]);
        keys.insert("aws:principaltagkeys".into(), vec!["team".into()]);
    }
    for (k, v) in &req.keys {
        ctx.set_values(k, v.iter().map(String::as_str));
        keys.insert(k.to_lowercase(), v.clone());
    }
    (
        ctx,
        RefRequest {
            action: req.action.clone(),
            resource: req.resource.clone(),
            keys,
        },
    )
}

fn compile_all(docs: &[Value]) -> Vec<Arc<CompiledPolicy>> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let text = d.to_string();
            match CompiledPolicy::parse(&format!("p{i}"), &text, PolicyKind::Identity) {
                Ok(p) => Arc::new(p),
                Err(e) => panic!("generated policy rejected: {e}: {text}"),
            }
        })
        .collect()
}

fn engine_effect(docs: &[Value], req: &RequestContext) -> DecisionEffect {
    PolicySet::new(compile_all(docs)).evaluate(req).effect
}

fn rank(e: DecisionEffect) -> u8 {
    match e {
        DecisionEffect::Allow => 1,
        _ => 0,
    }
}

/// The generators are not vacuous: every outcome occurs often enough for the properties above
/// to mean something.
#[test]
fn generators_exercise_every_outcome() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut counts = [0usize; 3];
    for _ in 0..400 {
        let docs = proptest::collection::vec(policy_doc(), 1..4)
            .new_tree(&mut runner)
            .expect("generate policies")
            .current();
        let req = request()
            .new_tree(&mut runner)
            .expect("generate request")
            .current();
        let (ctx, _) = build(&req);
        counts[match engine_effect(&docs, &ctx) {
            DecisionEffect::Allow => 0,
            DecisionEffect::ExplicitDeny => 1,
            DecisionEffect::ImplicitDeny => 2,
        }] += 1;
    }
    assert!(
        counts.iter().all(|&c| c >= 40),
        "outcome counts (allow, deny, implicit): {counts:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compiled_evaluator_agrees_with_reference(
        docs in proptest::collection::vec(policy_doc(), 0..4),
        req in request(),
    ) {
        let (ctx, reference) = build(&req);
        prop_assert_eq!(engine_effect(&docs, &ctx), ref_effect(&docs, &reference));
    }

    #[test]
    fn boundary_intersection_agrees_with_reference(
        identity in proptest::collection::vec(policy_doc(), 0..3),
        boundary in proptest::collection::vec(policy_doc(), 0..3),
        req in request(),
    ) {
        let (ctx, reference) = build(&req);
        let id_set = PolicySet::new(compile_all(&identity));
        let b_set = PolicySet::new(compile_all(&boundary));
        let got = Authorizer::new(&id_set).with_permissions_boundary(&b_set).authorize(&ctx).effect;
        let (id_allow, id_deny) = ref_evaluate(&identity, &reference);
        let (b_allow, b_deny) = ref_evaluate(&boundary, &reference);
        let want = if id_deny || b_deny {
            DecisionEffect::ExplicitDeny
        } else if id_allow && b_allow {
            DecisionEffect::Allow
        } else {
            DecisionEffect::ImplicitDeny
        };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn adding_a_deny_never_widens_access(
        docs in proptest::collection::vec(policy_doc(), 1..4),
        extra in statement(),
        req in request(),
    ) {
        let (ctx, _) = build(&req);
        let before = engine_effect(&docs, &ctx);
        let mut deny = extra;
        deny["Effect"] = json!("Deny");
        let mut more = docs.clone();
        more.push(json!({"Version": "2012-10-17", "Statement": [deny]}));
        let after = engine_effect(&more, &ctx);
        prop_assert!(rank(after) <= rank(before), "{before:?} -> {after:?}");
    }

    #[test]
    fn order_never_changes_a_decision(
        docs in proptest::collection::vec(policy_doc(), 1..4),
        req in request(),
    ) {
        let (ctx, _) = build(&req);
        let base = engine_effect(&docs, &ctx);
        let mut reversed: Vec<Value> = docs.iter().rev().cloned().collect();
        for d in &mut reversed {
            if let Some(Value::Array(statements)) = d.get_mut("Statement") {
                statements.reverse();
            }
        }
        prop_assert_eq!(engine_effect(&reversed, &ctx), base);
        // Rotating statements inside each policy as well.
        let mut rotated = docs.clone();
        for d in &mut rotated {
            if let Some(Value::Array(statements)) = d.get_mut("Statement") {
                statements.rotate_left(1);
            }
        }
        rotated.rotate_left(1);
        prop_assert_eq!(engine_effect(&rotated, &ctx), base);
    }
}
