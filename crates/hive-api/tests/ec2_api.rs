//! EC2 networking over HTTP, in process: every action of the VPC subset, with requests
//! serialized by botocore's EC2 serializer and every response parsed by botocore's EC2 parser
//! against the action's output shape, plus a strict check that every element we write is one
//! the model knows (botocore silently drops unknown ones). Error codes, filters, pagination,
//! authorization with EC2 condition keys, and nothing half-written after an error.
//!
//! Needs a python with botocore (`$HIVE_PYTHON` or `<workspace>/.venv/bin/python`); the tests
//! fail with the fix when it is missing. The authenticator takes the caller from an
//! `X-Test-Caller` header (a user name; `admin` by default); authorization is the real one.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command};
use std::sync::Arc;

use common::*;
use hive_api::app::App;
use hive_api::ec2::Ec2Service;
use hive_api::server::Server;
use hive_iam_store::Target;
use serde_json::{Value, json};

const ACCT: &str = "000000000000";

/// botocore's serializer and parser in one python process for the whole test.
struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Bridge {
    fn start() -> Self {
        let script =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ec2_bridge.py");
        let (child, stdin, stdout) = spawn_bridge(Command::new(python()).arg(&script));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, request: &Value) -> Value {
        writeln!(self.stdin, "{request}").expect("write to the botocore bridge");
        self.stdin.flush().expect("flush the bridge");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the botocore bridge");
        assert!(
            !line.is_empty(),
            "the botocore bridge died (is botocore installed in {}?)",
            python().display()
        );
        let answer: Value = serde_json::from_str(&line).expect("the bridge answers JSON");
        if let Some(e) = answer.get("error") {
            panic!("botocore bridge failed on {request}: {e}");
        }
        answer
    }

    fn serialize(&mut self, op: &str, params: &Value) -> String {
        let answer = self.ask(&json!({"cmd": "serialize", "op": op, "params": params}));
        answer["body"].as_str().expect("a body").to_owned()
    }

    fn parse(&mut self, op: &str, status: u16, body: &str) -> (Value, Vec<String>) {
        let answer = self.ask(&json!({"cmd": "parse", "op": op, "status": status, "body": body}));
        let unknown = answer["unknown"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect();
        (answer["parsed"].clone(), unknown)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reply, as botocore read it.
struct Answer {
    status: u16,
    parsed: Value,
    body: String,
}

impl Answer {
    fn code(&self) -> &str {
        self.parsed["Error"]["Code"].as_str().unwrap_or("")
    }
}

/// A server with EC2 on a bootstrapped in-memory store.
struct Env {
    server: TestServer,
    app: Arc<App>,
    ec2: Arc<Ec2Service>,
    bridge: Bridge,
    /// Actions answered 200 and checked by botocore, for the coverage assertion.
    answered: std::collections::BTreeSet<String>,
}

impl Env {
    async fn new() -> Self {
        let app = bootstrapped_app(ACCT).await;
        let ec2 = Arc::new(
            Ec2Service::open(app.clone())
                .await
                .expect("EC2 opens and bootstraps the default network"),
        );
        let server = TestServer::start(
            Server::new(config(), ready_ok())
                .authenticator(Arc::new(HeaderAuth { app: app.clone() }))
                .service(ec2.clone()),
        )
        .await;
        Self {
            server,
            app,
            ec2,
            bridge: Bridge::start(),
            answered: Default::default(),
        }
    }

    /// A user with one inline policy `document`.
    async fn user(&self, name: &str, document: &str) {
        self.app
            .iam
            .create_user(ACCT, name, None, Vec::new())
            .await
            .expect("create user");
        self.app
            .iam
            .put_inline_policy(ACCT, &Target::User(name.into()), "p", document)
            .await
            .expect("put policy");
    }

    /// `op` with `params` (botocore's input names) as `caller`.
    async fn call_as(&mut self, caller: Option<&str>, op: &str, params: Value) -> Answer {
        let body = self.bridge.serialize(op, &params);
        self.send(caller, op, &body).await
    }

    /// A raw form body (parameters botocore would not send) for `op`.
    async fn send(&mut self, caller: Option<&str>, op: &str, body: &str) -> Answer {
        let mut headers = auth_header("ec2");
        if let Some(c) = caller {
            headers.push_str(&format!("X-Test-Caller: {c}\r\n"));
        }
        let reply = post_form(self.server.addr, body, &headers).await;
        let (parsed, unknown) = self.bridge.parse(op, reply.status, &reply.body);
        assert!(
            unknown.is_empty(),
            "{op}: elements the botocore model does not know: {unknown:?}\n{}",
            reply.body
        );
        if reply.status == 200 {
            assert!(
                reply.body.contains(&format!(
                    "<{op}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>"
                )),
                "{}",
                reply.body
            );
            assert!(
                parsed["ResponseMetadata"]["RequestId"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
                "{parsed}"
            );
            self.answered.insert(op.to_owned());
        } else {
            assert!(
                reply.body.contains("<Response><Errors><Error><Code>"),
                "{}",
                reply.body
            );
        }
        Answer {
            status: reply.status,
            parsed,
            body: reply.body,
        }
    }

    async fn call(&mut self, op: &str, params: Value) -> Answer {
        self.call_as(None, op, params).await
    }

    /// `op` must succeed; returns botocore's parse.
    async fn ok(&mut self, op: &str, params: Value) -> Value {
        let a = self.call(op, params.clone()).await;
        assert_eq!(a.status, 200, "{op} {params} failed: {}", a.body);
        a.parsed
    }

    /// `op` must fail with `code` (and a 4xx); returns the message.
    async fn fails(&mut self, op: &str, params: Value, code: &str) -> String {
        let a = self.call(op, params.clone()).await;
        assert_eq!(a.code(), code, "{op} {params}: {}", a.body);
        assert!((400..500).contains(&a.status), "{}", a.status);
        a.parsed["Error"]["Message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| s(&i[field]).to_owned())
        .collect()
}

fn tag_spec(kind: &str, pairs: &[(&str, &str)]) -> Value {
    json!([{
        "ResourceType": kind,
        "Tags": pairs.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_round_trips_through_botocore() {
    let mut env = Env::new().await;

    // The default network exists from bootstrap: VPC 10.0.0.0/16, subnet 10.0.1.0/24, group.
    let vpcs = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "is-default", "Values": ["true"]}]}),
        )
        .await;
    let default_vpc = &vpcs["Vpcs"][0];
    assert_eq!(default_vpc["CidrBlock"], "10.0.0.0/16");
    assert_eq!(default_vpc["IsDefault"], true);
    assert_eq!(default_vpc["OwnerId"], ACCT);
    let default_vpc_id = s(&default_vpc["VpcId"]).to_owned();
    let subnets = env
        .ok(
            "DescribeSubnets",
            json!({"Filters": [{"Name": "vpc-id", "Values": [default_vpc_id]}]}),
        )
        .await;
    assert_eq!(subnets["Subnets"][0]["CidrBlock"], "10.0.1.0/24");
    assert_eq!(subnets["Subnets"][0]["DefaultForAz"], true);

    // VPC with tags on create; attributes.
    let created = env
        .ok(
            "CreateVpc",
            json!({"CidrBlock": "10.20.0.0/16", "TagSpecifications": tag_spec("vpc", &[("Name", "lab")])}),
        )
        .await;
    let vpc = &created["Vpc"];
    let vpc_id = s(&vpc["VpcId"]).to_owned();
    assert!(vpc_id.starts_with("vpc-"));
    assert_eq!(vpc["State"], "available");
    assert_eq!(vpc["IsDefault"], false);
    assert_eq!(vpc["Tags"][0]["Key"], "Name");
    assert_eq!(
        vpc["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"],
        "associated"
    );
    let attr = env
        .ok(
            "DescribeVpcAttribute",
            json!({"VpcId": vpc_id, "Attribute": "enableDnsSupport"}),
        )
        .await;
    assert_eq!(attr["EnableDnsSupport"]["Value"], true);
    assert_eq!(attr["VpcId"], vpc_id.as_str());
    env.ok(
        "ModifyVpcAttribute",
        json!({"VpcId": vpc_id, "EnableDnsHostnames": {"Value": true}}),
    )
    .await;
    let attr = env
        .ok(
            "DescribeVpcAttribute",
            json!({"VpcId": vpc_id, "Attribute": "enableDnsHostnames"}),
        )
        .await;
    assert_eq!(attr["EnableDnsHostnames"]["Value"], true);

    // Subnet.
    let subnet = env
        .ok(
            "CreateSubnet",
            json!({"VpcId": vpc_id, "CidrBlock": "10.20.1.0/24",
                   "TagSpecifications": tag_spec("subnet", &[("tier", "web")])}),
        )
        .await;
    let subnet = &subnet["Subnet"];
    let subnet_id = s(&subnet["SubnetId"]).to_owned();
    assert_eq!(subnet["AvailableIpAddressCount"], 251);
    assert_eq!(subnet["VpcId"], vpc_id.as_str());
    assert!(s(&subnet["SubnetArn"]).ends_with(&format!(":{ACCT}:subnet/{subnet_id}")));
    env.ok(
        "ModifySubnetAttribute",
        json!({"SubnetId": subnet_id, "MapPublicIpOnLaunch": {"Value": true}}),
    )
    .await;
    let got = env
        .ok("DescribeSubnets", json!({"SubnetIds": [subnet_id]}))
        .await;
    assert_eq!(got["Subnets"][0]["MapPublicIpOnLaunch"], true);
    assert_eq!(got["Subnets"][0]["Tags"][0]["Value"], "web");

    // Two groups, one referencing the other.
    let web = env
        .ok(
            "CreateSecurityGroup",
            json!({"GroupName": "web", "Description": "web servers", "VpcId": vpc_id,
                   "TagSpecifications": tag_spec("security-group", &[("role", "web")])}),
        )
        .await;
    let web_id = s(&web["GroupId"]).to_owned();
    assert_eq!(web["Tags"][0]["Value"], "web");
    assert!(s(&web["SecurityGroupArn"]).ends_with(&web_id));
    let db = env
        .ok(
            "CreateSecurityGroup",
            json!({"GroupName": "db", "Description": "databases", "VpcId": vpc_id}),
        )
        .await;
    let db_id = s(&db["GroupId"]).to_owned();
    let added = env
        .ok(
            "AuthorizeSecurityGroupIngress",
            json!({"GroupId": db_id, "IpPermissions": [{
                "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web_id, "Description": "from web"}]}]}),
        )
        .await;
    assert_eq!(added["Return"], true);
    let rule = &added["SecurityGroupRules"][0];
    assert_eq!(rule["ReferencedGroupInfo"]["GroupId"], web_id.as_str());
    assert_eq!(rule["IsEgress"], false);
    assert_eq!(rule["FromPort"], 5432);
    let db_rule_id = s(&rule["SecurityGroupRuleId"]).to_owned();
    // The CLI's `--protocol tcp --port 22 --cidr 10.0.0.0/16` shape, and the legacy form.
    env.ok(
        "AuthorizeSecurityGroupIngress",
        json!({"GroupId": web_id, "IpPermissions": [{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]}),
    )
    .await;
    env.ok(
        "AuthorizeSecurityGroupIngress",
        json!({"GroupId": web_id, "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
               "CidrIp": "0.0.0.0/0"}),
    )
    .await;
    let egress = env
        .ok(
            "AuthorizeSecurityGroupEgress",
            json!({"GroupId": web_id, "IpPermissions": [{
                "IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
                "IpRanges": [{"CidrIp": "10.20.0.2/32", "Description": "dns"}]}]}),
        )
        .await;
    assert_eq!(egress["SecurityGroupRules"][0]["IsEgress"], true);
    assert_eq!(egress["SecurityGroupRules"][0]["CidrIpv4"], "10.20.0.2/32");

    let groups = env
        .ok("DescribeSecurityGroups", json!({"GroupIds": [web_id]}))
        .await;
    let g = &groups["SecurityGroups"][0];
    assert_eq!(g["GroupName"], "web");
    assert_eq!(g["Description"], "web servers");
    assert_eq!(g["VpcId"], vpc_id.as_str());
    let ingress = g["IpPermissions"].as_array().expect("list");
    assert_eq!(ingress.len(), 2, "{g}");
    let ssh = ingress
        .iter()
        .find(|p| p["FromPort"] == 22)
        .expect("ssh rule");
    assert_eq!(ssh["IpProtocol"], "tcp");
    assert_eq!(ssh["IpRanges"][0]["CidrIp"], "10.0.0.0/16");
    let egress = g["IpPermissionsEgress"].as_array().expect("list");
    assert!(
        egress
            .iter()
            .any(|p| p["IpProtocol"] == "-1" && p["IpRanges"][0]["CidrIp"] == "0.0.0.0/0"),
        "{g}"
    );
    let db_group = env
        .ok(
            "DescribeSecurityGroups",
            json!({"Filters": [{"Name": "group-name", "Values": ["db"]}]}),
        )
        .await;
    let pair = &db_group["SecurityGroups"][0]["IpPermissions"][0]["UserIdGroupPairs"][0];
    assert_eq!(pair["GroupId"], web_id.as_str());
    assert_eq!(pair["UserId"], ACCT);
    assert_eq!(pair["Description"], "from web");

    let rules = env
        .ok(
            "DescribeSecurityGroupRules",
            json!({"Filters": [{"Name": "group-id", "Values": [web_id]}]}),
        )
        .await;
    let rules = rules["SecurityGroupRules"].as_array().expect("list");
    assert_eq!(rules.len(), 4, "3 added + the default egress rule");
    assert!(rules.iter().all(|r| r["GroupId"] == web_id.as_str()));

    // Interfaces.
    let eni = env
        .ok(
            "CreateNetworkInterface",
            json!({"SubnetId": subnet_id, "Groups": [web_id], "Description": "vm-1",
                   "PrivateIpAddress": "10.20.1.10",
                   "TagSpecifications": tag_spec("network-interface", &[("vm", "1")])}),
        )
        .await;
    let eni = &eni["NetworkInterface"];
    let eni_id = s(&eni["NetworkInterfaceId"]).to_owned();
    assert_eq!(eni["PrivateIpAddress"], "10.20.1.10");
    assert_eq!(eni["Groups"][0]["GroupId"], web_id.as_str());
    assert_eq!(eni["Groups"][0]["GroupName"], "web");
    assert_eq!(eni["Status"], "available");
    assert_eq!(eni["TagSet"][0]["Key"], "vm");
    assert_eq!(eni["PrivateIpAddresses"][0]["Primary"], true);
    assert!(s(&eni["MacAddress"]).starts_with("02:"));
    let eni2 = env
        .ok("CreateNetworkInterface", json!({"SubnetId": subnet_id}))
        .await;
    let eni2 = &eni2["NetworkInterface"];
    let eni2_id = s(&eni2["NetworkInterfaceId"]).to_owned();
    assert_eq!(eni2["Groups"][0]["GroupName"], "default");
    assert_eq!(eni2["PrivateIpAddress"], "10.20.1.4", "lowest free address");
    env.ok(
        "ModifyNetworkInterfaceAttribute",
        json!({"NetworkInterfaceId": eni2_id, "Groups": [db_id, web_id]}),
    )
    .await;
    let found = env
        .ok(
            "DescribeNetworkInterfaces",
            json!({"Filters": [{"Name": "group-id", "Values": [db_id]}]}),
        )
        .await;
    assert_eq!(
        ids(&found["NetworkInterfaces"], "NetworkInterfaceId"),
        [eni2_id.as_str()]
    );
    let found = env
        .ok(
            "DescribeNetworkInterfaces",
            json!({"Filters": [{"Name": "private-ip-address", "Values": ["10.20.1.10"]},
                               {"Name": "subnet-id", "Values": [subnet_id]}]}),
        )
        .await;
    assert_eq!(
        ids(&found["NetworkInterfaces"], "NetworkInterfaceId"),
        [eni_id.as_str()]
    );

    // Tags.
    env.ok(
        "CreateTags",
        json!({"Resources": [vpc_id, web_id, eni_id], "Tags": [{"Key": "env", "Value": "test"}]}),
    )
    .await;
    let tags = env
        .ok(
            "DescribeTags",
            json!({"Filters": [{"Name": "key", "Values": ["env"]}]}),
        )
        .await;
    let mut tagged = ids(&tags["Tags"], "ResourceId");
    tagged.sort();
    let mut want = vec![vpc_id.clone(), web_id.clone(), eni_id.clone()];
    want.sort();
    assert_eq!(tagged, want);
    let types: Vec<&str> = tags["Tags"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| s(&t["ResourceType"]))
        .collect();
    assert!(types.contains(&"security-group") && types.contains(&"network-interface"));
    env.ok(
        "DeleteTags",
        json!({"Resources": [web_id], "Tags": [{"Key": "env"}]}),
    )
    .await;
    let tags = env
        .ok(
            "DescribeTags",
            json!({"Filters": [{"Name": "resource-id", "Values": [web_id]}]}),
        )
        .await;
    assert_eq!(ids(&tags["Tags"], "Key"), ["role"]);
    // A value that does not match keeps the tag; no Tag.N removes them all.
    env.ok(
        "DeleteTags",
        json!({"Resources": [vpc_id], "Tags": [{"Key": "env", "Value": "other"}]}),
    )
    .await;
    let vpc_now = env.ok("DescribeVpcs", json!({"VpcIds": [vpc_id]})).await;
    assert_eq!(vpc_now["Vpcs"][0]["Tags"].as_array().map(Vec::len), Some(2));
    env.ok("DeleteTags", json!({"Resources": [vpc_id]})).await;
    let vpc_now = env.ok("DescribeVpcs", json!({"VpcIds": [vpc_id]})).await;
    assert!(
        vpc_now["Vpcs"][0]["Tags"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );

    // Revoke by content (with one unknown rule) and by id.
    let revoked = env
        .ok(
            "RevokeSecurityGroupIngress",
            json!({"GroupId": web_id, "IpPermissions": [
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]},
                {"IpProtocol": "tcp", "FromPort": 23, "ToPort": 23, "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]}),
        )
        .await;
    assert_eq!(revoked["Return"], true);
    assert_eq!(revoked["RevokedSecurityGroupRules"][0]["FromPort"], 22);
    assert_eq!(revoked["UnknownIpPermissions"][0]["FromPort"], 23);
    let revoked = env
        .ok(
            "RevokeSecurityGroupIngress",
            json!({"GroupId": db_id, "SecurityGroupRuleIds": [db_rule_id]}),
        )
        .await;
    assert_eq!(
        revoked["RevokedSecurityGroupRules"][0]["ReferencedGroupId"],
        web_id.as_str()
    );
    env.ok(
        "RevokeSecurityGroupEgress",
        json!({"GroupId": web_id, "IpPermissions": [{
            "IpProtocol": "udp", "FromPort": 53, "ToPort": 53,
            "IpRanges": [{"CidrIp": "10.20.0.2/32"}]}]}),
    )
    .await;

    // Delete everything, in dependency order.
    env.ok(
        "DeleteNetworkInterface",
        json!({"NetworkInterfaceId": eni_id}),
    )
    .await;
    env.ok(
        "DeleteNetworkInterface",
        json!({"NetworkInterfaceId": eni2_id}),
    )
    .await;
    let deleted = env
        .ok("DeleteSecurityGroup", json!({"GroupId": db_id}))
        .await;
    assert_eq!(deleted["GroupId"], db_id.as_str());
    env.ok("DeleteSecurityGroup", json!({"GroupId": web_id}))
        .await;
    env.ok("DeleteSubnet", json!({"SubnetId": subnet_id})).await;
    env.ok("DeleteVpc", json!({"VpcId": vpc_id})).await;
    let left = env.ok("DescribeVpcs", json!({})).await;
    assert_eq!(ids(&left["Vpcs"], "VpcId"), [default_vpc_id]);

    let missing: Vec<&&str> = hive_api::ec2::ACTIONS
        .iter()
        .filter(|a| !env.answered.contains(**a))
        .collect();
    assert!(missing.is_empty(), "actions never exercised: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_code_is_triggered_and_nothing_is_half_written() {
    let mut env = Env::new().await;
    let nobody_vpc = "vpc-0123456789abcdef0";
    env.fails(
        "DeleteVpc",
        json!({"VpcId": nobody_vpc}),
        "InvalidVpcID.NotFound",
    )
    .await;
    env.fails(
        "DescribeVpcs",
        json!({"VpcIds": [nobody_vpc]}),
        "InvalidVpcID.NotFound",
    )
    .await;
    env.fails(
        "DeleteVpc",
        json!({"VpcId": "vpc-xyz"}),
        "InvalidVpcID.Malformed",
    )
    .await;
    env.fails(
        "DeleteSubnet",
        json!({"SubnetId": "subnet-0123456789abcdef0"}),
        "InvalidSubnetID.NotFound",
    )
    .await;
    env.fails(
        "DescribeSecurityGroups",
        json!({"GroupIds": ["sg-0123456789abcdef0"]}),
        "InvalidGroup.NotFound",
    )
    .await;
    env.fails(
        "DeleteNetworkInterface",
        json!({"NetworkInterfaceId": "eni-0123456789abcdef0"}),
        "InvalidNetworkInterfaceID.NotFound",
    )
    .await;
    env.fails(
        "CreateVpc",
        json!({"CidrBlock": "10.0.0.0/8"}),
        "InvalidVpc.Range",
    )
    .await;
    env.fails(
        "CreateVpc",
        json!({"CidrBlock": "10.0.0.0/29"}),
        "InvalidVpc.Range",
    )
    .await;
    env.fails(
        "CreateVpc",
        json!({"CidrBlock": "10.0.0.300/16"}),
        "InvalidParameterValue",
    )
    .await;
    env.fails("CreateVpc", json!({}), "MissingParameter").await;

    let vpc = env
        .ok("CreateVpc", json!({"CidrBlock": "10.5.0.0/16"}))
        .await;
    let vpc_id = s(&vpc["Vpc"]["VpcId"]).to_owned();
    env.fails(
        "CreateSubnet",
        json!({"VpcId": vpc_id, "CidrBlock": "10.6.0.0/24"}),
        "InvalidSubnet.Range",
    )
    .await;
    let subnet = env
        .ok(
            "CreateSubnet",
            json!({"VpcId": vpc_id, "CidrBlock": "10.5.0.0/24"}),
        )
        .await;
    let subnet_id = s(&subnet["Subnet"]["SubnetId"]).to_owned();
    env.fails(
        "CreateSubnet",
        json!({"VpcId": vpc_id, "CidrBlock": "10.5.0.128/25"}),
        "InvalidSubnet.Conflict",
    )
    .await;
    env.fails(
        "CreateSubnet",
        json!({"VpcId": "vpc-0123456789abcdef0", "CidrBlock": "10.5.0.0/24"}),
        "InvalidVpcID.NotFound",
    )
    .await;
    env.fails("CreateSubnet", json!({"VpcId": vpc_id}), "MissingParameter")
        .await;

    let sg = env
        .ok(
            "CreateSecurityGroup",
            json!({"GroupName": "app", "Description": "app", "VpcId": vpc_id}),
        )
        .await;
    let sg_id = s(&sg["GroupId"]).to_owned();
    env.fails(
        "CreateSecurityGroup",
        json!({"GroupName": "APP", "Description": "again", "VpcId": vpc_id}),
        "InvalidGroup.Duplicate",
    )
    .await;
    let rule = json!({"GroupId": sg_id, "IpPermissions": [{
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]});
    env.ok("AuthorizeSecurityGroupIngress", rule.clone()).await;
    env.fails(
        "AuthorizeSecurityGroupIngress",
        rule.clone(),
        "InvalidPermission.Duplicate",
    )
    .await;
    // All or nothing: a new rule next to a duplicate is not added either.
    let mixed = json!({"GroupId": sg_id, "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 81, "ToPort": 81, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]});
    env.fails(
        "AuthorizeSecurityGroupIngress",
        mixed,
        "InvalidPermission.Duplicate",
    )
    .await;
    let rules = env
        .ok(
            "DescribeSecurityGroupRules",
            json!({"Filters": [{"Name": "group-id", "Values": [sg_id]}]}),
        )
        .await;
    assert_eq!(
        rules["SecurityGroupRules"].as_array().map(Vec::len),
        Some(2)
    );
    for (action, params, code) in [
        (
            "AuthorizeSecurityGroupIngress",
            json!({"GroupId": sg_id, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
                   "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]}]}),
            "InvalidGroup.NotFound",
        ),
        (
            "AuthorizeSecurityGroupIngress",
            json!({"GroupId": sg_id, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2,
                   "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]}),
            "InvalidParameterValue",
        ),
        (
            "AuthorizeSecurityGroupIngress",
            json!({"GroupId": sg_id, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 9, "ToPort": 1,
                   "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}),
            "InvalidParameterValue",
        ),
        (
            "AuthorizeSecurityGroupIngress",
            json!({"GroupId": sg_id}),
            "MissingParameter",
        ),
        (
            "RevokeSecurityGroupIngress",
            json!({"GroupId": sg_id, "IpPermissions": [{
                "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}),
            "InvalidPermission.NotFound",
        ),
        (
            "RevokeSecurityGroupEgress",
            json!({"GroupId": sg_id, "SecurityGroupRuleIds": ["sgr-0123456789abcdef0"]}),
            "InvalidSecurityGroupRuleId.NotFound",
        ),
    ] {
        env.fails(action, params, code).await;
    }

    let eni = env
        .ok(
            "CreateNetworkInterface",
            json!({"SubnetId": subnet_id, "Groups": [sg_id]}),
        )
        .await;
    let eni_id = s(&eni["NetworkInterface"]["NetworkInterfaceId"]).to_owned();
    let ip = s(&eni["NetworkInterface"]["PrivateIpAddress"]).to_owned();
    for (address, code) in [
        (ip.as_str(), "InvalidIPAddress.InUse"),
        ("10.9.9.9", "InvalidParameterValue"),
    ] {
        env.fails(
            "CreateNetworkInterface",
            json!({"SubnetId": subnet_id, "PrivateIpAddress": address}),
            code,
        )
        .await;
    }
    // A failed create takes no address: the subnet still shows one in use.
    let after = env
        .ok("DescribeSubnets", json!({"SubnetIds": [subnet_id]}))
        .await;
    assert_eq!(after["Subnets"][0]["AvailableIpAddressCount"], 250);

    for (action, params) in [
        ("DeleteSecurityGroup", json!({"GroupId": sg_id})),
        ("DeleteSubnet", json!({"SubnetId": subnet_id})),
        ("DeleteVpc", json!({"VpcId": vpc_id})),
    ] {
        env.fails(action, params, "DependencyViolation").await;
    }
    let default = env
        .ok(
            "DescribeSecurityGroups",
            json!({"Filters": [{"Name": "vpc-id", "Values": [vpc_id]},
                               {"Name": "group-name", "Values": ["default"]}]}),
        )
        .await;
    let default_id = s(&default["SecurityGroups"][0]["GroupId"]).to_owned();
    env.fails(
        "DeleteSecurityGroup",
        json!({"GroupId": default_id}),
        "CannotDelete",
    )
    .await;
    // Once its interface is gone, the subnet can go.
    env.ok(
        "DeleteNetworkInterface",
        json!({"NetworkInterfaceId": eni_id}),
    )
    .await;
    env.fails(
        "DeleteNetworkInterface",
        json!({"NetworkInterfaceId": eni_id}),
        "InvalidNetworkInterfaceID.NotFound",
    )
    .await;
    env.ok("DeleteSubnet", json!({"SubnetId": subnet_id})).await;
    env.fails(
        "CreateTags",
        json!({"Resources": ["vpc-0123456789abcdef0"], "Tags": [{"Key": "a", "Value": "b"}]}),
        "InvalidVpcID.NotFound",
    )
    .await;
    env.fails(
        "CreateTags",
        json!({"Resources": ["ami-12345678"], "Tags": [{"Key": "a", "Value": "b"}]}),
        "InvalidID",
    )
    .await;
    env.fails(
        "CreateTags",
        json!({"Resources": [vpc_id], "Tags": [{"Key": "aws:x", "Value": "b"}]}),
        "InvalidParameterValue",
    )
    .await;
    env.fails(
        "CreateVpc",
        json!({"CidrBlock": "10.7.0.0/16", "TagSpecifications": tag_spec("subnet", &[("a", "b")])}),
        "InvalidParameterValue",
    )
    .await;
    env.fails(
        "DescribeVpcAttribute",
        json!({"VpcId": vpc_id, "Attribute": "bogus"}),
        "InvalidParameterValue",
    )
    .await;
    env.fails(
        "ModifyVpcAttribute",
        json!({"VpcId": vpc_id, "EnableDnsSupport": {"Value": true},
               "EnableDnsHostnames": {"Value": true}}),
        "InvalidParameterCombination",
    )
    .await;

    // DryRun answers DryRunOperation (412) and changes nothing.
    let dry = env
        .call(
            "CreateVpc",
            json!({"CidrBlock": "10.8.0.0/16", "DryRun": true}),
        )
        .await;
    assert_eq!((dry.code(), dry.status), ("DryRunOperation", 412));
    let all = env.ok("DescribeVpcs", json!({})).await;
    assert_eq!(all["Vpcs"].as_array().map(Vec::len), Some(2));

    // Known EC2 actions Hive does not serve, and names EC2 does not have.
    let a = env
        .send(
            None,
            "RunInstances",
            "Action=RunInstances&Version=2016-11-15&ImageId=ami-1",
        )
        .await;
    assert_eq!(a.code(), "UnsupportedOperation", "{}", a.body);
    let a = env
        .send(
            None,
            "DescribeVpcs",
            "Action=LaunchRockets&Version=2016-11-15",
        )
        .await;
    assert_eq!(a.code(), "InvalidAction", "{}", a.body);

    // VpcLimitExceeded once every VLAN is taken, and the failed call leaves no VPC behind.
    let repo = env.ec2.repo().await.expect("repo");
    let mut made = 0;
    loop {
        match repo.create_vpc(ACCT, "10.9.0.0/16", &[]).await {
            Ok(_) => made += 1,
            Err(e) => {
                assert_eq!(e.code(), "VpcLimitExceeded", "{e}");
                break;
            }
        }
        assert!(made < 5000, "the VLAN pool never ran out");
    }
    let before = repo.list_vpcs(ACCT).await.expect("list").len();
    env.fails(
        "CreateVpc",
        json!({"CidrBlock": "10.10.0.0/16"}),
        "VpcLimitExceeded",
    )
    .await;
    assert_eq!(repo.list_vpcs(ACCT).await.expect("list").len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_pagination() {
    let mut env = Env::new().await;
    for i in 0..12 {
        let team = if i % 3 == 0 { "blue" } else { "red" };
        env.ok(
            "CreateVpc",
            json!({"CidrBlock": format!("10.{}.0.0/16", 100 + i),
                   "TagSpecifications": tag_spec("vpc", &[("team", team), ("n", &i.to_string())])}),
        )
        .await;
    }
    let count = |v: &Value| v["Vpcs"].as_array().map_or(0, Vec::len);
    let all = env.ok("DescribeVpcs", json!({})).await;
    assert_eq!(count(&all), 13);
    let blue = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "tag:team", "Values": ["blue"]}]}),
        )
        .await;
    assert_eq!(count(&blue), 4);
    let either = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "tag:n", "Values": ["1", "2"]}]}),
        )
        .await;
    assert_eq!(count(&either), 2, "values are ORed");
    let both = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "tag:team", "Values": ["blue"]},
                               {"Name": "tag:n", "Values": ["0", "1"]}]}),
        )
        .await;
    assert_eq!(count(&both), 1, "filters are ANDed");
    let wild = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "cidr", "Values": ["10.10?.0.0/16"]}]}),
        )
        .await;
    assert_eq!(count(&wild), 10);
    let keyed = env
        .ok(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "tag-key", "Values": ["team"]},
                               {"Name": "is-default", "Values": ["false"]},
                               {"Name": "owner-id", "Values": [ACCT]},
                               {"Name": "state", "Values": ["available"]}]}),
        )
        .await;
    assert_eq!(count(&keyed), 12);

    // Pages of 5: 13 VPCs in 3 pages, each once, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = json!({"MaxResults": 5});
        if let Some(t) = &token {
            params["NextToken"] = json!(t);
        }
        let page = env.ok("DescribeVpcs", params).await;
        pages += 1;
        seen.extend(ids(&page["Vpcs"], "VpcId"));
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 13);
    // Pagination of tags with a filter.
    let page = env
        .ok(
            "DescribeTags",
            json!({"MaxResults": 5, "Filters": [{"Name": "key", "Values": ["n"]}]}),
        )
        .await;
    assert_eq!(page["Tags"].as_array().map(Vec::len), Some(5));
    let rest = env
        .ok(
            "DescribeTags",
            json!({"NextToken": s(&page["NextToken"]), "Filters": [{"Name": "key", "Values": ["n"]}]}),
        )
        .await;
    assert_eq!(rest["Tags"].as_array().map(Vec::len), Some(7));

    env.fails(
        "DescribeVpcs",
        json!({"MaxResults": 4}),
        "InvalidParameterValue",
    )
    .await;
    env.fails(
        "DescribeVpcs",
        json!({"MaxResults": 5, "NextToken": "not-a-token"}),
        "InvalidPaginationToken",
    )
    .await;
    let msg = env
        .fails(
            "DescribeVpcs",
            json!({"Filters": [{"Name": "colour", "Values": ["x"]}]}),
            "InvalidParameterValue",
        )
        .await;
    assert_eq!(msg, "The filter 'colour' is invalid");
    env.fails(
        "DescribeSubnets",
        json!({"Filters": [{"Name": "group-name", "Values": ["x"]}]}),
        "InvalidParameterValue",
    )
    .await;
    let subnets = env
        .ok(
            "DescribeSubnets",
            json!({"Filters": [{"Name": "cidr-block", "Values": ["10.0.1.0/24"]},
                               {"Name": "default-for-az", "Values": ["true"]}]}),
        )
        .await;
    assert_eq!(subnets["Subnets"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_uses_ec2_arns_and_condition_keys() {
    let mut env = Env::new().await;
    // netops may do anything to resources tagged team=net, create VPCs only with that tag,
    // describe everything, and create subnets only in VPCs tagged team=net.
    env.user(
        "netops",
        r#"{"Version":"2012-10-17","Statement":[
          {"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"},
          {"Effect":"Allow","Action":["ec2:CreateVpc","ec2:CreateTags"],"Resource":"arn:aws:ec2:us-east-1:000000000000:vpc/*",
           "Condition":{"StringEquals":{"aws:RequestTag/team":"net"}}},
          {"Effect":"Allow","Action":["ec2:DeleteVpc","ec2:CreateSubnet"],"Resource":"arn:aws:ec2:*:*:vpc/*",
           "Condition":{"StringEquals":{"aws:ResourceTag/team":"net"}}},
          {"Effect":"Allow","Action":"ec2:CreateSubnet","Resource":"arn:aws:ec2:*:*:subnet/*",
           "Condition":{"ArnLike":{"ec2:Vpc":"arn:aws:ec2:us-east-1:000000000000:vpc/*"}}}
        ]}"#,
    )
    .await;
    let as_netops = Some("netops");
    let denied = env
        .call_as(as_netops, "CreateVpc", json!({"CidrBlock": "10.30.0.0/16"}))
        .await;
    assert_eq!(denied.code(), "UnauthorizedOperation", "{}", denied.body);
    assert_eq!(denied.status, 403);
    assert!(
        s(&denied.parsed["Error"]["Message"]).contains("ec2:CreateVpc"),
        "{}",
        denied.body
    );
    let wrong_tag = env
        .call_as(
            as_netops,
            "CreateVpc",
            json!({"CidrBlock": "10.30.0.0/16", "TagSpecifications": tag_spec("vpc", &[("team", "web")])}),
        )
        .await;
    assert_eq!(wrong_tag.code(), "UnauthorizedOperation");
    let ok = env
        .call_as(
            as_netops,
            "CreateVpc",
            json!({"CidrBlock": "10.30.0.0/16", "TagSpecifications": tag_spec("vpc", &[("team", "net")])}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let net_vpc = s(&ok.parsed["Vpc"]["VpcId"]).to_owned();
    let other = env
        .ok("CreateVpc", json!({"CidrBlock": "10.31.0.0/16"}))
        .await;
    let other_vpc = s(&other["Vpc"]["VpcId"]).to_owned();

    let a = env
        .call_as(
            as_netops,
            "CreateSubnet",
            json!({"VpcId": other_vpc, "CidrBlock": "10.31.1.0/24"}),
        )
        .await;
    assert_eq!(
        a.code(),
        "UnauthorizedOperation",
        "untagged VPC: {}",
        a.body
    );
    let a = env
        .call_as(
            as_netops,
            "CreateSubnet",
            json!({"VpcId": net_vpc, "CidrBlock": "10.30.1.0/24"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let subnet_id = s(&a.parsed["Subnet"]["SubnetId"]).to_owned();

    let a = env
        .call_as(as_netops, "DeleteVpc", json!({"VpcId": other_vpc}))
        .await;
    assert_eq!(a.code(), "UnauthorizedOperation");
    let a = env.call_as(as_netops, "DescribeVpcs", json!({})).await;
    assert_eq!(a.status, 200);
    // Authorization comes before existence is revealed only where AWS does so; a denied
    // delete changes nothing.
    let still = env.ok("DescribeVpcs", json!({"VpcIds": [other_vpc]})).await;
    assert_eq!(ids(&still["Vpcs"], "VpcId"), [other_vpc.as_str()]);
    env.ok("DeleteSubnet", json!({"SubnetId": subnet_id})).await;
    let a = env
        .call_as(as_netops, "DeleteVpc", json!({"VpcId": net_vpc}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A user without any EC2 permission is refused even a describe.
    env.user(
        "nobody",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:GetUser","Resource":"*"}]}"#,
    )
    .await;
    let a = env.call_as(Some("nobody"), "DescribeVpcs", json!({})).await;
    assert_eq!(a.code(), "UnauthorizedOperation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_get_distinct_vlans_and_addresses() {
    let mut env = Env::new().await;
    let addr = env.server.addr;
    let headers = auth_header("ec2");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let body = format!("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.{i}.0.0%2F16");
        let headers = headers.clone();
        tasks.push(tokio::spawn(async move {
            post_form(addr, &body, &headers).await
        }));
    }
    for t in tasks {
        let reply = t.await.expect("join");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let repo = env.ec2.repo().await.expect("repo");
    let vpcs = repo.list_vpcs(ACCT).await.expect("list");
    assert_eq!(vpcs.len(), 51);
    let vlans: std::collections::BTreeSet<u16> = vpcs.iter().map(|v| v.vlan).collect();
    assert_eq!(vlans.len(), 51, "every VPC has its own VLAN");

    let subnet = env
        .ok(
            "DescribeSubnets",
            json!({"Filters": [{"Name": "default-for-az", "Values": ["true"]}]}),
        )
        .await;
    let subnet_id = s(&subnet["Subnets"][0]["SubnetId"]).to_owned();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let body = format!("Action=CreateNetworkInterface&Version=2016-11-15&SubnetId={subnet_id}");
        let headers = headers.clone();
        tasks.push(tokio::spawn(async move {
            post_form(addr, &body, &headers).await
        }));
    }
    for t in tasks {
        let reply = t.await.expect("join");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let enis = repo.list_network_interfaces(ACCT).await.expect("list");
    assert_eq!(enis.len(), 60);
    let ips: std::collections::BTreeSet<_> = enis.iter().map(|e| e.private_ip).collect();
    let macs: std::collections::BTreeSet<_> = enis.iter().map(|e| e.mac).collect();
    assert_eq!(
        (ips.len(), macs.len()),
        (60, 60),
        "no address or MAC handed out twice"
    );
    let after = env
        .ok("DescribeSubnets", json!({"SubnetIds": [subnet_id]}))
        .await;
    assert_eq!(after["Subnets"][0]["AvailableIpAddressCount"], 251 - 60);
}
