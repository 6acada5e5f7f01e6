//! Evaluation rules of the policy engine, through the public API: one table or scenario per
//! rule of AWS's policy evaluation logic.

use std::sync::Arc;

use hive_iam::policy::{
    Authorizer, CompiledPolicy, Decision, DecisionEffect, DecisionReason, PolicyKind, PolicySet,
    PolicySource, Principal, RequestContext,
};

const ACCT: &str = "123456789012";

fn policy(name: &str, statements: &str) -> Arc<CompiledPolicy> {
    policy_v(name, "2012-10-17", statements)
}

fn policy_v(name: &str, version: &str, statements: &str) -> Arc<CompiledPolicy> {
    let text = format!(r#"{{"Version":"{version}","Statement":{statements}}}"#);
    match CompiledPolicy::parse(name, &text, PolicyKind::Identity) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{text}: {e}"),
    }
}

fn resource_policy(name: &str, statements: &str, kind: PolicyKind) -> Arc<CompiledPolicy> {
    let text = format!(r#"{{"Version":"2012-10-17","Statement":{statements}}}"#);
    match CompiledPolicy::parse(name, &text, kind) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("{text}: {e}"),
    }
}

fn bob() -> Principal {
    Principal::user(ACCT, "bob", "AIDABOB").with_tag("team", "blue")
}

fn req(action: &str, resource: &str) -> RequestContext {
    RequestContext::new(bob(), action, resource)
}

fn set(policies: &[Arc<CompiledPolicy>]) -> PolicySet {
    PolicySet::new(policies.iter().cloned())
}

fn effect(policies: &[Arc<CompiledPolicy>], r: &RequestContext) -> DecisionEffect {
    set(policies).evaluate(r).effect
}

use DecisionEffect::{Allow, ExplicitDeny, ImplicitDeny};

#[test]
fn deny_beats_allow_beats_implicit_deny() {
    let allow = policy("A", r#"{"Effect":"Allow","Action":"s3:*","Resource":"*"}"#);
    let deny = policy(
        "D",
        r#"{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}"#,
    );
    let r = req("s3:DeleteObject", "arn:aws:s3:::b/k");
    assert_eq!(effect(&[], &r), ImplicitDeny);
    assert_eq!(effect(std::slice::from_ref(&allow), &r), Allow);
    assert_eq!(effect(&[allow.clone(), deny.clone()], &r), ExplicitDeny);
    assert_eq!(effect(&[deny.clone(), allow.clone()], &r), ExplicitDeny);
    assert_eq!(effect(&[deny], &req("s3:GetObject", "*")), ImplicitDeny);
}

#[test]
fn actions_are_case_insensitive_resources_case_sensitive() {
    let p = policy(
        "P",
        r#"{"Effect":"Allow","Action":["S3:getobject","IAM:Create*"],"Resource":["arn:aws:s3:::Bucket/*"]}"#,
    );
    for (action, resource, want) in [
        ("s3:GetObject", "arn:aws:s3:::Bucket/x", Allow),
        ("S3:GETOBJECT", "arn:aws:s3:::Bucket/x", Allow),
        ("s3:GetObject", "arn:aws:s3:::bucket/x", ImplicitDeny),
        ("iam:createuser", "arn:aws:s3:::Bucket/x", Allow),
        ("iam:DeleteUser", "arn:aws:s3:::Bucket/x", ImplicitDeny),
        ("s3:PutObject", "arn:aws:s3:::Bucket/x", ImplicitDeny),
    ] {
        assert_eq!(
            effect(std::slice::from_ref(&p), &req(action, resource)),
            want,
            "{action} {resource}"
        );
    }
}

#[test]
fn not_action_and_not_resource() {
    let p = policy(
        "P",
        r#"[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"},
            {"Effect":"Deny","Action":"s3:*","NotResource":"arn:aws:s3:::public/*"}]"#,
    );
    for (action, resource, want) in [
        ("ec2:RunInstances", "*", Allow),
        ("iam:CreateUser", "*", ImplicitDeny),
        ("s3:GetObject", "arn:aws:s3:::public/x", Allow),
        ("s3:GetObject", "arn:aws:s3:::private/x", ExplicitDeny),
    ] {
        assert_eq!(
            effect(std::slice::from_ref(&p), &req(action, resource)),
            want,
            "{action} {resource}"
        );
    }
}

#[test]
fn index_finds_exact_wildcard_and_global_statements_once() {
    let p = policy(
        "P",
        r#"[{"Sid":"Exact","Effect":"Allow","Action":["iam:CreateUser","iam:CreateUser","iam:Get*"],"Resource":"*"},
            {"Sid":"Wild","Effect":"Allow","Action":"iam:Create*","Resource":"*"},
            {"Sid":"Global","Effect":"Allow","Action":"*:CreateUser","Resource":"*"},
            {"Sid":"Other","Effect":"Allow","Action":"s3:CreateUser","Resource":"*"},
            {"Sid":"Never","Effect":"Allow","Action":"iam:DeleteUser","Resource":"*"}]"#,
    );
    let d = set(&[p]).evaluate(&req("iam:CreateUser", "*"));
    assert_eq!(d.effect, Allow);
    let mut sids: Vec<String> = d
        .matched
        .iter()
        .map(|m| m.sid.as_deref().unwrap_or("").to_owned())
        .collect();
    sids.sort();
    assert_eq!(sids, ["Exact", "Global", "Wild"]);
}

#[test]
fn explanations_name_policy_sid_and_index() {
    let a = policy(
        "ReadOnly",
        r#"[{"Effect":"Allow","Action":"s3:Get*","Resource":"*"}]"#,
    );
    let d = policy(
        "NoSecrets",
        r#"[{"Sid":"x1","Effect":"Allow","Action":"ec2:*","Resource":"*"},
            {"Sid":"DenySecrets","Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::secrets/*"}]"#,
    );
    let s = set(&[a, d]);
    let allowed = s.evaluate(&req("s3:GetObject", "arn:aws:s3:::open/x"));
    assert_eq!(allowed.reason, DecisionReason::Allowed);
    let m: Vec<_> = allowed.matched.iter().collect();
    assert_eq!(m.len(), 1);
    assert_eq!(&*m[0].policy, "ReadOnly");
    assert_eq!(m[0].sid, None);
    assert_eq!(m[0].index, 0);
    let denied = s.evaluate(&req("s3:GetObject", "arn:aws:s3:::secrets/x"));
    assert_eq!(
        denied.reason,
        DecisionReason::ExplicitDeny(PolicySource::Identity)
    );
    let m: Vec<_> = denied.matched.iter().collect();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (&*m[0].policy, m[0].sid.as_deref(), m[0].index),
        ("NoSecrets", Some("DenySecrets"), 1)
    );
    assert_eq!(
        denied
            .access_denied_message(
                "arn:aws:iam::123456789012:user/bob",
                "s3:GetObject",
                "arn:aws:s3:::secrets/x"
            )
            .as_deref(),
        Some(
            "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::secrets/x with an explicit deny in an identity-based policy"
        )
    );
    let none = s.evaluate(&req("iam:CreateUser", "*"));
    assert_eq!(none.reason, DecisionReason::NoAllow(PolicySource::Identity));
    assert_eq!(
        none.denial_reason("iam:CreateUser").as_deref(),
        Some("because no identity-based policy allows the iam:CreateUser action")
    );
}

#[test]
fn policy_variables_in_resources_only_in_2012() {
    let stmt =
        r#"{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::home/${aws:username}/*"}"#;
    let v2012 = policy("P", stmt);
    let v2008 = policy_v("P", "2008-10-17", stmt);
    let mine = req("s3:GetObject", "arn:aws:s3:::home/bob/file");
    let theirs = req("s3:GetObject", "arn:aws:s3:::home/alice/file");
    let literal = req("s3:GetObject", "arn:aws:s3:::home/${aws:username}/file");
    assert_eq!(effect(std::slice::from_ref(&v2012), &mine), Allow);
    assert_eq!(effect(std::slice::from_ref(&v2012), &theirs), ImplicitDeny);
    assert_eq!(effect(&[v2012], &literal), ImplicitDeny);
    assert_eq!(effect(std::slice::from_ref(&v2008), &mine), ImplicitDeny);
    assert_eq!(effect(&[v2008], &literal), Allow);
    // No Version element means 2008-10-17.
    let text = format!(r#"{{"Statement":{stmt}}}"#);
    let unversioned =
        Arc::new(CompiledPolicy::parse("U", &text, PolicyKind::Identity).expect("valid"));
    assert_eq!(effect(&[unversioned], &mine), ImplicitDeny);
}

#[test]
fn variables_tags_defaults_escapes_and_missing_keys() {
    let p = policy(
        "P",
        r#"[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::team/${aws:PrincipalTag/team}/*"},
            {"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::x/${aws:PrincipalTag/dept, 'none'}/*"},
            {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::lit/${*}${?}${$}"},
            {"Effect":"Allow","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::d/${aws:PrincipalTag/dept}"}]"#,
    );
    let s = [p];
    assert_eq!(
        effect(&s, &req("s3:GetObject", "arn:aws:s3:::team/blue/k")),
        Allow
    );
    assert_eq!(
        effect(&s, &req("s3:GetObject", "arn:aws:s3:::team/red/k")),
        ImplicitDeny
    );
    assert_eq!(
        effect(&s, &req("s3:PutObject", "arn:aws:s3:::x/none/k")),
        Allow
    );
    assert_eq!(
        effect(&s, &req("s3:ListBucket", "arn:aws:s3:::lit/*?$")),
        Allow
    );
    assert_eq!(
        effect(&s, &req("s3:ListBucket", "arn:aws:s3:::lit/ab$")),
        ImplicitDeny
    );
    // A missing key with no default makes the resource entry match nothing.
    assert_eq!(
        effect(&s, &req("s3:DeleteObject", "arn:aws:s3:::d/")),
        ImplicitDeny
    );
}

#[test]
fn global_condition_keys_supplied_by_the_caller() {
    let p = policy(
        "P",
        r#"[{"Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{
              "StringEquals":{"aws:RequestedRegion":["eu-west-1","eu-central-1"]},
              "IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:db8::/32"]},
              "Bool":{"aws:SecureTransport":"true"},
              "DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},
              "NumericGreaterThan":{"aws:EpochTime":"1600000000"}}},
            {"Effect":"Deny","Action":"*","Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}]"#,
    );
    let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time");
    let good = || {
        req("ec2:RunInstances", "*")
            .with_requested_region("eu-west-1")
            .with_source_ip("203.0.113.9".parse().expect("ip"))
            .with_secure_transport(true)
            .with_current_time(now)
            .with_mfa(true, Some(30))
    };
    let s = [p];
    assert_eq!(effect(&s, &good()), Allow);
    assert_eq!(
        effect(&s, &good().with_requested_region("us-east-1")),
        ImplicitDeny
    );
    assert_eq!(
        effect(
            &s,
            &good().with_source_ip("198.51.100.1".parse().expect("ip"))
        ),
        ImplicitDeny
    );
    assert_eq!(
        effect(
            &s,
            &good().with_source_ip("2001:db8::5".parse().expect("ip"))
        ),
        Allow
    );
    assert_eq!(
        effect(&s, &good().with_secure_transport(false)),
        ImplicitDeny
    );
    let later = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("valid time");
    assert_eq!(effect(&s, &good().with_current_time(later)), ImplicitDeny);
    assert_eq!(effect(&s, &good().with_mfa(false, None)), ExplicitDeny);
    let mut no_mfa_key = good();
    no_mfa_key.remove("aws:MultiFactorAuthPresent");
    // BoolIfExists on a missing key holds: the deny applies (AWS's well-known behaviour).
    assert_eq!(effect(&s, &no_mfa_key), ExplicitDeny);
}

#[test]
fn resource_policy_principals() {
    let p = resource_policy(
        "BucketPolicy",
        r#"[{"Sid":"Named","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"s3:GetObject","Resource":"*"},
            {"Sid":"Account","Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"s3:PutObject","Resource":"*"},
            {"Sid":"Role","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/deploy"},"Action":"s3:ListBucket","Resource":"*"},
            {"Sid":"Svc","Effect":"Allow","Principal":{"Service":"logs.amazonaws.com"},"Action":"s3:PutObject","Resource":"*"},
            {"Sid":"Anyone","Effect":"Allow","Principal":"*","Action":"s3:GetBucketLocation","Resource":"*"},
            {"Sid":"NotBob","Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"s3:DeleteObject","Resource":"*"}]"#,
        PolicyKind::Resource,
    );
    let s = set(&[p]);
    let eval = |who: Principal, action: &str| {
        Authorizer::new(&PolicySet::empty())
            .with_resource_policy(&s)
            .authorize(&RequestContext::new(who, action, "arn:aws:s3:::b/k"))
            .effect
    };
    let alice = Principal::user(ACCT, "alice", "AIDAALICE");
    let other = Principal::user("111122223333", "carol", "AIDACAROL");
    let session = Principal::assumed_role(ACCT, "deploy", "AROADEPLOY", "ci");
    assert_eq!(eval(bob(), "s3:GetObject"), Allow);
    assert_eq!(eval(alice.clone(), "s3:GetObject"), ImplicitDeny);
    assert_eq!(eval(other.clone(), "s3:PutObject"), Allow);
    assert_eq!(eval(bob(), "s3:PutObject"), ImplicitDeny);
    assert_eq!(eval(session.clone(), "s3:ListBucket"), Allow);
    assert_eq!(
        eval(Principal::service("logs.amazonaws.com"), "s3:PutObject"),
        Allow
    );
    assert_eq!(eval(Principal::anonymous(), "s3:GetBucketLocation"), Allow);
    assert_eq!(eval(alice, "s3:DeleteObject"), ExplicitDeny);
    assert_eq!(eval(bob(), "s3:DeleteObject"), ImplicitDeny);
}

fn decide(auth: Authorizer<'_>, r: &RequestContext) -> Decision {
    auth.authorize(r)
}

#[test]
fn permissions_boundary_and_session_policies_intersect() {
    let identity = set(&[policy(
        "Admin",
        r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#,
    )]);
    let boundary = set(&[policy(
        "Boundary",
        r#"{"Effect":"Allow","Action":["s3:*","ec2:*"],"Resource":"*"}"#,
    )]);
    let session = set(&[policy(
        "Session",
        r#"{"Effect":"Allow","Action":"s3:*","Resource":"*"}"#,
    )]);
    let deny_boundary = set(&[policy(
        "DenyingBoundary",
        r#"[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}]"#,
    )]);
    let base = Authorizer::new(&identity);
    let with_boundary = base.with_permissions_boundary(&boundary);
    let with_both = with_boundary.with_session_policies(&session);
    let d = decide(with_boundary, &req("iam:CreateUser", "*"));
    assert_eq!(
        d.reason,
        DecisionReason::NoAllow(PolicySource::PermissionsBoundary)
    );
    assert_eq!(
        d.denial_reason("iam:CreateUser").as_deref(),
        Some("because no permissions boundary allows the iam:CreateUser action")
    );
    assert!(decide(with_boundary, &req("ec2:RunInstances", "*")).is_allowed());
    let d = decide(with_both, &req("ec2:RunInstances", "*"));
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Session));
    assert!(decide(with_both, &req("s3:GetObject", "*")).is_allowed());
    // The boundary alone grants nothing.
    let empty = PolicySet::empty();
    let d = decide(
        Authorizer::new(&empty).with_permissions_boundary(&boundary),
        &req("s3:GetObject", "*"),
    );
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Identity));
    // An explicit deny in the boundary denies.
    let d = decide(
        base.with_permissions_boundary(&deny_boundary),
        &req("s3:DeleteBucket", "*"),
    );
    assert_eq!(
        d.reason,
        DecisionReason::ExplicitDeny(PolicySource::PermissionsBoundary)
    );
    assert_eq!(
        d.denial_reason("s3:DeleteBucket").as_deref(),
        Some("with an explicit deny in a permissions boundary")
    );
    // Allowed decisions list the statements of every layer that allowed.
    let d = decide(with_both, &req("s3:GetObject", "*"));
    let sources: Vec<PolicySource> = d.matched.iter().map(|m| m.source).collect();
    assert_eq!(
        sources,
        [
            PolicySource::Identity,
            PolicySource::PermissionsBoundary,
            PolicySource::Session
        ]
    );
}

#[test]
fn resource_policy_same_and_cross_account() {
    let rp = set(&[resource_policy(
        "Bucket",
        r#"[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"Action":"s3:GetObject","Resource":"*"},
            {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]"#,
        PolicyKind::Resource,
    )]);
    let none = PolicySet::empty();
    let s3 = set(&[policy(
        "S3",
        r#"{"Effect":"Allow","Action":"s3:*","Resource":"*"}"#,
    )]);
    let r = req("s3:GetObject", "arn:aws:s3:::b/k");
    // Same account: the resource policy alone is enough.
    assert!(decide(Authorizer::new(&none).with_resource_policy(&rp), &r).is_allowed());
    // Cross account: both sides must allow.
    let d = decide(
        Authorizer::new(&none)
            .with_resource_policy(&rp)
            .cross_account(true),
        &r,
    );
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Identity));
    assert!(
        decide(
            Authorizer::new(&s3)
                .with_resource_policy(&rp)
                .cross_account(true),
            &r
        )
        .is_allowed()
    );
    let put = req("s3:PutObject", "arn:aws:s3:::b/k");
    let d = decide(
        Authorizer::new(&s3)
            .with_resource_policy(&rp)
            .cross_account(true),
        &put,
    );
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Resource));
    // Explicit deny in the resource policy wins over an identity allow.
    let d = decide(
        Authorizer::new(&s3).with_resource_policy(&rp),
        &put.clone().with_secure_transport(false),
    );
    assert_eq!(
        d.reason,
        DecisionReason::ExplicitDeny(PolicySource::Resource)
    );
    assert_eq!(
        d.denial_reason("s3:PutObject").as_deref(),
        Some("with an explicit deny in a resource-based policy")
    );
    assert!(
        decide(
            Authorizer::new(&s3).with_resource_policy(&rp),
            &put.with_secure_transport(true)
        )
        .is_allowed()
    );
}

#[test]
fn trust_policy_decides_assume_role() {
    let role = "arn:aws:iam::123456789012:role/deploy";
    let trust = set(&[resource_policy(
        "deploy-trust",
        r#"[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/bob","123456789012"],"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"},
            {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/mallory"},"Action":"sts:AssumeRole"}]"#,
        PolicyKind::Trust,
    )]);
    let none = PolicySet::empty();
    let may_assume = set(&[policy(
        "Assume",
        r#"{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"arn:aws:iam::123456789012:role/*"}"#,
    )]);
    let assume = |who: Principal, identity: &PolicySet, cross: bool| {
        Authorizer::new(identity)
            .cross_account(cross)
            .authorize_assume_role(&trust, &RequestContext::new(who, "sts:AssumeRole", role))
    };
    // Named in the trust policy: no identity permission needed in the same account.
    assert!(assume(bob(), &none, false).is_allowed());
    // Matched only through the account: the identity policy must allow too.
    let alice = Principal::user(ACCT, "alice", "AIDAALICE");
    let d = assume(alice.clone(), &none, false);
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Identity));
    assert!(assume(alice, &may_assume, false).is_allowed());
    // Services named in the trust policy.
    assert!(assume(Principal::service("ec2.amazonaws.com"), &none, false).is_allowed());
    let d = assume(Principal::service("lambda.amazonaws.com"), &none, false);
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Resource));
    assert_eq!(
        d.denial_reason("sts:AssumeRole").as_deref(),
        Some("because no resource-based policy allows the sts:AssumeRole action")
    );
    // Another account is not trusted at all.
    let d = assume(
        Principal::user("111122223333", "eve", "AIDAEVE"),
        &may_assume,
        true,
    );
    assert_eq!(d.reason, DecisionReason::NoAllow(PolicySource::Resource));
    // Cross-account callers named in the trust policy still need identity permission.
    assert!(!assume(bob(), &none, true).is_allowed());
    assert!(assume(bob(), &may_assume, true).is_allowed());
    // Explicit deny in the trust policy.
    let d = assume(
        Principal::user(ACCT, "mallory", "AIDAM"),
        &may_assume,
        false,
    );
    assert_eq!(d.effect, ExplicitDeny);
    // An explicit deny of sts:AssumeRole in the caller's own policies also wins.
    let deny_self = set(&[policy(
        "NoAssume",
        r#"{"Effect":"Deny","Action":"sts:*","Resource":"*"}"#,
    )]);
    assert_eq!(assume(bob(), &deny_self, false).effect, ExplicitDeny);
}

#[test]
fn statements_with_conditions_on_principal_tags_and_multivalued_keys() {
    let p = policy(
        "Tags",
        r#"{"Effect":"Allow","Action":"ec2:CreateTags","Resource":"*","Condition":{
             "ForAllValues:StringEquals":{"aws:TagKeys":["env","team"]},
             "StringEquals":{"aws:RequestTag/team":"${aws:PrincipalTag/team}"}}}"#,
    );
    let s = [p];
    let r = |keys: &[&str], team: &str| {
        req("ec2:CreateTags", "*")
            .with_values("aws:TagKeys", keys.iter().copied())
            .with("aws:RequestTag/team", team)
    };
    assert_eq!(effect(&s, &r(&["team"], "blue")), Allow);
    assert_eq!(effect(&s, &r(&["team", "env"], "blue")), Allow);
    assert_eq!(effect(&s, &r(&["team", "owner"], "blue")), ImplicitDeny);
    assert_eq!(effect(&s, &r(&["team"], "red")), ImplicitDeny);
}

#[test]
fn aws_wildcard_principal_is_everyone() {
    let p = set(&[resource_policy(
        "Public",
        r#"{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::pub/*"}"#,
        PolicyKind::Resource,
    )]);
    let none = PolicySet::empty();
    let auth = Authorizer::new(&none).with_resource_policy(&p);
    let get = |who: Principal| {
        auth.authorize(&RequestContext::new(
            who,
            "s3:GetObject",
            "arn:aws:s3:::pub/x",
        ))
    };
    assert!(get(Principal::anonymous()).is_allowed());
    assert!(get(bob()).is_allowed());
    assert!(get(Principal::user("111122223333", "eve", "AIDAEVE")).is_allowed());
    let put = auth.authorize(&RequestContext::new(
        bob(),
        "s3:PutObject",
        "arn:aws:s3:::pub/x",
    ));
    assert_eq!(put.reason, DecisionReason::NoAllow(PolicySource::Identity));
}
