//! `hive-cli doctor`: every check of the setup guide's verification sections, as a table of
//! pass/warn/fail (non-zero exit when anything fails).

use std::time::Duration;

use serde::Serialize;

use hive_iam::identity::{EntityKind, arn};
use hive_kv::KvStore;
use hive_node::netsync::NetSyncOptions;
use hive_ovs::{OvsSwitch, Switch as _};

use crate::cli::DoctorArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::output::Table;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As the guide wants it.
    Pass,
    /// Works, but not as the guide recommends (or not checkable here).
    Warn,
    /// Broken: the node will not work (or not safely).
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub check: String,
    /// The outcome.
    pub status: Status,
    /// What was found, and what to do when it is not a pass.
    pub detail: String,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, check: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.0.push(Check {
            check: check.into(),
            status,
            detail: detail.into(),
        });
    }
}

/// Run `doctor`.
pub async fn run(ctx: &Context, args: &DoctorArgs) -> Result<(), CliError> {
    let mut report = Report::default();
    if args.skip_ovs || !ctx.config.vpc.enabled {
        report.add(
            "open vswitch",
            Status::Warn,
            "skipped (--skip-ovs or [vpc] enabled = false)",
        );
    } else {
        let ovs = NetSyncOptions::from_config(&ctx.config.vpc).ovs;
        let gateway = ctx.config.vpc.gateway_ip;
        let prefix = ctx.config.vpc.default_subnet_cidr.prefix();
        let checks = tokio::task::spawn_blocking(move || {
            let mut r = Report::default();
            switch_checks(&mut r, ovs, gateway, prefix);
            r
        })
        .await
        .map_err(|e| CliError::Failed(format!("switch checks: {e}")))?;
        report.0.extend(checks.0);
    }
    host_checks(&mut report, ctx);
    store_checks(&mut report, ctx).await;
    clock_check(&mut report);

    let mut table = Table::new(["CHECK", "STATUS", "DETAIL"]);
    for c in &report.0 {
        table.row([
            c.check.clone(),
            c.status.word().to_owned(),
            c.detail.clone(),
        ]);
    }
    let failed = report.0.iter().filter(|c| c.status == Status::Fail).count();
    ctx.printer.emit(
        &table,
        &serde_json::json!({"ok": failed == 0, "checks": report.0}),
    );
    if failed > 0 {
        return Err(CliError::Failed(format!("{failed} check(s) failed")));
    }
    Ok(())
}

fn switch_checks(
    r: &mut Report,
    ovs: hive_ovs::OvsConfig,
    gateway: std::net::Ipv4Addr,
    prefix: u8,
) {
    let bridge = ovs.bridge.clone();
    let internal = ovs.internal_port.clone();
    let switch = match OvsSwitch::new(ovs) {
        Ok(s) => s,
        Err(e) => return r.add("open vswitch", Status::Fail, e.to_string()),
    };
    if let Err(e) = switch.check() {
        return r.add(
            "open vswitch",
            Status::Fail,
            format!(
                "{e} (apt-get install -y openvswitch-switch; systemctl start openvswitch-switch)"
            ),
        );
    }
    match switch.version() {
        Ok(v) => r.add("open vswitch", Status::Pass, v),
        Err(e) => r.add(
            "open vswitch",
            Status::Warn,
            format!("running; version unknown: {e}"),
        ),
    }
    let state = match switch.bridge_state() {
        Ok(s) => s,
        Err(e) => {
            return r.add(
                format!("bridge {bridge}"),
                Status::Fail,
                format!("{e} (create it: hive-cli ovs setup)"),
            );
        }
    };
    r.add(
        format!("bridge {bridge}"),
        Status::Pass,
        format!(
            "datapath {}",
            if state.datapath_type.is_empty() {
                "system"
            } else {
                &state.datapath_type
            }
        ),
    );
    r.add(
        "fail mode",
        if state.fail_mode == "secure" { Status::Pass } else { Status::Fail },
        if state.fail_mode == "secure" {
            "secure: no traffic without flows".to_owned()
        } else {
            format!(
                "{:?}: the bridge forwards on its own when flows are missing (hive-cli ovs setup sets fail_mode=secure)",
                state.fail_mode
            )
        },
    );
    r.add(
        "stp",
        if state.stp_enable {
            Status::Warn
        } else {
            Status::Pass
        },
        if state.stp_enable {
            "enabled; the guide turns it off"
        } else {
            "disabled"
        },
    );
    match switch.dump_flows() {
        Ok(flows) => {
            let drop = flows
                .iter()
                .any(|f| f.table == 0 && f.priority == 0 && f.actions.trim() == "drop");
            r.add(
                "fail-closed drop flow",
                if drop { Status::Pass } else { Status::Fail },
                if drop {
                    "table=0 priority=0 actions=drop present".to_owned()
                } else {
                    "missing: unmatched traffic is not dropped by a flow (repair: hive-cli ovs reconcile)".to_owned()
                },
            );
            let est = flows
                .iter()
                .any(|f| f.matches.contains("+est") && f.matches.contains("+trk"));
            r.add(
                "conntrack established",
                if est { Status::Pass } else { Status::Warn },
                if est {
                    "ct_state=+est+trk flows present".to_owned()
                } else {
                    "no +est+trk flow: replies are not allowed (hive-cli ovs reconcile)".to_owned()
                },
            );
            r.add(
                "flows",
                Status::Pass,
                format!("{} flows installed", flows.len()),
            );
        }
        Err(e) => r.add("fail-closed drop flow", Status::Fail, e.to_string()),
    }
    match state.internal_ofport {
        Some(port) => r.add(
            format!("port {internal}"),
            Status::Pass,
            format!("internal port on OpenFlow port {port}"),
        ),
        None => r.add(
            format!("port {internal}"),
            Status::Fail,
            "missing (hive-cli ovs setup)",
        ),
    }
    let want = format!("{gateway}/{prefix}");
    match std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &internal])
        .output()
    {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains(&want) => {
            r.add(format!("{internal} address"), Status::Pass, want)
        }
        Ok(_) => r.add(
            format!("{internal} address"),
            Status::Warn,
            format!("{want} not assigned (as root: ip addr add {want} dev {internal}; ip link set {internal} up)"),
        ),
        Err(e) => r.add(format!("{internal} address"), Status::Warn, format!("cannot run ip: {e}")),
    }
}

fn host_checks(r: &mut Report, ctx: &Context) {
    if !ctx.config.vpc.enabled {
        return;
    }
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .map(|t| t.trim() == "1")
        .unwrap_or(false);
    let needed = ctx.config.vpc.nat_enabled;
    r.add(
        "ip_forward",
        match (forwarding, needed) {
            (true, _) => Status::Pass,
            (false, true) => Status::Fail,
            (false, false) => Status::Warn,
        },
        if forwarding {
            "net.ipv4.ip_forward = 1".to_owned()
        } else {
            "net.ipv4.ip_forward = 0: VMs cannot leave the node (sysctl -w net.ipv4.ip_forward=1)"
                .to_owned()
        },
    );
}

async fn store_checks(r: &mut Report, ctx: &Context) {
    let what = match &ctx.config.storage.nats_url {
        Some(url) => format!("NATS JetStream at {url}"),
        None => format!(
            "embedded store in {}",
            ctx.config.storage.data_dir.display()
        ),
    };
    let store = match tokio::time::timeout(Duration::from_secs(10), ctx.store()).await {
        Ok(Ok(s)) => {
            r.add("storage", Status::Pass, what);
            s
        }
        Ok(Err(e)) => {
            let hint = e.hint().unwrap_or_default();
            return r.add("storage", Status::Fail, format!("{what}: {e} ({hint})"));
        }
        Err(_) => {
            return r.add(
                "storage",
                Status::Fail,
                format!("{what}: no answer in 10 s"),
            );
        }
    };
    bucket_checks(r, ctx, store.as_ref()).await;
    match ctx.iam_on(store.as_ref()).await {
        Ok(iam) => {
            let admin = arn(&ctx.account, EntityKind::User, "/", "admin");
            match iam.get_user(&ctx.account, "admin").await {
                Ok(u) if !u.access_keys.is_empty() => r.add(
                    "admin",
                    Status::Pass,
                    format!("{admin} with {} key(s)", u.access_keys.len()),
                ),
                Ok(_) => r.add(
                    "admin",
                    Status::Warn,
                    format!("{admin} has no access key (hive-cli iam access-key create admin)"),
                ),
                Err(e) => r.add("admin", Status::Fail, format!("{e} (hive-cli init)")),
            }
            match iam.keys_needing_reseal().await {
                Ok(keys) if keys.is_empty() => r.add(
                    "secrets sealed",
                    Status::Pass,
                    "every stored secret is sealed with the active key",
                ),
                Ok(keys) => r.add(
                    "secrets sealed",
                    Status::Fail,
                    format!(
                        "{} key(s) in clear text or under an old key (hive-cli iam reseal)",
                        keys.len()
                    ),
                ),
                Err(e) => r.add("secrets sealed", Status::Fail, e.to_string()),
            }
        }
        Err(e) => r.add("admin", Status::Fail, e.to_string()),
    }
}

async fn bucket_checks(r: &mut Report, ctx: &Context, store: &dyn KvStore) {
    for want in ctx
        .config
        .iam
        .bucket_names()
        .configs(ctx.config.storage.replicas)
    {
        let name = format!("bucket {}", want.name);
        match store.bucket_config(&want.name).await {
            Ok(have) if have.history == want.history && have.ttl == want.ttl => r.add(
                name,
                Status::Pass,
                format!("history {}{}", have.history, ttl_text(have.ttl)),
            ),
            Ok(have) => r.add(
                name,
                Status::Fail,
                format!(
                    "history {}{}; the guide wants history {}{}",
                    have.history,
                    ttl_text(have.ttl),
                    want.history,
                    ttl_text(want.ttl)
                ),
            ),
            Err(hive_kv::KvError::BucketNotFound(_)) => {
                r.add(name, Status::Fail, "missing (hive-cli init)")
            }
            Err(e) => r.add(name, Status::Fail, e.to_string()),
        }
    }
}

fn ttl_text(ttl: Option<Duration>) -> String {
    ttl.map(|t| format!(", TTL {} s", t.as_secs()))
        .unwrap_or_default()
}

/// SigV4 refuses requests more than 15 minutes off: a clock far from real time locks
/// everyone out. We can only check it is plausible here (after this code was written).
fn clock_check(r: &mut Report) {
    let now = time::OffsetDateTime::now_utc();
    let plausible = now.year() >= 2025 && now.year() < 2100;
    r.add(
        "clock",
        if plausible {
            Status::Pass
        } else {
            Status::Fail
        },
        format!(
            "{} UTC{}",
            crate::commands::iam::timestamp(now),
            if plausible {
                ""
            } else {
                ": set the clock (SigV4 allows 15 minutes of skew); use NTP"
            }
        ),
    );
}
