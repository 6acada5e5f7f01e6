//! IAM roles, managed policies and versions, attachments, inline policies, simulation and
//! account authorization details, driven over HTTP against an in-process server on the memory
//! store with a bootstrapped account.
//!
//! Every response is parsed by botocore's own query parser against the operation's output
//! shape, followed by the `json_decode_policies` handler that boto3 and the aws CLI run after
//! every IAM call (so policy documents must come back as JSON), and every XML element must be
//! one the shape declares. Needs a python with botocore (`$HIVE_PYTHON` or
//! `<workspace>/.venv/bin/python`); the tests fail, never skip, without it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command};
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use hive_api::app::App;
use hive_api::error::ApiError;
use hive_api::iam::IamService;
use hive_api::server::{AuthRequest, Authenticator, Principal, Server};
use hive_api::wire::query::encode;
use hive_iam::identity::DEFAULT_ACCOUNT_ID;
use hive_iam_store::Target;
use serde_json::{Value, json};

const ACCOUNT: &str = DEFAULT_ACCOUNT_ID;

/// botocore's parser in one long-lived python process: one JSON request per line in, one
/// JSON answer per line out.
struct Botocore {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

const BRIDGE: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
try:
    import botocore.session
    from botocore import parsers
    from botocore.handlers import json_decode_policies
except ImportError as e:
    print(f"botocore is not importable: {e}", file=sys.stderr)
    sys.exit(3)

model = botocore.session.get_session().get_service_model("iam")
parser = parsers.create_parser(model.metadata["protocol"])

def local(tag):
    return tag.split("}")[-1]

def check(el, shape, path, unknown):
    t = shape.type_name
    if t == "structure":
        names = {m.serialization.get("name", k): m for k, m in shape.members.items()}
        for child in el:
            tag = local(child.tag)
            if tag not in names:
                unknown.append(f"{path}/{tag}")
            else:
                check(child, names[tag], f"{path}/{tag}", unknown)
    elif t == "list":
        want = shape.member.serialization.get("name", "member")
        for child in el:
            if local(child.tag) != want:
                unknown.append(f"{path}/{local(child.tag)} (list item)")
            else:
                check(child, shape.member, f"{path}/{want}", unknown)
    elif t != "map" and len(el):
        unknown.append(f"{path} is a {t} with child elements")

for line in sys.stdin:
    req = json.loads(line)
    op = model.operation_model(req["op"])
    body = req["body"].encode()
    parsed = parser.parse({"status_code": req["status"], "headers": {}, "body": body}, op.output_shape)
    unknown = []
    if req["status"] < 300:
        json_decode_policies(parsed, op)
        root = ET.fromstring(body)
        if local(root.tag) != req["op"] + "Response":
            unknown.append("root " + local(root.tag))
        for child in root:
            tag = local(child.tag)
            if tag == "ResponseMetadata":
                continue
            if op.output_shape is not None and tag == op.output_shape.serialization.get("resultWrapper"):
                check(child, op.output_shape, tag, unknown)
            else:
                unknown.append(tag)
    print(json.dumps({"parsed": parsed, "unknown": unknown}, default=str, sort_keys=True), flush=True)
"#;

impl Botocore {
    fn start() -> Self {
        let (child, stdin, stdout) = spawn_bridge(Command::new(python()).args(["-c", BRIDGE]));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// botocore's parse of one response, and the elements its shape does not declare.
    fn parse(&mut self, op: &str, status: u16, body: &str) -> (Value, Vec<String>) {
        let line = json!({"op": op, "status": status, "body": body}).to_string();
        writeln!(self.stdin, "{line}").expect("write to the botocore bridge");
        self.stdin.flush().expect("flush the botocore bridge");
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .expect("read from the botocore bridge");
        assert!(
            !answer.is_empty(),
            "the botocore bridge exited (exit code 3: install botocore into {})",
            python().display()
        );
        let mut v: Value = serde_json::from_str(&answer).expect("bridge prints JSON");
        let unknown = v["unknown"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (v["parsed"].take(), unknown)
    }
}

impl Drop for Botocore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Authenticates every request as one fixed principal.
struct As(Principal);

#[async_trait]
impl Authenticator for As {
    async fn authenticate(&self, _request: &AuthRequest<'_>) -> Result<Principal, ApiError> {
        Ok(self.0.clone())
    }
}

fn user_principal(name: &str, user_id: &str) -> Principal {
    let arn = format!("arn:aws:iam::{ACCOUNT}:user/{name}");
    Principal {
        account_id: ACCOUNT.into(),
        arn: arn.clone(),
        user_id: user_id.into(),
        access_key_id: Some("AKIAEXAMPLEBOB000001".into()),
        identity: hive_iam::identity::Principal::User {
            account_id: ACCOUNT.into(),
            username: name.into(),
            user_id: user_id.into(),
            arn,
        },
        session_policy: None,
    }
}

/// A bootstrapped account behind an in-process server, and a client for it.
struct Fixture {
    server: TestServer,
    app: Arc<App>,
    botocore: Botocore,
}

/// An answer: status, raw body, botocore's parse.
struct Answer {
    status: u16,
    body: String,
    parsed: Value,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_as(Arc::new(AllowAll)).await
    }

    async fn start_as(auth: Arc<dyn Authenticator>) -> Self {
        let app = bootstrapped_app(ACCOUNT).await;
        let server = Server::new(config(), ready_ok())
            .authenticator(auth)
            .service(Arc::new(IamService::new(app.clone())));
        Self {
            server: TestServer::start(server).await,
            app,
            botocore: Botocore::start(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `SimulatePrincipalPolicy` of `source` for `actions` (numbered in order), with `extra`
    /// parameters.
    async fn simulate(&mut self, source: &str, actions: &[&str], extra: &[(&str, &str)]) -> Value {
        let names: Vec<String> = (1..=actions.len())
            .map(|i| format!("ActionNames.member.{i}"))
            .collect();
        let mut params = vec![("PolicySourceArn", source)];
        params.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(actions.iter().copied()),
        );
        params.extend_from_slice(extra);
        self.ok("SimulatePrincipalPolicy", &params).await
    }

    /// Creates user `name` (at `path`) in the repository directly.
    async fn user(&self, name: &str, path: Option<&str>) {
        self.app
            .iam
            .create_user(ACCOUNT, name, path, Vec::new())
            .await
            .expect("user");
    }

    /// Creates group `name` in the repository directly, with `members` in it.
    async fn group(&self, name: &str, members: &[&str]) {
        self.app
            .iam
            .create_group(ACCOUNT, name, None)
            .await
            .expect("group");
        for member in members {
            self.app
                .iam
                .add_user_to_group(ACCOUNT, name, member)
                .await
                .expect("member");
        }
    }

    async fn call(&mut self, action: &str, params: &[(&str, &str)]) -> Answer {
        let mut pairs = vec![("Action", action), ("Version", "2010-05-08")];
        pairs.extend_from_slice(params);
        let reply = post_form(self.addr(), &encode(pairs), &auth_header("iam")).await;
        let (parsed, unknown) = self.botocore.parse(action, reply.status, &reply.body);
        assert!(
            unknown.is_empty(),
            "{action}: elements not in botocore's output shape: {unknown:?}\n{}",
            reply.body
        );
        assert_eq!(
            parsed["ResponseMetadata"]["RequestId"].as_str(),
            reply.header("x-amzn-RequestId"),
            "{action}: request id"
        );
        Answer {
            status: reply.status,
            body: reply.body,
            parsed,
        }
    }

    /// A call that must succeed; botocore's parse.
    async fn ok(&mut self, action: &str, params: &[(&str, &str)]) -> Value {
        let a = self.call(action, params).await;
        assert_eq!(a.status, 200, "{action} failed: {}", a.body);
        a.parsed
    }

    /// A call that must fail with `code` and `status`; botocore's `Error`.
    async fn fails(
        &mut self,
        action: &str,
        params: &[(&str, &str)],
        status: u16,
        code: &str,
    ) -> Value {
        let a = self.call(action, params).await;
        assert_eq!(
            (a.status, a.parsed["Error"]["Code"].as_str()),
            (status, Some(code)),
            "{action}: {}",
            a.body
        );
        a.parsed["Error"].clone()
    }
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn allow(action: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
    )
}

fn policy_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:policy/{name}")
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn roles_round_trip_with_documents_decoded_as_json() {
    let mut f = Fixture::start().await;
    f.ok(
        "CreatePolicy",
        &[
            ("PolicyName", "Boundary"),
            ("PolicyDocument", &allow("s3:*")),
        ],
    )
    .await;
    let created = f
        .ok(
            "CreateRole",
            &[
                ("RoleName", "web"),
                ("Path", "/app/"),
                ("AssumeRolePolicyDocument", TRUST),
                ("Description", "web servers"),
                ("MaxSessionDuration", "7200"),
                ("PermissionsBoundary", &policy_arn("Boundary")),
                ("Tags.member.1.Key", "team"),
                ("Tags.member.1.Value", "net ops"),
            ],
        )
        .await;
    let role = &created["Role"];
    assert_eq!(role["Arn"], format!("arn:aws:iam::{ACCOUNT}:role/app/web"));
    assert!(
        role["RoleId"]
            .as_str()
            .is_some_and(|id| id.starts_with("AROA"))
    );
    // The CLI shows the trust policy as JSON, not as an escaped string.
    let trust: Value = serde_json::from_str(TRUST).expect("literal JSON");
    assert_eq!(role["AssumeRolePolicyDocument"], trust);
    assert_eq!(role["Tags"][0]["Value"], "net ops");
    assert_eq!(
        role["PermissionsBoundary"]["PermissionsBoundaryArn"],
        policy_arn("Boundary")
    );

    let got = f.ok("GetRole", &[("RoleName", "WEB")]).await;
    assert_eq!(got["Role"]["RoleName"], "web");
    assert_eq!(got["Role"]["MaxSessionDuration"], 7200);
    assert_eq!(got["Role"]["Description"], "web servers");
    assert_eq!(got["Role"]["AssumeRolePolicyDocument"], trust);

    f.ok(
        "CreateRole",
        &[("RoleName", "batch"), ("AssumeRolePolicyDocument", TRUST)],
    )
    .await;
    let e = f
        .fails(
            "CreateRole",
            &[("RoleName", "Batch"), ("AssumeRolePolicyDocument", TRUST)],
            409,
            "EntityAlreadyExists",
        )
        .await;
    assert_eq!(e["Message"], "Role with name Batch already exists.");
    let e = f
        .fails(
            "CreateRole",
            &[
                ("RoleName", "bad"),
                ("AssumeRolePolicyDocument", &allow("s3:*")),
            ],
            400,
            "MalformedPolicyDocument",
        )
        .await;
    assert_eq!(e["Message"], "Missing required field Principal");
    f.fails(
        "CreateRole",
        &[
            ("RoleName", "short"),
            ("AssumeRolePolicyDocument", TRUST),
            ("MaxSessionDuration", "60"),
        ],
        400,
        "ValidationError",
    )
    .await;
    f.fails(
        "CreateRole",
        &[
            ("RoleName", "nobound"),
            ("AssumeRolePolicyDocument", TRUST),
            ("PermissionsBoundary", &policy_arn("Missing")),
        ],
        404,
        "NoSuchEntity",
    )
    .await;
    f.fails("GetRole", &[("RoleName", "nobound")], 404, "NoSuchEntity")
        .await;

    // Listing with a path prefix, and page by page.
    let all = f.ok("ListRoles", &[]).await;
    assert_eq!(names(&all["Roles"], "RoleName"), ["batch", "web"]);
    let app_roles = f.ok("ListRoles", &[("PathPrefix", "/app/")]).await;
    assert_eq!(names(&app_roles["Roles"], "RoleName"), ["web"]);
    let first = f.ok("ListRoles", &[("MaxItems", "1")]).await;
    assert_eq!(first["IsTruncated"], true);
    let marker = first["Marker"].as_str().expect("marker").to_owned();
    let second = f
        .ok("ListRoles", &[("MaxItems", "1"), ("Marker", &marker)])
        .await;
    assert_eq!(names(&second["Roles"], "RoleName"), ["web"]);
    assert_eq!(second["IsTruncated"], false);

    f.ok(
        "UpdateRole",
        &[("RoleName", "web"), ("MaxSessionDuration", "3600")],
    )
    .await;
    let updated = f
        .ok(
            "UpdateRoleDescription",
            &[("RoleName", "web"), ("Description", "front end")],
        )
        .await;
    assert_eq!(updated["Role"]["Description"], "front end");
    assert_eq!(updated["Role"]["MaxSessionDuration"], 3600);
    let new_trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
    f.ok(
        "UpdateAssumeRolePolicy",
        &[("RoleName", "web"), ("PolicyDocument", new_trust)],
    )
    .await;
    let got = f.ok("GetRole", &[("RoleName", "web")]).await;
    assert_eq!(
        got["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::000000000000:root"
    );

    // A role with policies cannot be deleted.
    f.ok(
        "PutRolePolicy",
        &[
            ("RoleName", "batch"),
            ("PolicyName", "logs"),
            ("PolicyDocument", &allow("logs:*")),
        ],
    )
    .await;
    let e = f
        .fails(
            "DeleteRole",
            &[("RoleName", "batch")],
            409,
            "DeleteConflict",
        )
        .await;
    assert_eq!(
        e["Message"],
        "Cannot delete entity, must delete policies first."
    );
    f.ok(
        "DeleteRolePolicy",
        &[("RoleName", "batch"), ("PolicyName", "logs")],
    )
    .await;
    f.ok("DeleteRole", &[("RoleName", "batch")]).await;
    f.fails("DeleteRole", &[("RoleName", "batch")], 404, "NoSuchEntity")
        .await;
    let e = f
        .fails(
            "GetRole",
            &[("RoleName", "bad/name")],
            400,
            "ValidationError",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m.contains("roleName"))
    );
}

#[tokio::test]
async fn managed_policy_versions_limits_and_default_switching() {
    let mut f = Fixture::start().await;
    let arn = policy_arn("team/S3");
    let created = f
        .ok(
            "CreatePolicy",
            &[
                ("PolicyName", "S3"),
                ("Path", "/team/"),
                ("PolicyDocument", &allow("s3:Get*")),
                ("Description", "read"),
                ("Tags.member.1.Key", "k"),
                ("Tags.member.1.Value", "v"),
            ],
        )
        .await;
    assert_eq!(created["Policy"]["Arn"], arn);
    assert_eq!(created["Policy"]["DefaultVersionId"], "v1");
    assert_eq!(created["Policy"]["AttachmentCount"], 0);
    assert_eq!(created["Policy"]["IsAttachable"], true);
    assert!(
        created["Policy"]["PolicyId"]
            .as_str()
            .is_some_and(|id| id.starts_with("ANPA"))
    );

    // AWS's document rules for managed policies.
    let old = r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let e = f
        .fails(
            "CreatePolicy",
            &[("PolicyName", "Old"), ("PolicyDocument", old)],
            400,
            "MalformedPolicyDocument",
        )
        .await;
    assert_eq!(
        e["Message"],
        "Policy document must be version 2012-10-17 or greater."
    );
    let e = f
        .fails(
            "CreatePolicy",
            &[("PolicyName", "Broken"), ("PolicyDocument", "{not json")],
            400,
            "MalformedPolicyDocument",
        )
        .await;
    assert_eq!(e["Message"], "Syntax errors in policy.");
    f.fails(
        "CreatePolicy",
        &[
            ("PolicyName", "S3"),
            ("Path", "/team/"),
            ("PolicyDocument", &allow("s3:*")),
        ],
        409,
        "EntityAlreadyExists",
    )
    .await;
    f.fails(
        "CreatePolicyVersion",
        &[("PolicyArn", &arn), ("PolicyDocument", old)],
        400,
        "MalformedPolicyDocument",
    )
    .await;

    // Versions v2..v5, v3 made default on creation; the sixth is over the limit.
    for (i, doc) in ["s3:Put*", "s3:List*", "s3:Delete*", "s3:*"]
        .iter()
        .enumerate()
    {
        let default = if i == 1 { "true" } else { "false" };
        let v = f
            .ok(
                "CreatePolicyVersion",
                &[
                    ("PolicyArn", &arn),
                    ("PolicyDocument", &allow(doc)),
                    ("SetAsDefault", default),
                ],
            )
            .await;
        assert_eq!(v["PolicyVersion"]["VersionId"], format!("v{}", i + 2));
        assert_eq!(v["PolicyVersion"]["IsDefaultVersion"], i == 1);
    }
    let e = f
        .fails(
            "CreatePolicyVersion",
            &[("PolicyArn", &arn), ("PolicyDocument", &allow("ec2:*"))],
            409,
            "LimitExceeded",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m.contains("5 versions"))
    );
    let got = f.ok("GetPolicy", &[("PolicyArn", &arn)]).await;
    assert_eq!(got["Policy"]["DefaultVersionId"], "v3");
    assert_eq!(got["Policy"]["Tags"][0]["Key"], "k");
    let listed = f.ok("ListPolicyVersions", &[("PolicyArn", &arn)]).await;
    assert_eq!(
        names(&listed["Versions"], "VersionId"),
        ["v5", "v4", "v3", "v2", "v1"]
    );
    let v3 = f
        .ok(
            "GetPolicyVersion",
            &[("PolicyArn", &arn), ("VersionId", "v3")],
        )
        .await;
    assert_eq!(v3["PolicyVersion"]["IsDefaultVersion"], true);
    assert_eq!(
        v3["PolicyVersion"]["Document"]["Statement"][0]["Action"],
        "s3:List*"
    );

    // The default cannot be deleted; switching the default, then deleting the old one works.
    let e = f
        .fails(
            "DeletePolicyVersion",
            &[("PolicyArn", &arn), ("VersionId", "v3")],
            409,
            "DeleteConflict",
        )
        .await;
    assert_eq!(
        e["Message"],
        "Cannot delete the default version of a policy."
    );
    f.ok(
        "SetDefaultPolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v5")],
    )
    .await;
    f.ok(
        "DeletePolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v3")],
    )
    .await;
    f.fails(
        "GetPolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v3")],
        404,
        "NoSuchEntity",
    )
    .await;
    f.fails(
        "SetDefaultPolicyVersion",
        &[("PolicyArn", &arn), ("VersionId", "v9")],
        404,
        "NoSuchEntity",
    )
    .await;
    // Room again for a version, which gets a fresh id.
    let v = f
        .ok(
            "CreatePolicyVersion",
            &[("PolicyArn", &arn), ("PolicyDocument", &allow("ec2:*"))],
        )
        .await;
    assert_eq!(v["PolicyVersion"]["VersionId"], "v6");
    let page = f
        .ok(
            "ListPolicyVersions",
            &[("PolicyArn", &arn), ("MaxItems", "2")],
        )
        .await;
    assert_eq!(names(&page["Versions"], "VersionId"), ["v6", "v5"]);
    assert_eq!(page["IsTruncated"], true);

    // A policy with versions besides the default cannot be deleted.
    let e = f
        .fails(
            "DeletePolicy",
            &[("PolicyArn", &arn)],
            409,
            "DeleteConflict",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m.contains("more than one version"))
    );
    for v in ["v1", "v2", "v4", "v6"] {
        f.ok(
            "DeletePolicyVersion",
            &[("PolicyArn", &arn), ("VersionId", v)],
        )
        .await;
    }
    f.ok("DeletePolicy", &[("PolicyArn", &arn)]).await;
    f.fails("GetPolicy", &[("PolicyArn", &arn)], 404, "NoSuchEntity")
        .await;
    f.fails(
        "GetPolicy",
        &[("PolicyArn", "arn:aws:iam::000000000000:user/admin")],
        400,
        "InvalidInput",
    )
    .await;
    f.fails(
        "GetPolicy",
        &[("PolicyArn", "arn:aws:iam::aws:policy/ReadOnlyAccess")],
        404,
        "NoSuchEntity",
    )
    .await;
}

#[tokio::test]
async fn attachments_entities_limits_and_delete_conflicts() {
    let mut f = Fixture::start().await;
    f.user("alice", Some("/dev/")).await;
    f.group("devs", &[]).await;
    f.ok(
        "CreateRole",
        &[("RoleName", "ops"), ("AssumeRolePolicyDocument", TRUST)],
    )
    .await;
    for i in 0..11 {
        f.ok(
            "CreatePolicy",
            &[
                ("PolicyName", &format!("P{i:02}")),
                ("PolicyDocument", &allow("s3:*")),
            ],
        )
        .await;
    }
    for i in 0..10 {
        f.ok(
            "AttachUserPolicy",
            &[
                ("UserName", "alice"),
                ("PolicyArn", &policy_arn(&format!("P{i:02}"))),
            ],
        )
        .await;
    }
    // Attaching again is a no-op; an eleventh is over the quota.
    f.ok(
        "AttachUserPolicy",
        &[("UserName", "alice"), ("PolicyArn", &policy_arn("P00"))],
    )
    .await;
    let e = f
        .fails(
            "AttachUserPolicy",
            &[("UserName", "alice"), ("PolicyArn", &policy_arn("P10"))],
            409,
            "LimitExceeded",
        )
        .await;
    assert_eq!(e["Message"], "Cannot exceed quota for PoliciesPerUser: 10");
    f.fails(
        "AttachUserPolicy",
        &[("UserName", "nobody"), ("PolicyArn", &policy_arn("P10"))],
        404,
        "NoSuchEntity",
    )
    .await;
    f.fails(
        "AttachUserPolicy",
        &[("UserName", "alice"), ("PolicyArn", &policy_arn("Nope"))],
        404,
        "NoSuchEntity",
    )
    .await;
    let attached = f
        .ok("ListAttachedUserPolicies", &[("UserName", "alice")])
        .await;
    assert_eq!(
        attached["AttachedPolicies"].as_array().map(Vec::len),
        Some(10)
    );
    assert_eq!(attached["AttachedPolicies"][0]["PolicyName"], "P00");
    let page = f
        .ok(
            "ListAttachedUserPolicies",
            &[("UserName", "alice"), ("MaxItems", "4"), ("Marker", "8")],
        )
        .await;
    assert_eq!(
        names(&page["AttachedPolicies"], "PolicyName"),
        ["P08", "P09"]
    );

    f.ok(
        "AttachGroupPolicy",
        &[("GroupName", "devs"), ("PolicyArn", &policy_arn("P00"))],
    )
    .await;
    f.ok(
        "AttachRolePolicy",
        &[("RoleName", "ops"), ("PolicyArn", &policy_arn("P00"))],
    )
    .await;
    let g = f
        .ok("ListAttachedGroupPolicies", &[("GroupName", "devs")])
        .await;
    assert_eq!(
        names(&g["AttachedPolicies"], "PolicyArn"),
        [policy_arn("P00")]
    );
    let r = f
        .ok("ListAttachedRolePolicies", &[("RoleName", "ops")])
        .await;
    assert_eq!(names(&r["AttachedPolicies"], "PolicyName"), ["P00"]);

    // A role using P10 as its boundary.
    f.ok(
        "CreateRole",
        &[
            ("RoleName", "bounded"),
            ("AssumeRolePolicyDocument", TRUST),
            ("PermissionsBoundary", &policy_arn("P10")),
        ],
    )
    .await;

    let all = f
        .ok(
            "ListEntitiesForPolicy",
            &[("PolicyArn", &policy_arn("P00"))],
        )
        .await;
    assert_eq!(names(&all["PolicyUsers"], "UserName"), ["alice"]);
    assert_eq!(names(&all["PolicyGroups"], "GroupName"), ["devs"]);
    assert_eq!(names(&all["PolicyRoles"], "RoleName"), ["ops"]);
    assert!(
        all["PolicyUsers"][0]["UserId"]
            .as_str()
            .is_some_and(|i| i.starts_with("AIDA"))
    );
    let roles_only = f
        .ok(
            "ListEntitiesForPolicy",
            &[("PolicyArn", &policy_arn("P00")), ("EntityFilter", "Role")],
        )
        .await;
    assert_eq!(roles_only["PolicyUsers"], json!([]));
    assert_eq!(names(&roles_only["PolicyRoles"], "RoleName"), ["ops"]);
    let dev_path = f
        .ok(
            "ListEntitiesForPolicy",
            &[("PolicyArn", &policy_arn("P00")), ("PathPrefix", "/dev/")],
        )
        .await;
    assert_eq!(names(&dev_path["PolicyUsers"], "UserName"), ["alice"]);
    assert_eq!(dev_path["PolicyGroups"], json!([]));
    let boundary = f
        .ok(
            "ListEntitiesForPolicy",
            &[
                ("PolicyArn", &policy_arn("P10")),
                ("PolicyUsageFilter", "PermissionsBoundary"),
            ],
        )
        .await;
    assert_eq!(names(&boundary["PolicyRoles"], "RoleName"), ["bounded"]);
    let permissions = f
        .ok(
            "ListEntitiesForPolicy",
            &[
                ("PolicyArn", &policy_arn("P10")),
                ("PolicyUsageFilter", "PermissionsPolicy"),
            ],
        )
        .await;
    assert_eq!(permissions["PolicyRoles"], json!([]));
    f.fails(
        "ListEntitiesForPolicy",
        &[
            ("PolicyArn", &policy_arn("P00")),
            ("EntityFilter", "Bucket"),
        ],
        400,
        "ValidationError",
    )
    .await;

    // GetPolicy and ListPolicies count attachments and boundary uses.
    let p00 = f
        .ok("GetPolicy", &[("PolicyArn", &policy_arn("P00"))])
        .await;
    assert_eq!(p00["Policy"]["AttachmentCount"], 3);
    let p10 = f
        .ok("GetPolicy", &[("PolicyArn", &policy_arn("P10"))])
        .await;
    assert_eq!(p10["Policy"]["PermissionsBoundaryUsageCount"], 1);
    let local = f.ok("ListPolicies", &[("Scope", "Local")]).await;
    // AdministratorAccess from the bootstrap, and P00..P10.
    assert_eq!(local["Policies"].as_array().map(Vec::len), Some(12));
    let aws = f.ok("ListPolicies", &[("Scope", "AWS")]).await;
    assert_eq!(aws["Policies"], json!([]));
    let attached = f.ok("ListPolicies", &[("OnlyAttached", "true")]).await;
    assert!(!names(&attached["Policies"], "PolicyName").contains(&"P10".to_owned()));
    assert!(names(&attached["Policies"], "PolicyName").contains(&"AdministratorAccess".to_owned()));
    let bounds = f
        .ok(
            "ListPolicies",
            &[("PolicyUsageFilter", "PermissionsBoundary")],
        )
        .await;
    assert_eq!(names(&bounds["Policies"], "PolicyName"), ["P10"]);
    let paged = f.ok("ListPolicies", &[("MaxItems", "5")]).await;
    assert_eq!(paged["IsTruncated"], true);
    assert_eq!(paged["Policies"].as_array().map(Vec::len), Some(5));

    // Attached policies and boundaries cannot be deleted.
    let e = f
        .fails(
            "DeletePolicy",
            &[("PolicyArn", &policy_arn("P00"))],
            409,
            "DeleteConflict",
        )
        .await;
    assert_eq!(e["Message"], "Cannot delete a policy attached to entities.");
    f.fails(
        "DeletePolicy",
        &[("PolicyArn", &policy_arn("P10"))],
        409,
        "DeleteConflict",
    )
    .await;
    for (action, key, name) in [
        ("DetachUserPolicy", "UserName", "alice"),
        ("DetachGroupPolicy", "GroupName", "devs"),
        ("DetachRolePolicy", "RoleName", "ops"),
    ] {
        f.ok(action, &[(key, name), ("PolicyArn", &policy_arn("P00"))])
            .await;
    }
    f.fails(
        "DetachRolePolicy",
        &[("RoleName", "ops"), ("PolicyArn", &policy_arn("P00"))],
        404,
        "NoSuchEntity",
    )
    .await;
    let none = f
        .ok(
            "ListEntitiesForPolicy",
            &[("PolicyArn", &policy_arn("P00"))],
        )
        .await;
    assert_eq!(
        (
            &none["PolicyUsers"],
            &none["PolicyGroups"],
            &none["PolicyRoles"]
        ),
        (&json!([]), &json!([]), &json!([]))
    );
    f.ok("DeletePolicy", &[("PolicyArn", &policy_arn("P00"))])
        .await;
    // The boundary keeps P10 until the role goes.
    f.fails(
        "DeletePolicy",
        &[("PolicyArn", &policy_arn("P10"))],
        409,
        "DeleteConflict",
    )
    .await;
    f.ok("DeleteRole", &[("RoleName", "bounded")]).await;
    f.ok("DeletePolicy", &[("PolicyArn", &policy_arn("P10"))])
        .await;
}

#[tokio::test]
async fn inline_policies_of_users_groups_and_roles() {
    let mut f = Fixture::start().await;
    f.user("alice", None).await;
    f.group("devs", &[]).await;
    f.ok(
        "CreateRole",
        &[("RoleName", "ops"), ("AssumeRolePolicyDocument", TRUST)],
    )
    .await;
    // Inline policies may still use the 2008 language version.
    let doc = r#"{"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}]}"#;
    for (kind, key, name) in [
        ("User", "UserName", "alice"),
        ("Group", "GroupName", "devs"),
        ("Role", "RoleName", "ops"),
    ] {
        for policy in ["read", "write"] {
            f.ok(
                &format!("Put{kind}Policy"),
                &[(key, name), ("PolicyName", policy), ("PolicyDocument", doc)],
            )
            .await;
        }
        let got = f
            .ok(
                &format!("Get{kind}Policy"),
                &[(key, name), ("PolicyName", "read")],
            )
            .await;
        assert_eq!(got[key], name);
        assert_eq!(got["PolicyName"], "read");
        let expected: Value = serde_json::from_str(doc).expect("literal JSON");
        assert_eq!(got["PolicyDocument"], expected, "{kind}");
        let listed = f.ok(&format!("List{kind}Policies"), &[(key, name)]).await;
        assert_eq!(listed["PolicyNames"], json!(["read", "write"]));
        let page = f
            .ok(
                &format!("List{kind}Policies"),
                &[(key, name), ("MaxItems", "1")],
            )
            .await;
        assert_eq!(page["PolicyNames"], json!(["read"]));
        assert_eq!(page["IsTruncated"], true);
        f.ok(
            &format!("Delete{kind}Policy"),
            &[(key, name), ("PolicyName", "read")],
        )
        .await;
        f.fails(
            &format!("Get{kind}Policy"),
            &[(key, name), ("PolicyName", "read")],
            404,
            "NoSuchEntity",
        )
        .await;
        f.fails(
            &format!("Delete{kind}Policy"),
            &[(key, name), ("PolicyName", "read")],
            404,
            "NoSuchEntity",
        )
        .await;
        f.fails(
            &format!("Put{kind}Policy"),
            &[(key, name), ("PolicyName", "bad"), ("PolicyDocument", "[]")],
            400,
            "MalformedPolicyDocument",
        )
        .await;
    }
    f.fails(
        "PutUserPolicy",
        &[
            ("UserName", "nobody"),
            ("PolicyName", "p"),
            ("PolicyDocument", doc),
        ],
        404,
        "NoSuchEntity",
    )
    .await;
    // The user inline quota counts all of a user's inline policies.
    let big = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{}","Effect":"Allow","Action":"s3:*","Resource":"*"}}]}}"#,
        "A".repeat(2100)
    );
    f.fails(
        "PutUserPolicy",
        &[
            ("UserName", "alice"),
            ("PolicyName", "big"),
            ("PolicyDocument", &big),
        ],
        409,
        "LimitExceeded",
    )
    .await;
}

/// The statements of a decision as (SourcePolicyId, SourcePolicyType) pairs.
fn matched(result: &Value) -> Vec<(String, String)> {
    result["MatchedStatements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["SourcePolicyId"].as_str().unwrap_or_default().to_owned(),
                        s["SourcePolicyType"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn simulation_explains_deny_allow_boundaries_and_context() {
    let mut f = Fixture::start().await;
    f.user("carol", None).await;
    f.group("readers", &["carol"]).await;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "carol"),
            ("PolicyName", "s3-all"),
            ("PolicyDocument", &allow("s3:*")),
        ],
    )
    .await;
    let deny = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Sid\": \"NoDelete\", \"Effect\": \"Deny\", \"Action\": \"s3:DeleteObject\", \"Resource\": \"*\"}\n  ]\n}";
    f.ok(
        "CreatePolicy",
        &[("PolicyName", "NoDelete"), ("PolicyDocument", deny)],
    )
    .await;
    f.ok(
        "AttachGroupPolicy",
        &[
            ("GroupName", "readers"),
            ("PolicyArn", &policy_arn("NoDelete")),
        ],
    )
    .await;
    let carol = format!("arn:aws:iam::{ACCOUNT}:user/carol");
    let sim = f
        .simulate(
            &carol,
            &["s3:GetObject", "s3:DeleteObject", "ec2:RunInstances"],
            &[],
        )
        .await;
    let results = &sim["EvaluationResults"];
    assert_eq!(results[0]["EvalActionName"], "s3:GetObject");
    assert_eq!(results[0]["EvalResourceName"], "*");
    assert_eq!(results[0]["EvalDecision"], "allowed");
    assert_eq!(
        matched(&results[0]),
        [("s3-all".to_owned(), "user".to_owned())]
    );
    // Explicit deny beats the allow, and names the denying statement and where it is.
    assert_eq!(results[1]["EvalDecision"], "explicitDeny");
    assert_eq!(
        matched(&results[1]),
        [("NoDelete".to_owned(), "user-managed".to_owned())]
    );
    let stmt = &results[1]["MatchedStatements"][0];
    assert_eq!(stmt["StartPosition"], json!({"Line": 4, "Column": 5}));
    assert_eq!(stmt["EndPosition"]["Line"], 4);
    assert_eq!(results[2]["EvalDecision"], "implicitDeny");
    assert_eq!(results[2]["MatchedStatements"], json!([]));

    // Excluded policies take no part: without the deny the delete is allowed, without the
    // inline allow nothing is.
    let excluded = f
        .simulate(
            &carol,
            &["s3:DeleteObject"],
            &[(
                "PolicyExclusionList.member.1.PolicyArn",
                &policy_arn("NoDelete"),
            )],
        )
        .await;
    assert_eq!(excluded["EvaluationResults"][0]["EvalDecision"], "allowed");
    let excluded = f
        .simulate(
            &carol,
            &["s3:GetObject"],
            &[
                (
                    "PolicyExclusionList.member.1.InlinePolicyIdentifier.PolicyName",
                    "s3-all",
                ),
                (
                    "PolicyExclusionList.member.1.InlinePolicyIdentifier.AttachmentType",
                    "user",
                ),
                (
                    "PolicyExclusionList.member.1.InlinePolicyIdentifier.AttachmentName",
                    "carol",
                ),
            ],
        )
        .await;
    assert_eq!(
        excluded["EvaluationResults"][0]["EvalDecision"],
        "implicitDeny"
    );

    // The group alone carries only the deny.
    let group = f
        .simulate(
            &format!("arn:aws:iam::{ACCOUNT}:group/readers"),
            &["s3:GetObject"],
            &[],
        )
        .await;
    assert_eq!(
        group["EvaluationResults"][0]["EvalDecision"],
        "implicitDeny"
    );

    // A role whose boundary allows only reads: writes are implicitly denied.
    f.ok(
        "CreatePolicy",
        &[
            ("PolicyName", "ReadOnly"),
            ("PolicyDocument", &allow("s3:Get*")),
        ],
    )
    .await;
    f.ok(
        "CreateRole",
        &[
            ("RoleName", "app"),
            ("AssumeRolePolicyDocument", TRUST),
            ("PermissionsBoundary", &policy_arn("ReadOnly")),
        ],
    )
    .await;
    f.ok(
        "PutRolePolicy",
        &[
            ("RoleName", "app"),
            ("PolicyName", "all"),
            ("PolicyDocument", &allow("*")),
        ],
    )
    .await;
    let role = format!("arn:aws:iam::{ACCOUNT}:role/app");
    let bounded = f
        .simulate(&role, &["s3:GetObject", "s3:PutObject"], &[])
        .await;
    let r = &bounded["EvaluationResults"];
    assert_eq!(r[0]["EvalDecision"], "allowed");
    assert_eq!(
        r[0]["PermissionsBoundaryDecisionDetail"]["AllowedByPermissionsBoundary"],
        true
    );
    assert!(matched(&r[0]).contains(&("ReadOnly".to_owned(), "user-managed".to_owned())));
    assert_eq!(r[1]["EvalDecision"], "implicitDeny");
    assert_eq!(
        r[1]["PermissionsBoundaryDecisionDetail"]["AllowedByPermissionsBoundary"],
        false
    );
    // A boundary given in the request replaces the stored one.
    let replaced = f
        .simulate(
            &role,
            &["s3:PutObject"],
            &[(
                "PermissionsBoundaryPolicyInputList.member.1",
                &allow("s3:Put*"),
            )],
        )
        .await;
    assert_eq!(replaced["EvaluationResults"][0]["EvalDecision"], "allowed");
    // Extra identity policies from the request join the principal's.
    let extra_deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::secret/*"}]}"#;
    let per_resource = f
        .simulate(
            &role,
            &["s3:GetObject"],
            &[
                ("PolicyInputList.member.1", extra_deny),
                ("ResourceArns.member.1", "arn:aws:s3:::public/a"),
                ("ResourceArns.member.2", "arn:aws:s3:::secret/b"),
            ],
        )
        .await;
    let res = &per_resource["EvaluationResults"][0];
    assert_eq!(res["EvalDecision"], "explicitDeny");
    assert_eq!(
        matched(res),
        [("PolicyInputList.1".to_owned(), "IAM Policy".to_owned())]
    );
    let specific = &res["ResourceSpecificResults"];
    assert_eq!(specific[0]["EvalResourceName"], "arn:aws:s3:::public/a");
    assert_eq!(specific[0]["EvalResourceDecision"], "allowed");
    assert_eq!(specific[1]["EvalResourceDecision"], "explicitDeny");

    f.fails(
        "SimulatePrincipalPolicy",
        &[
            (
                "PolicySourceArn",
                &format!("arn:aws:iam::{ACCOUNT}:user/nobody"),
            ),
            ("ActionNames.member.1", "s3:GetObject"),
        ],
        404,
        "NoSuchEntity",
    )
    .await;

    // Custom policies: a condition key not supplied is reported missing; supplied, it decides.
    let conditional = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Office","Effect":"Allow","Action":"ec2:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#;
    let custom = f
        .ok(
            "SimulateCustomPolicy",
            &[
                ("PolicyInputList.member.1", conditional),
                ("ActionNames.member.1", "ec2:RunInstances"),
            ],
        )
        .await;
    let res = &custom["EvaluationResults"][0];
    assert_eq!(res["EvalDecision"], "implicitDeny");
    assert_eq!(res["MissingContextValues"], json!(["aws:SourceIp"]));
    let custom = f
        .ok(
            "SimulateCustomPolicy",
            &[
                ("PolicyInputList.member.1", conditional),
                ("ActionNames.member.1", "ec2:RunInstances"),
                ("ActionNames.member.2", "ec2:TerminateInstances"),
                ("ContextEntries.member.1.ContextKeyName", "aws:SourceIp"),
                (
                    "ContextEntries.member.1.ContextKeyValues.member.1",
                    "10.1.2.3",
                ),
                ("ContextEntries.member.1.ContextKeyType", "ip"),
                ("MaxItems", "1"),
            ],
        )
        .await;
    let res = &custom["EvaluationResults"][0];
    assert_eq!(res["EvalDecision"], "allowed");
    assert_eq!(res["MissingContextValues"], json!([]));
    assert_eq!(
        matched(res),
        [("PolicyInputList.1".to_owned(), "IAM Policy".to_owned())]
    );
    assert_eq!(custom["IsTruncated"], true);
    assert_eq!(
        custom["EvaluationResults"].as_array().map(Vec::len),
        Some(1)
    );
    let e = f
        .fails(
            "SimulateCustomPolicy",
            &[
                ("PolicyInputList.member.1", "{"),
                ("ActionNames.member.1", "ec2:RunInstances"),
            ],
            400,
            "InvalidInput",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m.contains("PolicyInputList.1"))
    );
    f.fails(
        "SimulateCustomPolicy",
        &[("ActionNames.member.1", "ec2:RunInstances")],
        400,
        "ValidationError",
    )
    .await;
}

#[tokio::test]
async fn account_authorization_details_cover_every_entity_with_pagination() {
    let mut f = Fixture::start().await;
    f.ok(
        "CreateRole",
        &[("RoleName", "ops"), ("AssumeRolePolicyDocument", TRUST)],
    )
    .await;
    f.ok(
        "PutRolePolicy",
        &[
            ("RoleName", "ops"),
            ("PolicyName", "logs"),
            ("PolicyDocument", &allow("logs:*")),
        ],
    )
    .await;
    f.ok(
        "PutUserPolicy",
        &[
            ("UserName", "admin"),
            ("PolicyName", "extra"),
            ("PolicyDocument", &allow("s3:*")),
        ],
    )
    .await;
    let all = f.ok("GetAccountAuthorizationDetails", &[]).await;
    let admin = &all["UserDetailList"][0];
    assert_eq!(admin["UserName"], "admin");
    assert_eq!(admin["GroupList"], json!(["administrators"]));
    assert_eq!(admin["UserPolicyList"][0]["PolicyName"], "extra");
    assert_eq!(
        admin["UserPolicyList"][0]["PolicyDocument"]["Statement"][0]["Action"],
        "s3:*"
    );
    let group = &all["GroupDetailList"][0];
    assert_eq!(group["GroupName"], "administrators");
    assert_eq!(
        group["AttachedManagedPolicies"][0]["PolicyArn"],
        policy_arn("AdministratorAccess")
    );
    let role = &all["RoleDetailList"][0];
    assert_eq!(role["RoleName"], "ops");
    assert_eq!(
        role["AssumeRolePolicyDocument"]["Statement"][0]["Action"],
        "sts:AssumeRole"
    );
    assert_eq!(
        role["RolePolicyList"][0]["PolicyDocument"]["Statement"][0]["Action"],
        "logs:*"
    );
    let policy = &all["Policies"][0];
    assert_eq!(policy["PolicyName"], "AdministratorAccess");
    assert_eq!(policy["AttachmentCount"], 1);
    assert_eq!(
        policy["PolicyVersionList"][0]["Document"]["Statement"][0]["Action"],
        "*"
    );
    assert_eq!(all["IsTruncated"], false);

    let roles = f
        .ok(
            "GetAccountAuthorizationDetails",
            &[("Filter.member.1", "Role")],
        )
        .await;
    assert_eq!(roles["UserDetailList"], json!([]));
    assert_eq!(names(&roles["RoleDetailList"], "RoleName"), ["ops"]);
    let aws = f
        .ok(
            "GetAccountAuthorizationDetails",
            &[("Filter.member.1", "AWSManagedPolicy")],
        )
        .await;
    assert_eq!(aws["Policies"], json!([]));
    // Four entries (user, group, role, policy), two per page.
    let first = f
        .ok("GetAccountAuthorizationDetails", &[("MaxItems", "2")])
        .await;
    assert_eq!(first["IsTruncated"], true);
    assert_eq!(names(&first["UserDetailList"], "UserName"), ["admin"]);
    assert_eq!(first["RoleDetailList"], json!([]));
    let marker = first["Marker"].as_str().expect("marker").to_owned();
    let second = f
        .ok(
            "GetAccountAuthorizationDetails",
            &[("MaxItems", "2"), ("Marker", &marker)],
        )
        .await;
    assert_eq!(second["IsTruncated"], false);
    assert_eq!(names(&second["RoleDetailList"], "RoleName"), ["ops"]);
    assert_eq!(
        names(&second["Policies"], "PolicyName"),
        ["AdministratorAccess"]
    );
    f.fails(
        "GetAccountAuthorizationDetails",
        &[("Filter.member.1", "Bucket")],
        400,
        "ValidationError",
    )
    .await;
}

#[tokio::test]
async fn a_caller_without_permission_is_denied_with_aws_message_and_nothing_changes() {
    let bob = user_principal("bob", "AIDAEXAMPLEBOB000001");
    let mut f = Fixture::start_as(Arc::new(As(bob))).await;
    f.user("bob", None).await;
    let e = f
        .fails(
            "CreateRole",
            &[("RoleName", "x"), ("AssumeRolePolicyDocument", TRUST)],
            403,
            "AccessDenied",
        )
        .await;
    assert_eq!(
        e["Message"],
        "User: arn:aws:iam::000000000000:user/bob is not authorized to perform: iam:CreateRole \
         on resource: arn:aws:iam::000000000000:role/x because no identity-based policy allows \
         the iam:CreateRole action"
    );
    assert!(
        f.app.iam.get_role(ACCOUNT, "x").await.is_err(),
        "nothing was created"
    );
    // Denied before existence is revealed: the same answer for a missing and an existing role.
    f.fails("GetRole", &[("RoleName", "ghost")], 403, "AccessDenied")
        .await;
    let e = f
        .fails(
            "GetPolicy",
            &[("PolicyArn", &policy_arn("AdministratorAccess"))],
            403,
            "AccessDenied",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m.ends_with("on resource: arn:aws:iam::000000000000:policy/AdministratorAccess because no identity-based policy allows the iam:GetPolicy action")),
        "{e}"
    );

    // Allowed to attach one policy only, through the iam:PolicyARN condition key.
    f.app
        .iam
        .create_policy(ACCOUNT, "Safe", None, &allow("s3:Get*"), None, Vec::new())
        .await
        .expect("policy");
    let only_safe = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["iam:AttachUserPolicy","iam:GetRole"],"Resource":"*","Condition":{{"ArnEqualsIfExists":{{"iam:PolicyARN":"{}"}}}}}}]}}"#,
        policy_arn("Safe")
    );
    f.app
        .iam
        .put_inline_policy(
            ACCOUNT,
            &Target::User("bob".into()),
            "attach-safe",
            &only_safe,
        )
        .await
        .expect("inline policy");
    f.ok(
        "AttachUserPolicy",
        &[("UserName", "bob"), ("PolicyArn", &policy_arn("Safe"))],
    )
    .await;
    let e = f
        .fails(
            "AttachUserPolicy",
            &[
                ("UserName", "bob"),
                ("PolicyArn", &policy_arn("AdministratorAccess")),
            ],
            403,
            "AccessDenied",
        )
        .await;
    assert!(
        e["Message"]
            .as_str()
            .is_some_and(|m| m
                .contains("iam:AttachUserPolicy on resource: arn:aws:iam::000000000000:user/bob")),
        "{e}"
    );
    let attached = f
        .app
        .iam
        .attached_policies(ACCOUNT, &Target::User("bob".into()))
        .await
        .expect("attached");
    assert_eq!(attached.len(), 1, "only the allowed policy is attached");
    // Now allowed, a missing role is reported as missing.
    f.fails("GetRole", &[("RoleName", "ghost")], 404, "NoSuchEntity")
        .await;
}
