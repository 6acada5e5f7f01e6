//! Policy evaluation: one typical request against 1, 10 and 100 identity policies of 10
//! statements each, with conditions, as the server evaluates it (compiled and indexed once,
//! request context built once per request outside the measured loop).
//!
//! The policy mix is meant to look like a real account's: most statements name other
//! services, some use action wildcards, a few carry conditions (`aws:RequestedRegion`,
//! `aws:SourceIp`, `aws:SecureTransport`), one policy in ten has a global `Deny` on `*`, and
//! every policy has an `s3:GetObject` statement for its own bucket so that the request's exact
//! action has 100 candidates at the largest size.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_main};
use hive_iam::policy::{
    Authorizer, CompiledPolicy, PolicyKind, PolicySet, Principal, RequestContext,
};

fn policy_text(i: usize) -> String {
    let global = if i.is_multiple_of(10) {
        r#"{"Sid":"DenyInsecure","Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#.to_owned()
    } else {
        format!(
            r#"{{"Sid":"Sns{i}","Effect":"Allow","Action":"sns:Publish","Resource":"arn:aws:sns:eu-west-1:123456789012:topic-{i}"}}"#
        )
    };
    format!(
        r#"{{"Version":"2012-10-17","Statement":[
  {{"Sid":"Describe","Effect":"Allow","Action":"ec2:Describe*","Resource":"*","Condition":{{"StringEquals":{{"aws:RequestedRegion":["eu-west-1","eu-central-1"]}}}}}},
  {{"Sid":"Table","Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem","dynamodb:Query"],"Resource":"arn:aws:dynamodb:eu-west-1:123456789012:table/t{i}"}},
  {{"Sid":"Queue","Effect":"Allow","Action":"sqs:SendMessage","Resource":"arn:aws:sqs:*:123456789012:queue-{i}"}},
  {{"Sid":"Objects","Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::bucket-{i}/*"}},
  {{"Sid":"Invoke","Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:eu-west-1:123456789012:function:f{i}"}},
  {{"Sid":"Logs","Effect":"Allow","Action":"logs:*","Resource":"arn:aws:logs:*:*:log-group:/app/{i}:*"}},
  {{"Sid":"IamRead","Effect":"Allow","Action":["iam:Get*","iam:List*"],"Resource":"*"}},
  {{"Sid":"NoBucketDelete","Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}},
  {{"Sid":"ListFromOffice","Effect":"Allow","Action":"s3:List*","Resource":"arn:aws:s3:::bucket-{i}","Condition":{{"IpAddress":{{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}}}}},
  {global}
]}}"#
    )
}

fn policy_set(n: usize) -> PolicySet {
    PolicySet::new((0..n).map(|i| {
        let text = policy_text(i);
        Arc::new(
            CompiledPolicy::parse(&format!("policy-{i}"), &text, PolicyKind::Identity)
                .expect("benchmark policies are valid"),
        )
    }))
}

fn request(n: usize) -> RequestContext {
    // The object is in the bucket of the last policy, so every candidate is examined.
    let bob =
        Principal::user("123456789012", "bob", "AIDAEXAMPLEBOB000001").with_tag("team", "blue");
    RequestContext::new(
        bob,
        "s3:GetObject",
        &format!("arn:aws:s3:::bucket-{}/reports/2024.csv", n - 1),
    )
    .with_requested_region("eu-west-1")
    .with_source_ip("10.1.2.3".parse().expect("literal address"))
    .with_secure_transport(true)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("iam_policy/authorize");
    for n in [1usize, 10, 100] {
        let set = policy_set(n);
        let req = request(n);
        assert!(
            Authorizer::new(&set).authorize(&req).is_allowed(),
            "the typical request is allowed"
        );
        group.bench_with_input(
            BenchmarkId::new("typical_request", format!("{n}x10")),
            &n,
            |b, _| b.iter(|| Authorizer::new(black_box(&set)).authorize(black_box(&req))),
        );
        let denied = RequestContext::new(req.principal().clone(), "iam:CreateUser", "*");
        assert!(!Authorizer::new(&set).authorize(&denied).is_allowed());
        group.bench_with_input(
            BenchmarkId::new("implicit_deny", format!("{n}x10")),
            &n,
            |b, _| b.iter(|| Authorizer::new(black_box(&set)).authorize(black_box(&denied))),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("iam_policy/compile");
    group.bench_function("parse_compile_index_100x10", |b| {
        b.iter(|| policy_set(black_box(100)))
    });
    group.finish();
}

/// Criterion's generated group function carries no doc comment of its own.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
