//! `hive-cli lab`: a Hive cluster in one box, with real packets (root only).
//!
//! `lab up --nodes N` builds, on this machine:
//! - a 3-node NATS JetStream cluster on 127.0.0.1 (free ports; store and log per server under
//!   the lab directory), always 3 servers so that one may be killed;
//! - per node `i`, a network namespace `hl<NAME>n<i>` running its own `ovsdb-server` and
//!   `ovs-vswitchd` (userspace datapath) with `hive-vpc0` + `hive-int0` (10.0.1.1/24, the
//!   default subnet's gateway), a `br-phy` whose LOCAL port holds the tunnel address
//!   100.100.0.`i` on the underlay, an uplink `up0` (203.0.113.`10+i`) into the outside and,
//!   unless `--no-nat`, masquerade of 10.0.0.0/8 out of it;
//! - the underlay namespace `hl<NAME>ul` and the outside namespace `hl<NAME>out`
//!   (203.0.113.1, no route back to 10.0.0.0/8), each a Linux bridge;
//! - per node a `hive-api` in the host namespace (so that NATS on loopback and the aws CLI
//!   reach it), driving only its node's switch through `OVS_RUNDIR`, all with one sealing key.
//!
//! VMs are namespaces `hl<NAME>v<k>` plugged as a hypervisor would (`external_ids:iface-id`).
//! Every step is recorded in `DIR/state.json` before the next one; a failed `up` and `down`
//! remove what the record names, then sweep namespaces by their exact name pattern and
//! processes whose command line names the lab directory. Nothing is made outside namespaces
//! the lab owns, and all traffic stays inside them.
//!
//! `node stop/kill-api/start` and `nats kill/start` control the processes for fault tests.

mod error;
mod node;
mod state;
mod sys;
mod up;
mod vm;

pub use error::LabError;

use serde_json::json;

use crate::cli::{LabCommand, LabNatsCommand, LabNodeCommand, LabTarget, LabVmCommand};
use crate::output::{Printer, Table};
use state::{LabState, Names, lab_dir};

/// The state of a running lab.
fn open(target: &LabTarget) -> Result<LabState, LabError> {
    Names::new(&target.name)?;
    let dir = lab_dir(&target.name, target.dir.as_deref());
    let path = dir.join(state::STATE_FILE);
    if !path.exists() {
        return Err(LabError::NotUp {
            name: target.name.clone(),
            state: path,
        });
    }
    LabState::load(&dir)
}

/// Run a `lab` command.
pub async fn run(printer: &Printer, command: &LabCommand) -> Result<(), LabError> {
    sys::require_root()?;
    sys::require_tools()?;
    match command {
        LabCommand::Up(a) => {
            let options = up::UpOptions {
                name: a.target.name.clone(),
                nodes: a.nodes,
                dir: a.target.dir.clone(),
                nat: !a.no_nat,
                metadata: a.metadata,
                hive_api: a.hive_api.clone(),
                nats_server: a.nats_server.clone(),
            };
            let state = tokio::task::spawn_blocking(move || up::up(&options))
                .await
                .map_err(|e| LabError::Failed(e.to_string()))??;
            let (text, doc) = up::summary(&state);
            printer.message(text.trim_end(), &doc);
        }
        LabCommand::Down(t) => down(printer, t)?,
        LabCommand::Status(t) => status(printer, &open(t)?),
        LabCommand::Vm(c) => vm_command(printer, c).await?,
        LabCommand::Node(c) => node_command(printer, c)?,
        LabCommand::Nats(c) => nats_command(printer, c)?,
    }
    Ok(())
}

fn down(printer: &Printer, t: &LabTarget) -> Result<(), LabError> {
    let names = Names::new(&t.name)?;
    let dir = lab_dir(&t.name, t.dir.as_deref());
    let state = LabState::load(&dir).ok();
    let removed = up::teardown(&names, state.as_ref(), &dir);
    printer.message(
        &format!(
            "lab {} is down: {} process(es) stopped, {} namespace(s) deleted{}",
            t.name,
            removed.processes,
            removed.namespaces.len(),
            if removed.dir {
                format!(", {} removed", dir.display())
            } else {
                String::new()
            }
        ),
        &json!({"name": t.name, "processes": removed.processes, "namespaces": removed.namespaces, "dir_removed": removed.dir}),
    );
    Ok(())
}

fn alive_text(alive: bool) -> &'static str {
    if alive { "ok" } else { "fail" }
}

fn status(printer: &Printer, s: &LabState) {
    let mut t = Table::new(["WHAT", "STATE", "DETAIL"]);
    let mut nodes = Vec::new();
    for n in &s.nodes {
        let api = sys::running(n.api.as_ref());
        let health = sys::http_status(n.api_port, "/health") == Some(200);
        let ovsdb = sys::running(n.ovsdb.as_ref());
        let vswitchd = sys::running(n.vswitchd.as_ref());
        let flows = if vswitchd { node::flow_count(n) } else { None };
        t.row([
            format!("node{} hive-api", n.index),
            alive_text(api && health).to_owned(),
            format!(
                "{} pid {} health {}",
                n.endpoint(),
                n.api.map_or("-".into(), |p| p.pid.to_string()),
                if health { "200" } else { "no answer" }
            ),
        ]);
        t.row([
            format!("node{} switch", n.index),
            alive_text(ovsdb && vswitchd).to_owned(),
            format!(
                "{} ovsdb-server {} ovs-vswitchd {} flows {}",
                n.namespace,
                if ovsdb { "up" } else { "down" },
                if vswitchd { "up" } else { "down" },
                flows.map_or("-".into(), |f| f.to_string())
            ),
        ]);
        nodes.push(json!({
            "node": n.index, "namespace": n.namespace, "endpoint": n.endpoint(),
            "api_pid": n.api.map(|p| p.pid), "api_alive": api, "health": health,
            "ovsdb_alive": ovsdb, "vswitchd_alive": vswitchd, "flows": flows,
            "tunnel_ip": n.tunnel_ip.to_string(),
        }));
    }
    let mut nats = Vec::new();
    for n in &s.nats {
        let alive = sys::running(n.proc.as_ref());
        let healthy = alive && sys::http_status(n.monitor_port, "/healthz") == Some(200);
        t.row([
            format!("nats{}", n.index),
            alive_text(alive && healthy).to_owned(),
            n.url(),
        ]);
        nats.push(json!({"server": n.index, "url": n.url(), "alive": alive, "healthy": healthy}));
    }
    let mut vms = Vec::new();
    for v in &s.vms {
        t.row([
            format!("vm {}", v.eni),
            "ok".to_owned(),
            format!(
                "{} on node{} {} {} via {}",
                v.namespace, v.node, v.address, v.mac, v.gateway
            ),
        ]);
        vms.push(json!({"eni": v.eni, "namespace": v.namespace, "node": v.node, "address": v.address, "mac": v.mac, "gateway": v.gateway.to_string(), "tap": v.tap}));
    }
    printer.emit(
        &t,
        &json!({"name": s.name, "dir": s.dir, "complete": s.complete, "nodes": nodes, "nats": nats, "vms": vms}),
    );
}

async fn vm_command(printer: &Printer, c: &LabVmCommand) -> Result<(), LabError> {
    match c {
        LabVmCommand::Create { target, eni, node } => {
            let mut s = open(target)?;
            s.node(*node)?;
            let facts = vm::lookup(&s, eni).await?;
            let (eni, node) = (eni.clone(), *node);
            let (vm, programmed) = tokio::task::spawn_blocking(move || {
                let vm = vm::create(&mut s, &eni, node, &facts)?;
                let programmed = vm::wait_programmed(&s, &vm);
                Ok::<_, LabError>((vm, programmed))
            })
            .await
            .map_err(|e| LabError::Failed(e.to_string()))??;
            let note = if programmed {
                String::new()
            } else {
                format!(
                    "\nwarning: node {}'s switch has no flows for it yet (is its hive-api running? hive-cli lab status)",
                    vm.node
                )
            };
            printer.message(
                &format!("{}{note}", vm.namespace),
                &json!({"eni": vm.eni, "namespace": vm.namespace, "node": vm.node, "tap": vm.tap, "address": vm.address, "mac": vm.mac, "gateway": vm.gateway.to_string(), "programmed": programmed}),
            );
        }
        LabVmCommand::Exec {
            target,
            eni,
            command,
        } => {
            let s = open(target)?;
            let code = vm::exec(&s, eni, command)?;
            if code != 0 {
                return Err(LabError::Exit(u8::try_from(code).unwrap_or(1)));
            }
        }
        LabVmCommand::Delete { target, eni } => {
            let mut s = open(target)?;
            let vm = vm::remove(&mut s, eni)?;
            printer.message(
                &format!("deleted {} ({})", vm.namespace, vm.eni),
                &json!({"deleted": vm.eni, "namespace": vm.namespace}),
            );
        }
    }
    Ok(())
}

fn node_command(printer: &Printer, c: &LabNodeCommand) -> Result<(), LabError> {
    let (target, i) = match c {
        LabNodeCommand::Stop { target, node }
        | LabNodeCommand::KillApi { target, node }
        | LabNodeCommand::Start { target, node } => (target, *node),
    };
    let mut s = open(target)?;
    let n = s.node(i)?.clone();
    let what = match c {
        LabNodeCommand::Stop { .. } => {
            sys::terminate(
                &[n.api, n.vswitchd, n.ovsdb]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
            );
            "stopped (hive-api and Open vSwitch)"
        }
        LabNodeCommand::KillApi { .. } => {
            sys::kill_now(&n.api.into_iter().collect::<Vec<_>>());
            "hive-api killed (the switch keeps its program)"
        }
        LabNodeCommand::Start { .. } => {
            node::start_node(&mut s, i)?;
            "running"
        }
    };
    s.save()?;
    printer.message(
        &format!("node{i}: {what}"),
        &json!({"node": i, "state": what}),
    );
    Ok(())
}

fn nats_command(printer: &Printer, c: &LabNatsCommand) -> Result<(), LabError> {
    let (target, k) = match c {
        LabNatsCommand::Kill { target, server } | LabNatsCommand::Start { target, server } => {
            (target, *server)
        }
    };
    let mut s = open(target)?;
    let Some(n) = s.nats.iter().find(|n| n.index == k).cloned() else {
        return Err(LabError::Usage(format!("no NATS server {k} (1 to 3)")));
    };
    let what = match c {
        LabNatsCommand::Kill { .. } => {
            sys::kill_now(&n.proc.into_iter().collect::<Vec<_>>());
            "killed"
        }
        LabNatsCommand::Start { .. } => {
            node::start_nats(&mut s, k)?;
            "running"
        }
    };
    s.save()?;
    printer.message(
        &format!("nats{k} ({}): {what}", n.url()),
        &json!({"server": k, "url": n.url(), "state": what}),
    );
    Ok(())
}
