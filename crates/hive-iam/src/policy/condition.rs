//! Compiled `Condition` blocks and their evaluation.
//!
//! Semantics (AWS's, from the IAM user guide):
//! - all operators of a block and all keys of an operator must hold (AND); the values listed for
//!   one key are alternatives (OR);
//! - condition keys are case-insensitive; values compare case-sensitively unless the operator
//!   says `IgnoreCase` (ASCII case folding);
//! - a missing key makes a positive operator false and a negated operator (`StringNotEquals`,
//!   `NotIpAddress`, `ArnNotLike`, ...) true; `...IfExists` makes any operator true on a missing key;
//! - `ForAllValues:` holds when every request value matches (vacuously on a missing or empty
//!   key), `ForAnyValue:` when at least one does (never on a missing or empty key); with a
//!   negated operator the per-value test is negated ("every value is not equal to any listed");
//! - without a set qualifier a multi-valued key matches a positive operator when any of its
//!   values does, and a negated operator when none does;
//! - `Null: true` holds when the key is missing (or empty), `Null: false` when it is present;
//! - values that cannot be read as the operator's type (a number for `NumericEquals`, a date,
//!   an IP range, a boolean) never match; `BinaryEquals` compares the base64 text.
//!
//! Values are parsed when the policy is compiled; evaluation allocates only for values with
//! policy variables.

use std::net::IpAddr;

use super::context::{ContextValue, RequestContext, parse_bool, parse_date, parse_number};
use super::document::{Condition, ConditionOperator, Operator, SetQualifier};
use super::variables::Template;
use super::wildcard::{arn_glob, glob};

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A policy value parsed for its operator's type.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Text(Box<str>),
    Pattern(Box<[u8]>),
    Number(Option<f64>),
    Date(Option<i128>),
    Bool(Option<bool>),
    Cidr(Option<Cidr>),
}

#[derive(Debug, Clone, PartialEq)]
enum CondValue {
    Static(Typed),
    Template(Template),
}

fn is_pattern_operator(op: Operator) -> bool {
    matches!(
        op.positive(),
        Operator::StringLike | Operator::ArnEquals | Operator::ArnLike
    )
}

fn typed(op: Operator, text: &str) -> Typed {
    use Operator::*;
    match op.positive() {
        StringEquals | StringEqualsIgnoreCase | BinaryEquals => Typed::Text(text.into()),
        StringLike | ArnEquals | ArnLike => Typed::Pattern(text.as_bytes().into()),
        NumericEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Typed::Number(parse_number(text)),
        DateEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => Typed::Date(parse_date(text)),
        Bool | Null => Typed::Bool(parse_bool(text)),
        IpAddress => Typed::Cidr(Cidr::parse(text)),
        // Negated operators were mapped to their positive form above.
        _ => Typed::Text(text.into()),
    }
}

/// Whether one request value satisfies the positive form of `op` against one policy value.
#[inline]
fn value_matches(op: Operator, policy: &Typed, value: &ContextValue) -> bool {
    use Operator::*;
    match (op.positive(), policy) {
        (StringEquals | BinaryEquals, Typed::Text(t)) => &**t == value.as_str(),
        (StringEqualsIgnoreCase, Typed::Text(t)) => t.eq_ignore_ascii_case(value.as_str()),
        (StringLike, Typed::Pattern(p)) => glob(p, value.as_str().as_bytes(), false),
        (ArnEquals | ArnLike, Typed::Pattern(p)) => arn_glob(p, value.as_str().as_bytes()),
        (NumericEquals, Typed::Number(Some(p))) => value.number.is_some_and(|v| v == *p),
        (NumericLessThan, Typed::Number(Some(p))) => value.number.is_some_and(|v| v < *p),
        (NumericLessThanEquals, Typed::Number(Some(p))) => value.number.is_some_and(|v| v <= *p),
        (NumericGreaterThan, Typed::Number(Some(p))) => value.number.is_some_and(|v| v > *p),
        (NumericGreaterThanEquals, Typed::Number(Some(p))) => value.number.is_some_and(|v| v >= *p),
        (DateEquals, Typed::Date(Some(p))) => value.date.is_some_and(|v| v == *p),
        (DateLessThan, Typed::Date(Some(p))) => value.date.is_some_and(|v| v < *p),
        (DateLessThanEquals, Typed::Date(Some(p))) => value.date.is_some_and(|v| v <= *p),
        (DateGreaterThan, Typed::Date(Some(p))) => value.date.is_some_and(|v| v > *p),
        (DateGreaterThanEquals, Typed::Date(Some(p))) => value.date.is_some_and(|v| v >= *p),
        (Bool, Typed::Bool(Some(p))) => value.boolean == Some(*p),
        (IpAddress, Typed::Cidr(Some(c))) => value.ip.is_some_and(|ip| c.contains(ip)),
        _ => false,
    }
}

/// One compiled condition: operator, lower-cased key, pre-parsed values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledCondition {
    op: ConditionOperator,
    key: Box<str>,
    values: Vec<CondValue>,
}

impl CompiledCondition {
    pub(crate) fn compile(c: &Condition, variables: bool) -> CompiledCondition {
        let op = c.operator.operator;
        let values = c
            .values
            .iter()
            .map(|v| match variables.then(|| Template::parse(v)).flatten() {
                Some(t) => CondValue::Template(t),
                None => CondValue::Static(typed(op, v)),
            })
            .collect();
        CompiledCondition {
            op: c.operator,
            key: c.key.to_ascii_lowercase().into(),
            values,
        }
    }

    /// Whether any policy value matches one request value (positive form of the operator).
    fn any_policy_value(&self, req: &RequestContext, value: &ContextValue) -> bool {
        let op = self.op.operator;
        self.values.iter().any(|v| match v {
            CondValue::Static(t) => value_matches(op, t, value),
            CondValue::Template(t) => {
                let rendered = if is_pattern_operator(op) {
                    t.render_pattern(req).map(|p| Typed::Pattern(p.into()))
                } else {
                    t.render_text(req).map(|s| typed(op, &s))
                };
                rendered.is_some_and(|r| value_matches(op, &r, value))
            }
        })
    }

    fn null_holds(&self, req: &RequestContext, present: bool) -> bool {
        self.values.iter().any(|v| {
            let wanted = match v {
                CondValue::Static(Typed::Bool(b)) => *b,
                CondValue::Static(_) => None,
                CondValue::Template(t) => t.render_text(req).and_then(|s| parse_bool(&s)),
            };
            match wanted {
                Some(true) => !present,
                Some(false) => present,
                None => false,
            }
        })
    }

    pub(crate) fn evaluate(&self, req: &RequestContext) -> bool {
        let values = req.get_lower(&self.key).unwrap_or(&[]);
        let present = !values.is_empty();
        if self.op.operator == Operator::Null {
            return self.null_holds(req, present);
        }
        if !present {
            if self.op.if_exists {
                return true;
            }
            return match self.op.qualifier {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::Single => self.op.operator.is_negated(),
            };
        }
        let negated = self.op.operator.is_negated();
        let per_value = |v: &ContextValue| self.any_policy_value(req, v) != negated;
        match self.op.qualifier {
            SetQualifier::ForAllValues => values.iter().all(per_value),
            SetQualifier::ForAnyValue => values.iter().any(per_value),
            SetQualifier::Single => values.iter().any(|v| self.any_policy_value(req, v)) != negated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::context::Principal;

    fn cond(op: &str, key: &str, values: &[&str]) -> CompiledCondition {
        let c = Condition {
            operator_name: op.to_owned(),
            operator: ConditionOperator::parse(op).expect("known operator"),
            key: key.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        CompiledCondition::compile(&c, true)
    }

    fn req() -> RequestContext {
        RequestContext::new(
            Principal::user("123456789012", "bob", "AIDA1"),
            "s3:GetObject",
            "*",
        )
    }

    /// (operator, policy values, request value or None for missing, expected)
    type Row<'a> = (&'a str, &'a [&'a str], Option<&'a str>, bool);

    fn run(rows: &[Row<'_>]) {
        for (op, values, request, want) in rows {
            let c = cond(op, "test:Key", values);
            let mut r = req();
            if let Some(v) = request {
                r.set("test:key", *v);
            }
            assert_eq!(c.evaluate(&r), *want, "{op} {values:?} vs {request:?}");
        }
    }

    #[test]
    fn string_operators() {
        run(&[
            ("StringEquals", &["a", "b"], Some("b"), true),
            ("StringEquals", &["a"], Some("A"), false),
            ("StringEquals", &["a"], None, false),
            ("StringNotEquals", &["a"], Some("b"), true),
            ("StringNotEquals", &["a", "b"], Some("b"), false),
            ("StringNotEquals", &["a"], None, true),
            ("StringEqualsIgnoreCase", &["ABC"], Some("abc"), true),
            ("StringEqualsIgnoreCase", &["ABC"], Some("abd"), false),
            ("StringEqualsIgnoreCase", &["ABC"], None, false),
            ("StringNotEqualsIgnoreCase", &["ABC"], Some("abc"), false),
            ("StringNotEqualsIgnoreCase", &["ABC"], Some("x"), true),
            ("StringNotEqualsIgnoreCase", &["ABC"], None, true),
            ("StringLike", &["home/*"], Some("home/bob/x"), true),
            ("StringLike", &["home/?"], Some("home/bo"), false),
            ("StringLike", &["home/*"], None, false),
            ("StringNotLike", &["home/*"], Some("etc/x"), true),
            ("StringNotLike", &["home/*"], Some("home/x"), false),
            ("StringNotLike", &["home/*"], None, true),
            ("StringEqualsIfExists", &["a"], None, true),
            ("StringEqualsIfExists", &["a"], Some("b"), false),
            ("StringEqualsIfExists", &["a"], Some("a"), true),
        ]);
    }

    #[test]
    fn numeric_operators() {
        run(&[
            ("NumericEquals", &["10"], Some("10.0"), true),
            ("NumericEquals", &["10"], Some("11"), false),
            ("NumericEquals", &["10"], Some("ten"), false),
            ("NumericEquals", &["ten"], Some("10"), false),
            ("NumericEquals", &["10"], None, false),
            ("NumericNotEquals", &["10"], Some("11"), true),
            ("NumericNotEquals", &["10"], Some("10"), false),
            ("NumericNotEquals", &["10"], None, true),
            ("NumericLessThan", &["10"], Some("9.5"), true),
            ("NumericLessThan", &["10"], Some("10"), false),
            ("NumericLessThanEquals", &["10"], Some("10"), true),
            ("NumericLessThanEquals", &["10"], Some("11"), false),
            ("NumericGreaterThan", &["10"], Some("11"), true),
            ("NumericGreaterThan", &["10"], Some("10"), false),
            ("NumericGreaterThanEquals", &["10"], Some("10"), true),
            ("NumericGreaterThanEquals", &["10"], Some("-3"), false),
            ("NumericGreaterThan", &["10"], None, false),
            ("NumericLessThanIfExists", &["10"], None, true),
        ]);
    }

    #[test]
    fn date_operators() {
        run(&[
            (
                "DateEquals",
                &["2020-01-01T00:00:00Z"],
                Some("1577836800"),
                true,
            ),
            (
                "DateEquals",
                &["2020-01-01"],
                Some("2020-01-01T00:00:00Z"),
                true,
            ),
            (
                "DateNotEquals",
                &["2020-01-01T00:00:00Z"],
                Some("2020-01-02T00:00:00Z"),
                true,
            ),
            ("DateNotEquals", &["2020-01-01T00:00:00Z"], None, true),
            (
                "DateLessThan",
                &["2020-01-01T00:00:00Z"],
                Some("2019-12-31T23:59:59Z"),
                true,
            ),
            (
                "DateLessThan",
                &["2020-01-01T00:00:00Z"],
                Some("2020-01-01T00:00:00Z"),
                false,
            ),
            (
                "DateLessThanEquals",
                &["2020-01-01T00:00:00Z"],
                Some("2020-01-01T00:00:00Z"),
                true,
            ),
            (
                "DateGreaterThan",
                &["2020-01-01T00:00:00Z"],
                Some("2020-01-01T00:00:01Z"),
                true,
            ),
            ("DateGreaterThan", &["2020-01-01T00:00:00Z"], None, false),
            (
                "DateGreaterThanEquals",
                &["2020-01-01T00:00:00Z"],
                Some("2019-01-01T00:00:00Z"),
                false,
            ),
            (
                "DateGreaterThanEquals",
                &["2020-01-01T00:00:00Z"],
                Some("2020-01-01T00:00:00Z"),
                true,
            ),
            (
                "DateLessThan",
                &["garbage"],
                Some("2019-01-01T00:00:00Z"),
                false,
            ),
        ]);
    }

    #[test]
    fn bool_binary_ip_arn_null() {
        run(&[
            ("Bool", &["true"], Some("true"), true),
            ("Bool", &["true"], Some("false"), false),
            ("Bool", &["false"], None, false),
            ("BoolIfExists", &["false"], None, true),
            ("Bool", &["TRUE"], Some("true"), true),
            ("BinaryEquals", &["QmluYXJ5"], Some("QmluYXJ5"), true),
            ("BinaryEquals", &["QmluYXJ5"], Some("QmluYXJ6"), false),
            ("IpAddress", &["203.0.113.0/24"], Some("203.0.113.7"), true),
            ("IpAddress", &["203.0.113.0/24"], Some("203.0.114.7"), false),
            ("IpAddress", &["203.0.113.7"], Some("203.0.113.7"), true),
            ("IpAddress", &["0.0.0.0/0"], Some("1.2.3.4"), true),
            ("IpAddress", &["2001:db8::/32"], Some("2001:db8::1"), true),
            ("IpAddress", &["2001:db8::/32"], Some("2001:db9::1"), false),
            ("IpAddress", &["2001:db8::/32"], Some("203.0.113.7"), false),
            ("IpAddress", &["203.0.113.0/24"], None, false),
            ("NotIpAddress", &["203.0.113.0/24"], Some("10.0.0.1"), true),
            (
                "NotIpAddress",
                &["203.0.113.0/24"],
                Some("203.0.113.1"),
                false,
            ),
            ("NotIpAddress", &["203.0.113.0/24"], None, true),
            ("IpAddress", &["10.0.0.0/33"], Some("10.0.0.1"), false),
            (
                "ArnEquals",
                &["arn:aws:iam::123456789012:role/a"],
                Some("arn:aws:iam::123456789012:role/a"),
                true,
            ),
            (
                "ArnLike",
                &["arn:aws:iam::*:role/*"],
                Some("arn:aws:iam::123456789012:role/a"),
                true,
            ),
            (
                "ArnLike",
                &["arn:aws:iam::*:role/*"],
                Some("arn:aws:iam::123456789012:user/a"),
                false,
            ),
            (
                "ArnLike",
                &["arn:aws:iam::*:role/*"],
                Some("not an arn"),
                false,
            ),
            (
                "ArnNotEquals",
                &["arn:aws:iam::1:role/a"],
                Some("arn:aws:iam::1:role/b"),
                true,
            ),
            (
                "ArnNotLike",
                &["arn:aws:iam::*:role/*"],
                Some("arn:aws:iam::1:role/b"),
                false,
            ),
            ("ArnNotLike", &["arn:aws:iam::*:role/*"], None, true),
            ("ArnLike", &["arn:aws:iam::*:role/*"], None, false),
            ("Null", &["true"], None, true),
            ("Null", &["true"], Some("x"), false),
            ("Null", &["false"], Some("x"), true),
            ("Null", &["false"], None, false),
            ("Null", &["maybe"], None, false),
        ]);
    }

    #[test]
    fn set_qualifiers() {
        let all = cond("ForAllValues:StringEquals", "aws:TagKeys", &["a", "b"]);
        let any = cond("ForAnyValue:StringEquals", "aws:TagKeys", &["a", "b"]);
        let all_not = cond("ForAllValues:StringNotEquals", "aws:TagKeys", &["a", "b"]);
        let any_not = cond("ForAnyValue:StringNotEquals", "aws:TagKeys", &["a", "b"]);
        let single_not = cond("StringNotEquals", "aws:TagKeys", &["a", "b"]);
        let with = |vals: &[&str]| req().with_values("aws:TagKeys", vals.iter().copied());
        // Missing key: ForAllValues vacuously true, ForAnyValue false.
        assert!(all.evaluate(&req()));
        assert!(!any.evaluate(&req()));
        assert!(all_not.evaluate(&req()));
        assert!(!any_not.evaluate(&req()));
        // Empty set behaves like a missing key.
        assert!(all.evaluate(&with(&[])));
        assert!(!any.evaluate(&with(&[])));
        assert!(all.evaluate(&with(&["a", "b"])));
        assert!(!all.evaluate(&with(&["a", "c"])));
        assert!(any.evaluate(&with(&["c", "a"])));
        assert!(!any.evaluate(&with(&["c", "d"])));
        assert!(all_not.evaluate(&with(&["c", "d"])));
        assert!(!all_not.evaluate(&with(&["c", "a"])));
        assert!(any_not.evaluate(&with(&["a", "c"])));
        assert!(!any_not.evaluate(&with(&["a", "b"])));
        assert!(single_not.evaluate(&with(&["c", "d"])));
        assert!(!single_not.evaluate(&with(&["c", "a"])));
        let any_if = cond("ForAnyValue:StringEqualsIfExists", "aws:TagKeys", &["a"]);
        assert!(any_if.evaluate(&req()));
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let c = cond("StringEquals", "AWS:RequestedRegion", &["eu-west-1"]);
        assert!(c.evaluate(&req().with("aws:requestedregion", "eu-west-1")));
    }

    #[test]
    fn variables_in_values() {
        let c = cond("StringLike", "s3:prefix", &["home/${aws:username}/*"]);
        assert!(c.evaluate(&req().with("s3:prefix", "home/bob/docs")));
        assert!(!c.evaluate(&req().with("s3:prefix", "home/alice/docs")));
        let c = cond("StringEquals", "s3:prefix", &["${aws:PrincipalTag/none}"]);
        assert!(!c.evaluate(&req().with("s3:prefix", "")));
        let c = cond(
            "StringEquals",
            "s3:prefix",
            &["${aws:PrincipalTag/none, 'x'}${*}"],
        );
        assert!(c.evaluate(&req().with("s3:prefix", "x*")));
        let c = cond("StringLike", "s3:prefix", &["a${*}"]);
        assert!(c.evaluate(&req().with("s3:prefix", "a*")));
        assert!(!c.evaluate(&req().with("s3:prefix", "ab")));
    }

    #[test]
    fn cidr_parsing() {
        assert!(Cidr::parse("10.0.0.0/8").is_some());
        assert!(Cidr::parse("10.0.0.0/40").is_none());
        assert!(Cidr::parse("::/0").is_some());
        assert!(Cidr::parse("nope").is_none());
        let c = Cidr::parse("10.0.0.0/0").expect("valid");
        assert!(c.contains("255.1.2.3".parse().expect("ip")));
    }
}
