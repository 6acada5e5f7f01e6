//! Flow installation on a real (sandboxed) Open vSwitch: a whole program as one atomic bundle
//! (10,000 and 100,000 flows) against a one-rule diff at 100,000 flows.
//!
//! Run: `cargo bench -p hive-benches --bench ovs_apply` (needs `apt-get install -y
//! openvswitch-switch`; no root). A custom main: each figure is the median of a few runs,
//! printed in seconds, with the replace/diff ratio (target: the diff at least 50x faster).

use std::time::{Duration, Instant};

use hive_ovs::{OvsConfig, Sandbox, SandboxMode, Switch};
use hive_vpc::flow::{Flow, FlowProgram};

/// A synthetic program of `n` flows in the compiler's shape: a fail-closed drop per table and
/// per-address flows spread over the classify, lookup and output tables.
fn program(n: usize) -> FlowProgram {
    let mut p = FlowProgram::new();
    for table in [0u8, 10, 60] {
        p.insert(Flow {
            table,
            priority: 0,
            cookie: 0,
            matches: String::new(),
            actions: "drop".into(),
        });
    }
    for i in 0..n.saturating_sub(3) {
        let (table, matches, actions) = match i % 3 {
            0 => (
                0,
                format!(
                    "ip,in_port={},nw_src=10.{}.{}.{}",
                    i % 200 + 1,
                    i >> 16 & 255,
                    i >> 8 & 255,
                    i & 255
                ),
                "goto_table:10".to_string(),
            ),
            1 => (
                10,
                format!(
                    "ip,reg6={},nw_dst=10.{}.{}.{}",
                    i % 4000 + 1,
                    i >> 16 & 255,
                    i >> 8 & 255,
                    i & 255
                ),
                format!("set_field:{:#x}->reg1,goto_table:60", i),
            ),
            _ => (
                60,
                format!("reg1={i:#x}"),
                format!(
                    "set_field:02:00:00:{:02x}:{:02x}:{:02x}->eth_dst,output:{}",
                    i >> 16 & 255,
                    i >> 8 & 255,
                    i & 255,
                    i % 200 + 1
                ),
            ),
        };
        p.insert(Flow {
            table,
            priority: 100,
            cookie: i as u64,
            matches,
            actions,
        });
    }
    p
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let sb = Sandbox::start(SandboxMode::Dummy).unwrap_or_else(|e| {
        panic!("cannot start an OVS sandbox: {e} (apt-get install -y openvswitch-switch)")
    });
    let config = OvsConfig {
        install_timeout: Duration::from_secs(600),
        ..sb.config("hive-vpc0")
    };
    let sw = hive_ovs::OvsSwitch::new(config).expect("config");
    sw.ensure_bridge().expect("bridge");

    let empty = FlowProgram::new();
    let mut replace = Vec::new();
    for n in [10_000usize, 100_000] {
        let p = program(n);
        let runs = if n > 10_000 { 3 } else { 5 };
        let mut times = Vec::new();
        for _ in 0..runs {
            sw.install(&empty).expect("clear");
            let t = Instant::now();
            sw.install(&p).expect("install");
            times.push(t.elapsed());
        }
        let m = median(times);
        println!(
            "ovs_apply/replace_{n}: {:.3} s (one bundle, {n} flows, median of {runs})",
            m.as_secs_f64()
        );
        replace.push((n, m, p));
    }
    let Some((n, full, base)) = replace.pop() else {
        return;
    };
    sw.install(&base).expect("install base");
    // One rule changes: its flow's action is rewritten (a modify) and one flow is added.
    let mut times = Vec::new();
    let mut current = base.clone();
    for round in 0..9u64 {
        let mut next = current.clone();
        let victim = next
            .flows()
            .nth(1000 + round as usize)
            .cloned()
            .expect("flow exists");
        next.insert(Flow {
            actions: format!("output:{}", 250 + round),
            ..victim
        });
        next.insert(Flow {
            table: 10,
            priority: 200,
            cookie: 0xbeef,
            matches: format!("ip,reg6=4001,nw_dst=10.250.0.{round}"),
            actions: "drop".into(),
        });
        let diff = current.diff(&next);
        let t = Instant::now();
        let touched = sw.apply_diff(&diff).expect("apply diff");
        times.push(t.elapsed());
        assert_eq!(touched, 2);
        current = next;
    }
    let d = median(times);
    assert!(
        sw.drift(&current).expect("diff-flows").is_clean(),
        "the diff must leave exactly the new program"
    );
    println!(
        "ovs_apply/diff_one_rule_at_{n}: {:.4} s (2 flows touched, median of 9)",
        d.as_secs_f64()
    );
    println!(
        "ovs_apply/ratio: full replace of {n} flows / one-rule diff = {:.0}x (target >= 50x)",
        full.as_secs_f64() / d.as_secs_f64()
    );
    // Reconcile cost at full size when nothing drifted (parse-flows + diff-flows).
    let t = Instant::now();
    assert!(sw.reconcile(&current).expect("reconcile").is_clean());
    println!(
        "ovs_apply/reconcile_clean_{n}: {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
