//! Contract tests against botocore's own response parsers (the parsers of boto3 and the aws
//! CLI): our error bodies and sample success bodies written with `wire::xml` must come out of
//! botocore with the right codes, messages, request ids, lists and timestamps.
//!
//! Needs a python with botocore: `$HIVE_PYTHON` or `<workspace>/.venv/bin/python`; the tests
//! fail (never skip) with the fix when it is missing.

mod common;

use std::sync::Arc;

use common::*;
use hive_api::error::ApiError;
use hive_api::server::Server;
use hive_api::wire::{Protocol, ServiceId, xml};
use serde_json::Value;
use time::macros::datetime;

#[test]
fn query_error_bodies_parse_with_code_message_and_request_id() {
    let err = ApiError::new(
        "NoSuchEntity",
        "The user with name <bob & co> cannot be found.",
        404,
    );
    let parsed = botocore_parse("iam", "GetUser", 404, &err.to_xml(Protocol::Query, "rid-1"));
    assert_eq!(parsed["Error"]["Code"], "NoSuchEntity");
    assert_eq!(
        parsed["Error"]["Message"],
        "The user with name <bob & co> cannot be found."
    );
    assert_eq!(parsed["Error"]["Type"], "Sender");
    assert_eq!(parsed["ResponseMetadata"]["RequestId"], "rid-1");

    let parsed = botocore_parse(
        "sts",
        "AssumeRole",
        500,
        &ApiError::internal().to_xml(Protocol::Query, "rid-2"),
    );
    assert_eq!(parsed["Error"]["Code"], "InternalFailure");
    assert_eq!(parsed["Error"]["Type"], "Receiver");
}

#[test]
fn ec2_error_bodies_parse_with_code_message_and_request_id() {
    let err = ApiError::new(
        "InvalidVpcID.NotFound",
        "The vpc ID 'vpc-1234' does not exist",
        400,
    );
    let parsed = botocore_parse(
        "ec2",
        "DescribeVpcs",
        400,
        &err.to_xml(Protocol::Ec2, "rid-3"),
    );
    assert_eq!(parsed["_protocol"], "ec2");
    assert_eq!(parsed["Error"]["Code"], "InvalidVpcID.NotFound");
    assert_eq!(
        parsed["Error"]["Message"],
        "The vpc ID 'vpc-1234' does not exist"
    );
    assert_eq!(parsed["ResponseMetadata"]["RequestId"], "rid-3");
}

/// Storage outages (`ServiceUnavailable`) and EC2 contention (`RequestLimitExceeded`) are 503s
/// that botocore retries; a bug (500) it retries too, a client error it does not.
#[test]
fn retry_later_errors_are_retried_by_botocore() {
    use hive_vpc::error::VpcError;
    let unavailable = ApiError::from(hive_iam_store::storage_error(
        hive_kv::KvError::Unavailable("timeout".into()),
    ));
    let contention = ApiError::from(VpcError::Busy("vpc-1234".into()));
    for (service, operation, err, protocol, code) in [
        (
            "iam",
            "CreateUser",
            &unavailable,
            Protocol::Query,
            "ServiceUnavailable",
        ),
        (
            "ec2",
            "CreateTags",
            &contention,
            Protocol::Ec2,
            "RequestLimitExceeded",
        ),
    ] {
        let parsed = botocore_parse(service, operation, err.status(), &err.to_xml(protocol, "r"));
        assert_eq!(parsed["Error"]["Code"], code);
        assert_eq!(parsed["ResponseMetadata"]["HTTPStatusCode"], 503);
        assert_eq!(parsed["_retryable"], true, "{code}");
    }
    let client = ApiError::new("NoSuchEntity", "no", 404);
    let parsed = botocore_parse("iam", "GetUser", 404, &client.to_xml(Protocol::Query, "r"));
    assert_eq!(parsed["_retryable"], false);
}

#[test]
fn sts_get_caller_identity_body_parses() {
    let body = xml::query_response(ServiceId::Sts, "GetCallerIdentity", "rid-4", |r| {
        r.text("UserId", "AIDAEXAMPLE")
            .text("Account", "000000000000")
            .text("Arn", "arn:aws:iam::000000000000:user/admin");
    });
    let parsed = botocore_parse("sts", "GetCallerIdentity", 200, &body);
    assert_eq!(parsed["_protocol"], "query");
    assert_eq!(parsed["UserId"], "AIDAEXAMPLE");
    assert_eq!(parsed["Account"], "000000000000");
    assert_eq!(parsed["Arn"], "arn:aws:iam::000000000000:user/admin");
    assert_eq!(parsed["ResponseMetadata"]["RequestId"], "rid-4");
}

#[test]
fn iam_member_lists_pagination_and_timestamps_parse() {
    let created = datetime!(2024-05-06 07:08:09 UTC);
    let body = xml::query_response(ServiceId::Iam, "ListUsers", "rid-5", |r| {
        r.list("Users", ["alice", "bob"], |w, name| {
            w.text("Path", "/")
                .text("UserName", name)
                .text("UserId", "AIDAEXAMPLE")
                .text("Arn", &format!("arn:aws:iam::000000000000:user/{name}"))
                .time("CreateDate", created)
                .list("Tags", [("team", "net & ops")], |w, (k, v)| {
                    w.text("Key", k).text("Value", v);
                });
        })
        .pagination(Some("next-page"));
    });
    let parsed = botocore_parse("iam", "ListUsers", 200, &body);
    let users = parsed["Users"].as_array().expect("Users is a list");
    assert_eq!(users.len(), 2);
    assert_eq!(users[1]["UserName"], "bob");
    assert_eq!(users[0]["Tags"][0]["Value"], "net & ops");
    let date = users[0]["CreateDate"]
        .as_str()
        .expect("timestamp rendered by json.dumps");
    assert!(
        date.starts_with("2024-05-06 07:08:09"),
        "botocore parsed the timestamp: {date}"
    );
    assert_eq!(parsed["IsTruncated"], Value::Bool(true));
    assert_eq!(parsed["Marker"], "next-page");
}

#[test]
fn ec2_item_lists_parse() {
    let body = xml::ec2_response("DescribeVpcs", "rid-6", |w| {
        w.list("vpcSet", ["vpc-0a", "vpc-0b"], |w, id| {
            w.text("vpcId", id)
                .text("state", "available")
                .text("cidrBlock", "10.0.0.0/16")
                .bool("isDefault", id == "vpc-0a")
                .list("tagSet", [("Name", "default")], |w, (k, v)| {
                    w.text("key", k).text("value", v);
                });
        })
        .next_token(Some("tok"));
    });
    let parsed = botocore_parse("ec2", "DescribeVpcs", 200, &body);
    let vpcs = parsed["Vpcs"].as_array().expect("Vpcs is a list");
    assert_eq!(vpcs.len(), 2);
    assert_eq!(vpcs[0]["VpcId"], "vpc-0a");
    assert_eq!(vpcs[0]["IsDefault"], Value::Bool(true));
    assert_eq!(vpcs[1]["Tags"][0]["Key"], "Name");
    assert_eq!(parsed["NextToken"], "tok");
    assert_eq!(parsed["ResponseMetadata"]["RequestId"], "rid-6");
}

#[test]
fn ec2_timestamps_parse() {
    let body = xml::ec2_response("DescribeSecurityGroupRules", "rid-7", |w| {
        w.list("securityGroupRuleSet", ["sgr-1"], |w, id| {
            w.text("securityGroupRuleId", id);
        });
    });
    let parsed = botocore_parse("ec2", "DescribeSecurityGroupRules", 200, &body);
    assert_eq!(
        parsed["SecurityGroupRules"][0]["SecurityGroupRuleId"],
        "sgr-1"
    );
    // EC2 timestamps carry milliseconds; botocore must read them.
    let body = xml::ec2_response("DescribeNetworkInterfaces", "r", |w| {
        w.list("networkInterfaceSet", ["eni-1"], |w, id| {
            w.text("networkInterfaceId", id).node("attachment", |w| {
                w.time("attachTime", datetime!(2024-01-02 03:04:05.678 UTC));
            });
        });
    });
    let parsed = botocore_parse("ec2", "DescribeNetworkInterfaces", 200, &body);
    let t = parsed["NetworkInterfaces"][0]["Attachment"]["AttachTime"]
        .as_str()
        .expect("time");
    assert!(t.starts_with("2024-01-02 03:04:05.678"), "{t}");
}

/// Bodies produced by the running server (not just by the writer) parse the same way.
#[tokio::test]
async fn live_server_error_bodies_parse() {
    let server =
        TestServer::start(Server::new(config(), ready_ok()).service(Arc::new(TestSts))).await;
    let reply = post_form(
        server.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    let parsed = botocore_parse("sts", "GetCallerIdentity", reply.status, &reply.body);
    assert_eq!(parsed["Error"]["Code"], "MissingAuthenticationToken");
    assert_eq!(
        parsed["Error"]["Message"],
        "Request is missing Authentication Token"
    );
    assert_eq!(
        parsed["ResponseMetadata"]["RequestId"].as_str(),
        reply.header("x-amzn-RequestId")
    );
    let reply = get(
        server.addr,
        "/?Action=DescribeVpcs&Version=2016-11-15&Bad=%ZZ",
    )
    .await;
    assert_eq!(reply.status, 400);
    let parsed = botocore_parse("ec2", "DescribeVpcs", reply.status, &reply.body);
    assert_eq!(parsed["Error"]["Code"], "MalformedQueryString");

    let allowed = TestServer::start(
        Server::new(config(), ready_ok())
            .authenticator(Arc::new(AllowAll))
            .service(Arc::new(TestSts)),
    )
    .await;
    let reply = post_form(
        allowed.addr,
        "Action=GetCallerIdentity&Version=2011-06-15",
        "",
    )
    .await;
    let parsed = botocore_parse("sts", "GetCallerIdentity", reply.status, &reply.body);
    assert_eq!(parsed["Arn"], "arn:aws:iam::000000000000:user/admin");
    let reply = post_form(allowed.addr, "Action=Nope&Version=2010-05-08", "").await;
    let parsed = botocore_parse("iam", "ListUsers", reply.status, &reply.body);
    assert_eq!(parsed["Error"]["Code"], "InvalidAction");
}
