//! End to end: the real aws CLI against the real `hive-api` binary on the embedded (SQLite)
//! store, as the bootstrapped admin (profile `hive-admin` from `<data-dir>/admin-credentials`):
//! the default network, a VPC, a subnet, two security groups (one referencing the other), rules
//! with the CLI's `--protocol/--port/--cidr` shorthand and with `--ip-permissions` JSON, an
//! interface, describes with `--filters`, revokes, and deleting everything. Also the CLI's
//! reading of EC2 errors. (The switch side belongs to the netsync tests.)
//!
//! The CLI is `$HIVE_AWS`, else the `aws` next to `$HIVE_PYTHON`; the test fails with the fix
//! when it is missing.

mod common;
mod e2e;

use e2e::{ACCOUNT, Aws, Node, NodeOpts, str_at};
use serde_json::Value;

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[test]
fn vpc_scenario_with_the_cli_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&NodeOpts {
        data_dir: dir.path().join("data"),
        nats_url: None,
        env: Vec::new(),
    });
    let aws = Aws::new(&node.endpoint(), &node.data_dir.join("admin-credentials"));
    let ec2 = |args: &[&str]| {
        let mut all = vec!["ec2"];
        all.extend_from_slice(args);
        aws.ok("hive-admin", &all)
    };
    let ec2_fails = |args: &[&str]| {
        let mut all = vec!["ec2"];
        all.extend_from_slice(args);
        aws.fails("hive-admin", &all)
    };

    // The default network from bootstrap.
    let default = ec2(&["describe-vpcs", "--filters", "Name=is-default,Values=true"]);
    assert_eq!(str_at(&default, &["Vpcs", "0", "CidrBlock"]), "10.0.0.0/16");
    assert_eq!(str_at(&default, &["Vpcs", "0", "OwnerId"]), ACCOUNT);
    let default_vpc = str_at(&default, &["Vpcs", "0", "VpcId"]).to_owned();
    let subnets = ec2(&[
        "describe-subnets",
        "--filters",
        &format!("Name=vpc-id,Values={default_vpc}"),
    ]);
    assert_eq!(
        str_at(&subnets, &["Subnets", "0", "CidrBlock"]),
        "10.0.1.0/24"
    );

    // VPC and subnet.
    let vpc = ec2(&[
        "create-vpc",
        "--cidr-block",
        "10.40.0.0/16",
        "--tag-specifications",
        "ResourceType=vpc,Tags=[{Key=Name,Value=cli}]",
    ]);
    let vpc_id = str_at(&vpc, &["Vpc", "VpcId"]).to_owned();
    assert_eq!(str_at(&vpc, &["Vpc", "Tags", "0", "Value"]), "cli");
    let subnet = ec2(&[
        "create-subnet",
        "--vpc-id",
        &vpc_id,
        "--cidr-block",
        "10.40.1.0/24",
    ]);
    let subnet_id = str_at(&subnet, &["Subnet", "SubnetId"]).to_owned();
    assert_eq!(subnet["Subnet"]["AvailableIpAddressCount"], 251);

    // Two groups; db allows 5432 from web.
    let group = |name: &str, description: &str| {
        let made = ec2(&[
            "create-security-group",
            "--group-name",
            name,
            "--description",
            description,
            "--vpc-id",
            &vpc_id,
        ]);
        str_at(&made, &["GroupId"]).to_owned()
    };
    let web_id = group("web", "web tier");
    let db_id = group("db", "db tier");
    // The same shorthand rule, added again below, is a duplicate.
    let ssh_from_vpc = &[
        "authorize-security-group-ingress",
        "--group-id",
        &web_id,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "10.0.0.0/16",
    ];
    let shorthand = ec2(ssh_from_vpc);
    assert_eq!(shorthand["Return"], true);
    assert_eq!(
        str_at(&shorthand, &["SecurityGroupRules", "0", "CidrIpv4"]),
        "10.0.0.0/16"
    );
    let permissions = format!(
        r#"[{{"IpProtocol":"tcp","FromPort":5432,"ToPort":5432,"UserIdGroupPairs":[{{"GroupId":"{web_id}","Description":"from web"}}]}}]"#
    );
    let json_rule = ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &db_id,
        "--ip-permissions",
        &permissions,
    ]);
    assert_eq!(
        str_at(
            &json_rule,
            &["SecurityGroupRules", "0", "ReferencedGroupInfo", "GroupId"]
        ),
        web_id
    );
    // The CLI's --source-group by name resolves within the group's VPC.
    ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &db_id,
        "--protocol",
        "icmp",
        "--port",
        "-1",
        "--source-group",
        "web",
    ]);
    let err = ec2_fails(ssh_from_vpc);
    assert!(
        err.contains("(InvalidPermission.Duplicate)"),
        "the CLI reads our error: {err}"
    );

    let described = ec2(&[
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc_id}"),
        &format!("Name=ip-permission.group-id,Values={web_id}"),
    ]);
    assert_eq!(len(&described["SecurityGroups"]), 1);
    assert_eq!(
        str_at(&described, &["SecurityGroups", "0", "GroupName"]),
        "db"
    );
    let perms = &described["SecurityGroups"][0]["IpPermissions"];
    assert_eq!(len(perms), 2, "{perms}");
    let by_name = ec2(&[
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc_id}"),
        "Name=group-name,Values=web,default",
    ]);
    assert_eq!(len(&by_name["SecurityGroups"]), 2);

    // An interface in web.
    let eni = ec2(&[
        "create-network-interface",
        "--subnet-id",
        &subnet_id,
        "--groups",
        &web_id,
        "--description",
        "vm-1",
    ]);
    let eni_id = str_at(&eni, &["NetworkInterface", "NetworkInterfaceId"]).to_owned();
    assert_eq!(
        str_at(&eni, &["NetworkInterface", "PrivateIpAddress"]),
        "10.40.1.4"
    );
    let found = ec2(&[
        "describe-network-interfaces",
        "--filters",
        &format!("Name=group-id,Values={web_id}"),
        "Name=private-ip-address,Values=10.40.1.4",
    ]);
    assert_eq!(
        str_at(&found, &["NetworkInterfaces", "0", "NetworkInterfaceId"]),
        eni_id
    );
    assert_eq!(
        str_at(
            &found,
            &["NetworkInterfaces", "0", "Groups", "0", "GroupName"]
        ),
        "web"
    );
    ec2(&[
        "modify-network-interface-attribute",
        "--network-interface-id",
        &eni_id,
        "--groups",
        &web_id,
        &db_id,
    ]);
    ec2(&[
        "create-tags",
        "--resources",
        &eni_id,
        "--tags",
        "Key=vm,Value=one",
    ]);
    let tags = ec2(&[
        "describe-tags",
        "--filters",
        &format!("Name=resource-id,Values={eni_id}"),
    ]);
    assert_eq!(
        str_at(&tags, &["Tags", "0", "ResourceType"]),
        "network-interface"
    );
    // The CLI pages through everything with a small page size.
    let paged = ec2(&["describe-vpcs", "--page-size", "5"]);
    assert_eq!(len(&paged["Vpcs"]), 2);

    // Dependencies are refused while in use.
    let err = ec2_fails(&["delete-security-group", "--group-id", &web_id]);
    assert!(err.contains("(DependencyViolation)"), "{err}");
    let err = ec2_fails(&["delete-vpc", "--vpc-id", &vpc_id]);
    assert!(err.contains("(DependencyViolation)"), "{err}");

    // Revoke: shorthand, JSON, and by rule id.
    ec2(&[
        "revoke-security-group-ingress",
        "--group-id",
        &web_id,
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--cidr",
        "10.0.0.0/16",
    ]);
    ec2(&[
        "revoke-security-group-ingress",
        "--group-id",
        &db_id,
        "--ip-permissions",
        &permissions,
    ]);
    let rules = ec2(&[
        "describe-security-group-rules",
        "--filters",
        &format!("Name=group-id,Values={db_id}"),
    ]);
    let icmp_rule = rules["SecurityGroupRules"]
        .as_array()
        .expect("rules")
        .iter()
        .find(|r| r["IpProtocol"] == "icmp")
        .map(|r| str_at(r, &["SecurityGroupRuleId"]).to_owned())
        .expect("the icmp rule");
    ec2(&[
        "revoke-security-group-ingress",
        "--group-id",
        &db_id,
        "--security-group-rule-ids",
        &icmp_rule,
    ]);
    let err = ec2_fails(&[
        "revoke-security-group-ingress",
        "--group-id",
        &db_id,
        "--security-group-rule-ids",
        &icmp_rule,
    ]);
    assert!(err.contains("InvalidSecurityGroupRuleId.NotFound"), "{err}");

    // Delete everything.
    ec2(&[
        "delete-network-interface",
        "--network-interface-id",
        &eni_id,
    ]);
    ec2(&["delete-security-group", "--group-id", &db_id]);
    ec2(&["delete-security-group", "--group-id", &web_id]);
    ec2(&["delete-subnet", "--subnet-id", &subnet_id]);
    ec2(&["delete-vpc", "--vpc-id", &vpc_id]);
    let left = ec2(&["describe-vpcs"]);
    assert_eq!(len(&left["Vpcs"]), 1);
    assert_eq!(str_at(&left, &["Vpcs", "0", "VpcId"]), default_vpc);
    let err = ec2_fails(&["delete-vpc", "--vpc-id", &vpc_id]);
    assert!(err.contains("(InvalidVpcID.NotFound)"), "{err}");
    let err = ec2_fails(&["run-instances", "--image-id", "ami-12345678"]);
    assert!(err.contains("(UnsupportedOperation)"), "{err}");
}
