//! The adapter against a real Open vSwitch: a private sandbox per test (dummy datapath).
//! These tests need Open vSwitch installed; they fail (never skip) without it.

use std::time::{Duration, Instant};

use hive_ovs::{
    BoundPort, OvsConfig, OvsError, OvsSwitch, Sandbox, SandboxMode, Switch, TunnelKey, TunnelKind,
    TunnelSpec,
};
use hive_vpc::flow::{Flow, FlowProgram};

const BR: &str = "hive-vpc0";

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxMode::Dummy).unwrap_or_else(|e| {
        panic!("cannot start an OVS sandbox: {e} (apt-get install -y openvswitch-switch)")
    })
}

fn flow(table: u8, priority: u16, cookie: u64, matches: &str, actions: &str) -> Flow {
    Flow {
        table,
        priority,
        cookie,
        matches: matches.into(),
        actions: actions.into(),
    }
}

/// A small stateful program in the compiler's shape: fail closed, conntrack, ssh to port 2.
fn program(extra: &[Flow]) -> FlowProgram {
    let mut p: FlowProgram = [
        flow(0, 0, 0x1, "", "drop"),
        flow(0, 10, 0x1, "arp", "normal"),
        flow(0, 20, 0x1, "ip,ct_state=-trk", "ct(table=1,zone=1)"),
        flow(1, 0, 0x1, "", "drop"),
        flow(1, 100, 0x1, "ct_state=+est+trk,ip", "output:2"),
        flow(
            1,
            50,
            0x2,
            "ct_state=+new+trk,tcp,in_port=1,nw_dst=10.0.1.5,tp_dst=22",
            "ct(commit,zone=1),output:2",
        ),
    ]
    .into_iter()
    .collect();
    for f in extra {
        p.insert(f.clone());
    }
    p
}

/// A bridge with two bound ports (1, 2), one unbound port (3), ready for flows.
fn bridge(sb: &Sandbox) -> OvsSwitch {
    let sw = sb.switch(BR).expect("valid config");
    sw.ensure_bridge().expect("bridge setup");
    sb.add_port(BR, "p1", Some("eni-1"), Some(1))
        .expect("port p1");
    sb.add_port(BR, "p2", Some("eni-2"), Some(2))
        .expect("port p2");
    sb.add_port(BR, "p3", None, Some(3)).expect("port p3");
    sw
}

fn tcp(dst_port: u16) -> String {
    format!("in_port=1,tcp,nw_src=10.0.1.4,nw_dst=10.0.1.5,tp_src=40000,tp_dst={dst_port}")
}

#[test]
fn bridge_setup_is_idempotent_and_fails_closed() {
    let sb = sandbox();
    let sw = sb.switch(BR).expect("valid config");
    let first = sw.ensure_bridge().expect("first setup");
    let second = sw.ensure_bridge().expect("second setup");
    assert_eq!(
        first, second,
        "a second setup must leave the very same bridge"
    );
    assert_eq!(first.fail_mode, "secure");
    assert!(!first.stp_enable);
    assert_eq!(first.datapath_type, "dummy");
    assert!(
        first.protocols.iter().any(|p| p == "OpenFlow13"),
        "{:?}",
        first.protocols
    );
    assert!(
        first.internal_ofport.is_some(),
        "hive-int0 must have an OpenFlow port"
    );
    assert_eq!(sb.vsctl(&["list-br"]).expect("list-br").trim(), BR);
    assert_eq!(
        sb.vsctl(&["list-ports", BR]).expect("list-ports").trim(),
        "hive-int0"
    );
    // Exactly the fail-closed drop, installed once.
    assert_eq!(
        sw.dump_flows().expect("dump"),
        vec![flow(0, 0, 0, "", "drop")]
    );
    sb.add_port(BR, "p1", Some("eni-1"), Some(1)).expect("port");
    let t = sb.trace(BR, &tcp(22), &[]).expect("trace");
    assert!(t.is_drop(), "{}", t.raw);
}

#[test]
fn bound_ports_are_discovered_and_unbound_ignored() {
    let sb = sandbox();
    let sw = bridge(&sb);
    sb.vsctl(&[
        "set",
        "interface",
        "p2",
        "external_ids:attached-mac=02:00:00:00:00:02",
    ])
    .expect("set mac");
    let ports = sw.bound_ports().expect("bound ports");
    assert_eq!(
        ports,
        vec![
            BoundPort {
                ofport: 1,
                name: "p1".into(),
                iface_id: "eni-1".into(),
                mac: None
            },
            BoundPort {
                ofport: 2,
                name: "p2".into(),
                iface_id: "eni-2".into(),
                mac: Some("02:00:00:00:00:02".into())
            },
        ]
    );
}

#[test]
fn install_is_exact_and_atomic() {
    let sb = sandbox();
    let sw = bridge(&sb);
    let p = program(&[]);
    assert_eq!(sw.install(&p).expect("install"), 6);
    assert!(sw.drift(&p).expect("diff-flows").is_clean());
    let live = sw.dump_flows().expect("dump");
    assert_eq!(live.len(), 6);
    let mut ids: Vec<(u8, u16, u64)> = live
        .iter()
        .map(|f| (f.table, f.priority, f.cookie))
        .collect();
    ids.sort();
    let mut want: Vec<(u8, u16, u64)> =
        p.flows().map(|f| (f.table, f.priority, f.cookie)).collect();
    want.sort();
    assert_eq!(ids, want);
    let t = sb.trace(BR, &tcp(22), &["trk,new"]).expect("trace");
    assert_eq!(t.outputs, vec!["p2".to_string()], "{}", t.raw);
    assert!(t.commits);

    // The switch rejects one flow (unknown group): the bundle fails as a whole and the
    // previous program stays in place, exactly.
    let bad = program(&[flow(1, 60, 0x3, "udp", "group:99")]);
    let err = sw
        .install(&bad)
        .expect_err("the switch must reject the program");
    assert!(matches!(err, OvsError::CommandFailed { .. }), "{err:?}");
    assert!(
        sw.drift(&p).expect("diff-flows").is_clean(),
        "a failed install must change nothing"
    );
    let err = sw
        .apply_diff(&p.diff(&bad))
        .expect_err("the switch must reject the diff");
    assert!(err.to_string().contains("OFPBAC_BAD_OUT_GROUP"), "{err}");
    assert!(
        sw.drift(&p).expect("diff-flows").is_clean(),
        "a failed diff must change nothing"
    );
}

#[test]
fn drift_is_repaired_exactly_and_reported() {
    let sb = sandbox();
    let sw = bridge(&sb);
    let p = program(&[]);
    sw.install(&p).expect("install");
    // By hand: delete a flow, add a rogue one, change one's actions.
    sb.ofctl(&[
        "-O",
        "OpenFlow13",
        "--strict",
        "del-flows",
        BR,
        "table=1,priority=100,ct_state=+est+trk,ip",
    ])
    .expect("del");
    sb.ofctl(&[
        "-O",
        "OpenFlow13",
        "add-flow",
        BR,
        "table=0,priority=500,ip,actions=normal",
    ])
    .expect("rogue");
    sb.ofctl(&[
        "-O",
        "OpenFlow13",
        "--strict",
        "mod-flows",
        BR,
        "table=0,priority=10,arp,actions=drop",
    ])
    .expect("mod");
    // The rogue flow lets anything through right now, even to the unbound port.
    let leak = sb.trace(BR, &tcp(80), &[]).expect("trace");
    assert!(leak.outputs.contains(&"p3".to_string()), "{}", leak.raw);

    let report = sw.reconcile(&p).expect("reconcile");
    assert_eq!(report.missing.len(), 1, "{report}");
    assert!(report.missing[0].contains("ct_state=+est+trk"), "{report}");
    assert_eq!(report.rogue.len(), 1, "{report}");
    assert!(report.rogue[0].contains("priority=500"), "{report}");
    assert_eq!(report.changed.len(), 1, "{report}");
    assert!(report.changed[0].live.contains("actions=drop"), "{report}");
    assert_eq!(report.len(), 3);

    assert!(
        sw.drift(&p).expect("diff-flows").is_clean(),
        "after repair the table is the program"
    );
    assert!(
        sw.reconcile(&p).expect("reconcile").is_clean(),
        "a second reconcile finds nothing"
    );
    assert!(
        sb.trace(BR, &tcp(80), &["trk,new"])
            .expect("trace")
            .is_drop()
    );
}

#[test]
fn a_one_rule_diff_touches_few_flows_and_changes_traces() {
    let sb = sandbox();
    let sw = bridge(&sb);
    let before = program(&[]);
    sw.install(&before).expect("install");
    // The rule changes from ssh to http; the base flows get a new cookie (a modify).
    let mut after = program(&[flow(
        1,
        50,
        0x4,
        "ct_state=+new+trk,tcp,in_port=1,nw_dst=10.0.1.5,tp_dst=80",
        "ct(commit,zone=1),output:2",
    )]);
    let ssh: Vec<Flow> = after
        .flows()
        .filter(|f| f.matches.contains("tp_dst=22"))
        .cloned()
        .collect();
    after = after
        .flows()
        .filter(|f| !ssh.contains(f))
        .cloned()
        .collect();
    after.insert(flow(0, 10, 0x9, "arp", "normal"));
    let diff = before.diff(&after);
    assert_eq!(
        (diff.add.len(), diff.modify.len(), diff.delete.len()),
        (1, 1, 1)
    );

    assert!(
        !sb.trace(BR, &tcp(22), &["trk,new"])
            .expect("trace")
            .is_drop()
    );
    assert!(
        sb.trace(BR, &tcp(80), &["trk,new"])
            .expect("trace")
            .is_drop()
    );
    assert_eq!(sw.apply_diff(&diff).expect("apply diff"), 3);
    assert!(
        sb.trace(BR, &tcp(22), &["trk,new"])
            .expect("trace")
            .is_drop()
    );
    assert_eq!(
        sb.trace(BR, &tcp(80), &["trk,new"]).expect("trace").outputs,
        vec!["p2".to_string()]
    );
    // Exact, cookies included (a modify_strict would have kept the old cookie).
    assert!(
        sw.drift(&after).expect("diff-flows").is_clean(),
        "{}",
        sw.drift(&after).expect("diff")
    );
    assert_eq!(sw.apply_diff(&after.diff(&after)).expect("empty diff"), 0);
}

#[test]
fn two_nodes_get_tunnels_to_each_other() {
    let (a, b) = (sandbox(), sandbox());
    let (sa, sb_) = (a.switch(BR).expect("config"), b.switch(BR).expect("config"));
    sa.ensure_bridge().expect("bridge a");
    sb_.ensure_bridge().expect("bridge b");
    let to_b = TunnelSpec {
        name: "vx-node-b".into(),
        kind: TunnelKind::Vxlan,
        remote_ip: "192.0.2.2".parse().expect("ip"),
        key: TunnelKey::Flow,
    };
    let to_a = TunnelSpec {
        name: "vx-node-a".into(),
        kind: TunnelKind::Vxlan,
        remote_ip: "192.0.2.1".parse().expect("ip"),
        key: TunnelKey::Flow,
    };
    sa.ensure_tunnel(&to_b).expect("tunnel a->b");
    sa.ensure_tunnel(&to_b).expect("tunnel a->b again");
    sb_.ensure_tunnel(&to_a).expect("tunnel b->a");
    let ta = sa.tunnels().expect("tunnels a");
    assert_eq!(ta.len(), 1);
    assert_eq!(ta[0].spec, to_b);
    assert!(ta[0].ofport.is_some());
    assert_eq!(sb_.tunnels().expect("tunnels b")[0].spec, to_a);
    // The database holds exactly what the guide's vsctl line would have set.
    assert_eq!(
        a.vsctl(&["get", "interface", "vx-node-b", "type"])
            .expect("get")
            .trim(),
        "vxlan"
    );
    assert_eq!(
        a.vsctl(&["get", "interface", "vx-node-b", "options"])
            .expect("get")
            .trim(),
        r#"{key=flow, remote_ip="192.0.2.2"}"#
    );
    // Converging to Geneve with a fixed key replaces the options whole.
    let geneve = TunnelSpec {
        kind: TunnelKind::Geneve,
        key: TunnelKey::Fixed(7),
        ..to_b.clone()
    };
    sa.ensure_tunnel(&geneve).expect("converge");
    assert_eq!(sa.tunnels().expect("tunnels")[0].spec, geneve);
    // The datapath sees a tunnel port (vport) on the bridge.
    assert!(
        a.appctl(&["dpif/show"])
            .expect("dpif/show")
            .contains("vx-node-b")
    );
    sa.remove_tunnel("vx-node-b").expect("remove");
    sa.remove_tunnel("vx-node-b").expect("remove twice");
    assert!(sa.tunnels().expect("tunnels").is_empty());
}

#[test]
fn a_stopped_switch_is_a_typed_error_not_a_hang() {
    let empty = tempfile::tempdir().expect("temp dir");
    let config = OvsConfig {
        rundir: Some(empty.path().to_path_buf()),
        db: Some(format!("unix:{}/db.sock", empty.path().display())),
        timeout: Duration::from_secs(3),
        ..OvsConfig::default()
    };
    let sw = OvsSwitch::new(config).expect("valid config");
    let started = Instant::now();
    let err = sw.ensure_bridge().expect_err("nothing runs there");
    assert!(matches!(err, OvsError::NotRunning { .. }), "{err:?}");
    assert!(matches!(
        sw.dump_flows(),
        Err(OvsError::NoSuchBridge { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(5));

    // ovs-vswitchd stopped under a live database: ovs-vsctl would wait forever; we do not.
    let sb = sandbox();
    let sw = sb.switch(BR).expect("config");
    sw.ensure_bridge().expect("bridge");
    let pid = std::fs::read_to_string(sb.dir().join("ovs-vswitchd.pid")).expect("pid file");
    let ctl = sb
        .dir()
        .join(format!("ovs-vswitchd.{}.ctl", pid.trim()))
        .display()
        .to_string();
    sb.appctl(&["-t", &ctl, "exit"]).expect("stop vswitchd");
    let err = sw.ensure_bridge().expect_err("vswitchd is gone");
    assert!(matches!(err, OvsError::NotRunning { .. }), "{err:?}");
}

#[test]
fn sandboxes_leave_no_processes_behind() {
    let sb = sandbox();
    let pids: Vec<String> = ["ovsdb-server.pid", "ovs-vswitchd.pid"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(sb.dir().join(f))
                .expect("pid file")
                .trim()
                .to_string()
        })
        .collect();
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    drop(sb);
    for pid in &pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "daemon {pid} still running: {stat}"
        );
    }
}
