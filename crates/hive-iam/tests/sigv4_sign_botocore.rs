//! The SigV4 signer proven against botocore: every header-form request botocore's `SigV4Auth`
//! and `S3SigV4Auth` sign (tests/data/sigv4_botocore.py, time frozen) is signed again by
//! `hive_iam::sigv4::sign` from the same inputs, and the `Authorization` header must match
//! botocore's byte for byte.
//!
//! Needs a Python with botocore: `$HIVE_PYTHON`, else `<workspace>/.venv/bin/python`.

use hive_iam::seal::SecretString;
use hive_iam::sigv4::sign::{Signer, SigningParams, sign};
use hive_iam::sigv4::{Payload, SignedRequest};
use time::macros::datetime;

mod botocore;

use botocore::{Case, botocore_cases};

/// The instant the script freezes botocore's clock at.
const FROZEN: time::OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

fn header<'a>(c: &'a Case, name: &str) -> &'a str {
    c.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{}: no {name} header", c.name))
}

#[test]
fn signer_reproduces_botocore_signatures() {
    let cases: Vec<Case> = botocore_cases()
        .into_iter()
        .filter(|c| !c.presigned)
        .collect();
    assert!(cases.len() >= 12, "expected every header-form case");
    for c in &cases {
        let expected = header(c, "authorization");
        // Sign exactly the headers botocore signed (it signs what the request had when it was
        // signed; Content-Length is added later by `prepare()`), minus those the signer adds.
        let signed_list = expected
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("SignedHeaders");
        let signed: Vec<&str> = signed_list.split(';').collect();
        let body = hex::decode(&c.body_hex).expect("hex body");
        let headers: Vec<(&str, &[u8])> = c
            .headers
            .iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                signed.contains(&k.as_str()) && k != "x-amz-date" && k != "x-amz-security-token"
            })
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let req = SignedRequest {
            method: &c.method,
            path: &c.path,
            query: &c.query,
            headers: &headers,
            payload: Payload::Bytes(&body),
        };
        let secret = SecretString::new(c.secret.clone());
        let params = SigningParams {
            access_key_id: &c.access_key_id,
            secret: &secret,
            session_token: c.token.as_deref(),
            region: &c.region,
            service: &c.service,
            time: FROZEN,
        };
        let sig = sign(&req, &params).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(sig.authorization, expected, "{}", c.name);
        assert_eq!(sig.amz_date, header(c, "x-amz-date"), "{}", c.name);
        assert_eq!(sig.security_token, c.token, "{}", c.name);

        // The caching signer agrees, twice (the second time from its cached key).
        let signer = Signer::new(
            c.access_key_id.clone(),
            SecretString::new(c.secret.clone()),
            c.token.clone().map(SecretString::new),
            c.region.clone(),
            c.service.clone(),
        );
        for _ in 0..2 {
            assert_eq!(
                signer.sign(&req, FROZEN).expect("signs").authorization,
                expected,
                "{} (Signer)",
                c.name
            );
        }

        // A different secret or time gives a different signature.
        let other = SecretString::new(format!("{}x", c.secret));
        let wrong = sign(
            &req,
            &SigningParams {
                secret: &other,
                ..params
            },
        )
        .expect("signs");
        assert_ne!(wrong.authorization, expected, "{}", c.name);
        let later = sign(
            &req,
            &SigningParams {
                time: FROZEN + time::Duration::seconds(1),
                ..params
            },
        )
        .expect("signs");
        assert_ne!(later.authorization, expected, "{}", c.name);
    }
}
