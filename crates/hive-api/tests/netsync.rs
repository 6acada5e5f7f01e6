//! The switch sync against a real (sandboxed) Open vSwitch with the dummy datapath: the bridge
//! follows the store, ports plugged and unplugged by the "hypervisor" are noticed, a restart
//! and hand-made drift are repaired, a missing switch is reported once without harm, and a
//! store that is away at start is waited for without touching the switch.
//!
//! Needs Open vSwitch (`apt-get install -y openvswitch-switch`); fails, never skips, without it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Fault, FaultyStore};

use hive_api::netsync::{
    NetSync, NetSyncOptions, NodePlane, SwitchFacts, compiled_program, read_switch_facts,
};
use hive_kv::memory::MemoryStore;
use hive_kv::nats::{NatsOptions, NatsStore};
use hive_kv::testing::NatsServer;
use hive_ovs::{Frame, L4, OvsSwitch, Sandbox, SandboxMode, Switch, TraceResult};
use hive_vpc::compile::{NodeState, ROUTER_MAC, compile};
use hive_vpc::config::VpcConfig;
use hive_vpc::eni::CreateInterface;
use hive_vpc::flow::FlowProgram;
use hive_vpc::model::{
    Direction, NetworkInterface, Peer, PortRange, Protocol, SecurityGroup, Subnet, VpcId,
};
use hive_vpc::security_group::RuleSpec;
use hive_vpc_store::nodes::NodeConfig;
use hive_vpc_store::nodes::{NodeRegistry, tunnel_port_name};
use hive_vpc_store::{RepoOptions, VpcRepo};

const BR: &str = "hive-vpc0";
const ACCOUNT: &str = "000000000000";
const WAIT: Duration = Duration::from_secs(20);

fn sandbox() -> Sandbox {
    Sandbox::start(SandboxMode::Dummy).unwrap_or_else(|e| {
        panic!("these tests need Open vSwitch (apt-get install -y openvswitch-switch): {e}")
    })
}

fn options(sb: &Sandbox) -> NetSyncOptions {
    let mut o = NetSyncOptions::from_config(&VpcConfig::default());
    o.ovs = sb.config(BR);
    o.port_poll = Duration::from_millis(100);
    o.debounce = Duration::from_millis(20);
    o.reconcile_every = Duration::from_secs(60);
    o.retry_every = Duration::from_millis(200);
    o
}

async fn repo() -> VpcRepo {
    VpcRepo::open(&MemoryStore::new(), &RepoOptions::default())
        .await
        .expect("open the VPC repository")
}

fn tcp(port: u16) -> Protocol {
    Protocol::Tcp(PortRange {
        from: port,
        to: port,
    })
}

fn ingress(protocol: Protocol, peer: Peer) -> RuleSpec {
    RuleSpec {
        direction: Direction::Ingress,
        protocol,
        peer,
        description: None,
    }
}

/// A VPC with one subnet, groups `app` and `web` (web admits SSH from app's members and HTTP
/// from the VPC), and one interface in each.
struct World {
    vpc: VpcId,
    subnet: Subnet,
    app: SecurityGroup,
    web: SecurityGroup,
    a: NetworkInterface,
    b: NetworkInterface,
}

fn ssh_from_app(app: &SecurityGroup) -> RuleSpec {
    ingress(tcp(22), Peer::Group(app.id.clone()))
}

async fn world(repo: &VpcRepo) -> World {
    let new = repo
        .create_vpc(ACCOUNT, "10.20.0.0/16", &[])
        .await
        .expect("create VPC");
    let vpc = new.vpc.id.clone();
    let subnet = repo
        .create_subnet(ACCOUNT, &vpc, "10.20.1.0/24", None, &[])
        .await
        .expect("create subnet");
    let app = repo
        .create_security_group(ACCOUNT, &vpc, "app", "app servers", &[])
        .await
        .expect("create app group");
    let web = repo
        .create_security_group(ACCOUNT, &vpc, "web", "web servers", &[])
        .await
        .expect("create web group");
    repo.authorize(
        ACCOUNT,
        &web.id,
        vec![
            ssh_from_app(&app),
            ingress(tcp(80), Peer::Cidr("10.20.0.0/16".parse().expect("cidr"))),
        ],
    )
    .await
    .expect("authorize web ingress");
    let eni = |groups: Vec<_>, description: &str| CreateInterface {
        private_ip: None,
        groups,
        description: description.into(),
    };
    let a = repo
        .create_network_interface(ACCOUNT, &subnet.id, &eni(vec![app.id.clone()], "a"), &[])
        .await
        .expect("create interface a");
    let b = repo
        .create_network_interface(ACCOUNT, &subnet.id, &eni(vec![web.id.clone()], "b"), &[])
        .await
        .expect("create interface b");
    // New groups allow all egress, as on AWS; the test relies on it for a's side.
    let app = repo
        .get_security_group(ACCOUNT, &app.id)
        .await
        .expect("app group");
    assert!(
        app.rules.iter().any(|r| r.direction == Direction::Egress),
        "a new group allows all egress: {app:?}"
    );
    World {
        vpc,
        subnet,
        app,
        web,
        a,
        b,
    }
}

/// Wait until the sync's program is what the store and the bridge ask for, and the bridge holds
/// exactly that program (`ovs-ofctl diff-flows` clean). Returns the program.
async fn converged(sync: &NetSync, switch: &OvsSwitch, repo: &VpcRepo, why: &str) -> FlowProgram {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let facts = read_switch_facts(switch).expect("read the bridge");
        let expected = compiled_program(repo, &facts, &VpcConfig::default())
            .await
            .expect("compile the stored state");
        let drift = switch.drift(&expected).expect("diff-flows");
        if *sync.program() == expected && drift.is_clean() {
            return expected;
        }
        let last = format!(
            "sync program {} flows, expected {}; drift: {drift}; status {:?}",
            sync.program().len(),
            expected.len(),
            sync.status()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: never converged: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn trace_tcp(
    sb: &Sandbox,
    from: (&NetworkInterface, u32),
    to: &NetworkInterface,
    port: u16,
) -> TraceResult {
    let (src, in_port) = from;
    let flow = format!(
        "in_port={in_port},dl_src={},dl_dst={},tcp,nw_src={},nw_dst={},nw_ttl=64,tcp_src=40000,tcp_dst={port}",
        src.mac, ROUTER_MAC, src.private_ip, to.private_ip
    );
    sb.trace(BR, &flow, &["trk,new"]).expect("ofproto/trace")
}

/// A real TCP SYN from `src` to `dst:port` (through the router MAC), for
/// `netdev-dummy/receive`.
fn syn(src: &NetworkInterface, dst: &NetworkInterface, sport: u16, port: u16) -> String {
    Frame {
        src_mac: src.mac.0,
        dst_mac: ROUTER_MAC.0,
        vlan: None,
        src: src.private_ip,
        dst: dst.private_ip,
        l4: L4::Tcp {
            src: sport,
            dst: port,
            flags: 0x02,
            seq: 1000,
            ack: 0,
        },
    }
    .hex()
}

/// Packets sent out of `port` so far.
fn tx(sb: &Sandbox, port: &str) -> u64 {
    sb.tx_packets(BR, port).expect("port statistics")
}

/// Wait until the sync has set up the bridge and installed its first program.
async fn online(sync: &NetSync) {
    let (status, online) = sync.wait_for(WAIT, |s| s.switch_online && s.in_sync).await;
    assert!(online, "sync never came online: {status:?}");
}

fn base_program() -> FlowProgram {
    compile(&NodeState::default()).expect("the base program compiles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_follows_the_store_and_traces_flip() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let repo = repo().await;
    let w = world(&repo).await;
    let sync = NetSync::start(repo.clone(), options(&sb)).expect("start the sync");
    online(&sync).await;

    // The hypervisor plugs the two interfaces.
    let pa = sb
        .add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    let pb = sb
        .add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b");
    let program = converged(&sync, &switch, &repo, "after plugging").await;
    assert!(program.len() > base_program().len());
    let status = sync.status();
    assert_eq!(status.bound_ports, 2, "{status:?}");
    assert!(
        status.last_apply.is_some() && status.errors == 0,
        "{status:?}"
    );

    // a (app) may SSH to b (web); HTTP from the VPC is open; b may not reach a at all.
    let ssh = trace_tcp(&sb, (&w.a, pa), &w.b, 22);
    assert_eq!(ssh.outputs, vec!["pb".to_string()], "{}", ssh.raw);
    assert!(ssh.commits, "{}", ssh.raw);
    let http = trace_tcp(&sb, (&w.a, pa), &w.b, 80);
    assert_eq!(http.outputs, vec!["pb".to_string()], "{}", http.raw);
    let telnet = trace_tcp(&sb, (&w.a, pa), &w.b, 23);
    assert!(telnet.is_drop(), "{}", telnet.raw);
    let back = trace_tcp(&sb, (&w.b, pb), &w.a, 22);
    assert!(back.is_drop(), "{}", back.raw);
    // Real packets through userspace conntrack agree with the traces.
    let sent = tx(&sb, "pb");
    sb.receive("pa", &syn(&w.a, &w.b, 40000, 22))
        .expect("inject SSH SYN");
    assert_eq!(tx(&sb, "pb"), sent + 1, "the SSH SYN reaches b");
    sb.receive("pa", &syn(&w.a, &w.b, 40001, 23))
        .expect("inject telnet SYN");
    assert_eq!(tx(&sb, "pb"), sent + 1, "the telnet SYN is dropped");

    // Revoke SSH from app: the trace flips, HTTP stays.
    let before = sync.status().generation;
    repo.revoke(ACCOUNT, &w.web.id, &[ssh_from_app(&w.app)])
        .await
        .expect("revoke");
    let revoked_at = std::time::Instant::now();
    let (status, applied) = sync.wait_for(WAIT, |s| s.generation > before).await;
    assert!(applied, "{status:?}");
    eprintln!(
        "revoke to applied diff: {:?} (apply {:?}, {} flows touched, program {} flows)",
        revoked_at.elapsed(),
        status.last_apply,
        status.last_apply_flows,
        status.program_flows
    );
    converged(&sync, &switch, &repo, "after revoking").await;
    assert!(sync.status().last_apply_flows > 0);
    let ssh = trace_tcp(&sb, (&w.a, pa), &w.b, 22);
    assert!(ssh.is_drop(), "revoked SSH still passes: {}", ssh.raw);
    let sent = tx(&sb, "pb");
    sb.receive("pa", &syn(&w.a, &w.b, 40002, 22))
        .expect("inject SSH SYN");
    assert_eq!(
        tx(&sb, "pb"),
        sent,
        "a new SSH connection is refused after revoke"
    );
    let http = trace_tcp(&sb, (&w.a, pa), &w.b, 80);
    assert_eq!(http.outputs, vec!["pb".to_string()], "{}", http.raw);

    // Authorize it again: it flips back.
    repo.authorize(ACCOUNT, &w.web.id, vec![ssh_from_app(&w.app)])
        .await
        .expect("authorize again");
    converged(&sync, &switch, &repo, "after authorizing again").await;
    let ssh = trace_tcp(&sb, (&w.a, pa), &w.b, 22);
    assert_eq!(ssh.outputs, vec!["pb".to_string()], "{}", ssh.raw);

    // Delete everything: only the base program remains (ports still plugged, bound to nothing).
    for eni in [&w.a, &w.b] {
        repo.delete_network_interface(ACCOUNT, &eni.id)
            .await
            .expect("delete interface");
    }
    for g in [&w.web, &w.app] {
        repo.delete_security_group(ACCOUNT, &g.id)
            .await
            .expect("delete group");
    }
    repo.delete_subnet(ACCOUNT, &w.subnet.id)
        .await
        .expect("delete subnet");
    repo.delete_vpc(ACCOUNT, &w.vpc).await.expect("delete VPC");
    let program = converged(&sync, &switch, &repo, "after deleting everything").await;
    assert_eq!(program, base_program());
    assert!(trace_tcp(&sb, (&w.a, pa), &w.b, 80).is_drop());
    assert_eq!(sync.status().errors, 0, "{:?}", sync.status());
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_and_hand_made_drift_are_repaired_from_the_store() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let repo = repo().await;
    // The default network too, so that the gateway port takes part.
    repo.bootstrap_default(ACCOUNT, &VpcConfig::default())
        .await
        .expect("bootstrap the default network");
    let w = world(&repo).await;
    let sync = NetSync::start(repo.clone(), options(&sb)).expect("start");
    online(&sync).await;
    sb.add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    sb.add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b");
    let program = converged(&sync, &switch, &repo, "first start").await;
    // The gateway port's MAC (mac_in_use of hive-int0) is part of the program.
    let facts = read_switch_facts(&switch).expect("facts");
    let gw = facts.gateway.expect("hive-int0 is on the bridge");
    let mac = gw.mac.expect("hive-int0 has a MAC");
    assert!(
        program.to_ofctl().contains(&mac.to_string()),
        "gateway MAC {mac} not in the program"
    );
    sync.stop().await;

    // Someone wipes the table while hive-api is down; the restart rebuilds it from the store.
    sb.ofctl(&["-O", "OpenFlow13", "del-flows", BR])
        .expect("del-flows");
    assert!(switch.dump_flows().expect("dump").is_empty());
    let sync = NetSync::start(repo.clone(), options(&sb)).expect("restart");
    online(&sync).await;
    let again = converged(&sync, &switch, &repo, "after restart").await;
    assert_eq!(again, program);
    assert!(switch.drift(&program).expect("diff-flows").is_clean());
    // Everything was restored but the fail-closed drop, which the bridge setup puts into an
    // empty table before the program goes in.
    let repaired = sync.status().repaired_flows;
    assert_eq!(repaired, program.len() as u64 - 1, "{:?}", sync.status());
    sync.stop().await;

    // Drift while running is repaired by the periodic reconcile.
    let mut fast = options(&sb);
    fast.reconcile_every = Duration::from_millis(300);
    let sync = NetSync::start(repo.clone(), fast).expect("start with fast reconcile");
    online(&sync).await;
    converged(&sync, &switch, &repo, "third start").await;
    sb.ofctl(&["-O", "OpenFlow13", "del-flows", BR, "table=60"])
        .expect("del-flows table 60");
    sb.ofctl(&[
        "-O",
        "OpenFlow13",
        "add-flow",
        BR,
        "table=0,priority=65000,actions=drop",
    ])
    .expect("rogue flow");
    let before = sync.status().repaired_flows;
    let (status, repaired) = sync.wait_for(WAIT, |s| s.repaired_flows > before).await;
    assert!(repaired, "{status:?}");
    converged(&sync, &switch, &repo, "after drift repair").await;

    // The bridge deleted by hand: the sync sets it up again and reprograms it (the ports come
    // back with the hypervisor).
    sb.vsctl(&["del-br", BR]).expect("del-br");
    let (status, lost) = sync.wait_for(WAIT, |s| !s.switch_online).await;
    assert!(lost, "{status:?}");
    online(&sync).await;
    sb.add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a again");
    sb.add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b again");
    let rebuilt = converged(&sync, &switch, &repo, "after the bridge was recreated").await;
    // hive-int0 came back with a new MAC: the gateway flows follow it.
    let new_mac = read_switch_facts(&switch)
        .expect("facts")
        .gateway
        .and_then(|g| g.mac)
        .expect("hive-int0 has a MAC");
    let text = rebuilt.to_ofctl();
    assert!(
        text.contains(&new_mac.to_string()),
        "new gateway MAC missing"
    );
    assert!(
        new_mac == mac || !text.contains(&mac.to_string()),
        "old gateway MAC still in the program"
    );
    assert_eq!(rebuilt.len(), program.len());
    sync.stop().await;
}

/// The store is away when the sync starts: it retries (counting each failure), leaves the
/// program an earlier run installed exactly as it is (no bridge set-up, no flow removed), and
/// programs the bridge from the store once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_away_at_start_is_waited_for_without_touching_the_switch() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let (store, faults) = FaultyStore::over(Arc::new(MemoryStore::new()));
    let repo = VpcRepo::open(store.as_ref(), &RepoOptions::default())
        .await
        .expect("open the VPC repository");
    let w = world(&repo).await;
    let sync = NetSync::start(repo.clone(), options(&sb)).expect("start");
    online(&sync).await;
    sb.add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    let program = converged(&sync, &switch, &repo, "an earlier run").await;
    sync.stop().await;

    faults.set(Fault::Down);
    let opening = Arc::clone(&store);
    let sync = NetSync::start_when_ready(options(&sb), move || {
        let store = Arc::clone(&opening);
        async move {
            let repo = VpcRepo::open(store.as_ref(), &RepoOptions::default()).await?;
            Ok((repo, None))
        }
    })
    .expect("start");
    let (status, retried) = sync.wait_for(WAIT, |s| s.errors >= 3).await;
    assert!(retried, "{status:?}");
    assert!(
        !status.switch_online && !status.in_sync,
        "the switch is left alone: {status:?}"
    );
    assert!(
        switch.drift(&program).expect("diff-flows").is_clean(),
        "the earlier program stays in place"
    );

    faults.set(Fault::None);
    online(&sync).await;
    converged(&sync, &switch, &repo, "once the store is back").await;
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugging_and_unplugging_ports_changes_the_program_without_restart() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let repo = repo().await;
    let w = world(&repo).await;
    let sync = NetSync::start(repo.clone(), options(&sb)).expect("start");
    online(&sync).await;
    let unplugged = converged(&sync, &switch, &repo, "nothing plugged").await;
    assert!(!unplugged.to_ofctl().contains("in_port=10,"));

    sb.add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    let (status, seen) = sync.wait_for(WAIT, |s| s.bound_ports == 1).await;
    assert!(seen, "{status:?}");
    let plugged = converged(&sync, &switch, &repo, "a plugged").await;
    assert_ne!(plugged, unplugged);
    assert!(
        plugged.to_ofctl().contains("in_port=10,"),
        "no port security for a"
    );
    assert!(
        plugged.to_ofctl().contains(&w.a.mac.to_string()),
        "a's MAC not in the program"
    );

    // A port without iface-id is not bound; one for an unknown interface binds nothing.
    sb.add_port(BR, "px", None, Some(12)).expect("plug x");
    sb.add_port(BR, "py", Some("eni-00000000000000000"), Some(13))
        .expect("plug y");
    let same = converged(&sync, &switch, &repo, "stray ports").await;
    assert_eq!(same, plugged);

    sb.vsctl(&["del-port", BR, "pa"]).expect("unplug a");
    let (status, seen) = sync
        .wait_for(WAIT, |s| s.bound_ports == 1 && s.in_sync)
        .await;
    assert!(seen, "{status:?}");
    let after = converged(&sync, &switch, &repo, "a unplugged").await;
    assert_eq!(after, unplugged);
    sync.stop().await;
}

/// Counts warnings that say Open vSwitch is not reachable.
struct WarnCounter(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarnCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut m = Message(String::new());
            event.record(&mut m);
            if m.0.contains("Open vSwitch is not reachable") {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn without_open_vswitch_the_sync_warns_once_and_still_compiles() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(WarnCounter(Arc::clone(&warnings)));
    let _guard = tracing::subscriber::set_default(subscriber);

    let nowhere = tempfile::tempdir().expect("tempdir");
    let mut o = NetSyncOptions::from_config(&VpcConfig::default());
    o.ovs.rundir = Some(nowhere.path().join("no-ovs"));
    o.ovs.db = Some(format!(
        "unix:{}",
        nowhere.path().join("no-ovs/db.sock").display()
    ));
    o.ovs.timeout = Duration::from_secs(2);
    o.retry_every = Duration::from_millis(100);
    o.debounce = Duration::from_millis(10);
    let repo = repo().await;
    let w = world(&repo).await;
    let sync = NetSync::start(repo.clone(), o).expect("start without a switch");

    let expected = compiled_program(&repo, &SwitchFacts::default(), &VpcConfig::default())
        .await
        .expect("compile");
    let deadline = tokio::time::Instant::now() + WAIT;
    while *sync.program() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "program never compiled: {:?}",
            sync.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A change in the store is still compiled, though nothing can be installed.
    repo.revoke(ACCOUNT, &w.web.id, &[ssh_from_app(&w.app)])
        .await
        .expect("revoke");
    let expected = compiled_program(&repo, &SwitchFacts::default(), &VpcConfig::default())
        .await
        .expect("compile");
    while *sync.program() != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "change never compiled: {:?}",
            sync.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several retries later: still one warning, the sync alive, the switch reported offline.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = sync.status();
    assert!(!status.switch_online && !status.in_sync, "{status:?}");
    assert!(
        status.errors >= 1 && status.last_error.is_some(),
        "{status:?}"
    );
    assert_eq!(warnings.load(Ordering::SeqCst), 1, "exactly one warning");
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_through_another_process_on_one_jetstream_reach_the_switch() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let nats = NatsServer::start(); // fails naming `apt-get install -y nats-server`
    let connect = |name: &str| {
        let url = nats.url();
        let options = NatsOptions {
            client_name: name.into(),
            ..NatsOptions::default()
        };
        async move {
            NatsStore::connect(&url, options)
                .await
                .expect("connect to NATS")
        }
    };
    // Two connections stand for two hive-api processes: this node's and another one's.
    let here = connect("node-a").await;
    let there = connect("node-b").await;
    let repo_here = VpcRepo::open(&here, &RepoOptions::default())
        .await
        .expect("open the repository");
    let repo_there = VpcRepo::open(&there, &RepoOptions::default())
        .await
        .expect("open the repository elsewhere");
    let sync = NetSync::start(repo_here.clone(), options(&sb)).expect("start");
    online(&sync).await;
    let w = world(&repo_there).await;
    let pa = sb
        .add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    sb.add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b");
    converged(&sync, &switch, &repo_here, "state written elsewhere").await;
    let ssh = trace_tcp(&sb, (&w.a, pa), &w.b, 22);
    assert_eq!(ssh.outputs, vec!["pb".to_string()], "{}", ssh.raw);

    repo_there
        .revoke(ACCOUNT, &w.web.id, &[ssh_from_app(&w.app)])
        .await
        .expect("revoke elsewhere");
    converged(&sync, &switch, &repo_here, "revoked elsewhere").await;
    let ssh = trace_tcp(&sb, (&w.a, pa), &w.b, 22);
    assert!(ssh.is_drop(), "{}", ssh.raw);
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_changes_is_applied_in_few_bundles() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let repo = repo().await;
    let w = world(&repo).await;
    let mut o = options(&sb);
    o.debounce = Duration::from_millis(400);
    let sync = NetSync::start(repo.clone(), o).expect("start");
    online(&sync).await;
    sb.add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b");
    converged(&sync, &switch, &repo, "before the burst").await;
    let before = sync.status().applies;
    // Ten rules in quick succession (one write each).
    for port in 1000..1010 {
        repo.authorize(
            ACCOUNT,
            &w.web.id,
            vec![ingress(tcp(port), Peer::Group(w.app.id.clone()))],
        )
        .await
        .expect("authorize");
    }
    let program = converged(&sync, &switch, &repo, "after the burst").await;
    assert!(
        program.to_ofctl().contains("tp_dst=1009"),
        "last rule missing"
    );
    let applies = sync.status().applies - before;
    assert!(
        (1..=3).contains(&applies),
        "ten changes took {applies} applies"
    );
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_the_switch_refuses_leaves_the_bridge_closed_until_it_fits() {
    let sb = sandbox();
    let switch = sb.switch(BR).expect("switch");
    let repo = repo().await;
    let w = world(&repo).await;
    let mut o = options(&sb);
    o.reconcile_every = Duration::from_millis(300);
    let sync = NetSync::start(repo.clone(), o).expect("start");
    online(&sync).await;
    let pa = sb
        .add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a");
    sb.add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b");
    converged(&sync, &switch, &repo, "before the limit").await;
    assert_eq!(
        trace_tcp(&sb, (&w.a, pa), &w.b, 80).outputs,
        vec!["pb".to_string()]
    );

    // Table 10 (IPv4 destinations) may hold no more flows: the next program does not fit.
    sb.vsctl(&[
        "--",
        "--id=@t",
        "create",
        "flow_table",
        "flow_limit=1",
        "overflow_policy=refuse",
        "--",
        "set",
        "bridge",
        BR,
        "flow_tables:10=@t",
    ])
    .expect("limit table 10");
    let c = repo
        .create_network_interface(
            ACCOUNT,
            &w.subnet.id,
            &CreateInterface {
                private_ip: None,
                groups: vec![w.app.id.clone()],
                description: "c".into(),
            },
            &[],
        )
        .await
        .expect("create interface c");
    sb.add_port(BR, "pc", Some(c.id.as_str()), Some(12))
        .expect("plug c");
    let (status, closed) = sync.wait_for(WAIT, |s| s.fail_closed > 0).await;
    assert!(closed, "{status:?}");
    // Refused bundles change nothing, so between attempts the bridge holds the base alone.
    let drift = switch.drift(&base_program()).expect("diff-flows");
    assert!(drift.is_clean(), "not the base program: {drift}");
    assert!(
        trace_tcp(&sb, (&w.a, pa), &w.b, 80).is_drop(),
        "a refused program must leave the bridge closed"
    );

    // Room again: the next rebuild puts the whole program in.
    sb.vsctl(&["clear", "bridge", BR, "flow_tables"])
        .expect("lift the limit");
    converged(&sync, &switch, &repo, "after lifting the limit").await;
    assert_eq!(
        trace_tcp(&sb, (&w.a, pa), &w.b, 80).outputs,
        vec!["pb".to_string()]
    );
    let status = sync.status();
    assert!(
        status.errors > 0 && status.last_error.is_some(),
        "{status:?}"
    );
    sync.stop().await;
}

/// A node of a two-node cluster on `store`: heartbeat 200 ms, gone after 1 s of silence.
async fn cluster_node(store: &MemoryStore, name: &str, tunnel_ip: &str) -> NodePlane {
    let config = NodeConfig {
        name: name.into(),
        tunnel_ip: Some(tunnel_ip.parse().expect("address")),
        heartbeat_ms: 200,
        node_ttl_ms: 1000,
        ..NodeConfig::default()
    };
    let registry = NodeRegistry::open(store, &config, 1)
        .await
        .expect("open the node registry");
    NodePlane {
        name: name.into(),
        config,
        registry,
    }
}

/// Wait until `switch` has exactly the tunnel ports `want` (name, remote address) with ofports.
async fn tunnels_become(switch: &OvsSwitch, want: &[(String, &str)], why: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got: Vec<(String, String)> = switch
            .tunnels()
            .expect("tunnel ports")
            .into_iter()
            .filter(|t| t.ofport.is_some())
            .map(|t| (t.spec.name, t.spec.remote_ip.to_string()))
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, ip)| (n.clone(), ip.to_string()))
            .collect();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: tunnels {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one store, each with its own switch: each bridge gets one tunnel port to the
/// other node; an interface bound on the other node is reached through it with the VPC's VLAN as
/// tunnel key, the sender's node checks egress and the receiver's node ingress; when a node stops
/// heartbeating, the other drops its tunnel and its interfaces within the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_reach_each_others_interfaces_through_one_tunnel() {
    let store = MemoryStore::new();
    let repo = VpcRepo::open(&store, &RepoOptions::default())
        .await
        .expect("open the VPC repository");
    let w = world(&repo).await;
    let vlan = repo.get_vpc(ACCOUNT, &w.vpc).await.expect("vpc").vlan;
    let (sa, sb) = (sandbox(), sandbox());
    let (switch_a, switch_b) = (
        sa.switch(BR).expect("switch"),
        sb.switch(BR).expect("switch"),
    );
    let node_a = cluster_node(&store, "node-a", "192.0.2.1").await;
    let node_b = cluster_node(&store, "node-b", "192.0.2.2").await;
    let sync_a = NetSync::start(repo.clone(), options(&sa).with_node(node_a)).expect("start a");
    let sync_b = NetSync::start(repo.clone(), options(&sb).with_node(node_b)).expect("start b");
    online(&sync_a).await;
    online(&sync_b).await;
    let pa = sa
        .add_port(BR, "pa", Some(w.a.id.as_str()), Some(10))
        .expect("plug a on node a");
    let pb = sb
        .add_port(BR, "pb", Some(w.b.id.as_str()), Some(11))
        .expect("plug b on node b");
    let to_b = tunnel_port_name("node-b");
    let to_a = tunnel_port_name("node-a");
    tunnels_become(&switch_a, &[(to_b.clone(), "192.0.2.2")], "node a").await;
    tunnels_become(&switch_b, &[(to_a.clone(), "192.0.2.1")], "node b").await;

    // Node a reaches b through the tunnel once b's binding and the tunnel are in its program.
    let deadline = tokio::time::Instant::now() + WAIT;
    let ssh = loop {
        let t = trace_tcp(&sa, (&w.a, pa), &w.b, 22);
        if t.outputs == vec![to_b.clone()] || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ssh.outputs, vec![to_b.clone()], "{}", ssh.raw);
    assert!(
        ssh.raw.contains(&format!("set_field:{vlan:#x}->tun_id")),
        "the VPC travels as the tunnel key: {}",
        ssh.raw
    );
    // Egress is the sender node's business: a's group allows all egress, so telnet leaves a's
    // node too; b's node refuses it at ingress (web admits SSH from app and HTTP only).
    let telnet = trace_tcp(&sa, (&w.a, pa), &w.b, 23);
    assert_eq!(telnet.outputs, vec![to_b.clone()], "{}", telnet.raw);
    let tun_a = switch_b
        .tunnels()
        .expect("tunnels")
        .into_iter()
        .find(|t| t.spec.name == to_a)
        .and_then(|t| t.ofport)
        .expect("tunnel to a");
    let arriving = |port: u16| {
        format!(
            "in_port={tun_a},tun_id={vlan:#x},dl_src={},dl_dst={},tcp,nw_src={},nw_dst={},nw_ttl=64,tcp_src=40000,tcp_dst={port}",
            w.a.mac, w.b.mac, w.a.private_ip, w.b.private_ip
        )
    };
    let ssh_in = sb.trace(BR, &arriving(22), &["trk,new"]).expect("trace");
    assert_eq!(ssh_in.outputs, vec!["pb".to_string()], "{}", ssh_in.raw);
    let telnet_in = sb.trace(BR, &arriving(23), &["trk,new"]).expect("trace");
    assert!(telnet_in.is_drop(), "{}", telnet_in.raw);
    // A spoofed source behind the tunnel is dropped.
    let spoofed = arriving(22).replace(&w.a.private_ip.to_string(), "10.20.1.250");
    assert!(
        sb.trace(BR, &spoofed, &["trk,new"])
            .expect("trace")
            .is_drop()
    );
    // Each bridge holds exactly what its node compiles (remote interfaces included).
    for (sync, switch) in [(&sync_a, &switch_a), (&sync_b, &switch_b)] {
        let drift = switch.drift(&sync.program()).expect("diff-flows");
        assert!(drift.is_clean(), "{drift}");
    }

    // Node b stops: node a drops its tunnel and b's interface within the TTL (1 s) + a beat.
    sync_b.stop().await;
    let stopped = std::time::Instant::now();
    tunnels_become(&switch_a, &[], "node a after b stopped").await;
    let gone = stopped.elapsed();
    eprintln!("node b stopped; node a dropped its tunnel after {gone:?}");
    assert!(gone < Duration::from_secs(3), "{gone:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = trace_tcp(&sa, (&w.a, pa), &w.b, 22);
        if t.is_drop() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", t.raw);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Node b's switch keeps enforcing its last program while its sync is down (fail secure).
    let ssh_in = sb.trace(BR, &arriving(22), &["trk,new"]).expect("trace");
    assert_eq!(ssh_in.outputs, vec!["pb".to_string()], "{}", ssh_in.raw);
    let _ = pb;
    sync_a.stop().await;
}
