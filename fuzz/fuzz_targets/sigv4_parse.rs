#![no_main]
//! SigV4 parsing and canonicalisation must never panic on hostile input: the Authorization
//! header, presigned query strings, paths and header values come straight off the network.

use hive_iam::identity::{Credential, KeyStatus, Principal};
use hive_iam::seal::SecretString;
use hive_iam::sigv4::{
    Payload, SignedRequest, Verifier, canonical_query_string, canonical_uri, parse_amz_date,
    parse_authorization,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Split the input into fields: authorization, query, path, one extra header value, body.
    let mut parts = data.splitn(5, |b| *b == 0);
    let auth = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let extra = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();

    let _ = canonical_query_string(&query, true);
    let _ = canonical_uri(&path, false);
    let _ = canonical_uri(&path, true);
    let _ = parse_amz_date(&auth);

    let headers: Vec<(&str, &[u8])> = vec![
        ("Authorization", auth.as_bytes()),
        ("Host", b"hive.example"),
        ("X-Amz-Date", b"20240501T120000Z"),
        ("X-Amz-Content-Sha256", extra),
        ("X-Amz-Meta", extra),
    ];
    for headers in [&headers[..], &headers[1..]] {
        let req = SignedRequest {
            method: "POST",
            path: &path,
            query: &query,
            headers,
            payload: Payload::Bytes(body),
        };
        if let Ok(parsed) = parse_authorization(&req) {
            let cred = Credential {
                access_key_id: parsed.access_key_id.clone(),
                secret: SecretString::new("secret"),
                principal: Principal::Root {
                    account_id: "000000000000".into(),
                },
                status: KeyStatus::Active,
                expiration: None,
                session_token_sha256: None,
                session_policy: None,
                needs_reseal: false,
            };
            let now = parsed.request_time;
            let _ = Verifier::with_capacity(4).verify_credential(&req, &parsed, &cred, now);
        }
    }
});
