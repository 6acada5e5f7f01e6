//! Property tests for security group rule input and rule sets: parsing never panics and
//! normalises as AWS does, a group never holds two equal rules, and revoke undoes authorize.

use std::collections::BTreeSet;

use hive_vpc::model::{Direction, PortRange, Protocol, SecurityGroup, VpcId};
use hive_vpc::security_group::{
    RuleInput, RuleKey, authorize, new_security_group, parse_protocol, parse_rule, revoke,
    revoke_by_ids, rule_key,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn protocol_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tcp".to_owned()),
        Just("udp".to_owned()),
        Just("icmp".to_owned()),
        Just("-1".to_owned()),
        Just("all".to_owned()),
        Just("6".to_owned()),
        Just("17".to_owned()),
        Just("1".to_owned()),
        (0u16..300).prop_map(|n| n.to_string()),
        "[a-zA-Z0-9+-]{0,5}",
    ]
}

fn port() -> impl Strategy<Value = Option<i32>> {
    prop_oneof![
        1 => Just(None),
        1 => (-3i32..3).prop_map(Some),
        4 => (0i32..70_000).prop_map(Some),
        1 => any::<i32>().prop_map(Some),
    ]
}

fn cidr_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0.0.0.0/0".to_owned()),
        (0u8..4, 0u8..4).prop_map(|(a, b)| format!("10.{a}.{b}.0/24")),
        (0u8..4).prop_map(|a| format!("10.{a}.0.0/16")),
        "[0-9./]{0,18}",
    ]
}

fn rule_input() -> impl Strategy<Value = RuleInput> {
    (protocol_text(), port(), port(), cidr_text()).prop_map(|(p, from, to, cidr)| RuleInput {
        ip_protocol: p,
        from_port: from,
        to_port: to,
        cidr_ip: Some(cidr),
        group_id: None,
        description: None,
    })
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)]
}

fn keys(group: &SecurityGroup) -> BTreeSet<RuleKey> {
    group.rules.iter().map(rule_key).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any protocol text and ports: an answer, never a panic; accepted ones obey AWS's ranges.
    #[test]
    fn protocol_parsing_is_total(p in protocol_text(), from in port(), to in port()) {
        match parse_protocol(&p, from, to) {
            Ok(Protocol::Tcp(PortRange { from: f, to: t }) | Protocol::Udp(PortRange { from: f, to: t })) => {
                prop_assert!(f <= t);
                prop_assert_eq!((Some(i32::from(f)), Some(i32::from(t))), (from, to));
            }
            Ok(Protocol::Icmp { icmp_type, code }) => {
                prop_assert!(icmp_type.is_some() || code.is_none());
            }
            Ok(Protocol::Number(n)) => prop_assert!(![1u8, 6, 17].contains(&n), "{} not normalised", n),
            Ok(Protocol::All) => prop_assert!(p == "-1" || p.eq_ignore_ascii_case("all")),
            Err(e) => prop_assert_eq!(e.code(), "InvalidParameterValue"),
        }
    }

    /// Authorizing random rules one request at a time: a request fails with
    /// `InvalidPermission.Duplicate` exactly when it repeats a rule, and the group never holds
    /// two equal rules; revoking by content or id removes exactly those rules.
    #[test]
    fn rule_sets_stay_duplicate_free(
        requests in proptest::collection::vec(
            proptest::collection::vec((direction(), rule_input()), 1..4), 1..25),
        revoke_picks in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut rng = StdRng::seed_from_u64(5);
        let vpc = VpcId::generate(&mut rng);
        let mut group = new_security_group(&mut rng, &vpc, "g", "d", &[]).expect("group");
        for request in requests {
            let specs: Vec<_> = request
                .iter()
                .filter_map(|(d, input)| parse_rule(*d, input).ok())
                .collect();
            if specs.is_empty() {
                continue;
            }
            let before = group.clone();
            let mut expected = keys(&group);
            let repeats = !specs.iter().all(|s| expected.insert(s.key()));
            match authorize(&mut rng, &mut group, specs.clone()) {
                Ok(added) => {
                    prop_assert!(!repeats);
                    prop_assert_eq!(added.len(), specs.len());
                    prop_assert_eq!(keys(&group), expected);
                }
                Err(e) if e.code() == "RulesPerSecurityGroupLimitExceeded" => {
                    prop_assert_eq!(&group, &before);
                }
                Err(e) => {
                    prop_assert!(repeats, "unexpected {}", e);
                    prop_assert_eq!(e.code(), "InvalidPermission.Duplicate");
                    prop_assert_eq!(&group, &before);
                }
            }
            prop_assert_eq!(keys(&group).len(), group.rules.len(), "no two equal rules");
        }
        for (i, pick) in revoke_picks.into_iter().enumerate() {
            if group.rules.is_empty() {
                break;
            }
            let rule = group.rules[pick % group.rules.len()].clone();
            let count = group.rules.len();
            if i % 2 == 0 {
                let spec = hive_vpc::security_group::RuleSpec {
                    direction: rule.direction,
                    protocol: rule.protocol,
                    peer: rule.peer.clone(),
                    description: None,
                };
                let out = revoke(&mut group, std::slice::from_ref(&spec)).expect("present");
                prop_assert_eq!(out.revoked.len(), 1);
                prop_assert_eq!(revoke(&mut group, &[spec]).map_err(|e| e.code()).err(),
                    Some("InvalidPermission.NotFound"));
            } else {
                let gone = revoke_by_ids(&mut group, rule.direction, std::slice::from_ref(&rule.id))
                    .expect("present");
                prop_assert_eq!(gone, vec![rule.clone()]);
            }
            prop_assert_eq!(group.rules.len(), count - 1);
            prop_assert!(!group.rules.iter().any(|r| r.id == rule.id));
        }
    }
}
