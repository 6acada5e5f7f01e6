//! SigV4 verification of a small signed request (an IAM query-protocol POST) with a warm
//! signing-key cache. Target: under 5 µs per verification.

use criterion::{Criterion, black_box, criterion_main};
use hive_iam::identity::{Credential, KeyStatus, Principal};
use hive_iam::seal::SecretString;
use hive_iam::sigv4::{
    CredentialScope, Payload, SignedRequest, Verifier, parse_amz_date, parse_authorization,
};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const DATE: &str = "20240501T120000Z";
const BODY: &[u8] = b"Action=ListUsers&Version=2010-05-08";
/// The request as botocore's `SigV4Auth` signs it at 2024-05-01T12:00:00Z (the same vector as
/// the `iam-query-post` case of hive-iam's botocore test).
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=b62a95e1fcaef641c720088d90d00a96ca8d7454b657746e839a8258a79a4373";

fn bench(c: &mut Criterion) {
    let headers: Vec<(&str, &[u8])> = vec![
        (
            "Content-Type",
            b"application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("X-Amz-Date", DATE.as_bytes()),
        ("Authorization", AUTHORIZATION.as_bytes()),
        ("Content-Length", b"35"),
        ("Host", b"hive.example:9443"),
    ];
    let req = SignedRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        payload: Payload::Bytes(BODY),
    };
    let cred = Credential {
        access_key_id: AKID.into(),
        secret: SecretString::new(SECRET),
        principal: Principal::Root {
            account_id: "000000000000".into(),
        },
        status: KeyStatus::Active,
        expiration: None,
        session_token_sha256: None,
        session_policy: None,
        needs_reseal: false,
    };
    let verifier = Verifier::new();
    let now = parse_amz_date("20240501T120030Z").expect("valid date");
    let parsed = parse_authorization(&req).expect("parses");
    verifier
        .verify_credential(&req, &parsed, &cred, now)
        .expect("the botocore-signed request verifies");

    c.bench_function("sigv4_parse_and_verify_warm_cache", |b| {
        b.iter(|| {
            let parsed = parse_authorization(black_box(&req)).expect("parses");
            verifier
                .verify_credential(black_box(&req), &parsed, &cred, now)
                .expect("verifies")
        })
    });
    c.bench_function("sigv4_derive_signing_key_cold", |b| {
        let scope = CredentialScope {
            date: "20240501".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
        };
        b.iter(|| hive_iam::sigv4::derive_signing_key(black_box(SECRET), &scope))
    });
}

/// The benchmark group (in a module because `criterion_group!` makes an undocumented `pub fn`).
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
