//! VMs as a hypervisor makes them: a namespace whose `eth0` carries the ENI's MAC and address,
//! its veth peer plugged into the node's `hive-vpc0` with `external_ids:iface-id=<eni-id>`.

use std::time::{Duration, Instant};

use hive_kv::nats::{NatsOptions, NatsStore};
use hive_ovs::exec::Tool;
use hive_vpc::model::NetworkInterfaceId;
use hive_vpc_store::{RepoOptions, VpcRepo};

use super::error::LabError;
use super::node::ovs;
use super::state::{LabState, LabVm, Names};
use super::sys;

/// How long `vm create` waits for the node's `hive-api` to program the new port.
const PROGRAM_WAIT: Duration = Duration::from_secs(15);

/// What the store says about an interface: MAC, address with prefix, gateway.
pub struct EniFacts {
    /// MAC.
    pub mac: String,
    /// `IP/prefix`.
    pub address: String,
    /// The subnet's gateway.
    pub gateway: std::net::Ipv4Addr,
}

/// Look the interface up in the lab's store.
pub async fn lookup(state: &LabState, eni: &str) -> Result<EniFacts, LabError> {
    let id = NetworkInterfaceId::parse(eni).map_err(|e| LabError::Usage(e.to_string()))?;
    let store = NatsStore::connect(&state.nats_urls(), NatsOptions::default())
        .await
        .map_err(|e| LabError::Store(e.to_string()))?;
    let options = RepoOptions {
        replicas: super::state::NATS_SERVERS,
        ..RepoOptions::default()
    };
    let repo = VpcRepo::open(&store, &options)
        .await
        .map_err(|e| LabError::Store(e.to_string()))?;
    let Some((account, interface)) = repo
        .locate_interface(&id)
        .await
        .map_err(|e| LabError::Store(e.to_string()))?
    else {
        return Err(LabError::Usage(format!(
            "no network interface {eni} in the lab's store (create one: aws ec2 create-network-interface --subnet-id ...)"
        )));
    };
    let subnet = repo
        .get_subnet(&account, &interface.subnet_id)
        .await
        .map_err(|e| LabError::Store(e.to_string()))?;
    Ok(EniFacts {
        mac: interface.mac.to_string(),
        address: format!("{}/{}", interface.private_ip, subnet.cidr_block.prefix()),
        gateway: subnet.gateway(),
    })
}

/// Make the VM for `eni` on node `node` and plug it; recorded in the state before anything
/// is made, so that `down` finds it even if a step fails.
pub fn create(
    state: &mut LabState,
    eni: &str,
    node: usize,
    facts: &EniFacts,
) -> Result<LabVm, LabError> {
    if let Some(vm) = state.vms.iter().find(|v| v.eni == eni) {
        return Err(LabError::Usage(format!(
            "{eni} is already plugged in as {} on node {}",
            vm.namespace, vm.node
        )));
    }
    let names = Names::new(&state.name)?;
    let host = state.node(node)?.clone();
    let k = state.last_vm + 1;
    let vm = LabVm {
        index: k,
        eni: eni.to_owned(),
        node,
        namespace: names.vm_ns(k),
        tap: names.vm_tap(k),
        mac: facts.mac.clone(),
        address: facts.address.clone(),
        gateway: facts.gateway,
    };
    state.last_vm = k;
    state.vms.push(vm.clone());
    state.save()?;
    let (ns, tap, hv) = (
        vm.namespace.as_str(),
        vm.tap.as_str(),
        host.namespace.as_str(),
    );
    let made = (|| -> Result<(), LabError> {
        sys::ip(&["netns", "add", ns])?;
        sys::ip(&[
            "link", "add", tap, "netns", hv, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        sys::ip(&["-n", ns, "link", "set", "lo", "up"])?;
        sys::ip(&["-n", ns, "link", "set", "eth0", "address", &vm.mac])?;
        sys::ip(&["-n", ns, "addr", "add", &vm.address, "dev", "eth0"])?;
        sys::ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        // The userspace datapath does not fill in checksums left to offload.
        sys::in_ns(ns, "ethtool", &["-K", "eth0", "tx", "off"])?;
        sys::default_route(ns, vm.gateway)?;
        sys::ip(&["-n", hv, "link", "set", tap, "up"])?;
        ovs(
            &host,
            Tool::Vsctl,
            &[
                "add-port",
                "hive-vpc0",
                tap,
                "--",
                "set",
                "interface",
                tap,
                &format!("external_ids:iface-id={eni}"),
                &format!("external_ids:attached-mac={}", vm.mac),
            ],
        )?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = remove(state, eni);
        return Err(e);
    }
    Ok(vm)
}

/// Wait until node `vm.node`'s switch has flows for the VM's port (its `hive-api` noticed the
/// plug); false when it did not within the limit (e.g. that `hive-api` is stopped).
pub fn wait_programmed(state: &LabState, vm: &LabVm) -> bool {
    let Ok(host) = state.node(vm.node) else {
        return false;
    };
    let Ok(port) = ovs(host, Tool::Vsctl, &["get", "interface", &vm.tap, "ofport"]) else {
        return false;
    };
    let port = port.trim().to_owned();
    let started = Instant::now();
    while started.elapsed() < PROGRAM_WAIT {
        let flows = ovs(
            host,
            Tool::Ofctl,
            &[
                "-O",
                "OpenFlow13",
                "dump-flows",
                "hive-vpc0",
                &format!("table=0,in_port={port}"),
            ],
        )
        .unwrap_or_default();
        if flows.lines().any(|l| l.contains("actions=")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Unplug and delete the VM of `eni` (what exists of it).
pub fn remove(state: &mut LabState, eni: &str) -> Result<LabVm, LabError> {
    let Some(pos) = state.vms.iter().position(|v| v.eni == eni) else {
        return Err(LabError::Usage(format!(
            "{eni} has no VM in lab {} (see hive-cli lab status)",
            state.name
        )));
    };
    let vm = state.vms[pos].clone();
    if let Ok(host) = state.node(vm.node) {
        // Best effort: the switch may be stopped; the port row then goes with the lab.
        let _ = ovs(
            host,
            Tool::Vsctl,
            &["--if-exists", "del-port", "hive-vpc0", &vm.tap],
        );
        if sys::ip(&["-n", &host.namespace, "link", "show", "dev", &vm.tap]).is_ok() {
            sys::ip(&["-n", &host.namespace, "link", "del", &vm.tap])?;
        }
    }
    if sys::namespaces().contains(&vm.namespace) {
        sys::terminate(&sys::processes_in(&vm.namespace));
        sys::ip(&["netns", "del", &vm.namespace])?;
    }
    state.vms.remove(pos);
    state.save()?;
    Ok(vm)
}

/// Run `command` inside the VM of `eni` with our standard streams; its exit code (128 + the
/// signal when killed).
pub fn exec(state: &LabState, eni: &str, command: &[String]) -> Result<i32, LabError> {
    let Some(vm) = state.vms.iter().find(|v| v.eni == eni) else {
        return Err(LabError::Usage(format!(
            "{eni} has no VM in lab {} (see hive-cli lab status)",
            state.name
        )));
    };
    let status = std::process::Command::new(sys::find("ip")?)
        .args(["netns", "exec", &vm.namespace])
        .args(command)
        .status()
        .map_err(LabError::io(format!(
            "running a command in {}",
            vm.namespace
        )))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
