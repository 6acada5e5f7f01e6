#![no_main]
//! Parses arbitrary bytes as a policy document of each kind, compiles it, and evaluates it
//! against fixed requests as an identity, boundary, resource and trust policy: nothing may panic.

use std::sync::Arc;

use hive_iam::policy::{
    Authorizer, CompiledPolicy, PolicyKind, PolicySet, Principal, RequestContext, SizeLimit,
    validate_size,
};

fn requests() -> Vec<RequestContext> {
    let bob = Principal::user("123456789012", "bob", "AIDAEXAMPLE").with_tag("team", "blue");
    let session = Principal::assumed_role("123456789012", "deploy", "AROAEXAMPLE", "s1");
    vec![
        RequestContext::new(
            bob.clone(),
            "s3:GetObject",
            "arn:aws:s3:::bucket/bob/key:with:colons",
        )
        .with_source_ip("203.0.113.7".parse().expect("literal address"))
        .with_secure_transport(true)
        .with_requested_region("eu-west-1")
        .with_values("aws:TagKeys", ["team", "env"])
        .with("aws:EpochTime", 1_700_000_000i64)
        .with("aws:CurrentTime", "2023-11-14T22:13:20Z"),
        RequestContext::new(
            session,
            "sts:AssumeRole",
            "arn:aws:iam::123456789012:role/deploy",
        ),
        RequestContext::new(Principal::anonymous(), "iam:CreateUser", "*"),
    ]
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = validate_size(text, SizeLimit::Managed);
    let reqs = requests();
    for kind in [
        PolicyKind::Identity,
        PolicyKind::Resource,
        PolicyKind::Trust,
    ] {
        let Ok(policy) = CompiledPolicy::parse("fuzz", text, kind) else {
            continue;
        };
        let set = PolicySet::new([Arc::new(policy)]);
        for req in &reqs {
            let d = match kind {
                PolicyKind::Identity => Authorizer::new(&set)
                    .with_permissions_boundary(&set)
                    .with_session_policies(&set)
                    .authorize(req),
                PolicyKind::Resource => Authorizer::new(&PolicySet::empty())
                    .with_resource_policy(&set)
                    .authorize(req),
                PolicyKind::Trust => {
                    Authorizer::new(&PolicySet::empty()).authorize_assume_role(&set, req)
                }
            };
            let _ = d.access_denied_message(&req.principal().arn, req.action(), req.resource());
            let _ = d.matched.to_vec();
        }
    }
});
