//! Fuzz every parser of client input in hive-vpc: CIDR blocks (plain, VPC, subnet, rule),
//! resource ids, MAC addresses, security group names and rules, and the stored forms of the
//! allocators. The input is split on newlines into fields; none of it may panic, and whatever
//! is accepted must satisfy the rules it was checked against.
#![no_main]

use hive_vpc::cidr::{parse_cidr, parse_subnet_cidr, parse_vpc_cidr};
use hive_vpc::config::VpcConfig;
use hive_vpc::ipam::SubnetAddresses;
use hive_vpc::model::{
    Direction, MacAddr, NetworkInterfaceId, SecurityGroupId, SecurityGroupRuleId, SubnetId, VpcId,
};
use hive_vpc::security_group::{
    RuleInput, parse_rule, validate_group_description, validate_group_name,
};
use hive_vpc::vlan::VlanPool;

fn field<'a>(fields: &[&'a str], i: usize) -> &'a str {
    fields.get(i).copied().unwrap_or("")
}

fn port(text: &str) -> Option<i32> {
    text.trim().parse().ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('\n').collect();
    let first = field(&fields, 0);

    // CIDR blocks.
    if let Ok(net) = parse_cidr(first, "cidrBlock") {
        assert_eq!(net.ip(), net.network(), "accepted a block with host bits");
    }
    if let Ok(vpc) = parse_vpc_cidr(first) {
        assert!((16..=28).contains(&vpc.prefix()));
        if let Ok(sub) = parse_subnet_cidr(field(&fields, 1), &[vpc], []) {
            assert!(sub.is_subnet_of(vpc));
            if let Ok(mut addresses) = SubnetAddresses::new(sub) {
                // Drive the allocator with the remaining bytes.
                for b in data.iter().take(64) {
                    if b % 3 == 0 {
                        let ip = std::net::Ipv4Addr::from(u32::from(sub.network()) + u32::from(*b));
                        let _ = addresses.release(ip);
                    } else if let Ok(ip) = addresses.allocate_next() {
                        assert!(sub.contains(ip) && !addresses.is_reserved(ip));
                    }
                }
            }
        }
    }

    // Ids and MACs.
    for f in fields.iter().take(4) {
        let _ = VpcId::parse(f);
        let _ = SubnetId::parse(f);
        let _ = SecurityGroupId::parse(f);
        let _ = SecurityGroupRuleId::parse(f);
        let _ = NetworkInterfaceId::parse(f);
        if let Ok(mac) = f.parse::<MacAddr>() {
            assert_eq!(mac.to_string(), f.to_ascii_lowercase());
        }
    }

    // Security group names and rules.
    let _ = validate_group_name(first);
    let _ = validate_group_description(field(&fields, 1));
    let input = RuleInput {
        ip_protocol: field(&fields, 0).to_owned(),
        from_port: port(field(&fields, 1)),
        to_port: port(field(&fields, 2)),
        cidr_ip: fields.get(3).map(|s| (*s).to_owned()),
        group_id: fields.get(4).map(|s| (*s).to_owned()),
        description: fields.get(5).map(|s| (*s).to_owned()),
    };
    for direction in [Direction::Ingress, Direction::Egress] {
        let _ = parse_rule(direction, &input);
    }
    let cidr_only = RuleInput {
        group_id: None,
        ..input
    };
    let _ = parse_rule(Direction::Ingress, &cidr_only);

    // Stored state and configuration read back from outside.
    let _ = serde_json::from_str::<SubnetAddresses>(&text);
    let _ = serde_json::from_str::<VlanPool>(&text);
    if let Ok(config) = serde_json::from_str::<VpcConfig>(&text) {
        let _ = config.validate();
    }
});
