//! End to end: the real `hive-api` binary, driven by the real aws CLI and boto3, on the
//! embedded store (a temporary data dir) and on a real nats-server.
//!
//! - the setup guide's test (`aws --profile hive-admin iam get-user` / `list-users`);
//! - an operator scenario through every IAM action family and STS;
//! - a restricted user denied with AWS's message, then allowed once a policy is attached; an
//!   explicit Deny beating an Allow; a deactivated key refused within a second;
//! - an assumed role whose session is limited to the role's policies (and narrowed by session
//!   policies), trust-policy refusals, GetSessionToken rules;
//! - bad requests (wrong secret, tampered body, skewed date, unknown and inactive keys, bad
//!   session token, oversized body, unknown action, malformed form encoding): each its AWS
//!   error, none a 500 or a hang, nothing written;
//! - two `hive-api` processes on one nats-server: one user out of concurrent CreateUser calls,
//!   every concurrent attachment kept, key deactivation seen across processes within a second;
//! - temporary credentials refused after expiry (`ExpiredToken`): the shortest session AWS
//!   allows is 900 s, so the test writes an already-expired session into the node's SQLite
//!   store (shared between processes) with the node's sealing key;
//! - presigned (query-string) requests.
//!
//! Every successful boto3 response is also checked against its botocore output shape
//! (`check_shape` in `tests/data/e2e_boto3.py`).

mod common;
mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    ACCOUNT, Aws, Creds, Node, NodeOpts, SignSpec, admin_credentials, boto3, raw_post, sign, str_at,
};
use serde_json::Value;

/// One node on a fresh embedded store; its admin credentials.
fn sqlite_node(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> (Node, Creds) {
    let node = Node::start(&NodeOpts {
        data_dir: dir.path().join("data"),
        nats_url: None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    });
    let admin = admin_credentials(&node.data_dir);
    (node, admin)
}

#[test]
fn setup_guide_test_with_the_cli_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, admin) = sqlite_node(&dir, &[]);
    let aws = Aws::new(&node.endpoint(), &node.data_dir.join("admin-credentials"));

    let user = aws.ok("hive-admin", &["iam", "get-user"]);
    assert_eq!(str_at(&user, &["User", "UserName"]), "admin");
    assert_eq!(
        str_at(&user, &["User", "Arn"]),
        format!("arn:aws:iam::{ACCOUNT}:user/admin")
    );
    let users = aws.ok("hive-admin", &["iam", "list-users"]);
    let names: Vec<&str> = users["Users"]
        .as_array()
        .expect("Users list")
        .iter()
        .map(|u| u["UserName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["admin"]);
    let me = aws.ok("hive-admin", &["sts", "get-caller-identity"]);
    assert_eq!(str_at(&me, &["Account"]), ACCOUNT);
    assert_eq!(str_at(&me, &["UserId"]), str_at(&user, &["User", "UserId"]));
    // The bootstrap as the guide describes it.
    let groups = aws.ok(
        "hive-admin",
        &["iam", "list-groups-for-user", "--user-name", "admin"],
    );
    assert_eq!(
        str_at(&groups, &["Groups", "0", "GroupName"]),
        "administrators"
    );

    // The secret went to the file only.
    assert!(
        !node.log_text().contains(&admin.secret),
        "the admin secret leaked into the log"
    );
}

/// Every action family through boto3, a few of them typed the way an operator would with the
/// CLI.
const OPERATOR_SCENARIO: &str = r#"
import json
iam, sts = client("iam"), client("sts")
A = "arn:aws:iam::000000000000"

# users
iam.create_user(UserName="alice", Path="/eng/", Tags=[{"Key": "team", "Value": "eng"}])
alice = iam.get_user(UserName="alice")["User"]
assert alice["Arn"] == A + ":user/eng/alice", alice
assert [u["UserName"] for u in iam.list_users(PathPrefix="/eng/")["Users"]] == ["alice"]
iam.create_user(UserName="zed")
page = iam.list_users(MaxItems=1)
assert page["IsTruncated"] and len(page["Users"]) == 1, page
rest = iam.list_users(Marker=page["Marker"])
assert {u["UserName"] for u in page["Users"] + rest["Users"]} == {"admin", "alice", "zed"}, rest
iam.update_user(UserName="zed", NewUserName="zed2", NewPath="/ops/")
assert iam.get_user(UserName="zed2")["User"]["Path"] == "/ops/"
assert error(iam.get_user, UserName="zed")[0] == "NoSuchEntity"
assert error(iam.create_user, UserName="alice")[:3:2] == ("EntityAlreadyExists", 409)

# groups and membership
iam.create_group(GroupName="devs")
iam.add_user_to_group(GroupName="devs", UserName="alice")
assert [u["UserName"] for u in iam.get_group(GroupName="devs")["Users"]] == ["alice"]
assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="alice")["Groups"]] == ["devs"]
iam.update_group(GroupName="devs", NewGroupName="developers")
assert "developers" in [g["GroupName"] for g in iam.list_groups()["Groups"]]
iam.add_user_to_group(GroupName="developers", UserName="zed2")
iam.remove_user_from_group(GroupName="developers", UserName="zed2")

# managed policies and versions
pol = iam.create_policy(PolicyName="ReadIam", PolicyDocument=doc(allow(["iam:Get*", "iam:List*"])))["Policy"]
arn = pol["Arn"]
assert arn == A + ":policy/ReadIam" and pol["DefaultVersionId"] == "v1", pol
iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc(allow("iam:Get*")), SetAsDefault=True)
versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
assert sorted((v["VersionId"], v["IsDefaultVersion"]) for v in versions) == [("v1", False), ("v2", True)], versions
v1 = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
assert v1["Document"]["Statement"][0]["Action"] == ["iam:Get*", "iam:List*"], v1
iam.set_default_policy_version(PolicyArn=arn, VersionId="v1")
iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
assert error(iam.create_policy, PolicyName="Bad", PolicyDocument='{"Statement": 1}')[0] == "MalformedPolicyDocument"
local = [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]
assert "ReadIam" in local and "AdministratorAccess" in local, local

# roles
trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
    "Principal": {"AWS": A + ":root"}, "Action": "sts:AssumeRole"}]})
role = iam.create_role(RoleName="deployer", AssumeRolePolicyDocument=trust, MaxSessionDuration=7200,
                       Tags=[{"Key": "env", "Value": "prod"}])["Role"]
assert role["Arn"] == A + ":role/deployer" and role["RoleId"].startswith("AROA"), role
assert iam.get_role(RoleName="deployer")["Role"]["MaxSessionDuration"] == 7200
iam.update_role(RoleName="deployer", Description="deploys things")
assert iam.get_role(RoleName="deployer")["Role"]["Description"] == "deploys things"
assert "deployer" in [r["RoleName"] for r in iam.list_roles()["Roles"]]
iam.update_assume_role_policy(RoleName="deployer", PolicyDocument=trust)

# attach / detach / list attached, for users, groups and roles
iam.attach_user_policy(UserName="alice", PolicyArn=arn)
iam.attach_group_policy(GroupName="developers", PolicyArn=arn)
iam.attach_role_policy(RoleName="deployer", PolicyArn=arn)
for listing, kw in ((iam.list_attached_user_policies, {"UserName": "alice"}),
                    (iam.list_attached_group_policies, {"GroupName": "developers"}),
                    (iam.list_attached_role_policies, {"RoleName": "deployer"})):
    assert [p["PolicyArn"] for p in listing(**kw)["AttachedPolicies"]] == [arn], listing
ents = iam.list_entities_for_policy(PolicyArn=arn)
assert [u["UserName"] for u in ents["PolicyUsers"]] == ["alice"], ents
assert [g["GroupName"] for g in ents["PolicyGroups"]] == ["developers"], ents
assert [r["RoleName"] for r in ents["PolicyRoles"]] == ["deployer"], ents
assert error(iam.delete_policy, PolicyArn=arn)[0] == "DeleteConflict"
iam.detach_group_policy(GroupName="developers", PolicyArn=arn)
assert iam.list_attached_group_policies(GroupName="developers")["AttachedPolicies"] == []

# inline policies for users, groups and roles
inline = doc(allow("sts:GetCallerIdentity"))
for put, get, lst, delete, kw in (
        (iam.put_user_policy, iam.get_user_policy, iam.list_user_policies, iam.delete_user_policy, {"UserName": "alice"}),
        (iam.put_group_policy, iam.get_group_policy, iam.list_group_policies, iam.delete_group_policy, {"GroupName": "developers"}),
        (iam.put_role_policy, iam.get_role_policy, iam.list_role_policies, iam.delete_role_policy, {"RoleName": "deployer"})):
    put(PolicyName="inline1", PolicyDocument=inline, **kw)
    got = get(PolicyName="inline1", **kw)
    assert got["PolicyDocument"] == json.loads(inline), got
    assert lst(**kw)["PolicyNames"] == ["inline1"]
    delete(PolicyName="inline1", **kw)
    assert lst(**kw)["PolicyNames"] == []
    assert error(get, PolicyName="inline1", **kw)[0] == "NoSuchEntity"

# access keys
key = iam.create_access_key(UserName="alice")["AccessKey"]
assert key["AccessKeyId"].startswith("AKIA") and len(key["SecretAccessKey"]) == 40, key["AccessKeyId"]
listed = iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
assert [(k["AccessKeyId"], k["Status"]) for k in listed] == [(key["AccessKeyId"], "Active")], listed
assert "SecretAccessKey" not in listed[0]
client("sts", key_creds(key)).get_caller_identity()
last = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
assert last["UserName"] == "alice", last
iam.update_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"], Status="Inactive")
assert iam.list_access_keys(UserName="alice")["AccessKeyMetadata"][0]["Status"] == "Inactive"
iam.delete_access_key(UserName="alice", AccessKeyId=key["AccessKeyId"])
assert iam.list_access_keys(UserName="alice")["AccessKeyMetadata"] == []

# tags for users and roles
iam.tag_user(UserName="alice", Tags=[{"Key": "cost", "Value": "42"}])
assert sorted((t["Key"], t["Value"]) for t in iam.list_user_tags(UserName="alice")["Tags"]) == [("cost", "42"), ("team", "eng")]
iam.untag_user(UserName="alice", TagKeys=["cost"])
assert [t["Key"] for t in iam.list_user_tags(UserName="alice")["Tags"]] == ["team"]
iam.tag_role(RoleName="deployer", Tags=[{"Key": "tier", "Value": "1"}])
iam.untag_role(RoleName="deployer", TagKeys=["env"])
assert [(t["Key"], t["Value"]) for t in iam.list_role_tags(RoleName="deployer")["Tags"]] == [("tier", "1")]

# permissions boundaries for users and roles
iam.put_user_permissions_boundary(UserName="alice", PermissionsBoundary=arn)
assert iam.get_user(UserName="alice")["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == arn
iam.put_role_permissions_boundary(RoleName="deployer", PermissionsBoundary=arn)
assert iam.get_role(RoleName="deployer")["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == arn
iam.delete_role_permissions_boundary(RoleName="deployer")
assert "PermissionsBoundary" not in iam.get_role(RoleName="deployer")["Role"]

# simulation
sim = iam.simulate_principal_policy(PolicySourceArn=alice["Arn"], ActionNames=["iam:GetUser", "iam:CreateUser"])
decisions = {r["EvalActionName"]: r["EvalDecision"] for r in sim["EvaluationResults"]}
assert decisions == {"iam:GetUser": "allowed", "iam:CreateUser": "implicitDeny"}, sim
allowed = [r for r in sim["EvaluationResults"] if r["EvalActionName"] == "iam:GetUser"][0]
assert allowed["MatchedStatements"], allowed
custom = iam.simulate_custom_policy(PolicyInputList=[doc(deny("iam:DeleteUser"), allow("iam:*"))],
                                    ActionNames=["iam:DeleteUser", "iam:ListUsers"])
assert {r["EvalActionName"]: r["EvalDecision"] for r in custom["EvaluationResults"]} == \
    {"iam:DeleteUser": "explicitDeny", "iam:ListUsers": "allowed"}, custom

# the whole account
details = iam.get_account_authorization_details()
assert {"admin", "alice", "zed2"} <= {u["UserName"] for u in details["UserDetailList"]}, details["UserDetailList"]
assert "deployer" in [r["RoleName"] for r in details["RoleDetailList"]]
assert "developers" in [g["GroupName"] for g in details["GroupDetailList"]]
assert "ReadIam" in [p["PolicyName"] for p in details["Policies"]]

# STS
me = sts.get_caller_identity()
assert me["Arn"] == A + ":user/admin" and me["Account"] == "000000000000", me
tok = sts.get_session_token(DurationSeconds=900)["Credentials"]
assert tok["AccessKeyId"].startswith("ASIA"), tok["AccessKeyId"]
assert client("sts", session_creds(tok)).get_caller_identity()["Arn"] == A + ":user/admin"
assumed = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="ops", DurationSeconds=900)
assert assumed["AssumedRoleUser"]["Arn"] == "arn:aws:sts::000000000000:assumed-role/deployer/ops", assumed
assert assumed["AssumedRoleUser"]["AssumedRoleId"] == role["RoleId"] + ":ops", assumed
who = client("sts", session_creds(assumed["Credentials"])).get_caller_identity()
assert who["Arn"] == assumed["AssumedRoleUser"]["Arn"] and who["UserId"] == role["RoleId"] + ":ops", who

# presigned (query-string) SigV4, as EKS-style tooling uses it; a tampered one is refused
import urllib.request, urllib.error
url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
with urllib.request.urlopen(url, timeout=10) as r:
    body = r.read().decode()
assert r.status == 200 and "<Arn>" + A + ":user/admin</Arn>" in body, body
try:
    urllib.request.urlopen(url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"), timeout=10)
    raise AssertionError("a tampered presigned URL was accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in e.read(), e.code

# tear down in AWS's order: what still refers to something blocks its deletion
assert error(iam.delete_user, UserName="alice")[0] == "DeleteConflict"
iam.delete_user_permissions_boundary(UserName="alice")
iam.detach_user_policy(UserName="alice", PolicyArn=arn)
iam.detach_role_policy(RoleName="deployer", PolicyArn=arn)
iam.remove_user_from_group(GroupName="developers", UserName="alice")
iam.delete_user(UserName="alice")
iam.delete_user(UserName="zed2")
iam.delete_group(GroupName="developers")
iam.delete_role(RoleName="deployer")
iam.delete_policy(PolicyArn=arn)
assert [u["UserName"] for u in iam.list_users()["Users"]] == ["admin"]
RESULT["ok"] = True
"#;

#[test]
fn operator_scenario_through_every_action_family() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, admin) = sqlite_node(&dir, &[]);
    let out = boto3(&[node.endpoint()], &admin, OPERATOR_SCENARIO);
    assert_eq!(out["ok"], true);

    // What an operator types, through the CLI.
    let aws = Aws::new(&node.endpoint(), &node.data_dir.join("admin-credentials"));
    let p = "hive-admin";
    aws.ok(p, &["iam", "create-user", "--user-name", "ops"]);
    aws.ok(p, &["iam", "create-group", "--group-name", "operators"]);
    aws.ok(
        p,
        &[
            "iam",
            "add-user-to-group",
            "--group-name",
            "operators",
            "--user-name",
            "ops",
        ],
    );
    let policy = aws.ok(
        p,
        &[
            "iam",
            "create-policy",
            "--policy-name",
            "OpsRead",
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:Get*","Resource":"*"}]}"#,
        ],
    );
    let policy_arn = str_at(&policy, &["Policy", "Arn"]).to_owned();
    aws.ok(
        p,
        &[
            "iam",
            "attach-group-policy",
            "--group-name",
            "operators",
            "--policy-arn",
            &policy_arn,
        ],
    );
    let key = aws.ok(p, &["iam", "create-access-key", "--user-name", "ops"]);
    assert!(str_at(&key, &["AccessKey", "AccessKeyId"]).starts_with("AKIA"));
    let sim = aws.ok(
        p,
        &[
            "iam",
            "simulate-principal-policy",
            "--policy-source-arn",
            &format!("arn:aws:iam::{ACCOUNT}:user/ops"),
            "--action-names",
            "iam:GetUser",
            "iam:DeleteUser",
        ],
    );
    let decisions: Vec<(&str, &str)> = sim["EvaluationResults"]
        .as_array()
        .expect("EvaluationResults")
        .iter()
        .map(|r| {
            (
                r["EvalActionName"].as_str().unwrap_or_default(),
                r["EvalDecision"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("iam:GetUser", "allowed"),
            ("iam:DeleteUser", "implicitDeny")
        ]
    );
    let details = aws.ok(p, &["iam", "get-account-authorization-details"]);
    assert!(
        details["UserDetailList"]
            .as_array()
            .expect("UserDetailList")
            .iter()
            .any(|u| u["UserName"] == "ops" && u["GroupList"][0] == "operators"),
        "{details}"
    );
    let token = aws.ok(
        p,
        &["sts", "get-session-token", "--duration-seconds", "900"],
    );
    assert!(str_at(&token, &["Credentials", "SessionToken"]).len() > 16);
}

const RESTRICTED_USER_SCENARIO: &str = r#"
iam = client("iam")
A = "arn:aws:iam::000000000000"
iam.create_user(UserName="bob")
bob_key = key_creds(iam.create_access_key(UserName="bob")["AccessKey"])
bob = client("iam", bob_key)

# Denied, with AWS's message.
code, msg, status = error(bob.list_users)
assert (code, status) == ("AccessDenied", 403), (code, status, msg)
assert msg.startswith("User: " + A + ":user/bob is not authorized to perform: iam:ListUsers on resource: "), msg
assert msg.endswith(" because no identity-based policy allows the iam:ListUsers action"), msg
code, msg, _ = error(bob.create_user, UserName="mallory")
assert msg == ("User: " + A + ":user/bob is not authorized to perform: iam:CreateUser on resource: "
               + A + ":user/mallory because no identity-based policy allows the iam:CreateUser action"), msg

# Allowed within a second of the attachment.
pol = iam.create_policy(PolicyName="ListOnly", PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]["Arn"]
iam.attach_user_policy(UserName="bob", PolicyArn=pol)
def can_list():
    try:
        bob.list_users()
        return True
    except ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDenied", e.response
        return False
RESULT["allow_after_s"] = wait_until(can_list, timeout=1.0)
assert error(bob.create_user, UserName="mallory")[0] == "AccessDenied"

# An explicit Deny beats the Allow (here: a group's Allow-all against a user inline Deny).
# (The Deny goes first, so that bob can never create a user in between.)
iam.put_user_policy(UserName="bob", PolicyName="NoUserChanges", PolicyDocument=doc(deny(["iam:CreateUser", "iam:DeleteUser"])))
iam.create_group(GroupName="everything")
iam.attach_group_policy(GroupName="everything", PolicyArn=A + ":policy/AdministratorAccess")
iam.add_user_to_group(GroupName="everything", UserName="bob")
wait_until(lambda: code_of(bob.create_group, GroupName="made-by-bob") is None)  # the Allow-all works
code, msg, _ = error(bob.create_user, UserName="mallory")
assert code == "AccessDenied" and msg.endswith("with an explicit deny in an identity-based policy"), msg
assert error(iam.get_user, UserName="mallory")[0] == "NoSuchEntity"  # nothing was written

# Detaching takes effect within a second, too.
iam.remove_user_from_group(GroupName="everything", UserName="bob")
iam.detach_user_policy(UserName="bob", PolicyArn=pol)
RESULT["deny_after_detach_s"] = wait_until(lambda: not can_list(), timeout=1.0)

# A deactivated key is refused within a second; reactivated, it works again.
iam.attach_user_policy(UserName="bob", PolicyArn=pol)
wait_until(can_list)
iam.update_access_key(UserName="bob", AccessKeyId=bob_key["key"], Status="Inactive")
def refused():
    try:
        bob.list_users()
        return False
    except ClientError as e:
        code = e.response["Error"]["Code"]
        assert code in ("InvalidClientTokenId", "AccessDenied"), e.response
        return code == "InvalidClientTokenId"
RESULT["inactive_after_s"] = wait_until(refused, timeout=1.0)
code, msg, status = error(client("sts", bob_key).get_caller_identity)
assert (code, msg, status) == ("InvalidClientTokenId", "The security token included in the request is invalid.", 403), (code, msg, status)
iam.update_access_key(UserName="bob", AccessKeyId=bob_key["key"], Status="Active")
wait_until(can_list)
RESULT["bob"] = bob_key
"#;

#[test]
fn restricted_user_denied_then_allowed_explicit_deny_and_deactivated_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, admin) = sqlite_node(&dir, &[]);
    let out = boto3(&[node.endpoint()], &admin, RESTRICTED_USER_SCENARIO);
    for k in ["allow_after_s", "deny_after_detach_s", "inactive_after_s"] {
        let s = out[k].as_f64().expect("seconds");
        assert!(s <= 1.0, "{k} took {s} s");
    }
    // The operator's view of a denial, through the CLI.
    let bob = Creds {
        key: str_at(&out, &["bob", "key"]).to_owned(),
        secret: str_at(&out, &["bob", "secret"]).to_owned(),
    };
    let mut aws = Aws::new(&node.endpoint(), &node.data_dir.join("admin-credentials"));
    aws.add_profile("bob", &bob, None);
    let err = aws.fails("bob", &["iam", "create-user", "--user-name", "eve"]);
    assert!(
        err.contains(&format!(
            "An error occurred (AccessDenied) when calling the CreateUser operation: User: \
             arn:aws:iam::{ACCOUNT}:user/bob is not authorized to perform: iam:CreateUser on \
             resource: arn:aws:iam::{ACCOUNT}:user/eve with an explicit deny in an \
             identity-based policy"
        )),
        "{err}"
    );
    let listed = aws.ok("bob", &["iam", "list-users"]);
    assert!(listed["Users"].as_array().is_some_and(|u| u.len() >= 2));
}

const ASSUME_ROLE_SCENARIO: &str = r#"
import datetime, json
iam, sts = client("iam"), client("sts")
A = "arn:aws:iam::000000000000"
def trust(*principals):
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": list(principals)}, "Action": "sts:AssumeRole"}]})

iam.create_user(UserName="carol")
carol_key = key_creds(iam.create_access_key(UserName="carol")["AccessKey"])
iam.create_user(UserName="dave")
dave_key = key_creds(iam.create_access_key(UserName="dave")["AccessKey"])
role = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=trust(A + ":user/carol"))["Role"]
iam.put_role_policy(RoleName="reader", PolicyName="read",
                    PolicyDocument=doc(allow(["iam:ListUsers", "iam:GetRole"]), allow("sts:AssumeRole")))

# carol has no policy of her own: a same-account trust policy naming her is enough.
carol_sts = client("sts", carol_key)
before = datetime.datetime.now(datetime.timezone.utc)
out = carol_sts.assume_role(RoleArn=role["Arn"], RoleSessionName="s1", DurationSeconds=900)
assert out["AssumedRoleUser"] == {"Arn": "arn:aws:sts::000000000000:assumed-role/reader/s1",
                                  "AssumedRoleId": role["RoleId"] + ":s1"}, out["AssumedRoleUser"]
left = (out["Credentials"]["Expiration"] - before).total_seconds()
assert 880 <= left <= 920, left
assert "PackedPolicySize" not in out, out
session = session_creds(out["Credentials"])
s_iam = client("iam", session)

# The session has the role's permissions, and only those.
assert "carol" in [u["UserName"] for u in s_iam.list_users()["Users"]]
code, msg, status = error(s_iam.create_user, UserName="x")
assert (code, status) == ("AccessDenied", 403), (code, msg)
assert msg == ("User: arn:aws:sts::000000000000:assumed-role/reader/s1 is not authorized to perform: "
               "iam:CreateUser on resource: " + A + ":user/x because no identity-based policy allows the iam:CreateUser action"), msg
who = client("sts", session).get_caller_identity()
assert (who["Arn"], who["UserId"]) == (out["AssumedRoleUser"]["Arn"], role["RoleId"] + ":s1"), who
# ...and they follow the role's policies as they change.
iam.put_role_policy(RoleName="reader", PolicyName="deny-list", PolicyDocument=doc(deny("iam:ListUsers")))
wait_until(lambda: code_of(s_iam.list_users) == "AccessDenied")
iam.delete_role_policy(RoleName="reader", PolicyName="deny-list")

# A session policy narrows the session: intersection with the role's policies.
narrow = carol_sts.assume_role(RoleArn=role["Arn"], RoleSessionName="narrow",
                               Policy=doc(allow(["iam:GetRole", "iam:CreateUser"])))
assert narrow["PackedPolicySize"] > 0, narrow
n_iam = client("iam", session_creds(narrow["Credentials"]))
assert n_iam.get_role(RoleName="reader")["Role"]["RoleName"] == "reader"
code, msg, _ = error(n_iam.list_users)
assert code == "AccessDenied" and msg.endswith("because no session policy allows the iam:ListUsers action"), msg
code, msg, _ = error(n_iam.create_user, UserName="y")   # the session policy alone grants nothing
assert code == "AccessDenied" and msg.endswith("because no identity-based policy allows the iam:CreateUser action"), msg
# Managed policies as session policies (PolicyArns).
list_only = iam.create_policy(PolicyName="SessionListOnly", PolicyDocument=doc(allow("iam:ListUsers")))["Policy"]["Arn"]
by_arn = carol_sts.assume_role(RoleArn=role["Arn"], RoleSessionName="byarn", PolicyArns=[{"arn": list_only}])
b_iam = client("iam", session_creds(by_arn["Credentials"]))
b_iam.list_users()
assert error(b_iam.get_role, RoleName="reader")[0] == "AccessDenied"
assert error(carol_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="ss",
             Policy='{"Statement": [{"Effect": "Allow"}]}')[0] == "MalformedPolicyDocument"
code, msg, _ = error(carol_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="ss",
                     Policy=doc(*[allow("iam:Get%04d" % i) for i in range(120)]))
assert code == "PackedPolicyTooLarge", (code, msg)

# Refusals: a user the trust policy does not name, an unknown role (indistinguishable), root-only
# trust without an identity permission; then allowed once the identity policy grants it.
dave_sts = client("sts", dave_key)
denied = "User: " + A + ":user/dave is not authorized to perform: sts:AssumeRole on resource: "
code, msg, status = error(dave_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="dd")
assert (code, msg, status) == ("AccessDenied", denied + role["Arn"], 403), (code, msg, status)
code, msg, _ = error(dave_sts.assume_role, RoleArn=A + ":role/nope", RoleSessionName="dd")
assert (code, msg) == ("AccessDenied", denied + A + ":role/nope"), msg
open_role = iam.create_role(RoleName="open", AssumeRolePolicyDocument=trust(A + ":root"))["Role"]
code, msg, _ = error(dave_sts.assume_role, RoleArn=open_role["Arn"], RoleSessionName="dd")
assert (code, msg) == ("AccessDenied", denied + open_role["Arn"]), msg
iam.put_user_policy(UserName="dave", PolicyName="assume", PolicyDocument=doc(allow("sts:AssumeRole", open_role["Arn"])))
wait_until(lambda: code_of(dave_sts.assume_role, RoleArn=open_role["Arn"], RoleSessionName="dd") is None)

# Trust conditions see the caller's tags, the external id and the session tags.
cond = {"StringEquals": {"aws:PrincipalTag/team": "eng", "sts:ExternalId": "xyz-123"}}
abac = iam.create_role(RoleName="abac", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": A + ":user/dave"},
                   "Action": ["sts:AssumeRole", "sts:TagSession"], "Condition": cond}]}))["Role"]
assert error(dave_sts.assume_role, RoleArn=abac["Arn"], RoleSessionName="dd", ExternalId="xyz-123")[0] == "AccessDenied"
iam.tag_user(UserName="dave", Tags=[{"Key": "team", "Value": "eng"}])
wait_until(lambda: code_of(dave_sts.assume_role, RoleArn=abac["Arn"], RoleSessionName="dd", ExternalId="xyz-123") is None)
assert error(dave_sts.assume_role, RoleArn=abac["Arn"], RoleSessionName="dd")[0] == "AccessDenied"
tagged = dave_sts.assume_role(RoleArn=abac["Arn"], RoleSessionName="dd", ExternalId="xyz-123",
                              Tags=[{"Key": "project", "Value": "hive"}])
assert tagged["PackedPolicySize"] >= 1, tagged
code, msg, _ = error(dave_sts.assume_role, RoleArn=open_role["Arn"], RoleSessionName="dd",
                     Tags=[{"Key": "project", "Value": "hive"}])
assert (code, msg) == ("AccessDenied", "User: " + A + ":user/dave is not authorized to perform: sts:TagSession on resource: " + open_role["Arn"]), msg

# Validation as AWS: the role's MaxSessionDuration, session names, role chaining's hour.
code, msg, _ = error(carol_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="ss", DurationSeconds=7200)
assert (code, msg) == ("ValidationError", "The requested DurationSeconds exceeds the MaxSessionDuration set for this role (3600)."), msg
raw_sts = client("sts", carol_key, validate=False)
assert error(raw_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="a")[0] == "ValidationError"
assert error(raw_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="bad name")[0] == "ValidationError"
assert error(raw_sts.assume_role, RoleArn=role["Arn"], RoleSessionName="ok", DurationSeconds=60)[0] == "ValidationError"
iam.update_role(RoleName="open", MaxSessionDuration=7200)
s_sts = client("sts", session)
code, msg, _ = error(s_sts.assume_role, RoleArn=open_role["Arn"], RoleSessionName="chain", DurationSeconds=7200)
assert (code, msg) == ("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."), msg
chained = s_sts.assume_role(RoleArn=open_role["Arn"], RoleSessionName="chain")
assert chained["AssumedRoleUser"]["Arn"] == "arn:aws:sts::000000000000:assumed-role/open/chain"

# GetSessionToken: users only, never session credentials; the session keeps the user's permissions.
code, msg, status = error(s_sts.get_session_token)
assert (code, msg, status) == ("AccessDenied", "Cannot call GetSessionToken with session credentials", 403), (code, msg)
tok = carol_sts.get_session_token(DurationSeconds=129600)["Credentials"]
left = (tok["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
assert 3500 <= left <= 3610, left   # capped at the sessions bucket's TTL (one hour)
t_iam = client("iam", session_creds(tok))
assert error(t_iam.list_users)[0] == "AccessDenied"
iam.put_user_policy(UserName="carol", PolicyName="list", PolicyDocument=doc(allow("iam:ListUsers")))
wait_until(lambda: code_of(t_iam.list_users) is None)
assert error(t_iam.get_user, UserName="carol")[0] == "AccessDenied"
assert error(client("sts", carol_key, validate=False).get_session_token, DurationSeconds=899)[0] == "ValidationError"
RESULT["ok"] = True
"#;

#[test]
fn assumed_role_sessions_are_limited_to_the_role_and_session_policies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, admin) = sqlite_node(&dir, &[]);
    let out = boto3(&[node.endpoint()], &admin, ASSUME_ROLE_SCENARIO);
    assert_eq!(out["ok"], true);
    // The CLI assumes a role the way the guide would have an operator do it.
    let aws = Aws::new(&node.endpoint(), &node.data_dir.join("admin-credentials"));
    let assumed = aws.ok(
        "hive-admin",
        &[
            "sts",
            "assume-role",
            "--role-arn",
            &format!("arn:aws:iam::{ACCOUNT}:role/open"),
            "--role-session-name",
            "cli",
        ],
    );
    assert_eq!(
        str_at(&assumed, &["AssumedRoleUser", "Arn"]),
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/open/cli")
    );
}

/// What one bad request must get.
struct Bad {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    code: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_aws_error_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Enough failures in a row to trip the default throttle: raise it for this test.
    let (node, admin) = sqlite_node(&dir, &[("HIVE_AUTH_FAILURE_THRESHOLD", "1000")]);
    let addr = node.addr;
    let endpoint = node.endpoint();

    // A user with an inactive key, and a session for the token cases.
    let setup = boto3(
        std::slice::from_ref(&endpoint),
        &admin,
        r#"
iam = client("iam")
iam.create_user(UserName="sleepy")
k = iam.create_access_key(UserName="sleepy")["AccessKey"]
iam.update_access_key(UserName="sleepy", AccessKeyId=k["AccessKeyId"], Status="Inactive")
RESULT["inactive"] = key_creds(k)
RESULT["session"] = session_creds(client("sts").get_session_token(DurationSeconds=900)["Credentials"])
"#,
    );
    let inactive = Creds {
        key: str_at(&setup, &["inactive", "key"]).to_owned(),
        secret: str_at(&setup, &["inactive", "secret"]).to_owned(),
    };
    let session = Creds {
        key: str_at(&setup, &["session", "key"]).to_owned(),
        secret: str_at(&setup, &["session", "secret"]).to_owned(),
    };

    let create = |n: &str| format!("Action=CreateUser&UserName={n}&Version=2010-05-08");
    let wrong = Creds {
        key: admin.key.clone(),
        secret: "x".repeat(40),
    };
    let unknown = Creds {
        key: "AKIAZZZZZZZZZZZZZZZZ".into(),
        secret: admin.secret.clone(),
    };
    let spec = |body: String, creds: &Creds, token: Option<String>, skew: i64| SignSpec {
        body,
        creds: creds.clone(),
        token,
        service: "iam",
        skew_seconds: skew,
    };
    let specs = vec![
        spec(create("good1"), &admin, None, 0),
        spec(create("ghost1"), &wrong, None, 0),
        spec(create("ghost2"), &admin, None, 0),
        spec(create("ghost3"), &admin, None, -3600),
        spec(create("ghost4"), &unknown, None, 0),
        spec(create("ghost5"), &inactive, None, 0),
        spec(create("ghost6"), &session, Some("bogus-token".into()), 0),
        spec(create("ghost7"), &session, None, 0),
        spec(
            "Action=FrobnicateUser&Version=2010-05-08".into(),
            &admin,
            None,
            0,
        ),
        spec(
            "Action=CreateUser&UserName=%ZZghost8&Version=2010-05-08".into(),
            &admin,
            None,
            0,
        ),
        spec(create("ghost9"), &admin, None, 600),
    ];
    let signed = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || sign(&endpoint, &specs)
    })
    .await
    .expect("join");

    // The signer works: the same path with a good signature creates a user.
    let good = common::raw(addr, &raw_post(addr, &signed[0], &create("good1"))).await;
    assert_eq!(good.status, 200, "{}", good.body);

    let big_body = format!("{}&Pad={}", create("ghost10"), "a".repeat(2 * 1024 * 1024));
    // (what, which signed request, body, expected status, expected code); status 0: accepted.
    let bad = |what, i: usize, body: &str, status, code| Bad {
        what,
        request: raw_post(addr, &signed[i], body),
        status,
        code,
    };
    // Signed for `create(user)` and refused for their signature, then for their credentials.
    let signature = [
        ("wrong secret", 1, "ghost1"),
        ("tampered body", 2, "ghostX"),
        ("skewed date (an hour early)", 3, "ghost3"),
    ];
    let credentials = [
        ("unknown key", 4, "ghost4"),
        ("inactive key", 5, "ghost5"),
        ("wrong session token", 6, "ghost6"),
        ("session key without its token", 7, "ghost7"),
    ];
    let mut bads: Vec<Bad> = signature
        .iter()
        .map(|&(what, i, user)| bad(what, i, &create(user), 403, "SignatureDoesNotMatch"))
        .chain(
            credentials
                .iter()
                .map(|&(what, i, user)| bad(what, i, &create(user), 403, "InvalidClientTokenId")),
        )
        .collect();
    bads.extend([
        bad(
            "unknown action",
            8,
            "Action=FrobnicateUser&Version=2010-05-08",
            400,
            "InvalidAction",
        ),
        bad(
            "malformed form encoding",
            9,
            "Action=CreateUser&UserName=%ZZghost8&Version=2010-05-08",
            400,
            "MalformedQueryString",
        ),
        bad("oversized body", 0, &big_body, 413, "RequestEntityTooLarge"),
        bad(
            "skewed date (ten minutes late is fine, so this one succeeds)",
            10,
            &create("ghost9"),
            0,
            "",
        ),
    ]);
    let mut failures = Vec::new();
    for bad in &bads {
        let started = Instant::now();
        let reply = common::raw(addr, &bad.request).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}: took {:?}",
            bad.what,
            started.elapsed()
        );
        assert!(
            reply.status < 500,
            "{}: {} {}",
            bad.what,
            reply.status,
            reply.body
        );
        if bad.status == 0 {
            // Within the 15-minute window: accepted, as on AWS.
            if reply.status != 200 {
                failures.push(format!("{}: {} {}", bad.what, reply.status, reply.body));
            }
            continue;
        }
        let code = format!("<Code>{}</Code>", bad.code);
        if reply.status != bad.status || !reply.body.contains(&code) {
            failures.push(format!(
                "{}: want {} {}, got {} {}",
                bad.what, bad.status, bad.code, reply.status, reply.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same refusals as boto3 reports them; then: nothing was written.
    let check = boto3(
        std::slice::from_ref(&endpoint),
        &admin,
        &format!(
            r#"
code, msg, status = error(client("iam", {{"key": ADMIN["key"], "secret": "x" * 40}}).get_user)
assert (code, status) == ("SignatureDoesNotMatch", 403), (code, msg)
assert msg.startswith("The request signature we calculated does not match"), msg
assert error(client("iam", {{"key": "AKIAZZZZZZZZZZZZZZZZ", "secret": "y" * 40}}).get_user)[:3:2] == ("InvalidClientTokenId", 403)
assert error(client("iam", {{"key": "{inactive_key}", "secret": "{inactive_secret}"}}).get_user)[0] == "InvalidClientTokenId"
import botocore.auth, datetime
real = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(hours=2)
try:
    code, msg, status = error(client("iam").create_user, UserName="ghost11")
finally:
    botocore.auth.get_current_datetime = real
assert (code, status) == ("SignatureDoesNotMatch", 403) and "Signature expired" in msg, (code, msg)
code, msg, status = error(client("iam", validate=False).create_user, UserName="")
assert status == 400, (code, status)
names = sorted(u["UserName"] for u in client("iam").list_users()["Users"])
RESULT["users"] = names
"#,
            inactive_key = inactive.key,
            inactive_secret = inactive.secret
        ),
    );
    let users: Vec<&str> = check["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(users, ["admin", "ghost9", "good1", "sleepy"]);
    assert!(node.log_text().lines().all(|l| !l.contains(&admin.secret)));
}

#[test]
fn two_processes_on_one_nats_server() {
    let nats = hive_kv::testing::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = NodeOpts::on_nats(
        dir.path(),
        nats.url(),
        '7',
        &[("HIVE_AUTH_FAILURE_THRESHOLD", "1000")],
    );
    let data_dir = opts.data_dir.clone();
    // Started together: exactly one of them bootstraps.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Node::start(&opts));
        let b = s.spawn(|| Node::start(&opts));
        (
            a.join().expect("start node a"),
            b.join().expect("start node b"),
        )
    });
    let admin = admin_credentials(&data_dir);
    let files: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("read the data dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("admin-credentials"))
        .collect();
    assert_eq!(
        files,
        ["admin-credentials"],
        "exactly one administrator key"
    );

    // The guide's test against both processes.
    for node in [&a, &b] {
        let aws = Aws::new(&node.endpoint(), &data_dir.join("admin-credentials"));
        let user = aws.ok("hive-admin", &["iam", "get-user"]);
        assert_eq!(str_at(&user, &["User", "UserName"]), "admin");
        let users = aws.ok("hive-admin", &["iam", "list-users"]);
        assert_eq!(users["Users"].as_array().map(Vec::len), Some(1), "{users}");
    }

    let out = boto3(
        &[a.endpoint(), b.endpoint()],
        &admin,
        r#"
A, B = (client("iam", endpoint=e) for e in ENDPOINTS)
# Concurrent CreateUser of one name through both processes: exactly one wins.
for round in range(5):
    name = "racer%d" % round
    results = parallel([lambda: A.create_user(UserName=name), lambda: B.create_user(UserName=name)])
    outcomes = sorted(r[0] if r[0] == "ok" else r[1] for r in results)
    assert outcomes == ["EntityAlreadyExists", "ok"], (name, results)
assert len([u for u in A.list_users()["Users"] if u["UserName"].startswith("racer")]) == 5

# Concurrent attachments (the managed-policy limit is 10) and inline policies: all kept.
A.create_user(UserName="busy")
arns = [A.create_policy(PolicyName="p%d" % i, PolicyDocument=doc(allow(["iam:Get%d*" % i, "iam:GetUser"])))["Policy"]["Arn"] for i in range(10)]
calls = [(lambda c, arn: (lambda: c.attach_user_policy(UserName="busy", PolicyArn=arn)))((A, B)[i % 2], arn)
         for i, arn in enumerate(arns)]
calls += [(lambda c, i: (lambda: c.put_user_policy(UserName="busy", PolicyName="inline%d" % i,
                                                   PolicyDocument=doc(allow(["iam:List%d*" % i, "iam:GetUser"])))))((B, A)[i % 2], i)
          for i in range(10)]
results = parallel(calls)
assert all(r[0] == "ok" for r in results), results
for c in (A, B):
    attached = sorted(p["PolicyArn"] for p in c.list_attached_user_policies(UserName="busy")["AttachedPolicies"])
    assert attached == sorted(arns), attached
    assert sorted(c.list_user_policies(UserName="busy")["PolicyNames"]) == sorted("inline%d" % i for i in range(10))
eleventh = A.create_policy(PolicyName="p10", PolicyDocument=doc(allow("iam:Get*")))["Policy"]["Arn"]
assert error(A.attach_user_policy, UserName="busy", PolicyArn=eleventh)[0] == "LimitExceeded"

# A key deactivated through one process is refused by the other within a second.
k = key_creds(A.create_access_key(UserName="busy")["AccessKey"])
via_b = client("sts", k, endpoint=ENDPOINTS[1])
via_b.get_caller_identity()
A.update_access_key(UserName="busy", AccessKeyId=k["key"], Status="Inactive")
def refused():
    try:
        via_b.get_caller_identity()
        return False
    except ClientError as e:
        return e.response["Error"]["Code"] == "InvalidClientTokenId"
RESULT["cross_process_inactive_s"] = wait_until(refused, timeout=1.0)

# A policy detached through one process stops working through the other within a second.
A.update_access_key(UserName="busy", AccessKeyId=k["key"], Status="Active")
busy_b = client("iam", k, endpoint=ENDPOINTS[1])
wait_until(lambda: code_of(busy_b.get_user, UserName="busy") is None)
for arn in arns:
    A.detach_user_policy(UserName="busy", PolicyArn=arn)
for i in range(10):
    A.delete_user_policy(UserName="busy", PolicyName="inline%d" % i)
RESULT["cross_process_detach_s"] = wait_until(lambda: code_of(busy_b.get_user, UserName="busy") == "AccessDenied", timeout=1.0)
# Temporary credentials issued by one process work through the other.
tok = client("sts", endpoint=ENDPOINTS[0]).get_session_token(DurationSeconds=900)["Credentials"]
assert client("sts", session_creds(tok), endpoint=ENDPOINTS[1]).get_caller_identity()["Arn"].endswith(":user/admin")
RESULT["ok"] = True
"#,
    );
    assert_eq!(out["ok"], true);
    for k in ["cross_process_inactive_s", "cross_process_detach_s"] {
        let s = out[k].as_f64().expect("seconds");
        assert!(s <= 1.0, "{k} took {s} s");
    }
    let admins = [&a, &b]
        .iter()
        .filter(|n| n.log_text().contains(&admin.secret))
        .count();
    assert_eq!(admins, 0, "the admin secret leaked into a log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_temporary_credentials_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, admin) = sqlite_node(&dir, &[]);
    // No session can be shorter than 900 s, so issue one "in the past" straight into the
    // server's store (SQLite is shared between processes), sealed with the server's key: it
    // was issued 16 minutes ago for 15 minutes.
    let flags = hive_api::config::Overrides {
        data_dir: Some(node.data_dir.clone()),
        ..Default::default()
    };
    let config =
        hive_api::config::Config::load(None, |_| None, &flags).expect("the node's configuration");
    let (store, _) = hive_api::storage::open(&config.storage)
        .await
        .expect("open the node's store");
    let keyring = hive_api::bootstrap::load_keyring(&config).expect("the node's sealing key");
    let repo = hive_iam_store::IamRepo::open(&*store, &config.iam.bucket_names(), keyring)
        .await
        .expect("open the IAM buckets");
    let user = repo.get_user(ACCOUNT, "admin").await.expect("the admin");
    let principal = hive_iam::identity::Principal::User {
        account_id: user.account_id.clone(),
        username: user.username.clone(),
        user_id: user.user_id.clone(),
        arn: user.arn.clone(),
    };
    let issued = time::OffsetDateTime::now_utc() - time::Duration::seconds(960);
    let expired = repo
        .create_session(principal.clone(), 900, None, Vec::new(), issued)
        .await
        .expect("an expired session");
    let live = repo
        .create_session(
            principal,
            900,
            None,
            Vec::new(),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("a live session");
    let scenario = format!(
        r#"
expired = {{"key": "{}", "secret": "{}", "token": "{}"}}
live = {{"key": "{}", "secret": "{}", "token": "{}"}}
assert client("sts", live).get_caller_identity()["Arn"].endswith(":user/admin")
code, msg, status = error(client("sts", expired).get_caller_identity)
assert (code, msg, status) == ("ExpiredToken", "The security token included in the request is expired", 403), (code, msg, status)
code, msg, status = error(client("iam", expired).create_user, UserName="late")
assert (code, status) == ("ExpiredToken", 403), (code, msg, status)
assert error(client("iam").get_user, UserName="late")[0] == "NoSuchEntity"
RESULT["ok"] = True
"#,
        expired.access_key_id,
        expired.secret_access_key.expose(),
        expired.session_token.expose(),
        live.access_key_id,
        live.secret_access_key.expose(),
        live.session_token.expose(),
    );
    let endpoint = node.endpoint();
    let out = tokio::task::spawn_blocking(move || boto3(&[endpoint], &admin, &scenario))
        .await
        .expect("join");
    assert_eq!(out["ok"], true);
}

#[test]
fn restricted_user_and_assumed_role_scenarios_on_nats() {
    let nats = hive_kv::testing::NatsServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&NodeOpts {
        data_dir: dir.path().join("data"),
        nats_url: Some(nats.url()),
        env: Vec::new(),
    });
    let admin = admin_credentials(&node.data_dir);
    let out = boto3(&[node.endpoint()], &admin, RESTRICTED_USER_SCENARIO);
    for k in ["allow_after_s", "deny_after_detach_s", "inactive_after_s"] {
        let s = out[k].as_f64().expect("seconds");
        assert!(s <= 1.0, "{k} took {s} s");
    }
    let out = boto3(&[node.endpoint()], &admin, ASSUME_ROLE_SCENARIO);
    assert_eq!(out["ok"], true);
}
