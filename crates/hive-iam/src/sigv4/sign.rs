//! Signing of AWS Signature Version 4 requests (the `Authorization` header form): the client
//! side of [`crate::sigv4`], for Hive's own clients, test tools and load generators.
//!
//! The signer reuses the verifier's canonicalisation, so the two cannot drift apart; both are
//! checked against botocore (tests/sigv4_botocore.rs signs botocore's requests again and
//! compares the `Authorization` header byte for byte). It is pure: the caller passes the time.
//!
//! Every header of the request is signed except those botocore never signs (`authorization`,
//! `user-agent`, `expect`, `transfer-encoding`, `x-amzn-trace-id`); the signer adds
//! `X-Amz-Date` and, for temporary credentials, `X-Amz-Security-Token`, and returns them with
//! the `Authorization` value for the caller to put on the wire.

use std::sync::Mutex;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    ALGORITHM, AuthForm, CredentialScope, ParsedAuth, Payload, SignedRequest, canonical_request,
    derive_signing_key, format_amz_date, hmac, single_header,
};
use crate::seal::SecretString;

/// Headers botocore leaves out of the signature (they may be changed by proxies), plus the
/// signature itself and the headers the signer adds.
const UNSIGNED_HEADERS: [&str; 7] = [
    "authorization",
    "user-agent",
    "expect",
    "transfer-encoding",
    "x-amzn-trace-id",
    "x-amz-date",
    "x-amz-security-token",
];

/// Why a request cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The request has no `Host` header; SigV4 always signs it.
    #[error("the request has no Host header")]
    MissingHost,
    /// A header name is empty or not ASCII.
    #[error("header name {0:?} cannot be signed")]
    InvalidHeaderName(String),
}

/// Everything that identifies the signer and the scope of a signature.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// Access key id (`AKIA...` or `ASIA...`).
    pub access_key_id: &'a str,
    /// The key's secret.
    pub secret: &'a SecretString,
    /// Session token of temporary credentials.
    pub session_token: Option<&'a str>,
    /// Region of the credential scope, e.g. `us-east-1`.
    pub region: &'a str,
    /// Service of the credential scope, e.g. `iam`, `sts`, `ec2`.
    pub service: &'a str,
    /// Signing time; becomes `X-Amz-Date`.
    pub time: OffsetDateTime,
}

/// The headers a signed request must carry, besides those it was signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `X-Amz-Date` value, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// `X-Amz-Security-Token` value, for temporary credentials.
    pub security_token: Option<String>,
    /// `Authorization` value: `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
    pub authorization: String,
}

impl std::fmt::Debug for SignatureHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session token is a bearer secret; the signature is not.
        f.debug_struct("SignatureHeaders")
            .field("amz_date", &self.amz_date)
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("authorization", &self.authorization)
            .finish()
    }
}

impl SignatureHeaders {
    /// The headers as `(name, value)` pairs, in the order they should be added.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            Some(("X-Amz-Date", self.amz_date.as_str())),
            self.security_token
                .as_deref()
                .map(|t| ("X-Amz-Security-Token", t)),
            Some(("Authorization", self.authorization.as_str())),
        ]
        .into_iter()
        .flatten()
    }
}

/// Signs `req` (header form) with a signing key derived from the secret for this call.
///
/// `req.headers` must include `Host`; any `Authorization`, `X-Amz-Date` or
/// `X-Amz-Security-Token` already there is ignored (the returned values replace them). A
/// `X-Amz-Content-Sha256` header, when present, is signed as the payload hash (as botocore does
/// for S3 and `UNSIGNED-PAYLOAD`); otherwise the body is hashed.
pub fn sign(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
) -> Result<SignatureHeaders, SignError> {
    let scope = scope_of(params);
    let key = derive_signing_key(params.secret.expose(), &scope);
    sign_with_key(req, params, scope, &key)
}

/// A reusable signer for one set of credentials and one scope, caching the derived signing key
/// for the current day (so each request costs two SHA-256 and one HMAC, not five HMACs).
pub struct Signer {
    access_key_id: String,
    secret: SecretString,
    session_token: Option<SecretString>,
    region: String,
    service: String,
    /// The scope date and the key derived for it.
    key: Mutex<Option<(String, Zeroizing<[u8; 32]>)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for these credentials, region and service.
    pub fn new(
        access_key_id: impl Into<String>,
        secret: SecretString,
        session_token: Option<SecretString>,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret,
            session_token,
            region: region.into(),
            service: service.into(),
            key: Mutex::new(None),
        }
    }

    /// Signs `req` at `time`; see [`sign`] for what is signed.
    pub fn sign(
        &self,
        req: &SignedRequest<'_>,
        time: OffsetDateTime,
    ) -> Result<SignatureHeaders, SignError> {
        let params = SigningParams {
            access_key_id: &self.access_key_id,
            secret: &self.secret,
            session_token: self.session_token.as_ref().map(SecretString::expose),
            region: &self.region,
            service: &self.service,
            time,
        };
        let scope = scope_of(&params);
        let key = {
            // A poisoned lock only means a panic elsewhere mid-update; the slot is re-checked.
            let mut slot = self
                .key
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref() {
                Some((date, key)) if *date == scope.date => key.clone(),
                _ => {
                    let key = derive_signing_key(self.secret.expose(), &scope);
                    *slot = Some((scope.date.clone(), key.clone()));
                    key
                }
            }
        };
        sign_with_key(req, &params, scope, &key)
    }
}

fn scope_of(params: &SigningParams<'_>) -> CredentialScope {
    let date = format_amz_date(params.time);
    CredentialScope {
        date: date.get(..8).unwrap_or_default().to_owned(),
        region: params.region.to_owned(),
        service: params.service.to_owned(),
    }
}

fn sign_with_key(
    req: &SignedRequest<'_>,
    params: &SigningParams<'_>,
    scope: CredentialScope,
    key: &[u8; 32],
) -> Result<SignatureHeaders, SignError> {
    let amz_date = format_amz_date(params.time);
    let mut names: Vec<String> = Vec::with_capacity(req.headers.len() + 2);
    let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(req.headers.len() + 2);
    for &(name, value) in req.headers {
        let lower = name.trim().to_ascii_lowercase();
        if lower.is_empty() || !lower.is_ascii() || lower.contains([':', ';', ' ']) {
            return Err(SignError::InvalidHeaderName(name.to_owned()));
        }
        if UNSIGNED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        names.push(lower);
        headers.push((name, value));
    }
    if !names.iter().any(|n| n == "host") {
        return Err(SignError::MissingHost);
    }
    headers.push(("x-amz-date", amz_date.as_bytes()));
    names.push("x-amz-date".to_owned());
    if let Some(token) = params.session_token {
        headers.push(("x-amz-security-token", token.as_bytes()));
        names.push("x-amz-security-token".to_owned());
    }
    names.sort_unstable();
    names.dedup();

    let payload_hash = match single_header(&headers, "x-amz-content-sha256") {
        Some(declared) => declared.to_owned(),
        None => match req.payload {
            Payload::Bytes(body) => hex::encode(Sha256::digest(body)),
            Payload::Sha256Hex(h) => h.to_ascii_lowercase(),
        },
    };
    let req = SignedRequest {
        headers: &headers,
        ..*req
    };
    let auth = ParsedAuth {
        form: AuthForm::Header,
        access_key_id: params.access_key_id.to_owned(),
        scope,
        signed_headers: names,
        signature: [0; 32],
        amz_date: amz_date.clone(),
        request_time: params.time,
        expires: None,
        security_token: None,
    };
    let cr = canonical_request(&req, &auth, &payload_hash);
    let scope = &auth.scope;
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex::encode(Sha256::digest(&cr))
    );
    let signature = hex::encode(hmac(key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={signature}",
        params.access_key_id,
        scope.date,
        scope.region,
        scope.service,
        auth.signed_headers.join(";"),
    );
    Ok(SignatureHeaders {
        amz_date,
        security_token: params.session_token.map(str::to_owned),
        authorization,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv4::{Verifier, parse_authorization};
    use time::macros::datetime;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// Adds the signature headers to a request's headers.
    fn with_signature<'a>(
        headers: &[(&'a str, &'a [u8])],
        sig: &'a SignatureHeaders,
    ) -> Vec<(&'a str, &'a [u8])> {
        let mut all = headers.to_vec();
        all.extend(sig.iter().map(|(k, v)| (k, v.as_bytes())));
        all
    }

    #[test]
    fn aws_test_suite_get_vanilla() {
        // AWS's published `get-vanilla` vector: the signer must produce its signature.
        let headers: Vec<(&str, &[u8])> = vec![("Host", b"example.amazonaws.com")];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(b""),
        };
        let secret = SecretString::new(SECRET);
        let sig = sign(
            &req,
            &SigningParams {
                access_key_id: "AKIDEXAMPLE",
                secret: &secret,
                session_token: None,
                region: "us-east-1",
                service: "service",
                time: datetime!(2015-08-30 12:36:00 UTC),
            },
        )
        .expect("signs");
        assert_eq!(
            sig.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(sig.amz_date, "20150830T123600Z");
    }

    #[test]
    fn signed_requests_verify_and_tokens_are_redacted() {
        let signer = Signer::new(
            "ASIAEXAMPLE",
            SecretString::new(SECRET),
            Some(SecretString::new("tok/en+=")),
            "eu-west-3",
            "sts",
        );
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let headers: Vec<(&str, &[u8])> = vec![
            ("Host", b"127.0.0.1:9000"),
            ("Content-Type", b"application/x-www-form-urlencoded"),
            ("User-Agent", b"hive-load"),
            ("Authorization", b"stale"),
        ];
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(body),
        };
        let now = datetime!(2024-05-01 23:59:59 UTC);
        for t in [now, now + time::Duration::seconds(2)] {
            let sig = signer.sign(&req, t).expect("signs");
            assert!(
                sig.authorization
                    .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"),
                "{}",
                sig.authorization
            );
            assert!(!format!("{sig:?}").contains("tok/en"));
            assert!(!format!("{signer:?}").contains(SECRET));
            let mut all: Vec<(&str, &[u8])> = headers
                .iter()
                .copied()
                .filter(|(k, _)| *k != "Authorization")
                .collect();
            all = with_signature(&all, &sig);
            let signed = SignedRequest {
                headers: &all,
                ..req
            };
            let parsed = parse_authorization(&signed).expect("parses");
            assert_eq!(parsed.security_token.as_deref(), Some("tok/en+="));
            Verifier::new()
                .verify(&signed, &parsed, &SecretString::new(SECRET), t)
                .expect("the verifier accepts what the signer signs");
            // The same request under another secret does not verify.
            assert!(
                Verifier::new()
                    .verify(&signed, &parsed, &SecretString::new("other"), t)
                    .is_err()
            );
        }
    }

    #[test]
    fn cached_key_follows_the_day() {
        let signer = Signer::new("AKIA", SecretString::new(SECRET), None, "r", "s");
        let headers: Vec<(&str, &[u8])> = vec![("host", b"h")];
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(b""),
        };
        let secret = SecretString::new(SECRET);
        for t in [
            datetime!(2024-05-01 23:59:59 UTC),
            datetime!(2024-05-02 00:00:00 UTC),
        ] {
            let cached = signer.sign(&req, t).expect("signs");
            let fresh = sign(
                &req,
                &SigningParams {
                    access_key_id: "AKIA",
                    secret: &secret,
                    session_token: None,
                    region: "r",
                    service: "s",
                    time: t,
                },
            )
            .expect("signs");
            assert_eq!(cached, fresh);
        }
    }

    #[test]
    fn unsignable_requests_are_typed_errors() {
        let secret = SecretString::new(SECRET);
        let params = SigningParams {
            access_key_id: "AKIA",
            secret: &secret,
            session_token: None,
            region: "r",
            service: "s",
            time: datetime!(2024-05-01 00:00:00 UTC),
        };
        let no_host: Vec<(&str, &[u8])> = vec![("x-a", b"1")];
        let bad_name: Vec<(&str, &[u8])> = vec![("host", b"h"), ("a:b", b"1")];
        for (headers, err) in [
            (&no_host, SignError::MissingHost),
            (&bad_name, SignError::InvalidHeaderName("a:b".into())),
        ] {
            let req = SignedRequest {
                method: "GET",
                path: "/",
                query: "",
                headers,
                payload: Payload::Bytes(b""),
            };
            assert_eq!(sign(&req, &params), Err(err));
        }
    }
}
