//! Verification of AWS Signature Version 4 requests, in both forms: the `Authorization` header
//! and the presigned query string.
//!
//! The input is HTTP-library agnostic ([`SignedRequest`]: method, raw path, raw query, headers,
//! body or its hash) and the check is pure: the caller passes the time and the credentials.
//! Authentication happens in two steps so that the storage lookup (async, in the repository)
//! stays outside:
//!
//! 1. [`parse_authorization`] finds the access key id, credential scope and signature (never
//!    panics on hostile input);
//! 2. after looking up the key, [`Verifier::verify_credential`] (or [`Verifier::verify`] with a
//!    bare secret) checks key status, session token, clock skew (15 minutes) or presigned
//!    expiry, and the signature, which it compares in constant time.
//!
//! Canonicalisation follows AWS (and botocore, the reference the tests check against): the path
//! is normalised (dot segments and empty segments removed) and encoded again for every service
//! but S3; query parameters are decoded, re-encoded with RFC 3986's unreserved set and sorted by
//! key then value; header values are trimmed with inner runs of whitespace collapsed and
//! repeated headers joined with commas. Derived signing keys are cached per
//! (access key id, date, region, service) in a bounded cache.

pub mod sign;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::identity::{Credential, KeyStatus};
use crate::seal::SecretString;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash a client sends when it does not sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Allowed difference between the request time and the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);
/// Longest `X-Amz-Expires` of a presigned request (seven days).
pub const MAX_PRESIGNED_EXPIRES: i64 = 604_800;
/// Default capacity of the signing-key cache.
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 4096;

// Defined beside `IamError`, which wraps it, so that `error` depends on no other module.
pub use crate::error::SigV4Error;

/// The body of a request, or its hex SHA-256 when the caller has it already.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The body bytes.
    Bytes(&'a [u8]),
    /// Lower-case hex SHA-256 of the body, computed by the caller while streaming it.
    Sha256Hex(&'a str),
}

/// A request as received, independent of any HTTP library.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// Path as received on the wire (percent-encoded), without the query.
    pub path: &'a str,
    /// Query string as received, without the `?` (may be empty).
    pub query: &'a str,
    /// Headers in arrival order; repeated names appear repeatedly.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body or its hash.
    pub payload: Payload<'a>,
}

/// Which form carried the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthForm {
    /// `Authorization: AWS4-HMAC-SHA256 ...`.
    Header,
    /// `X-Amz-Algorithm=AWS4-HMAC-SHA256&...` in the query string.
    Presigned,
}

/// The credential scope: `<date>/<region>/<service>/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialScope {
    /// `YYYYMMDD`.
    pub date: String,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Service, e.g. `iam`, `sts`, `ec2`, `s3`.
    pub service: String,
}

/// What [`parse_authorization`] found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    /// Header or presigned.
    pub form: AuthForm,
    /// Access key id to look up.
    pub access_key_id: String,
    /// Credential scope.
    pub scope: CredentialScope,
    /// Signed header names, lower case, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature (decoded from hex).
    pub signature: [u8; 32],
    /// `X-Amz-Date` as given.
    pub amz_date: String,
    /// `X-Amz-Date` parsed.
    pub request_time: OffsetDateTime,
    /// `X-Amz-Expires` of presigned requests.
    pub expires: Option<i64>,
    /// `X-Amz-Security-Token`, when present.
    pub security_token: Option<String>,
}

/// A request that authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Access key id.
    pub access_key_id: String,
    /// Credential scope (the service tells IAM, STS and EC2 apart).
    pub scope: CredentialScope,
    /// Header or presigned.
    pub form: AuthForm,
    /// The body was not covered by the signature (`UNSIGNED-PAYLOAD`).
    pub unsigned_payload: bool,
}

fn incomplete(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::IncompleteSignature(msg.into())
}

fn query_error(msg: impl Into<String>) -> SigV4Error {
    SigV4Error::AuthorizationQueryParametersError(msg.into())
}

/// All values of a header (case-insensitive name), in order.
fn header_values<'a>(
    headers: &'a [(&'a str, &'a [u8])],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

fn single_header<'a>(headers: &'a [(&'a str, &'a [u8])], name: &'a str) -> Option<&'a str> {
    header_values(headers, name)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(4..6)?).ok()?).ok()?;
    let day = u8::try_from(digits(6..8)?).ok()?;
    let hour = u8::try_from(digits(9..11)?).ok()?;
    let minute = u8::try_from(digits(11..13)?).ok()?;
    let second = u8::try_from(digits(13..15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let t = time::Time::from_hms(hour, minute, second).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}

fn format_amz_date(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn decode_signature(hex_sig: &str) -> Option<[u8; 32]> {
    if hex_sig.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut out).ok()?;
    Some(out)
}

/// Splits `<key id>/<date>/<region>/<service>/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, CredentialScope), String> {
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next().unwrap_or_default();
    let service = parts.next().unwrap_or_default();
    let region = parts.next().unwrap_or_default();
    let date = parts.next().unwrap_or_default();
    let key_id = parts.next().unwrap_or_default();
    if key_id.is_empty() || date.is_empty() || region.is_empty() || service.is_empty() {
        return Err(format!(
            "Credential should be scoped to a valid region, not '{region}'. "
        ));
    }
    if terminator != "aws4_request" {
        return Err(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "Date must be in ISO-8601 'basic format'. Got '{date}'."
        ));
    }
    Ok((
        key_id.to_owned(),
        CredentialScope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        },
    ))
}

fn parse_signed_headers(list: &str) -> Option<Vec<String>> {
    let names: Vec<String> = list
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if names.iter().any(|n| n.is_empty()) {
        return None;
    }
    Some(names)
}

/// Finds and parses the signature of a request, in header or presigned form.
///
/// This does not check the signature; it tells the caller which access key to look up.
pub fn parse_authorization(req: &SignedRequest<'_>) -> Result<ParsedAuth, SigV4Error> {
    let auth_header = single_header(req.headers, "authorization");
    let presigned = query_pairs(req.query).any(|(k, _)| k == "X-Amz-Algorithm");
    match (auth_header, presigned) {
        (Some(_), true) => Err(SigV4Error::MultipleAuthMechanisms),
        (Some(h), false) => parse_header_form(req, h),
        (None, true) => parse_presigned_form(req),
        (None, false) => Err(SigV4Error::MissingAuthenticationToken),
    }
}

fn parse_header_form(req: &SignedRequest<'_>, header: &str) -> Result<ParsedAuth, SigV4Error> {
    let (algorithm, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'"
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for component in rest.split(',') {
        let component = component.trim();
        if component.is_empty() {
            continue;
        }
        let Some((name, value)) = component.split_once('=') else {
            return Err(incomplete(format!(
                "'{component}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
            )));
        };
        match name.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let mut missing = String::new();
    for (name, value) in [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ] {
        if value {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    let amz_date = single_header(req.headers, "x-amz-date");
    if amz_date.is_none() {
        missing.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(incomplete(format!(
            "{missing}Authorization={}",
            header.get(..64).unwrap_or(header)
        )));
    };
    let (access_key_id, scope) = parse_credential(credential).map_err(incomplete)?;
    let signed_headers = parse_signed_headers(signed_headers)
        .ok_or_else(|| incomplete("SignedHeaders contains an empty header name."))?;
    let signature = decode_signature(signature).ok_or(SigV4Error::SignatureDoesNotMatch)?;
    let request_time = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        ))
    })?;
    let security_token = single_header(req.headers, "x-amz-security-token").map(str::to_owned);
    finish_parse(ParsedAuth {
        form: AuthForm::Header,
        access_key_id,
        scope,
        signed_headers,
        signature,
        amz_date: amz_date.to_owned(),
        request_time,
        expires: None,
        security_token,
    })
}

fn parse_presigned_form(req: &SignedRequest<'_>) -> Result<ParsedAuth, SigV4Error> {
    let mut algorithm = None;
    let mut credential = None;
    let mut amz_date = None;
    let mut expires = None;
    let mut signed_headers = None;
    let mut signature = None;
    let mut security_token = None;
    for (k, v) in query_pairs(req.query) {
        let slot = match k {
            "X-Amz-Algorithm" => &mut algorithm,
            "X-Amz-Credential" => &mut credential,
            "X-Amz-Date" => &mut amz_date,
            "X-Amz-Expires" => &mut expires,
            "X-Amz-SignedHeaders" => &mut signed_headers,
            "X-Amz-Signature" => &mut signature,
            "X-Amz-Security-Token" => &mut security_token,
            _ => continue,
        };
        *slot = Some(percent_decode(v));
    }
    if algorithm.as_deref() != Some(ALGORITHM) {
        return Err(query_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let (Some(credential), Some(amz_date), Some(expires), Some(signed_headers), Some(signature)) =
        (credential, amz_date, expires, signed_headers, signature)
    else {
        return Err(query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    let (access_key_id, scope) = parse_credential(&credential).map_err(query_error)?;
    let expires: i64 = expires
        .parse()
        .ok()
        .filter(|e| (0..=MAX_PRESIGNED_EXPIRES).contains(e))
        .ok_or_else(|| {
            query_error(format!(
                "X-Amz-Expires must be a non-negative integer less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}"
            ))
        })?;
    let signed_headers = parse_signed_headers(&signed_headers)
        .ok_or_else(|| query_error("X-Amz-SignedHeaders contains an empty header name."))?;
    let signature = decode_signature(&signature).ok_or(SigV4Error::SignatureDoesNotMatch)?;
    let request_time = parse_amz_date(&amz_date).ok_or_else(|| {
        query_error(format!(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\". Got '{amz_date}'."
        ))
    })?;
    finish_parse(ParsedAuth {
        form: AuthForm::Presigned,
        access_key_id,
        scope,
        signed_headers,
        signature,
        amz_date,
        request_time,
        expires: Some(expires),
        security_token,
    })
}

fn finish_parse(auth: ParsedAuth) -> Result<ParsedAuth, SigV4Error> {
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if !auth.amz_date.starts_with(&auth.scope.date) {
        return Err(SigV4Error::SignatureDoesNotMatch);
    }
    Ok(auth)
}

/// Raw `key=value` pairs of a query string (still percent-encoded).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes a query component: `%XX` escapes, and `+` as a space (form encoding, which is how
/// botocore and the AWS CLI put parameters on the wire).
fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes` percent-encoded, leaving RFC 3986 unreserved characters (and `extra`) as is.
fn encode_into(out: &mut String, bytes: &[u8], extra: u8) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || b == extra {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER_HEX[usize::from(b >> 4)]));
            out.push(char::from(UPPER_HEX[usize::from(b & 15)]));
        }
    }
}

fn needs_encoding(bytes: &[u8]) -> bool {
    !bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The canonical query string: pairs decoded, re-encoded (RFC 3986), sorted by key then value.
/// `X-Amz-Signature` is left out when `presigned`.
pub fn canonical_query_string(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> = Vec::new();
    for (k, v) in query_pairs(query) {
        if presigned && k == "X-Amz-Signature" {
            continue;
        }
        pairs.push((canonical_component(k), canonical_component(v)));
    }
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 8);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// One query component in canonical form; borrowed when it is already canonical.
fn canonical_component(raw: &str) -> std::borrow::Cow<'_, str> {
    if !needs_encoding(raw.as_bytes()) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    encode_into(&mut out, &percent_decode_bytes(raw), 0);
    std::borrow::Cow::Owned(out)
}

/// RFC 3986 section 5.2.4, plus removal of empty segments, as AWS services expect.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical URI. For S3 the path is used as sent; for every other service it is
/// normalised and percent-encoded once more (so `%20` on the wire signs as `%2520`).
pub fn canonical_uri(path: &str, s3: bool) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    if s3 {
        return path.to_owned();
    }
    let normalized = remove_dot_segments(path);
    if normalized.is_empty() {
        return "/".to_owned();
    }
    if !normalized
        .bytes()
        .any(|b| b != b'/' && needs_encoding(&[b]))
    {
        return normalized;
    }
    let mut out = String::with_capacity(normalized.len() + 8);
    encode_into(&mut out, normalized.as_bytes(), b'/');
    out
}

/// Appends a header value trimmed, with inner runs of whitespace collapsed to one space.
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let mut first = true;
    for word in value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|w| !w.is_empty())
    {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// The canonical request of a parsed request, given its payload hash.
fn canonical_request(req: &SignedRequest<'_>, auth: &ParsedAuth, payload_hash: &str) -> Vec<u8> {
    let s3 = auth.scope.service == "s3";
    let mut cr: Vec<u8> = Vec::with_capacity(512);
    cr.extend_from_slice(req.method.trim().to_ascii_uppercase().as_bytes());
    cr.push(b'\n');
    cr.extend_from_slice(canonical_uri(req.path, s3).as_bytes());
    cr.push(b'\n');
    cr.extend_from_slice(
        canonical_query_string(req.query, auth.form == AuthForm::Presigned).as_bytes(),
    );
    cr.push(b'\n');
    for name in &auth.signed_headers {
        cr.extend_from_slice(name.as_bytes());
        cr.push(b':');
        for (i, value) in header_values(req.headers, name).enumerate() {
            if i > 0 {
                cr.push(b',');
            }
            push_trimmed(&mut cr, value);
        }
        cr.push(b'\n');
    }
    cr.push(b'\n');
    for (i, name) in auth.signed_headers.iter().enumerate() {
        if i > 0 {
            cr.push(b';');
        }
        cr.extend_from_slice(name.as_bytes());
    }
    cr.push(b'\n');
    cr.extend_from_slice(payload_hash.as_bytes());
    cr
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The SigV4 signing key for a secret and scope.
pub fn derive_signing_key(secret: &str, scope: &CredentialScope) -> Zeroizing<[u8; 32]> {
    let mut k_secret = Zeroizing::new(Vec::with_capacity(secret.len() + 4));
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = Zeroizing::new(hmac(&k_secret, scope.date.as_bytes()));
    let k_region = Zeroizing::new(hmac(k_date.as_slice(), scope.region.as_bytes()));
    let k_service = Zeroizing::new(hmac(k_region.as_slice(), scope.service.as_bytes()));
    Zeroizing::new(hmac(k_service.as_slice(), b"aws4_request"))
}

struct CachedKey {
    access_key_id: String,
    scope: CredentialScope,
    /// The secret the key was derived from: a changed secret never reuses a stale key.
    secret: Zeroizing<Vec<u8>>,
    key: Zeroizing<[u8; 32]>,
}

/// Verifies SigV4 signatures; holds the bounded cache of derived signing keys.
pub struct Verifier {
    cache: Mutex<HashMap<u64, CachedKey>>,
    capacity: usize,
    allow_unsigned_payload: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("capacity", &self.capacity)
            .field("allow_unsigned_payload", &self.allow_unsigned_payload)
            .finish_non_exhaustive()
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with the default cache capacity that accepts `UNSIGNED-PAYLOAD`.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_KEY_CACHE_CAPACITY)
    }

    /// A verifier whose key cache holds at most `capacity` keys (0 disables caching).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            capacity,
            allow_unsigned_payload: true,
        }
    }

    /// Whether requests whose body is not signed (`X-Amz-Content-Sha256: UNSIGNED-PAYLOAD`) are
    /// accepted; the outcome reports it either way.
    pub fn allow_unsigned_payload(mut self, allow: bool) -> Self {
        self.allow_unsigned_payload = allow;
        self
    }

    /// Verifies a request against stored credentials: the key must be active, temporary
    /// credentials unexpired and accompanied by their session token, then the signature and
    /// time are checked as in [`Verifier::verify`].
    pub fn verify_credential(
        &self,
        req: &SignedRequest<'_>,
        auth: &ParsedAuth,
        credential: &Credential,
        now: OffsetDateTime,
    ) -> Result<Verified, SigV4Error> {
        if credential.access_key_id != auth.access_key_id || credential.status != KeyStatus::Active
        {
            return Err(SigV4Error::InvalidClientTokenId);
        }
        if credential.expiration.is_some_and(|exp| now >= exp) {
            return Err(SigV4Error::ExpiredToken);
        }
        if !credential.check_session_token(auth.security_token.as_deref()) {
            return Err(SigV4Error::InvalidClientTokenId);
        }
        self.verify(req, auth, &credential.secret, now)
    }

    /// Verifies the signature of a parsed request with the key's secret, at time `now`.
    pub fn verify(
        &self,
        req: &SignedRequest<'_>,
        auth: &ParsedAuth,
        secret: &SecretString,
        now: OffsetDateTime,
    ) -> Result<Verified, SigV4Error> {
        check_time(auth, now)?;
        let (payload_hash, unsigned_payload) = self.payload_hash(req, auth)?;
        let cr = canonical_request(req, auth, &payload_hash);
        let mut sts = Vec::with_capacity(160);
        sts.extend_from_slice(ALGORITHM.as_bytes());
        sts.push(b'\n');
        sts.extend_from_slice(auth.amz_date.as_bytes());
        sts.push(b'\n');
        for part in [&auth.scope.date, &auth.scope.region, &auth.scope.service] {
            sts.extend_from_slice(part.as_bytes());
            sts.push(b'/');
        }
        sts.extend_from_slice(b"aws4_request\n");
        sts.extend_from_slice(hex::encode(Sha256::digest(&cr)).as_bytes());
        let key = self.signing_key(&auth.access_key_id, &auth.scope, secret);
        let expected = hmac(key.as_slice(), &sts);
        if bool::from(expected.ct_eq(&auth.signature)) {
            Ok(Verified {
                access_key_id: auth.access_key_id.clone(),
                scope: auth.scope.clone(),
                form: auth.form,
                unsigned_payload,
            })
        } else {
            Err(SigV4Error::SignatureDoesNotMatch)
        }
    }

    /// The payload hash that goes into the canonical request, and whether it is unsigned.
    fn payload_hash(
        &self,
        req: &SignedRequest<'_>,
        auth: &ParsedAuth,
    ) -> Result<(String, bool), SigV4Error> {
        let declared = single_header(req.headers, "x-amz-content-sha256");
        let body_hash = || match req.payload {
            Payload::Bytes(body) => hex::encode(Sha256::digest(body)),
            Payload::Sha256Hex(h) => h.to_ascii_lowercase(),
        };
        match declared {
            Some(UNSIGNED_PAYLOAD) => {
                if self.allow_unsigned_payload {
                    Ok((UNSIGNED_PAYLOAD.to_owned(), true))
                } else {
                    Err(incomplete(
                        "UNSIGNED-PAYLOAD is not accepted by this endpoint.",
                    ))
                }
            }
            Some(h) => {
                // A declared hash is signed, but the body must also match it.
                if !h.eq_ignore_ascii_case(&body_hash()) {
                    return Err(SigV4Error::ContentSha256Mismatch);
                }
                Ok((h.to_owned(), false))
            }
            None if auth.form == AuthForm::Presigned && auth.scope.service == "s3" => {
                Ok((UNSIGNED_PAYLOAD.to_owned(), true))
            }
            None => Ok((body_hash(), false)),
        }
    }

    fn signing_key(
        &self,
        access_key_id: &str,
        scope: &CredentialScope,
        secret: &SecretString,
    ) -> Zeroizing<[u8; 32]> {
        if self.capacity == 0 {
            return derive_signing_key(secret.expose(), scope);
        }
        let mut h = DefaultHasher::new();
        access_key_id.hash(&mut h);
        scope.hash(&mut h);
        let slot = h.finish();
        // A poisoned lock only means another thread panicked mid-update of a cache entry;
        // entries are self-checking (key id, scope, secret), so the map is still usable.
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache.get(&slot)
            && hit.access_key_id == access_key_id
            && &hit.scope == scope
            && bool::from(hit.secret.as_slice().ct_eq(secret.expose().as_bytes()))
        {
            return hit.key.clone();
        }
        let key = derive_signing_key(secret.expose(), scope);
        if cache.len() >= self.capacity
            && !cache.contains_key(&slot)
            && let Some(&evict) = cache.keys().next()
        {
            cache.remove(&evict);
        }
        cache.insert(
            slot,
            CachedKey {
                access_key_id: access_key_id.to_owned(),
                scope: scope.clone(),
                secret: Zeroizing::new(secret.expose().as_bytes().to_vec()),
                key: key.clone(),
            },
        );
        key
    }

    /// Number of cached signing keys.
    pub fn cached_keys(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

fn check_time(auth: &ParsedAuth, now: OffsetDateTime) -> Result<(), SigV4Error> {
    let t = auth.request_time;
    match auth.form {
        AuthForm::Header => {
            if t < now - MAX_CLOCK_SKEW {
                return Err(SigV4Error::RequestTimeTooSkewed {
                    kind: "expired",
                    relation: "earlier",
                    sign: "-",
                    request_time: auth.amz_date.clone(),
                    bound: format_amz_date(now - MAX_CLOCK_SKEW),
                    now: format_amz_date(now),
                });
            }
            if t > now + MAX_CLOCK_SKEW {
                return Err(SigV4Error::RequestTimeTooSkewed {
                    kind: "not yet current",
                    relation: "later",
                    sign: "+",
                    request_time: auth.amz_date.clone(),
                    bound: format_amz_date(now + MAX_CLOCK_SKEW),
                    now: format_amz_date(now),
                });
            }
        }
        AuthForm::Presigned => {
            if t > now + MAX_CLOCK_SKEW {
                return Err(SigV4Error::RequestTimeTooSkewed {
                    kind: "not yet current",
                    relation: "later",
                    sign: "+",
                    request_time: auth.amz_date.clone(),
                    bound: format_amz_date(now + MAX_CLOCK_SKEW),
                    now: format_amz_date(now),
                });
            }
            let expires = auth.expires.unwrap_or(0);
            if now > t + Duration::seconds(expires) {
                return Err(SigV4Error::RequestExpired);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VANILLA_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn vanilla_headers(auth: &str) -> Vec<(&str, &[u8])> {
        vec![
            ("Host", b"example.amazonaws.com".as_slice()),
            ("X-Amz-Date", b"20150830T123600Z".as_slice()),
            ("Authorization", auth.as_bytes()),
        ]
    }

    fn vanilla_check(auth: &str) -> Result<Verified, SigV4Error> {
        let headers = vanilla_headers(auth);
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(b""),
        };
        let parsed = parse_authorization(&req)?;
        let now = parse_amz_date("20150830T123600Z").expect("valid");
        Verifier::new().verify(
            &req,
            &parsed,
            &SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            now,
        )
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        let v = vanilla_check(VANILLA_AUTH).expect("AWS's published vector verifies");
        assert_eq!(v.access_key_id, "AKIDEXAMPLE");
        assert_eq!(v.scope.service, "service");
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        let cases = [
            (
                "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=00",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, Signature=00",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/other, SignedHeaders=host, Signature=00",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/2015/r/s/aws4_request, SignedHeaders=host, Signature=00",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "IncompleteSignature",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=zz",
                "SignatureDoesNotMatch",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=a/20150831/r/s/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                "SignatureDoesNotMatch",
            ),
            ("AWS4-HMAC-SHA256 garbage", "IncompleteSignature"),
        ];
        for (auth, code) in cases {
            let err = vanilla_check(auth).expect_err(auth);
            assert_eq!(err.code(), code, "{auth}: {err}");
        }
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &[],
            payload: Payload::Bytes(b""),
        };
        assert_eq!(
            parse_authorization(&req),
            Err(SigV4Error::MissingAuthenticationToken)
        );
        let headers = vanilla_headers(VANILLA_AUTH);
        let both = SignedRequest {
            query: "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            headers: &headers,
            ..req
        };
        assert_eq!(
            parse_authorization(&both),
            Err(SigV4Error::MultipleAuthMechanisms)
        );
        let presigned = SignedRequest {
            query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20150830%2Fr%2Fs%2Faws4_request",
            ..req
        };
        assert_eq!(
            parse_authorization(&presigned).map_err(|e| e.code()),
            Err("AuthorizationQueryParametersError")
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri("", false), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/", false), "/a/c/d/");
        assert_eq!(canonical_uri("/a%20b", false), "/a%2520b");
        assert_eq!(canonical_uri("/a%20b", true), "/a%20b");
        assert_eq!(canonical_uri("/../..", false), "/");
        assert_eq!(
            canonical_query_string("b=2&a=1&a=0&c&sp=a+b&t=%7e", false),
            "a=0&a=1&b=2&c=&sp=a%20b&t=~"
        );
        assert_eq!(
            canonical_query_string("X-Amz-Signature=abc&x=1", true),
            "x=1"
        );
        let mut v = Vec::new();
        push_trimmed(&mut v, b"  a   b \t c\n d  ");
        assert_eq!(v, b"a b c d");
        assert_eq!(
            parse_amz_date("20150830T123600Z").map(|t| t.hour()),
            Some(12)
        );
        for bad in [
            "",
            "20150830T123600",
            "2015083aT123600Z",
            "20151330T123600Z",
            "20150830T256000Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn signing_key_cache_is_bounded_and_secret_checked() {
        let verifier = Verifier::with_capacity(2);
        let scope = |d: &str| CredentialScope {
            date: d.into(),
            region: "r".into(),
            service: "s".into(),
        };
        let s1 = SecretString::new("one");
        let s2 = SecretString::new("two");
        let a = verifier.signing_key("AKIA1", &scope("20240101"), &s1);
        // A different secret under the same id and scope never reuses the cached key.
        let b = verifier.signing_key("AKIA1", &scope("20240101"), &s2);
        assert_ne!(a.as_slice(), b.as_slice());
        assert_eq!(
            b.as_slice(),
            derive_signing_key("two", &scope("20240101")).as_slice()
        );
        for d in ["20240102", "20240103", "20240104"] {
            verifier.signing_key("AKIA1", &scope(d), &s1);
        }
        assert!(verifier.cached_keys() <= 2);
    }

    #[test]
    fn unsigned_payload_can_be_refused() {
        let verifier = Verifier::new().allow_unsigned_payload(false);
        let headers: Vec<(&str, &[u8])> = vec![("x-amz-content-sha256", b"UNSIGNED-PAYLOAD")];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(b""),
        };
        let auth = ParsedAuth {
            form: AuthForm::Header,
            access_key_id: "AKIA".into(),
            scope: CredentialScope {
                date: "20150830".into(),
                region: "r".into(),
                service: "s".into(),
            },
            signed_headers: vec!["host".into()],
            signature: [0; 32],
            amz_date: "20150830T123600Z".into(),
            request_time: parse_amz_date("20150830T123600Z").expect("valid"),
            expires: None,
            security_token: None,
        };
        let err = verifier
            .verify(&req, &auth, &SecretString::new("x"), auth.request_time)
            .expect_err("refused");
        assert_eq!(err.code(), "IncompleteSignature");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        #[test]
        fn hostile_input_never_panics(
            auth in "\\PC{0,200}",
            query in "[A-Za-z0-9%&=+._~*-]{0,80}",
            path in "[/A-Za-z0-9%.~ ]{0,40}",
        ) {
            let _ = canonical_uri(&path, false);
            let _ = canonical_query_string(&query, true);
            let headers: Vec<(&str, &[u8])> = vec![
                ("Authorization", auth.as_bytes()),
                ("Host", b"h"),
                ("X-Amz-Date", b"20150830T123600Z"),
            ];
            let req = SignedRequest {
                method: "GET",
                path: &path,
                query: &query,
                headers: &headers,
                payload: Payload::Bytes(b""),
            };
            if let Ok(parsed) = parse_authorization(&req) {
                let r = Verifier::new().verify(&req, &parsed, &SecretString::new("k"), parsed.request_time);
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn canonical_query_is_idempotent(query in "[A-Za-z0-9%&=+._~ -]{0,60}") {
            let once = canonical_query_string(&query, false);
            prop_assert_eq!(canonical_query_string(&once, false), once.clone());
        }
    }
}
