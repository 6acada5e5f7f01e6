//! The request context a policy is evaluated against: who asks, for what action on which
//! resource, and the condition keys that describe the request.
//!
//! The server builds one [`RequestContext`] per request. Building it does the per-request work
//! once (lower-casing the action, parsing each context value as a number, date, IP address and
//! boolean) so that evaluation itself allocates nothing.
//!
//! [`RequestContext::new`] fills the principal's global keys (`aws:username`, `aws:userid`,
//! `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`, `aws:PrincipalTag/<key>`,
//! `aws:PrincipalServiceName`); the caller adds what only it knows (`aws:SourceIp`,
//! `aws:CurrentTime`, `aws:SecureTransport`, ...), with the helpers or [`RequestContext::set`].
//!
//! ```
//! use hive_iam::policy::{Principal, RequestContext};
//!
//! let bob = Principal::user("123456789012", "bob", "AIDAEXAMPLEBOB000001");
//! let req = RequestContext::new(bob, "iam:CreateUser", "arn:aws:iam::123456789012:user/alice")
//!     .with_source_ip("203.0.113.7".parse().expect("literal address"))
//!     .with_secure_transport(true)
//!     .with_values("aws:TagKeys", ["team", "env"]);
//! assert_eq!(req.get("AWS:USERNAME").map(|v| v[0].as_str()), Some("bob"));
//! assert_eq!(req.get("aws:tagkeys").map(|v| v.len()), Some(2));
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

/// FNV-1a: a fast hasher for the short, trusted-size keys of the policy engine's tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A `HashMap` keyed with [`Fnv`].
pub(crate) type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// What kind of principal makes a request (the values of `aws:PrincipalType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalType {
    /// The account's root user (`Account`).
    Account,
    /// An IAM user (`User`).
    User,
    /// A role session from `sts:AssumeRole` (`AssumedRole`).
    AssumedRole,
    /// A federated user session (`FederatedUser`).
    FederatedUser,
    /// An AWS service acting on its own behalf (`Service`).
    Service,
    /// An unauthenticated caller (`Anonymous`).
    Anonymous,
}

impl PrincipalType {
    /// The value of `aws:PrincipalType` for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "Account",
            Self::User => "User",
            Self::AssumedRole => "AssumedRole",
            Self::FederatedUser => "FederatedUser",
            Self::Service => "Service",
            Self::Anonymous => "Anonymous",
        }
    }
}

/// The principal making a request, as far as policies can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's ARN (for a role session, the `assumed-role` session ARN).
    pub arn: String,
    /// The 12-digit account the principal belongs to (empty for services and anonymous).
    pub account: String,
    /// `aws:userid`: the unique id (for a role session, `<role id>:<session name>`).
    pub user_id: String,
    /// `aws:username`, for IAM users only.
    pub username: Option<String>,
    /// The kind of principal.
    pub principal_type: PrincipalType,
    /// The principal's tags (for a role session, the role's and the session's).
    pub tags: Vec<(String, String)>,
    /// For a role session, the role's ARN: it is `aws:PrincipalArn` and it is what a
    /// `Principal` element naming the role matches.
    pub role_arn: Option<String>,
    /// For a service principal, its name (`ec2.amazonaws.com`).
    pub service: Option<String>,
    /// For a federated session, the identity provider (`Federated` principal value).
    pub federated_provider: Option<String>,
}

impl Principal {
    /// An IAM user at path `/`.
    pub fn user(account: &str, name: &str, user_id: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            account: account.to_owned(),
            user_id: user_id.to_owned(),
            username: Some(name.to_owned()),
            principal_type: PrincipalType::User,
            tags: Vec::new(),
            role_arn: None,
            service: None,
            federated_provider: None,
        }
    }

    /// The account's root user.
    pub fn root(account: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:iam::{account}:root"),
            account: account.to_owned(),
            user_id: account.to_owned(),
            username: None,
            principal_type: PrincipalType::Account,
            tags: Vec::new(),
            role_arn: None,
            service: None,
            federated_provider: None,
        }
    }

    /// A session of the role `role_name` (path `/`) named `session`.
    pub fn assumed_role(account: &str, role_name: &str, role_id: &str, session: &str) -> Principal {
        Principal {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
            account: account.to_owned(),
            user_id: format!("{role_id}:{session}"),
            username: None,
            principal_type: PrincipalType::AssumedRole,
            tags: Vec::new(),
            role_arn: Some(format!("arn:aws:iam::{account}:role/{role_name}")),
            service: None,
            federated_provider: None,
        }
    }

    /// An AWS service principal such as `ec2.amazonaws.com`.
    pub fn service(name: &str) -> Principal {
        Principal {
            arn: name.to_owned(),
            account: String::new(),
            user_id: name.to_owned(),
            username: None,
            principal_type: PrincipalType::Service,
            tags: Vec::new(),
            role_arn: None,
            service: Some(name.to_owned()),
            federated_provider: None,
        }
    }

    /// An unauthenticated caller.
    pub fn anonymous() -> Principal {
        Principal {
            arn: "*".to_owned(),
            account: String::new(),
            user_id: "anonymous".to_owned(),
            username: None,
            principal_type: PrincipalType::Anonymous,
            tags: Vec::new(),
            role_arn: None,
            service: None,
            federated_provider: None,
        }
    }

    /// Adds a tag (builder style).
    pub fn with_tag(mut self, key: &str, value: &str) -> Principal {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// One value of a condition key, parsed once into every type an operator may compare it as.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextValue {
    text: Box<str>,
    pub(crate) number: Option<f64>,
    pub(crate) date: Option<i128>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) boolean: Option<bool>,
}

impl ContextValue {
    /// Parses a value given as text.
    pub fn new(text: &str) -> ContextValue {
        ContextValue {
            text: text.into(),
            number: parse_number(text),
            date: parse_date(text),
            ip: text.parse().ok(),
            boolean: parse_bool(text),
        }
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<&str> for ContextValue {
    fn from(s: &str) -> Self {
        ContextValue::new(s)
    }
}

impl From<String> for ContextValue {
    fn from(s: String) -> Self {
        ContextValue::new(&s)
    }
}

impl From<&String> for ContextValue {
    fn from(s: &String) -> Self {
        ContextValue::new(s)
    }
}

impl From<bool> for ContextValue {
    fn from(b: bool) -> Self {
        ContextValue::new(if b { "true" } else { "false" })
    }
}

impl From<i64> for ContextValue {
    fn from(n: i64) -> Self {
        ContextValue::new(&n.to_string())
    }
}

impl From<IpAddr> for ContextValue {
    fn from(ip: IpAddr) -> Self {
        ContextValue::new(&ip.to_string())
    }
}

impl From<OffsetDateTime> for ContextValue {
    fn from(t: OffsetDateTime) -> Self {
        let text = t
            .format(&Rfc3339)
            .unwrap_or_else(|_| t.unix_timestamp().to_string());
        ContextValue::new(&text)
    }
}

/// A decimal number as IAM's numeric operators accept it (no `inf`/`NaN`, no hex).
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A date as IAM's date operators accept it: ISO 8601 (with or without time and offset) or
/// epoch seconds; the result is nanoseconds since the Unix epoch.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i128 = s.parse().ok()?;
        return Some(secs * 1_000_000_000);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = time::PrimitiveDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.assume_utc().unix_timestamp_nanos());
    }
    if let Ok(d) = time::Date::parse(s, &Iso8601::DEFAULT) {
        return Some(d.midnight().assume_utc().unix_timestamp_nanos());
    }
    None
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Everything a policy can see about one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    principal: Principal,
    action: String,
    /// The action lower-cased, for case-insensitive matching without allocation.
    action_lower: String,
    resource: String,
    /// Condition keys, lower-cased, each with one or more values.
    keys: FnvMap<Box<str>, Vec<ContextValue>>,
}

impl RequestContext {
    /// A request by `principal` for `action` (`service:Name`) on `resource` (an ARN or `*`),
    /// with the principal's global condition keys filled in.
    pub fn new(principal: Principal, action: &str, resource: &str) -> RequestContext {
        let mut req = RequestContext {
            action: action.to_owned(),
            action_lower: action.to_ascii_lowercase(),
            resource: resource.to_owned(),
            keys: FnvMap::default(),
            principal,
        };
        let p = req.principal.clone();
        if let Some(name) = &p.username {
            req.set("aws:username", name.as_str());
        }
        req.set("aws:userid", p.user_id.as_str());
        if p.principal_type != PrincipalType::Anonymous
            && p.principal_type != PrincipalType::Service
        {
            req.set("aws:PrincipalArn", p.role_arn.as_deref().unwrap_or(&p.arn));
            req.set("aws:PrincipalAccount", p.account.as_str());
        }
        req.set("aws:PrincipalType", p.principal_type.as_str());
        if let Some(service) = &p.service {
            req.set("aws:PrincipalServiceName", service.as_str());
        }
        for (k, v) in &p.tags {
            req.set(&format!("aws:PrincipalTag/{k}"), v.as_str());
        }
        if !p.tags.is_empty() {
            req.keys.insert(
                "aws:principaltagkeys".into(),
                p.tags.iter().map(|(k, _)| ContextValue::new(k)).collect(),
            );
        }
        req
    }

    /// Sets a single-valued key (replacing any earlier value). Keys are case-insensitive.
    pub fn set(&mut self, key: &str, value: impl Into<ContextValue>) {
        self.keys
            .insert(key.to_ascii_lowercase().into(), vec![value.into()]);
    }

    /// Sets a multi-valued key such as `aws:TagKeys` (an empty set is kept as present-but-empty).
    pub fn set_values<V: Into<ContextValue>>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = V>,
    ) {
        self.keys.insert(
            key.to_ascii_lowercase().into(),
            values.into_iter().map(Into::into).collect(),
        );
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) {
        self.keys.remove(key.to_ascii_lowercase().as_str());
    }

    /// Builder form of [`RequestContext::set`].
    pub fn with(mut self, key: &str, value: impl Into<ContextValue>) -> RequestContext {
        self.set(key, value);
        self
    }

    /// Builder form of [`RequestContext::set_values`].
    pub fn with_values<V: Into<ContextValue>>(
        mut self,
        key: &str,
        values: impl IntoIterator<Item = V>,
    ) -> RequestContext {
        self.set_values(key, values);
        self
    }

    /// Sets `aws:CurrentTime` (RFC 3339) and `aws:EpochTime` (seconds).
    pub fn with_current_time(mut self, now: OffsetDateTime) -> RequestContext {
        self.set("aws:CurrentTime", now);
        self.set("aws:EpochTime", now.unix_timestamp());
        self
    }

    /// Sets `aws:SourceIp`.
    pub fn with_source_ip(self, ip: IpAddr) -> RequestContext {
        self.with("aws:SourceIp", ip)
    }

    /// Sets `aws:SecureTransport` (whether the request came over TLS).
    pub fn with_secure_transport(self, secure: bool) -> RequestContext {
        self.with("aws:SecureTransport", secure)
    }

    /// Sets `aws:RequestedRegion`.
    pub fn with_requested_region(self, region: &str) -> RequestContext {
        self.with("aws:RequestedRegion", region)
    }

    /// Sets `aws:MultiFactorAuthPresent` and, when known, `aws:MultiFactorAuthAge` (seconds).
    pub fn with_mfa(self, present: bool, age_seconds: Option<i64>) -> RequestContext {
        let req = self.with("aws:MultiFactorAuthPresent", present);
        match age_seconds {
            Some(age) => req.with("aws:MultiFactorAuthAge", age),
            None => req,
        }
    }

    /// The values of a key (case-insensitive), if present.
    pub fn get(&self, key: &str) -> Option<&[ContextValue]> {
        self.get_lower(&key.to_ascii_lowercase())
    }

    /// The values of an already lower-cased key; no allocation.
    pub(crate) fn get_lower(&self, key: &str) -> Option<&[ContextValue]> {
        self.keys.get(key).map(Vec::as_slice)
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The action as given.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The action, lower-cased.
    pub(crate) fn action_lower(&self) -> &str {
        &self.action_lower
    }

    /// The resource as given.
    pub fn resource(&self) -> &str {
        &self.resource
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_keys_are_filled() {
        let p = Principal::assumed_role("123456789012", "deploy", "AROAEXAMPLE", "s1")
            .with_tag("Team", "blue");
        let req = RequestContext::new(p, "S3:GetObject", "*");
        assert_eq!(req.action_lower(), "s3:getobject");
        let one = |k: &str| req.get(k).map(|v| v[0].as_str().to_owned());
        assert_eq!(
            one("aws:PrincipalArn").as_deref(),
            Some("arn:aws:iam::123456789012:role/deploy")
        );
        assert_eq!(one("aws:userid").as_deref(), Some("AROAEXAMPLE:s1"));
        assert_eq!(one("aws:principaltype").as_deref(), Some("AssumedRole"));
        assert_eq!(one("aws:PrincipalTag/team").as_deref(), Some("blue"));
        assert_eq!(one("aws:PrincipalAccount").as_deref(), Some("123456789012"));
        assert!(req.get("aws:username").is_none());
        let anon = RequestContext::new(Principal::anonymous(), "s3:GetObject", "*");
        assert!(anon.get("aws:PrincipalArn").is_none());
    }

    #[test]
    fn values_are_parsed_once() {
        let v = ContextValue::new("10.5");
        assert_eq!(v.number, Some(10.5));
        assert!(ContextValue::new("inf").number.is_none());
        assert!(ContextValue::new("NaN").number.is_none());
        assert_eq!(ContextValue::new("TRUE").boolean, Some(true));
        assert!(ContextValue::new("10.0.0.1").ip.is_some());
        assert!(ContextValue::new("::1").ip.is_some());
        let epoch = parse_date("2020-01-01T00:00:00Z").expect("rfc3339");
        assert_eq!(epoch, 1_577_836_800_000_000_000);
        assert_eq!(parse_date("2020-01-01"), Some(epoch));
        assert_eq!(parse_date("1577836800"), Some(epoch));
        assert_eq!(parse_date("2020-01-01T01:00:00+01:00"), Some(epoch));
        assert_eq!(parse_date("2020-01-01T00:00:00"), Some(epoch));
        assert!(parse_date("yesterday").is_none());
    }

    #[test]
    fn time_helper_sets_both_keys() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid timestamp");
        let req = RequestContext::new(Principal::root("123456789012"), "iam:ListUsers", "*")
            .with_current_time(now);
        assert_eq!(
            req.get("aws:EpochTime").map(|v| v[0].as_str()),
            Some("1700000000")
        );
        assert_eq!(
            req.get("aws:CurrentTime").and_then(|v| v[0].date),
            Some(1_700_000_000_000_000_000)
        );
    }
}
