//! Decoding of form-encoded query-protocol parameters (`Action=CreateUser&UserName=bob&...`),
//! from a POST body or a GET query string, into [`Params`] with typed accessors.
//!
//! AWS flattens structures and lists into dotted names; the accessors read them back:
//!
//! | form | example | accessor |
//! |---|---|---|
//! | scalar | `UserName=bob` | [`Params::required`], [`Params::optional`], [`Params::int`], [`Params::bool`] |
//! | EC2 list | `GroupId.1=sg-1&GroupId.2=sg-2` | [`Params::list`] |
//! | query list | `PolicyArns.member.1=arn:...` | [`Params::members`] |
//! | EC2 structures | `Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1` | [`Params::structs`] |
//! | query structures | `Tags.member.1.Key=k&Tags.member.1.Value=v` | [`Params::member_structs`] |
//!
//! Errors follow the protocol ([`Dialect`]): the query protocol answers `ValidationError`, EC2
//! answers `MissingParameter` / `InvalidParameterValue`; undecodable encoding is
//! `MalformedQueryString`. Decoding never panics, whatever the bytes.

use std::collections::BTreeMap;

use crate::error::{ApiError, truncate};

/// Which protocol's error codes the accessors produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// IAM and STS: `ValidationError` for missing or invalid parameters.
    #[default]
    Query,
    /// EC2: `MissingParameter` and `InvalidParameterValue`.
    Ec2,
}

/// Most values echoed back in an error message, so a huge parameter stays out of the reply.
const ECHO_LIMIT: usize = 64;
/// Highest list index accepted: far beyond any AWS limit, small enough to stay cheap.
const MAX_INDEX: u32 = 100_000;

/// The decoded parameters of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
    dialect: Dialect,
    /// Name prefix of a nested structure (`Filter.1.`), for error messages.
    path: String,
}

impl Params {
    /// Decode one `application/x-www-form-urlencoded` string (a body or a query string).
    ///
    /// `+` is a space, `%XX` a byte; the decoded bytes must be UTF-8. Empty segments
    /// (`a=1&&b=2`) are skipped; a segment without `=` is a parameter with an empty value. A
    /// bad escape, invalid UTF-8, an empty name or a repeated name is `MalformedQueryString`.
    pub fn parse(input: &[u8]) -> Result<Self, ApiError> {
        let mut params = Self::default();
        params.extend_from(input)?;
        Ok(params)
    }

    /// Decode more form-encoded parameters into this set (e.g. the query string of a POST
    /// after its body); a name present in both is `MalformedQueryString`.
    pub fn extend_from(&mut self, input: &[u8]) -> Result<(), ApiError> {
        for segment in input.split(|b| *b == b'&') {
            if segment.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = match segment.iter().position(|b| *b == b'=') {
                Some(at) => (&segment[..at], &segment[at + 1..]),
                None => (segment, &b""[..]),
            };
            let name = decode_component(raw_name)?;
            if name.is_empty() {
                return Err(ApiError::malformed_query_string(
                    "a parameter has an empty name",
                ));
            }
            let value = decode_component(raw_value)?;
            if self.map.contains_key(&name) {
                return Err(ApiError::malformed_query_string(format_args!(
                    "parameter {} is given more than once",
                    truncate(&name, ECHO_LIMIT)
                )));
            }
            self.map.insert(name, value);
        }
        Ok(())
    }

    /// Parameters from name/value pairs (tests and internal callers).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Self::default()
        }
    }

    /// These parameters, producing `dialect`'s error codes.
    pub fn with_dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Set the dialect of the error codes.
    pub fn set_dialect(&mut self, dialect: Dialect) {
        self.dialect = dialect;
    }

    /// The dialect of the error codes.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The `Action` parameter.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// The `Version` parameter.
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every parameter, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The raw value of `name`, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// The value of `name`, if present and non-empty.
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The value of `name`; absent or empty is the protocol's missing-parameter error.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name).ok_or_else(|| self.missing(name))
    }

    /// An optional integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.optional(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| self.invalid(name, v, "Member must be an integer"))
            })
            .transpose()
    }

    /// An optional integer that must lie within `min..=max` (AWS's `MaxItems`, `DurationSeconds`).
    pub fn int_in(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.int(name)? {
            Some(n) if n < min || n > max => Err(self.invalid(
                name,
                &n.to_string(),
                &format!("Member must have value between {min} and {max}"),
            )),
            other => Ok(other),
        }
    }

    /// An optional boolean (`true` or `false`, case-insensitive, as botocore sends them).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.optional(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(self.invalid(name, v, "Member must be true or false")),
        }
    }

    /// An EC2-style list `name.1`, `name.2`, ... in index order.
    pub fn list(&self, name: &str) -> Result<Vec<&str>, ApiError> {
        let prefix = format!("{name}.");
        let mut items = Vec::new();
        for (key, value) in self.map.range(prefix.clone()..) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            if rest.contains('.') {
                continue; // a structure member (`name.1.x`), not a scalar list item
            }
            items.push((self.index(name, rest)?, value.as_str()));
        }
        items.sort_by_key(|(i, _)| *i);
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    /// A query-style list `name.member.1`, `name.member.2`, ... in index order.
    pub fn members(&self, name: &str) -> Result<Vec<&str>, ApiError> {
        self.list(&format!("{name}.member"))
    }

    /// EC2-style structures `name.N.field...`, each as its own `Params` of the fields, in
    /// index order (`Filter.1.Name`, `Filter.1.Value.1` gives one `Params` with `Name` and
    /// `Value.1`).
    pub fn structs(&self, name: &str) -> Result<Vec<Params>, ApiError> {
        let prefix = format!("{name}.");
        let mut groups: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        for (key, value) in self.map.range(prefix.clone()..) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            let Some((index, field)) = rest.split_once('.') else {
                continue; // a scalar list item (`name.1`), not a structure
            };
            let index = self.index(name, index)?;
            groups
                .entry(index)
                .or_default()
                .insert(field.to_owned(), value.clone());
        }
        Ok(groups
            .into_iter()
            .map(|(index, map)| Params {
                map,
                dialect: self.dialect,
                path: format!("{}{name}.{index}.", self.path),
            })
            .collect())
    }

    /// Query-style structures `name.member.N.field...` (`Tags.member.1.Key`).
    pub fn member_structs(&self, name: &str) -> Result<Vec<Params>, ApiError> {
        self.structs(&format!("{name}.member"))
    }

    /// A single nested structure `name.field...` (`PermissionsBoundary.Arn`), if any field is
    /// present.
    pub fn structure(&self, name: &str) -> Option<Params> {
        let prefix = format!("{name}.");
        let map: BTreeMap<String, String> = self
            .map
            .range(prefix.clone()..)
            .map_while(|(k, v)| k.strip_prefix(&prefix).map(|f| (f.to_owned(), v.clone())))
            .collect();
        (!map.is_empty()).then(|| Params {
            map,
            dialect: self.dialect,
            path: format!("{}{prefix}", self.path),
        })
    }

    /// The protocol's error for a missing parameter `name`.
    pub fn missing(&self, name: &str) -> ApiError {
        let full = format!("{}{name}", self.path);
        match self.dialect {
            Dialect::Query => ApiError::new(
                "ValidationError",
                format!(
                    "1 validation error detected: Value null at '{full}' failed to satisfy \
                     constraint: Member must not be null"
                ),
                400,
            ),
            Dialect::Ec2 => ApiError::new(
                "MissingParameter",
                format!("The request must contain the parameter {full}"),
                400,
            ),
        }
    }

    /// The protocol's error for an unacceptable `value` of parameter `name`.
    pub fn invalid(&self, name: &str, value: &str, reason: &str) -> ApiError {
        let full = format!("{}{name}", self.path);
        let value = truncate(value, ECHO_LIMIT);
        match self.dialect {
            Dialect::Query => ApiError::new(
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{value}' at '{full}' failed to satisfy \
                     constraint: {reason}"
                ),
                400,
            ),
            Dialect::Ec2 => ApiError::new(
                "InvalidParameterValue",
                format!("Value ({value}) for parameter {full} is invalid. {reason}"),
                400,
            ),
        }
    }

    /// A list index: a positive decimal number without leading zeros (so that `1` and `01`
    /// cannot both name the first item).
    fn index(&self, name: &str, text: &str) -> Result<u32, ApiError> {
        let valid = !text.is_empty()
            && !text.starts_with('0')
            && text.len() <= 6
            && text.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<u32>() {
            Ok(n) if valid && n <= MAX_INDEX => Ok(n),
            _ => Err(self.invalid(
                &format!("{name}.{}", truncate(text, ECHO_LIMIT)),
                text,
                "List index must be a positive integer",
            )),
        }
    }
}

/// Percent-decode one form component (`+` is a space).
fn decode_component(raw: &[u8]) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = raw.get(i + 1).and_then(|b| hex_value(*b));
                let lo = raw.get(i + 2).and_then(|b| hex_value(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(ApiError::malformed_query_string(
                            "'%' must be followed by two hexadecimal digits",
                        ));
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| ApiError::malformed_query_string("a parameter is not valid UTF-8"))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Form-encode parameters (the inverse of [`Params::parse`]); used by tests and clients.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode_component(&mut out, k);
        out.push('=');
        encode_component(&mut out, v);
    }
    out
}

fn encode_component(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Params {
        Params::parse(s.as_bytes()).expect("valid test input")
    }

    #[test]
    fn decodes_scalars_plus_and_percent() {
        let params = p("Action=CreateUser&UserName=bob%2Bjr&Path=%2Fdev+ops%2F&Flag&&");
        assert_eq!(params.action(), Some("CreateUser"));
        assert_eq!(params.get("UserName"), Some("bob+jr"));
        assert_eq!(params.get("Path"), Some("/dev ops/"));
        assert_eq!(params.get("Flag"), Some(""));
        assert_eq!(params.optional("Flag"), None);
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn malformed_encoding_is_malformed_query_string() {
        for bad in ["a=%zz", "a=%4", "a=%", "=v", "a=%FF%FE", "a=1&a=2"] {
            let e = Params::parse(bad.as_bytes()).expect_err(bad);
            assert_eq!(e.code(), "MalformedQueryString", "{bad}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn required_missing_and_invalid_follow_the_dialect() {
        let params = p("Name=&MaxItems=abc&On=maybe");
        let e = params.required("UserName").expect_err("missing");
        assert_eq!(e.code(), "ValidationError");
        assert!(e.message().contains("'UserName'"));
        assert_eq!(
            params.required("Name").expect_err("empty").code(),
            "ValidationError"
        );
        assert_eq!(
            params.int("MaxItems").expect_err("nan").code(),
            "ValidationError"
        );
        assert_eq!(
            params.bool("On").expect_err("not bool").code(),
            "ValidationError"
        );

        let params = params.with_dialect(Dialect::Ec2);
        let e = params.required("VpcId").expect_err("missing");
        assert_eq!(e.code(), "MissingParameter");
        assert_eq!(e.message(), "The request must contain the parameter VpcId");
        let e = params.int("MaxItems").expect_err("nan");
        assert_eq!(e.code(), "InvalidParameterValue");
        assert!(
            e.message()
                .starts_with("Value (abc) for parameter MaxItems is invalid.")
        );
    }

    #[test]
    fn typed_scalars() {
        let params = p("MaxItems=50&DurationSeconds=900000&DryRun=TRUE&Enabled=false");
        assert_eq!(params.int("MaxItems").expect("int"), Some(50));
        assert_eq!(params.int("Missing").expect("absent"), None);
        assert_eq!(
            params.int_in("MaxItems", 1, 1000).expect("in range"),
            Some(50)
        );
        let e = params
            .int_in("DurationSeconds", 900, 43200)
            .expect_err("too big");
        assert!(e.message().contains("between 900 and 43200"));
        assert_eq!(params.bool("DryRun").expect("bool"), Some(true));
        assert_eq!(params.bool("Enabled").expect("bool"), Some(false));
    }

    #[test]
    fn ec2_lists_and_filters_in_index_order() {
        let params = p("GroupId.2=sg-2&GroupId.10=sg-10&GroupId.1=sg-1\
             &Filter.2.Name=tag%3AEnv&Filter.2.Value.1=prod\
             &Filter.1.Name=vpc-id&Filter.1.Value.2=vpc-b&Filter.1.Value.1=vpc-a")
        .with_dialect(Dialect::Ec2);
        assert_eq!(
            params.list("GroupId").expect("list"),
            ["sg-1", "sg-2", "sg-10"]
        );
        let filters = params.structs("Filter").expect("filters");
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0].required("Name").expect("name"), "vpc-id");
        assert_eq!(
            filters[0].list("Value").expect("values"),
            ["vpc-a", "vpc-b"]
        );
        assert_eq!(filters[1].required("Name").expect("name"), "tag:Env");
        let e = filters[1].required("Nope").expect_err("missing");
        assert_eq!(
            e.message(),
            "The request must contain the parameter Filter.2.Nope"
        );
    }

    #[test]
    fn ip_permissions_nest_two_levels() {
        let params = p("IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22\
             &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8\
             &IpPermissions.1.IpRanges.2.CidrIp=192.168.0.0%2F16\
             &IpPermissions.1.IpRanges.2.Description=office");
        let perms = params.structs("IpPermissions").expect("perms");
        assert_eq!(perms.len(), 1);
        assert_eq!(perms[0].int("FromPort").expect("port"), Some(22));
        let ranges = perms[0].structs("IpRanges").expect("ranges");
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].required("CidrIp").expect("cidr"), "10.0.0.0/8");
        assert_eq!(ranges[1].optional("Description"), Some("office"));
        let e = ranges[0].required("Description").expect_err("missing");
        assert!(
            e.message()
                .contains("IpPermissions.1.IpRanges.1.Description")
        );
    }

    #[test]
    fn query_member_lists_and_structures() {
        let params = p("Tags.member.1.Key=team&Tags.member.1.Value=net\
             &Tags.member.2.Key=env&Tags.member.2.Value=prod\
             &PolicyArns.member.1=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FX\
             &PermissionsBoundary.Arn=arn%3Ab");
        let tags = params.member_structs("Tags").expect("tags");
        let kv: Vec<(&str, &str)> = tags
            .iter()
            .map(|t| (t.get("Key").unwrap_or(""), t.get("Value").unwrap_or("")))
            .collect();
        assert_eq!(kv, [("team", "net"), ("env", "prod")]);
        assert_eq!(
            params.members("PolicyArns").expect("arns"),
            ["arn:aws:iam::aws:policy/X"]
        );
        let boundary = params.structure("PermissionsBoundary").expect("present");
        assert_eq!(boundary.get("Arn"), Some("arn:b"));
        assert!(params.structure("Nothing").is_none());
        assert!(params.members("Absent").expect("empty").is_empty());
    }

    #[test]
    fn bad_indices_are_rejected() {
        for bad in [
            "Name.0=x",
            "Name.01=x",
            "Name.x=x",
            "Name.9999999=x",
            "Name.-1=x",
        ] {
            let params = p(bad).with_dialect(Dialect::Ec2);
            let e = params.list("Name").expect_err(bad);
            assert_eq!(e.code(), "InvalidParameterValue", "{bad}");
        }
        let params = p("Filter.a.Name=x");
        assert_eq!(
            params.structs("Filter").expect_err("bad").code(),
            "ValidationError"
        );
    }

    #[test]
    fn extend_merges_and_rejects_duplicates() {
        let mut params = p("Action=GetUser");
        params.extend_from(b"Version=2010-05-08").expect("merge");
        assert_eq!(params.version(), Some("2010-05-08"));
        assert!(params.extend_from(b"Action=Other").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn never_panics_on_random_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(params) = Params::parse(&input) {
                let params = params.with_dialect(Dialect::Ec2);
                let _ = params.list("a");
                let _ = params.structs("a");
                let _ = params.int("a");
                let _ = params.bool("a");
            }
        }

        #[test]
        fn never_panics_on_form_like_text(input in "[a-zA-Z0-9.=&%+]{0,64}") {
            if let Ok(params) = Params::parse(input.as_bytes()) {
                for (k, _) in params.iter() {
                    let _ = params.list(k);
                    let _ = params.structs(k);
                    let _ = params.members(k);
                }
            }
        }

        #[test]
        fn encode_then_parse_round_trips(
            map in proptest::collection::btree_map("[^\u{0}]{1,12}", ".{0,12}", 0..8)
        ) {
            let encoded = encode(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let parsed = Params::parse(encoded.as_bytes()).expect("our own encoding parses");
            let back: BTreeMap<String, String> =
                parsed.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(back, map);
        }
    }
}
