//! IAM identities over HTTP, in process: users, groups and membership, access keys, tags and
//! permissions boundaries, on a bootstrapped in-memory store. Requests are form bodies as
//! botocore sends them; every response of every action is also parsed by botocore against the
//! action's output shape (needs `$HIVE_PYTHON` or `<workspace>/.venv/bin/python` with botocore;
//! the tests fail with the fix when it is missing).
//!
//! The test authenticator takes the caller from an `X-Test-Caller` header (a user name, `root`,
//! or `role:<name>`), defaulting to the bootstrapped `admin`; authorization is the real one.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use hive_api::app::App;
use hive_api::iam::IamService;
use hive_api::server::Server;
use hive_api::wire::query::encode;
use hive_iam_store::Target;
use serde_json::Value;

const ACCT: &str = "000000000000";

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;

/// A bootstrapped server and the responses it gave, for botocore to parse at the end.
struct Env {
    server: TestServer,
    app: Arc<App>,
    seen: Vec<(String, u16, String)>,
}

impl Env {
    async fn new() -> Self {
        let app = bootstrapped_app(ACCT).await;
        let server = TestServer::start(
            Server::new(config(), ready_ok())
                .authenticator(Arc::new(HeaderAuth { app: app.clone() }))
                .service(Arc::new(IamService::new(app.clone()))),
        )
        .await;
        Self {
            server,
            app,
            seen: Vec::new(),
        }
    }

    /// `action` with `params` as `caller` (None: admin); the reply is recorded for botocore.
    async fn call_as(
        &mut self,
        caller: Option<&str>,
        action: &str,
        params: &[(&str, &str)],
    ) -> Reply {
        let mut pairs = vec![("Action", action), ("Version", "2010-05-08")];
        pairs.extend_from_slice(params);
        let mut headers = auth_header("iam");
        if let Some(c) = caller {
            headers.push_str(&format!("X-Test-Caller: {c}\r\n"));
        }
        let reply = post_form(self.server.addr, &encode(pairs), &headers).await;
        self.seen
            .push((action.to_owned(), reply.status, reply.body.clone()));
        reply
    }

    async fn call(&mut self, action: &str, params: &[(&str, &str)]) -> Reply {
        self.call_as(None, action, params).await
    }

    /// `action` must succeed; returns the body.
    async fn ok(&mut self, action: &str, params: &[(&str, &str)]) -> String {
        let reply = self.call(action, params).await;
        assert_eq!(
            reply.status, 200,
            "{action} {params:?} failed: {}",
            reply.body
        );
        assert!(
            reply.body.contains(&format!(
                "<{action}Response xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">"
            )),
            "{}",
            reply.body
        );
        reply.body
    }

    /// `action` must fail with `code` and `status`; returns the message.
    async fn fails(
        &mut self,
        action: &str,
        params: &[(&str, &str)],
        status: u16,
        code: &str,
    ) -> String {
        let reply = self.call(action, params).await;
        assert_eq!(
            (reply.status, error_code(&reply.body).as_str()),
            (status, code),
            "{action} {params:?}: {}",
            reply.body
        );
        texts(&reply.body, "Message").pop().unwrap_or_default()
    }

    /// botocore's parse of every recorded response (one python process for all).
    fn parse_all(&self) -> Vec<Value> {
        let input: Vec<Value> = self
            .seen
            .iter()
            .map(|(a, s, b)| serde_json::json!([a, s, b]))
            .collect();
        botocore_parse_many(&Value::Array(input))
    }
}

/// Parses `[[operation, status, body], ...]` with botocore's IAM parser.
fn botocore_parse_many(input: &Value) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
import botocore.session
from botocore import parsers
model = botocore.session.get_session().get_service_model("iam")
parser = parsers.create_parser(model.metadata["protocol"])
out = []
for op, status, body in json.load(sys.stdin):
    shape = model.operation_model(op).output_shape
    out.append(parser.parse({"status_code": status, "headers": {}, "body": body.encode()}, shape))
print(json.dumps(out, default=str))
"#;
    let python = python();
    let out = run_piped(
        std::process::Command::new(&python).args(["-c", SCRIPT]),
        input.to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "botocore parse failed (install botocore into {}): {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python")
}

/// The contents of every `<tag>...</tag>` (not nested in itself) in `xml`, unescaped enough
/// for names and ids.
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(
            after[..end]
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&apos;", "'")
                .replace("&quot;", "\""),
        );
        rest = &after[end + close.len()..];
    }
    out
}

fn text(xml: &str, tag: &str) -> String {
    texts(xml, tag)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
}

fn error_code(xml: &str) -> String {
    texts(xml, "Code").pop().unwrap_or_default()
}

/// Every user name that `ListUsers` (or another paginated list) returns, walking pages of
/// `max` items; returns the names and the number of pages.
async fn walk(
    env: &mut Env,
    action: &str,
    params: &[(&str, &str)],
    element: &str,
    max: &str,
) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut p: Vec<(&str, &str)> = params.to_vec();
        p.push(("MaxItems", max));
        if let Some(m) = &marker {
            p.push(("Marker", m));
        }
        let body = env.ok(action, &p).await;
        pages += 1;
        names.extend(texts(&body, element));
        let truncated = text(&body, "IsTruncated");
        if truncated == "false" {
            assert!(
                texts(&body, "Marker").is_empty(),
                "no marker on the last page"
            );
            break;
        }
        assert_eq!(truncated, "true");
        marker = Some(text(&body, "Marker"));
        assert!(pages < 50, "pagination does not end");
    }
    (names, pages)
}

#[tokio::test]
async fn every_action_answers_and_parses_with_botocore() {
    let mut env = Env::new().await;
    let boundary = env
        .app
        .iam
        .create_policy(ACCT, "Boundary", None, ALLOW_ALL, None, vec![])
        .await
        .expect("policy")
        .arn;
    env.app
        .iam
        .create_role(ACCT, "deployer", Some("/svc/"), TRUST, None, None, vec![])
        .await
        .expect("role");

    // Users.
    let body = env
        .ok(
            "CreateUser",
            &[
                ("UserName", "alice"),
                ("Path", "/eng/"),
                ("PermissionsBoundary", &boundary),
                ("Tags.member.1.Key", "team"),
                ("Tags.member.1.Value", "net+ops @eu"),
            ],
        )
        .await;
    assert_eq!(
        text(&body, "Arn"),
        "arn:aws:iam::000000000000:user/eng/alice"
    );
    assert_eq!(text(&body, "PermissionsBoundaryArn"), boundary);
    let body = env.ok("GetUser", &[("UserName", "ALICE")]).await;
    assert_eq!(text(&body, "UserName"), "alice");
    assert_eq!(text(&body, "Value"), "net+ops @eu");
    let body = env.ok("GetUser", &[]).await;
    assert_eq!(text(&body, "UserName"), "admin", "no name: the caller");
    let body = env.ok("ListUsers", &[("PathPrefix", "/eng/")]).await;
    assert_eq!(texts(&body, "UserName"), ["alice"]);
    assert!(
        !body.contains("<Tags>"),
        "ListUsers leaves tags out, as AWS"
    );
    env.ok(
        "UpdateUser",
        &[("UserName", "alice"), ("NewUserName", "alicia")],
    )
    .await;
    env.fails("GetUser", &[("UserName", "alice")], 404, "NoSuchEntity")
        .await;

    // Groups and membership.
    let body = env
        .ok("CreateGroup", &[("GroupName", "devs"), ("Path", "/eng/")])
        .await;
    assert_eq!(
        text(&body, "Arn"),
        "arn:aws:iam::000000000000:group/eng/devs"
    );
    assert!(text(&body, "GroupId").starts_with("AGPA"));
    env.ok(
        "AddUserToGroup",
        &[("GroupName", "devs"), ("UserName", "alicia")],
    )
    .await;
    let body = env.ok("GetGroup", &[("GroupName", "devs")]).await;
    assert_eq!(texts(&body, "UserName"), ["alicia"]);
    let body = env.ok("ListGroups", &[]).await;
    assert_eq!(texts(&body, "GroupName"), ["administrators", "devs"]);
    let body = env.ok("ListGroupsForUser", &[("UserName", "alicia")]).await;
    assert_eq!(texts(&body, "GroupName"), ["devs"]);
    env.ok("UpdateGroup", &[("GroupName", "devs"), ("NewPath", "/x/")])
        .await;
    env.ok(
        "RemoveUserFromGroup",
        &[("GroupName", "devs"), ("UserName", "alicia")],
    )
    .await;
    env.ok("DeleteGroup", &[("GroupName", "devs")]).await;

    // Access keys.
    let body = env.ok("CreateAccessKey", &[("UserName", "alicia")]).await;
    let key_id = text(&body, "AccessKeyId");
    assert!(key_id.starts_with("AKIA") && key_id.len() == 20);
    assert_eq!(text(&body, "SecretAccessKey").len(), 40);
    assert_eq!(text(&body, "Status"), "Active");
    let body = env.ok("ListAccessKeys", &[("UserName", "alicia")]).await;
    assert_eq!(texts(&body, "AccessKeyId"), std::slice::from_ref(&key_id));
    assert!(!body.contains("SecretAccessKey"));
    env.ok(
        "UpdateAccessKey",
        &[
            ("UserName", "alicia"),
            ("AccessKeyId", &key_id),
            ("Status", "Inactive"),
        ],
    )
    .await;
    let body = env.ok("ListAccessKeys", &[("UserName", "alicia")]).await;
    assert_eq!(text(&body, "Status"), "Inactive");
    let body = env
        .ok("GetAccessKeyLastUsed", &[("AccessKeyId", &key_id)])
        .await;
    assert_eq!(text(&body, "UserName"), "alicia");
    assert_eq!(text(&body, "ServiceName"), "N/A");
    env.app
        .iam
        .record_key_use(&key_id, "iam", "us-east-1", time::OffsetDateTime::now_utc())
        .await
        .expect("record use");
    let body = env
        .ok("GetAccessKeyLastUsed", &[("AccessKeyId", &key_id)])
        .await;
    assert_eq!(text(&body, "ServiceName"), "iam");
    assert_eq!(text(&body, "Region"), "us-east-1");
    env.ok(
        "DeleteAccessKey",
        &[("UserName", "alicia"), ("AccessKeyId", &key_id)],
    )
    .await;

    // Tags.
    env.ok(
        "TagUser",
        &[
            ("UserName", "alicia"),
            ("Tags.member.1.Key", "env"),
            ("Tags.member.1.Value", "prod"),
        ],
    )
    .await;
    env.ok(
        "UntagUser",
        &[("UserName", "alicia"), ("TagKeys.member.1", "team")],
    )
    .await;
    let body = env.ok("ListUserTags", &[("UserName", "alicia")]).await;
    assert_eq!(texts(&body, "Key"), ["env"]);
    env.ok(
        "TagRole",
        &[
            ("RoleName", "deployer"),
            ("Tags.member.1.Key", "a"),
            ("Tags.member.1.Value", "1"),
            ("Tags.member.2.Key", "b"),
            ("Tags.member.2.Value", "2"),
        ],
    )
    .await;
    env.ok(
        "UntagRole",
        &[("RoleName", "deployer"), ("TagKeys.member.1", "A")],
    )
    .await;
    let body = env.ok("ListRoleTags", &[("RoleName", "deployer")]).await;
    assert_eq!(texts(&body, "Key"), ["b"]);

    // Permissions boundaries.
    env.ok("DeleteUserPermissionsBoundary", &[("UserName", "alicia")])
        .await;
    let body = env.ok("GetUser", &[("UserName", "alicia")]).await;
    assert!(!body.contains("PermissionsBoundary"));
    env.ok(
        "PutUserPermissionsBoundary",
        &[("UserName", "alicia"), ("PermissionsBoundary", &boundary)],
    )
    .await;
    let body = env.ok("GetUser", &[("UserName", "alicia")]).await;
    assert_eq!(text(&body, "PermissionsBoundaryArn"), boundary);
    env.ok(
        "PutRolePermissionsBoundary",
        &[("RoleName", "deployer"), ("PermissionsBoundary", &boundary)],
    )
    .await;
    let role = env.app.iam.get_role(ACCT, "deployer").await.expect("role");
    assert_eq!(
        role.permissions_boundary.as_deref(),
        Some(boundary.as_str())
    );
    env.ok("DeleteRolePermissionsBoundary", &[("RoleName", "deployer")])
        .await;
    let role = env.app.iam.get_role(ACCT, "deployer").await.expect("role");
    assert_eq!(role.permissions_boundary, None);
    env.ok("DeleteUserPermissionsBoundary", &[("UserName", "alicia")])
        .await;
    env.ok("DeleteUser", &[("UserName", "alicia")]).await;
    // Errors parse too.
    env.fails("GetUser", &[("UserName", "alicia")], 404, "NoSuchEntity")
        .await;

    // Every action answered 200 at least once.
    let answered: BTreeSet<&str> = env
        .seen
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(a, _, _)| a.as_str())
        .collect();
    // Every action the family serves (the service's own list).
    let expected: BTreeSet<&str> = hive_api::iam::IDENTITY_ACTIONS.iter().copied().collect();
    assert_eq!(answered, expected);

    // botocore reads every response against the action's output shape.
    let parsed = env.parse_all();
    assert_eq!(parsed.len(), env.seen.len());
    for ((action, status, body), p) in env.seen.iter().zip(&parsed) {
        let request_id = &p["ResponseMetadata"]["RequestId"];
        assert!(
            request_id.as_str().is_some_and(|r| !r.is_empty()),
            "{action}: no request id in {p}"
        );
        if *status == 200 {
            assert!(p.get("Error").is_none(), "{action}: {p} from {body}");
        } else {
            assert_eq!(p["Error"]["Code"], "NoSuchEntity", "{action}: {p}");
        }
    }
    let by_action = |name: &str| -> Vec<&Value> {
        env.seen
            .iter()
            .zip(&parsed)
            .filter(|((a, s, _), _)| a == name && *s == 200)
            .map(|(_, p)| p)
            .collect()
    };
    let created = by_action("CreateUser")[0];
    assert_eq!(created["User"]["UserName"], "alice");
    assert_eq!(created["User"]["Path"], "/eng/");
    assert_eq!(
        created["User"]["PermissionsBoundary"]["PermissionsBoundaryType"],
        "PermissionsBoundaryPolicy"
    );
    assert_eq!(created["User"]["Tags"][0]["Value"], "net+ops @eu");
    assert!(
        created["User"]["CreateDate"]
            .as_str()
            .is_some_and(|d| d.contains('+') || d.ends_with('Z')),
        "CreateDate parsed as a timestamp: {}",
        created["User"]["CreateDate"]
    );
    let listed = by_action("ListUsers")[0];
    assert_eq!(listed["Users"][0]["UserName"], "alice");
    assert_eq!(listed["IsTruncated"], Value::Bool(false));
    let group = by_action("GetGroup")[0];
    assert_eq!(group["Group"]["GroupName"], "devs");
    assert_eq!(group["Users"][0]["UserName"], "alicia");
    let groups = by_action("ListGroups")[0];
    assert_eq!(groups["Groups"].as_array().map(Vec::len), Some(2));
    let key = by_action("CreateAccessKey")[0];
    assert_eq!(key["AccessKey"]["AccessKeyId"], key_id.as_str());
    assert_eq!(key["AccessKey"]["UserName"], "alicia");
    let keys = by_action("ListAccessKeys")[1];
    assert_eq!(keys["AccessKeyMetadata"][0]["Status"], "Inactive");
    let used = by_action("GetAccessKeyLastUsed")[1];
    assert_eq!(used["AccessKeyLastUsed"]["ServiceName"], "iam");
    assert!(used["AccessKeyLastUsed"]["LastUsedDate"].is_string());
    let tags = by_action("ListRoleTags")[0];
    assert_eq!(tags["Tags"][0]["Key"], "b");
    assert_eq!(tags["IsTruncated"], Value::Bool(false));
}

#[tokio::test]
async fn renames_keep_memberships_keys_and_attachments() {
    let mut env = Env::new().await;
    let policy = env
        .app
        .iam
        .create_policy(ACCT, "ReadOnly", None, ALLOW_ALL, None, vec![])
        .await
        .expect("policy")
        .arn;
    env.ok("CreateUser", &[("UserName", "bob")]).await;
    env.ok("CreateGroup", &[("GroupName", "ops")]).await;
    env.ok(
        "AddUserToGroup",
        &[("GroupName", "ops"), ("UserName", "bob")],
    )
    .await;
    let key_id = text(
        &env.ok("CreateAccessKey", &[("UserName", "bob")]).await,
        "AccessKeyId",
    );
    env.app
        .iam
        .attach_policy(ACCT, &Target::User("bob".into()), &policy)
        .await
        .expect("attach to user");
    env.app
        .iam
        .attach_policy(ACCT, &Target::Group("ops".into()), &policy)
        .await
        .expect("attach to group");
    let user_id = text(&env.ok("GetUser", &[("UserName", "bob")]).await, "UserId");

    env.ok(
        "UpdateUser",
        &[
            ("UserName", "bob"),
            ("NewUserName", "robert"),
            ("NewPath", "/team/"),
        ],
    )
    .await;
    let body = env.ok("GetUser", &[("UserName", "robert")]).await;
    assert_eq!(text(&body, "UserId"), user_id, "the unique id stays");
    assert_eq!(
        text(&body, "Arn"),
        "arn:aws:iam::000000000000:user/team/robert"
    );
    let body = env.ok("GetGroup", &[("GroupName", "ops")]).await;
    assert_eq!(texts(&body, "UserName"), ["robert"]);
    let body = env.ok("ListAccessKeys", &[("UserName", "robert")]).await;
    assert_eq!(texts(&body, "AccessKeyId"), std::slice::from_ref(&key_id));
    assert_eq!(text(&body, "UserName"), "robert");
    let cred = env
        .app
        .iam
        .lookup_credential(&key_id, time::OffsetDateTime::now_utc())
        .await
        .expect("lookup")
        .expect("the key still authenticates");
    assert_eq!(
        cred.principal.arn(),
        "arn:aws:iam::000000000000:user/team/robert"
    );
    // The renamed user still acts with its own and its group's policies.
    let body = env
        .call_as(
            Some("robert"),
            "ListGroupsForUser",
            &[("UserName", "robert")],
        )
        .await;
    assert_eq!(body.status, 200, "{}", body.body);
    assert_eq!(texts(&body.body, "GroupName"), ["ops"]);

    env.ok(
        "UpdateGroup",
        &[("GroupName", "ops"), ("NewGroupName", "operators")],
    )
    .await;
    let body = env.ok("ListGroupsForUser", &[("UserName", "robert")]).await;
    assert_eq!(texts(&body, "GroupName"), ["operators"]);
    let attachments = env
        .app
        .iam
        .get_policy(&policy)
        .await
        .expect("policy")
        .attachments;
    assert_eq!(
        attachments.iter().collect::<BTreeSet<_>>(),
        [
            "arn:aws:iam::000000000000:group/operators",
            "arn:aws:iam::000000000000:user/team/robert",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .iter()
        .collect::<BTreeSet<_>>()
    );
    // Renaming onto a taken name changes nothing.
    env.ok("CreateUser", &[("UserName", "carol")]).await;
    let msg = env
        .fails(
            "UpdateUser",
            &[("UserName", "robert"), ("NewUserName", "Carol")],
            409,
            "EntityAlreadyExists",
        )
        .await;
    assert_eq!(msg, "User with name Carol already exists.");
    env.ok("GetUser", &[("UserName", "robert")]).await;
    env.fails(
        "UpdateGroup",
        &[("GroupName", "ops"), ("NewGroupName", "x")],
        404,
        "NoSuchEntity",
    )
    .await;
    let parsed = env.parse_all();
    assert_eq!(
        parsed.len(),
        env.seen.len(),
        "every reply parses with botocore"
    );
}

#[tokio::test]
async fn pagination_walks_one_item_at_a_time() {
    let mut env = Env::new().await;
    let mut expected = vec!["admin".to_owned()];
    for name in ["u3", "U1", "u5", "u2", "u4"] {
        env.ok("CreateUser", &[("UserName", name)]).await;
        env.ok(
            "AddUserToGroup",
            &[("GroupName", "administrators"), ("UserName", name)],
        )
        .await;
        env.ok("CreateGroup", &[("GroupName", &format!("g-{name}"))])
            .await;
        expected.push(name.to_owned());
    }
    expected.sort_by_key(|n| n.to_ascii_lowercase());
    let (users, pages) = walk(&mut env, "ListUsers", &[], "UserName", "1").await;
    assert_eq!(users, expected);
    assert_eq!(pages, 6);
    let (users, pages) = walk(&mut env, "ListUsers", &[], "UserName", "4").await;
    assert_eq!(users, expected);
    assert_eq!(pages, 2);
    let (members, _) = walk(
        &mut env,
        "GetGroup",
        &[("GroupName", "administrators")],
        "UserName",
        "1",
    )
    .await;
    assert_eq!(members, expected);
    let (groups, pages) = walk(&mut env, "ListGroups", &[], "GroupName", "2").await;
    assert_eq!(groups.len(), 6);
    assert_eq!(pages, 3);
    env.ok(
        "TagUser",
        &[
            ("UserName", "u2"),
            ("Tags.member.1.Key", "b"),
            ("Tags.member.1.Value", "2"),
            ("Tags.member.2.Key", "a"),
            ("Tags.member.2.Value", "1"),
            ("Tags.member.3.Key", "c"),
            ("Tags.member.3.Value", ""),
        ],
    )
    .await;
    let (keys, pages) = walk(&mut env, "ListUserTags", &[("UserName", "u2")], "Key", "1").await;
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(pages, 3);
    // Every page parses with botocore, markers included.
    let parsed = env.parse_all();
    let truncated = parsed
        .iter()
        .filter(|p| p["IsTruncated"] == Value::Bool(true))
        .count();
    assert!(truncated >= 10, "{truncated} truncated pages parsed");
    assert!(
        parsed
            .iter()
            .filter(|p| p["IsTruncated"] == Value::Bool(true))
            .all(|p| p["Marker"].is_string())
    );
    // A marker we never gave is a validation error; MaxItems is bounded as in the model.
    env.fails("ListUsers", &[("Marker", "zz")], 400, "ValidationError")
        .await;
    let msg = env
        .fails("ListUsers", &[("MaxItems", "0")], 400, "ValidationError")
        .await;
    assert_eq!(
        msg,
        "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: \
         Member must have value greater than or equal to 1"
    );
    env.fails("ListUsers", &[("MaxItems", "1001")], 400, "ValidationError")
        .await;
}

#[tokio::test]
async fn delete_conflicts_and_limits_as_aws() {
    let mut env = Env::new().await;
    env.ok("CreateUser", &[("UserName", "dave")]).await;
    env.ok("CreateGroup", &[("GroupName", "team")]).await;
    env.ok(
        "AddUserToGroup",
        &[("GroupName", "team"), ("UserName", "dave")],
    )
    .await;
    let k1 = text(
        &env.ok("CreateAccessKey", &[("UserName", "dave")]).await,
        "AccessKeyId",
    );
    let k2 = text(
        &env.ok("CreateAccessKey", &[("UserName", "dave")]).await,
        "AccessKeyId",
    );
    let msg = env
        .fails(
            "CreateAccessKey",
            &[("UserName", "dave")],
            409,
            "LimitExceeded",
        )
        .await;
    assert_eq!(msg, "Cannot exceed quota for AccessKeysPerUser: 2");

    let msg = env
        .fails("DeleteUser", &[("UserName", "dave")], 409, "DeleteConflict")
        .await;
    assert_eq!(msg, "Cannot delete entity, must delete access keys first.");
    for k in [&k1, &k2] {
        env.ok(
            "DeleteAccessKey",
            &[("UserName", "dave"), ("AccessKeyId", k)],
        )
        .await;
    }
    env.fails(
        "DeleteAccessKey",
        &[("UserName", "dave"), ("AccessKeyId", &k1)],
        404,
        "NoSuchEntity",
    )
    .await;
    let msg = env
        .fails("DeleteUser", &[("UserName", "dave")], 409, "DeleteConflict")
        .await;
    assert_eq!(
        msg,
        "Cannot delete entity, must remove user from all groups first."
    );
    let msg = env
        .fails(
            "DeleteGroup",
            &[("GroupName", "team")],
            409,
            "DeleteConflict",
        )
        .await;
    assert_eq!(
        msg,
        "Cannot delete entity, must remove users from group first."
    );
    env.ok(
        "RemoveUserFromGroup",
        &[("GroupName", "team"), ("UserName", "dave")],
    )
    .await;
    env.fails(
        "RemoveUserFromGroup",
        &[("GroupName", "team"), ("UserName", "dave")],
        404,
        "NoSuchEntity",
    )
    .await;
    env.ok("DeleteUser", &[("UserName", "dave")]).await;
    env.ok("DeleteGroup", &[("GroupName", "team")]).await;
    env.fails("DeleteGroup", &[("GroupName", "team")], 404, "NoSuchEntity")
        .await;
    let parsed = env.parse_all();
    assert!(
        parsed
            .iter()
            .any(|p| p["Error"]["Code"] == "DeleteConflict")
    );
    assert!(parsed.iter().any(|p| p["Error"]["Code"] == "LimitExceeded"));
}

#[tokio::test]
async fn validation_and_existence_errors_read_like_aws() {
    let mut env = Env::new().await;
    let msg = env.fails("CreateUser", &[], 400, "ValidationError").await;
    assert_eq!(
        msg,
        "1 validation error detected: Value null at 'userName' failed to satisfy constraint: \
         Member must not be null"
    );
    let msg = env
        .fails(
            "CreateUser",
            &[("UserName", "bad name")],
            400,
            "ValidationError",
        )
        .await;
    assert_eq!(
        msg,
        "1 validation error detected: Value 'bad name' at 'userName' failed to satisfy \
         constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
    );
    env.fails(
        "CreateUser",
        &[("UserName", &"x".repeat(65))],
        400,
        "ValidationError",
    )
    .await;
    env.fails(
        "CreateUser",
        &[("UserName", "p"), ("Path", "nopath")],
        400,
        "ValidationError",
    )
    .await;
    env.ok("CreateUser", &[("UserName", "erin")]).await;
    let msg = env
        .fails(
            "CreateUser",
            &[("UserName", "ERIN")],
            409,
            "EntityAlreadyExists",
        )
        .await;
    assert_eq!(msg, "User with name ERIN already exists.");
    let msg = env
        .fails("GetUser", &[("UserName", "nobody")], 404, "NoSuchEntity")
        .await;
    assert_eq!(msg, "The user with name nobody cannot be found.");
    env.fails(
        "CreateUser",
        &[
            ("UserName", "f"),
            (
                "PermissionsBoundary",
                "arn:aws:iam::000000000000:policy/Missing",
            ),
        ],
        404,
        "NoSuchEntity",
    )
    .await;
    env.fails("GetUser", &[("UserName", "f")], 404, "NoSuchEntity")
        .await;
    env.fails(
        "UpdateAccessKey",
        &[
            ("UserName", "erin"),
            ("AccessKeyId", "AKIAAAAAAAAAAAAAAAAA"),
            ("Status", "Sleeping"),
        ],
        400,
        "ValidationError",
    )
    .await;
    env.fails(
        "TagUser",
        &[
            ("UserName", "erin"),
            ("Tags.member.1.Key", "aws:reserved"),
            ("Tags.member.1.Value", "x"),
        ],
        400,
        "InvalidInput",
    )
    .await;
    env.fails("TagUser", &[("UserName", "erin")], 400, "ValidationError")
        .await;
    env.fails(
        "ListRoleTags",
        &[("RoleName", "ghost")],
        404,
        "NoSuchEntity",
    )
    .await;
    env.fails(
        "GetAccessKeyLastUsed",
        &[("AccessKeyId", "AKIAAAAAAAAAAAAAAAAA")],
        404,
        "NoSuchEntity",
    )
    .await;
    let parsed = env.parse_all();
    assert!(
        parsed
            .iter()
            .all(|p| p["Error"]["Code"].is_string() || p.get("Error").is_none())
    );
}

#[tokio::test]
async fn non_admin_is_denied_with_aws_message_until_allowed() {
    let mut env = Env::new().await;
    env.ok("CreateUser", &[("UserName", "bob")]).await;
    env.ok("CreateUser", &[("UserName", "alice"), ("Path", "/eng/")])
        .await;
    let reply = env
        .call_as(Some("bob"), "CreateUser", &[("UserName", "carol")])
        .await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(error_code(&reply.body), "AccessDenied");
    assert_eq!(
        text(&reply.body, "Message"),
        "User: arn:aws:iam::000000000000:user/bob is not authorized to perform: \
         iam:CreateUser on resource: arn:aws:iam::000000000000:user/carol because no \
         identity-based policy allows the iam:CreateUser action"
    );
    // Denied callers do not learn whether an entity exists, and the ARN carries its path.
    let reply = env
        .call_as(Some("bob"), "GetUser", &[("UserName", "alice")])
        .await;
    assert_eq!(reply.status, 403);
    assert!(
        text(&reply.body, "Message")
            .contains("on resource: arn:aws:iam::000000000000:user/eng/alice "),
        "{}",
        reply.body
    );
    let reply = env
        .call_as(Some("bob"), "GetUser", &[("UserName", "nobody")])
        .await;
    assert_eq!(
        (reply.status, error_code(&reply.body).as_str()),
        (403, "AccessDenied")
    );
    let reply = env.call_as(Some("bob"), "ListUsers", &[]).await;
    assert_eq!(reply.status, 403);
    assert!(
        text(&reply.body, "Message").contains("on resource: arn:aws:iam::000000000000:user/ "),
        "{}",
        reply.body
    );
    let reply = env.call_as(Some("bob"), "CreateAccessKey", &[]).await;
    assert_eq!(reply.status, 403, "keys of one's own need permission too");
    assert!(
        env.app
            .iam
            .list_access_keys(ACCT, "bob")
            .await
            .expect("keys")
            .is_empty()
    );

    // Allow bob to manage only himself.
    let own = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iam:GetUser","iam:CreateAccessKey","iam:ListAccessKeys"],"Resource":"arn:aws:iam::000000000000:user/${aws:username}"}]}"#;
    let policy = env
        .app
        .iam
        .create_policy(ACCT, "Self", None, own, None, vec![])
        .await
        .expect("policy")
        .arn;
    env.app
        .iam
        .attach_policy(ACCT, &Target::User("bob".into()), &policy)
        .await
        .expect("attach");
    let reply = env.call_as(Some("bob"), "GetUser", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(text(&reply.body, "UserName"), "bob");
    let reply = env.call_as(Some("bob"), "CreateAccessKey", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(text(&reply.body, "UserName"), "bob");
    let reply = env.call_as(Some("bob"), "ListAccessKeys", &[]).await;
    assert_eq!(texts(&reply.body, "AccessKeyId").len(), 1);
    let reply = env
        .call_as(Some("bob"), "GetUser", &[("UserName", "alice")])
        .await;
    assert_eq!(reply.status, 403, "still not others");
    let parsed = env.parse_all();
    assert!(parsed.iter().any(|p| p["Error"]["Code"] == "AccessDenied"));
}

#[tokio::test]
async fn root_and_role_callers_get_aws_answers() {
    let mut env = Env::new().await;
    env.app
        .iam
        .create_role(ACCT, "worker", None, TRUST, None, None, vec![])
        .await
        .expect("role");
    env.app
        .iam
        .attach_policy(
            ACCT,
            &Target::Role("worker".into()),
            &format!("arn:aws:iam::{ACCT}:policy/AdministratorAccess"),
        )
        .await
        .expect("attach");
    let reply = env.call_as(Some("root"), "GetUser", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(text(&reply.body, "Arn"), "arn:aws:iam::000000000000:root");
    assert_eq!(text(&reply.body, "UserId"), ACCT);
    let reply = env.call_as(Some("root"), "ListAccessKeys", &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = env.call_as(Some("role:worker"), "GetUser", &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        text(&reply.body, "Message"),
        "Must specify userName when calling with non-User credentials"
    );
    let reply = env
        .call_as(Some("role:worker"), "GetUser", &[("UserName", "admin")])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let parsed = env.parse_all();
    assert_eq!(parsed[0]["User"]["Arn"], "arn:aws:iam::000000000000:root");
    assert!(parsed[0]["User"]["CreateDate"].is_string());
}
