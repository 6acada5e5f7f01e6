//! [`OvsSwitch`]: the [`Switch`] port over the real `ovs-vsctl` / `ovs-ofctl` / `ovs-appctl`.

use hive_vpc::flow::{Flow, FlowDiff, FlowProgram};

use crate::error::OvsError;
use crate::exec::{Output, OvsCommand, Runner, Tool};
use crate::parse::{
    DbValue, TraceResult, canonical_from_parse_flows, parse_db_table, parse_dpif_show,
    parse_dump_flows, parse_trace,
};
use crate::switch::{
    BoundPort, BridgeState, OvsConfig, ReconcileReport, Switch, TunnelPort, TunnelSpec,
    interfaces_of, report_from_diff, validate_name,
};

/// The switch of this node, driven through the OVS command-line tools.
#[derive(Debug, Clone)]
pub struct OvsSwitch {
    config: OvsConfig,
    runner: Runner,
}

impl OvsSwitch {
    /// A switch for `config`; fails on names the tools would not accept.
    pub fn new(config: OvsConfig) -> Result<Self, OvsError> {
        config.validate()?;
        let runner = config.runner();
        Ok(Self { config, runner })
    }

    /// The configuration.
    pub fn config(&self) -> &OvsConfig {
        &self.config
    }

    fn run(&self, cmd: &OvsCommand) -> Result<Output, OvsError> {
        tracing::debug!(command = %cmd, "ovs");
        self.runner.run(cmd)
    }

    fn run_long(&self, cmd: &OvsCommand) -> Result<Output, OvsError> {
        tracing::debug!(command = %cmd, "ovs (long)");
        self.runner
            .run_with_timeout(cmd, self.config.install_timeout)
    }

    /// The running switch daemon's version line (`ovs-vswitchd (Open vSwitch) 3.1.0`).
    pub fn version(&self) -> Result<String, OvsError> {
        let cmd = self
            .config
            .check_cmds()
            .pop()
            .ok_or_else(|| OvsError::Parse {
                what: "version command",
                detail: "none configured".into(),
            })?;
        let out = self.run(&cmd)?;
        out.stdout
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| OvsError::Parse {
                what: "ovs-vswitchd version",
                detail: "empty output".into(),
            })
    }

    /// `ovs-appctl ofproto/trace` of `flow` (e.g. `in_port=1,tcp,nw_dst=10.0.1.5,tp_dst=22`)
    /// through the bridge, one `--ct-next` per conntrack state (`trk,new`): the switch's own
    /// verdict, for `hive-cli vpc trace`.
    pub fn trace(&self, flow: &str, ct_next: &[&str]) -> Result<TraceResult, OvsError> {
        let timeout = format!("--timeout={}", self.config.timeout.as_secs().max(1));
        let show = OvsCommand::new(Tool::Appctl, [timeout.as_str(), "dpif/show"]);
        let ports: Vec<_> = parse_dpif_show(&self.run(&show)?.stdout)
            .into_iter()
            .filter(|p| p.bridge == self.config.bridge)
            .collect();
        let mut args = vec![
            timeout.as_str(),
            "ofproto/trace",
            self.config.bridge.as_str(),
            flow,
        ];
        for state in ct_next {
            args.extend(["--ct-next", state]);
        }
        let out = self.run(&OvsCommand::new(Tool::Appctl, args))?;
        parse_trace(&out.stdout, &ports)
    }

    /// The bridge row as the database holds it.
    pub fn bridge_state(&self) -> Result<BridgeState, OvsError> {
        let out = self.run(&self.config.bridge_state_cmd())?;
        let rows = parse_db_table(&out.stdout)?;
        let row = rows.first().ok_or_else(|| OvsError::NoSuchBridge {
            bridge: self.config.bridge.clone(),
        })?;
        let text = |k: &str| {
            row.get(k)
                .and_then(DbValue::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let internal_ofport = self.interface_ofport(&self.config.internal_port)?;
        Ok(BridgeState {
            name: text("name"),
            uuid: text("_uuid"),
            datapath_type: text("datapath_type"),
            fail_mode: text("fail_mode"),
            stp_enable: matches!(row.get("stp_enable"), Some(DbValue::Bool(true))),
            protocols: row
                .get("protocols")
                .map(DbValue::strings)
                .unwrap_or_default(),
            internal_ofport,
        })
    }

    fn interface_ofport(&self, name: &str) -> Result<Option<u32>, OvsError> {
        let out = self.run(&self.config.interface_ofport_cmd(name))?;
        let rows = parse_db_table(&out.stdout)?;
        Ok(rows
            .first()
            .and_then(|r| r.get("ofport"))
            .and_then(DbValue::as_int)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0))
    }

    fn interfaces(&self) -> Result<(Vec<BoundPort>, Vec<TunnelPort>), OvsError> {
        let names: Vec<String> = self
            .run(&self.config.list_ifaces_cmd())?
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        let json = self.run(&self.config.interfaces_cmd())?.stdout;
        interfaces_of(&json, &names)
    }

    /// `desired` as the switch stores it: encoded as OpenFlow 1.3 and decoded again by
    /// `ovs-ofctl parse-flows`, so equal programs compare equal even where the text differs.
    pub fn canonical(&self, desired: &FlowProgram) -> Result<String, OvsError> {
        canonical_from_parse_flows(&self.run_long(&self.config.parse_flows_cmd(desired))?.stdout)
    }

    /// `ovs-ofctl diff-flows` of `desired` against the live table, as a report (no repair).
    pub fn drift(&self, desired: &FlowProgram) -> Result<ReconcileReport, OvsError> {
        let canonical = self.canonical(desired)?;
        self.drift_of(canonical)
    }

    fn drift_of(&self, canonical: String) -> Result<ReconcileReport, OvsError> {
        let out = self.run_long(&self.config.diff_flows_cmd(canonical))?;
        report_from_diff(&out.stdout)
    }
}

impl Switch for OvsSwitch {
    fn check(&self) -> Result<(), OvsError> {
        for cmd in self.config.check_cmds() {
            self.run(&cmd)?;
        }
        Ok(())
    }

    fn ensure_bridge(&self) -> Result<BridgeState, OvsError> {
        // Without ovs-vswitchd, ovs-vsctl would wait for it until the time limit: ask first.
        self.check()?;
        self.run(&self.config.ensure_bridge_cmd())?;
        if self.dump_flows()?.is_empty() {
            self.run(&self.config.fail_closed_cmd())?;
        }
        self.bridge_state()
    }

    fn bound_ports(&self) -> Result<Vec<BoundPort>, OvsError> {
        Ok(self.interfaces()?.0)
    }

    fn install(&self, program: &FlowProgram) -> Result<usize, OvsError> {
        self.run_long(&self.config.install_cmd(program))?;
        Ok(program.len())
    }

    fn apply_diff(&self, diff: &FlowDiff) -> Result<usize, OvsError> {
        if diff.is_empty() {
            return Ok(0);
        }
        self.run_long(&self.config.diff_cmd(diff))?;
        Ok(diff.len())
    }

    fn dump_flows(&self) -> Result<Vec<Flow>, OvsError> {
        parse_dump_flows(&self.run_long(&self.config.dump_cmd())?.stdout)
    }

    fn reconcile(&self, desired: &FlowProgram) -> Result<ReconcileReport, OvsError> {
        let report = self.drift(desired)?;
        if report.is_clean() {
            return Ok(report);
        }
        tracing::warn!(
            repaired = report.len(),
            "flow table drifted from the program; repairing"
        );
        // replace-flows sends only the differences, all in one atomic bundle.
        self.install(desired)?;
        let after = self.drift(desired)?;
        if !after.is_clean() {
            return Err(OvsError::DriftPersists {
                remaining: after.len(),
            });
        }
        Ok(report)
    }

    fn ensure_tunnel(&self, tunnel: &TunnelSpec) -> Result<(), OvsError> {
        self.run(&self.config.tunnel_cmd(tunnel)?)?;
        Ok(())
    }

    fn remove_tunnel(&self, name: &str) -> Result<(), OvsError> {
        validate_name("tunnel port name", name)?;
        self.run(&self.config.remove_tunnel_cmd(name)?)?;
        Ok(())
    }

    fn flush_conntrack(&self, zone: Option<u16>) -> Result<(), OvsError> {
        self.run(&self.config.flush_conntrack_cmd(zone))?;
        Ok(())
    }

    fn tunnels(&self) -> Result<Vec<TunnelPort>, OvsError> {
        Ok(self.interfaces()?.1)
    }
}
