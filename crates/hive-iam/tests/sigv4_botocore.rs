//! SigV4 verification proven against botocore: requests signed by botocore's `SigV4Auth`,
//! `SigV4QueryAuth` and their S3 variants (an implementation we did not write) must verify,
//! and every kind of tampering must not.
//!
//! Needs a Python with botocore: `$HIVE_PYTHON`, else `<workspace>/.venv/bin/python`.

use hive_iam::identity::{Credential, KeyStatus, Principal, session_token_digest};
use hive_iam::seal::SecretString;
use hive_iam::sigv4::{
    AuthForm, Payload, SigV4Error, SignedRequest, Verifier, parse_authorization,
};
use time::macros::datetime;

mod botocore;

use botocore::{Case, botocore_cases};

const NOW: time::OffsetDateTime = datetime!(2024-05-01 12:00:30 UTC);

struct Owned {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Owned {
    fn of(c: &Case) -> Self {
        Self {
            method: c.method.clone(),
            path: c.path.clone(),
            query: c.query.clone(),
            headers: c
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
            body: hex::decode(&c.body_hex).expect("hex body"),
        }
    }

    fn check(
        &self,
        verifier: &Verifier,
        c: &Case,
        secret: &str,
        now: time::OffsetDateTime,
    ) -> Result<hive_iam::sigv4::Verified, SigV4Error> {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let req = SignedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            payload: Payload::Bytes(&self.body),
        };
        let auth = parse_authorization(&req)?;
        let cred = Credential {
            access_key_id: c.access_key_id.clone(),
            secret: SecretString::new(secret),
            principal: Principal::Root {
                account_id: "000000000000".into(),
            },
            status: KeyStatus::Active,
            expiration: None,
            session_token_sha256: c.token.as_deref().map(session_token_digest),
            session_policy: None,
            needs_reseal: false,
        };
        verifier.verify_credential(&req, &auth, &cred, now)
    }
}

#[test]
fn botocore_signed_requests_verify() {
    let verifier = Verifier::new();
    for c in botocore_cases() {
        let req = Owned::of(&c);
        let v = req
            .check(&verifier, &c, &c.secret, NOW)
            .unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
        assert_eq!(v.scope.service, c.service, "{}", c.name);
        assert_eq!(v.scope.region, c.region, "{}", c.name);
        assert_eq!(v.access_key_id, c.access_key_id);
        let expected_form = if c.presigned {
            AuthForm::Presigned
        } else {
            AuthForm::Header
        };
        assert_eq!(v.form, expected_form, "{}", c.name);
        // A second time hits the signing-key cache and still verifies.
        req.check(&verifier, &c, &c.secret, NOW)
            .unwrap_or_else(|e| panic!("{} (cached key): {e:?}", c.name));
    }
    assert!(verifier.cached_keys() > 0);
}

#[test]
fn tampering_is_detected() {
    let verifier = Verifier::new();
    for c in botocore_cases() {
        let base = Owned::of(&c);
        let name = &c.name;

        // Wrong secret.
        assert_eq!(
            base.check(
                &verifier,
                &c,
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ",
                NOW
            ),
            Err(SigV4Error::SignatureDoesNotMatch),
            "{name}: wrong secret"
        );

        // Body: detected unless the client chose not to sign it.
        let mut t = Owned::of(&c);
        t.body.push(b'x');
        let unsigned = c.name == "unsigned-payload" || c.name == "presigned-s3";
        let r = t.check(&verifier, &c, &c.secret, NOW);
        if unsigned {
            assert!(r.expect("unsigned body").unsigned_payload, "{name}");
        } else {
            assert!(
                matches!(
                    r,
                    Err(SigV4Error::SignatureDoesNotMatch | SigV4Error::ContentSha256Mismatch)
                ),
                "{name}: body tamper gave {r:?}"
            );
        }

        // Path.
        let mut t = Owned::of(&c);
        t.path.push('x');
        assert_eq!(
            t.check(&verifier, &c, &c.secret, NOW),
            Err(SigV4Error::SignatureDoesNotMatch),
            "{name}: path"
        );

        // A signed header (host is signed in every form).
        let mut t = Owned::of(&c);
        for (k, v) in &mut t.headers {
            if k.eq_ignore_ascii_case("host") {
                v.extend_from_slice(b"1");
            }
        }
        assert_eq!(
            t.check(&verifier, &c, &c.secret, NOW),
            Err(SigV4Error::SignatureDoesNotMatch),
            "{name}: host header"
        );

        // Query.
        let mut t = Owned::of(&c);
        t.query = if t.query.is_empty() {
            "extra=1".into()
        } else {
            format!("{}&extra=1", t.query)
        };
        assert_eq!(
            t.check(&verifier, &c, &c.secret, NOW),
            Err(SigV4Error::SignatureDoesNotMatch),
            "{name}: query"
        );

        // Date: one second later, same scope day.
        let mut t = Owned::of(&c);
        if c.presigned {
            t.query = t
                .query
                .replace("X-Amz-Date=20240501T120000Z", "X-Amz-Date=20240501T120001Z");
        } else {
            for (k, v) in &mut t.headers {
                if k.eq_ignore_ascii_case("x-amz-date") {
                    *v = b"20240501T120001Z".to_vec();
                }
            }
        }
        assert_eq!(
            t.check(&verifier, &c, &c.secret, NOW),
            Err(SigV4Error::SignatureDoesNotMatch),
            "{name}: date"
        );

        // Time window: 15-minute skew for headers, X-Amz-Expires (300 s) for presigned.
        let late = base.check(&verifier, &c, &c.secret, NOW + time::Duration::minutes(16));
        if c.presigned {
            assert_eq!(late, Err(SigV4Error::RequestExpired), "{name}");
        } else {
            let err = late.expect_err("skewed");
            assert!(
                matches!(err, SigV4Error::RequestTimeTooSkewed { .. }),
                "{name}"
            );
            assert_eq!(err.code(), "SignatureDoesNotMatch");
        }
        let early = base.check(&verifier, &c, &c.secret, NOW - time::Duration::minutes(16));
        assert!(
            matches!(early, Err(SigV4Error::RequestTimeTooSkewed { .. })),
            "{name}: early {early:?}"
        );

        // Session token: missing, or presented with the wrong value.
        if c.token.is_some() {
            let mut t = Owned::of(&c);
            let mut wrong = Case {
                token: Some("other".into()),
                ..clone_case(&c)
            };
            assert_eq!(
                t.check(&verifier, &wrong, &c.secret, NOW),
                Err(SigV4Error::InvalidClientTokenId),
                "{name}: token"
            );
            wrong.token = None;
            t.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-security-token"));
            assert!(
                t.check(&verifier, &wrong, &c.secret, NOW).is_err(),
                "{name}: no token"
            );
        }
    }
}

fn clone_case(c: &Case) -> Case {
    Case {
        name: c.name.clone(),
        method: c.method.clone(),
        path: c.path.clone(),
        query: c.query.clone(),
        headers: c.headers.clone(),
        body_hex: c.body_hex.clone(),
        access_key_id: c.access_key_id.clone(),
        secret: c.secret.clone(),
        token: c.token.clone(),
        presigned: c.presigned,
        service: c.service.clone(),
        region: c.region.clone(),
    }
}
