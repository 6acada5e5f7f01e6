//! [`DryRunSwitch`]: a switch that records the exact commands [`crate::OvsSwitch`] would run and
//! keeps the state they would produce in memory (the flow table, tunnels, bridge). It backs
//! `hive-cli doctor`/plan output and unit tests of callers without a running Open vSwitch.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use hive_vpc::flow::{Flow, FlowDiff, FlowProgram};

use crate::error::OvsError;
use crate::exec::OvsCommand;
use crate::switch::{
    BoundPort, BridgeState, FlowChange, OvsConfig, PROTOCOLS, ReconcileReport, Switch, TunnelPort,
    TunnelSpec,
};

#[derive(Debug, Default)]
struct State {
    commands: Vec<OvsCommand>,
    bridge: bool,
    program: FlowProgram,
    tunnels: BTreeMap<String, TunnelSpec>,
    ports: Vec<BoundPort>,
}

/// An in-memory switch that records the commands a real one would run.
#[derive(Debug)]
pub struct DryRunSwitch {
    config: OvsConfig,
    state: Mutex<State>,
}

impl DryRunSwitch {
    /// A dry-run switch for `config`, with no bridge yet.
    pub fn new(config: OvsConfig) -> Result<Self, OvsError> {
        config.validate()?;
        Ok(Self {
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The same switch with ports already bound (as a hypervisor would have plugged them).
    pub fn with_ports(self, ports: Vec<BoundPort>) -> Self {
        self.lock().ports = ports;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave State half-updated in a harmful way: keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, cmd: OvsCommand) {
        self.lock().commands.push(cmd);
    }

    /// The commands recorded so far, in order.
    pub fn commands(&self) -> Vec<OvsCommand> {
        self.lock().commands.clone()
    }

    /// The recorded commands as shell lines (the input files shown as `FILE`).
    pub fn script(&self) -> String {
        self.lock()
            .commands
            .iter()
            .map(|c| format!("{c}\n"))
            .collect()
    }

    /// Take and clear the recorded commands.
    pub fn take_commands(&self) -> Vec<OvsCommand> {
        std::mem::take(&mut self.lock().commands)
    }

    /// The flow table the recorded commands would leave.
    pub fn program(&self) -> FlowProgram {
        self.lock().program.clone()
    }
}

impl Switch for DryRunSwitch {
    fn check(&self) -> Result<(), OvsError> {
        for cmd in self.config.check_cmds() {
            self.record(cmd);
        }
        Ok(())
    }

    fn ensure_bridge(&self) -> Result<BridgeState, OvsError> {
        self.check()?;
        self.record(self.config.ensure_bridge_cmd());
        self.record(self.config.dump_cmd());
        let mut state = self.lock();
        if state.program.is_empty() {
            state.commands.push(self.config.fail_closed_cmd());
            state.program.insert(Flow {
                table: 0,
                priority: 0,
                cookie: 0,
                matches: String::new(),
                actions: "drop".into(),
            });
        }
        state.bridge = true;
        state.commands.push(self.config.bridge_state_cmd());
        state
            .commands
            .push(self.config.interface_ofport_cmd(&self.config.internal_port));
        Ok(BridgeState {
            name: self.config.bridge.clone(),
            uuid: String::from("dry-run"),
            datapath_type: self.config.datapath_type.as_str().to_string(),
            fail_mode: "secure".into(),
            stp_enable: false,
            protocols: PROTOCOLS.split(',').map(str::to_string).collect(),
            internal_ofport: None,
        })
    }

    fn bound_ports(&self) -> Result<Vec<BoundPort>, OvsError> {
        self.record(self.config.list_ifaces_cmd());
        self.record(self.config.interfaces_cmd());
        Ok(self.lock().ports.clone())
    }

    fn install(&self, program: &FlowProgram) -> Result<usize, OvsError> {
        let mut state = self.lock();
        state.commands.push(self.config.install_cmd(program));
        state.program = program.clone();
        Ok(program.len())
    }

    fn apply_diff(&self, diff: &FlowDiff) -> Result<usize, OvsError> {
        if diff.is_empty() {
            return Ok(0);
        }
        let mut state = self.lock();
        state.commands.push(self.config.diff_cmd(diff));
        let mut flows: Vec<Flow> = state.program.flows().cloned().collect();
        flows.retain(|f| !diff.delete.iter().any(|d| d.key() == f.key()));
        let mut program: FlowProgram = flows.into_iter().collect();
        for flow in diff.modify.iter().chain(&diff.add) {
            program.insert(flow.clone());
        }
        state.program = program;
        Ok(diff.len())
    }

    fn dump_flows(&self) -> Result<Vec<Flow>, OvsError> {
        let mut state = self.lock();
        state.commands.push(self.config.dump_cmd());
        Ok(state.program.flows().cloned().collect())
    }

    fn reconcile(&self, desired: &FlowProgram) -> Result<ReconcileReport, OvsError> {
        let mut state = self.lock();
        state.commands.push(self.config.parse_flows_cmd(desired));
        state
            .commands
            .push(self.config.diff_flows_cmd(desired.to_ofctl()));
        let diff = state.program.diff(desired);
        let live = |f: &Flow| {
            state
                .program
                .flows()
                .find(|g| g.key() == f.key())
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        let report = ReconcileReport {
            missing: diff.add.iter().map(ToString::to_string).collect(),
            rogue: diff.delete.iter().map(ToString::to_string).collect(),
            changed: diff
                .modify
                .iter()
                .map(|f| FlowChange {
                    desired: f.to_string(),
                    live: live(f),
                })
                .collect(),
        };
        if !report.is_clean() {
            state
                .commands
                .push(self.config.replace_cmd(desired.to_ofctl()));
            state
                .commands
                .push(self.config.diff_flows_cmd(desired.to_ofctl()));
            state.program = desired.clone();
        }
        Ok(report)
    }

    fn ensure_tunnel(&self, tunnel: &TunnelSpec) -> Result<(), OvsError> {
        let cmd = self.config.tunnel_cmd(tunnel)?;
        let mut state = self.lock();
        state.commands.push(cmd);
        state.tunnels.insert(tunnel.name.clone(), tunnel.clone());
        Ok(())
    }

    fn remove_tunnel(&self, name: &str) -> Result<(), OvsError> {
        let cmd = self.config.remove_tunnel_cmd(name)?;
        let mut state = self.lock();
        state.commands.push(cmd);
        state.tunnels.remove(name);
        Ok(())
    }

    fn flush_conntrack(&self, zone: Option<u16>) -> Result<(), OvsError> {
        self.record(self.config.flush_conntrack_cmd(zone));
        Ok(())
    }

    fn tunnels(&self) -> Result<Vec<TunnelPort>, OvsError> {
        self.record(self.config.list_ifaces_cmd());
        self.record(self.config.interfaces_cmd());
        Ok(self
            .lock()
            .tunnels
            .values()
            .map(|spec| TunnelPort {
                spec: spec.clone(),
                ofport: None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::{TunnelKey, TunnelKind};

    fn flow(table: u8, priority: u16, matches: &str, actions: &str) -> Flow {
        Flow {
            table,
            priority,
            cookie: 1,
            matches: matches.into(),
            actions: actions.into(),
        }
    }

    #[test]
    fn records_the_setup_guide_as_commands() {
        let sw = DryRunSwitch::new(OvsConfig::default()).expect("valid config");
        let state = sw.ensure_bridge().expect("dry run");
        assert_eq!(state.fail_mode, "secure");
        let script = sw.script();
        assert!(script.contains("ovs-vsctl --timeout=10 --may-exist add-br hive-vpc0 -- set bridge hive-vpc0 fail_mode=secure stp_enable=false protocols=OpenFlow13,OpenFlow14,OpenFlow15 datapath_type=system -- --may-exist add-port hive-vpc0 hive-int0 -- set interface hive-int0 type=internal"), "{script}");
        assert!(script.contains("ovs-ofctl -O OpenFlow13 --no-names add-flow hive-vpc0 table=0,priority=0,actions=drop"), "{script}");
        // A second setup finds the drop already there.
        sw.take_commands();
        sw.ensure_bridge().expect("dry run");
        assert!(!sw.script().contains("add-flow"));
    }

    #[test]
    fn install_diff_and_reconcile_track_the_table() {
        let sw = DryRunSwitch::new(OvsConfig::default()).expect("valid config");
        let a: FlowProgram = [flow(0, 0, "", "drop"), flow(0, 10, "arp", "normal")]
            .into_iter()
            .collect();
        let b: FlowProgram = [flow(0, 0, "", "drop"), flow(0, 20, "ip", "normal")]
            .into_iter()
            .collect();
        assert_eq!(sw.install(&a).expect("dry run"), 2);
        assert_eq!(sw.apply_diff(&a.diff(&b)).expect("dry run"), 2);
        assert_eq!(sw.program(), b);
        let cmds = sw.commands();
        assert_eq!(
            cmds[1].input.as_deref(),
            Some(
                "delete_strict table=0,priority=10,arp\nadd table=0,priority=20,cookie=0x1,ip,actions=normal\n"
            )
        );
        assert!(sw.reconcile(&b).expect("dry run").is_clean());
        let report = sw.reconcile(&a).expect("dry run");
        assert_eq!((report.missing.len(), report.rogue.len()), (1, 1));
        assert_eq!(sw.program(), a);
    }

    #[test]
    fn tunnels_are_remembered() {
        let sw = DryRunSwitch::new(OvsConfig::default()).expect("valid config");
        let t = TunnelSpec {
            name: "vx-n2".into(),
            kind: TunnelKind::Geneve,
            remote_ip: "192.0.2.2".parse().expect("ip"),
            key: TunnelKey::Fixed(7),
        };
        sw.ensure_tunnel(&t).expect("dry run");
        assert!(
            sw.script()
                .contains("type=geneve options:remote_ip=192.0.2.2 options:key=7")
        );
        assert_eq!(sw.tunnels().expect("dry run").len(), 1);
        sw.remove_tunnel("vx-n2").expect("dry run");
        assert!(sw.tunnels().expect("dry run").is_empty());
        assert!(sw.remove_tunnel("bad name").is_err());
    }
}
