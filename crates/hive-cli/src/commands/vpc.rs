//! `hive-cli vpc ...`: EC2 networking administered directly on the store (the repository the
//! server's EC2 actions use), the node's compiled flow program, and packet traces.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{Value, json};

use hive_kv::KvStore;
use hive_node::netsync::{NetSyncOptions, SwitchFacts, compiled_program, read_switch_facts};
use hive_ovs::{OvsSwitch, Switch as _};
use hive_vpc::compile::{NodeState, ROUTER_MAC};
use hive_vpc::eni::CreateInterface;
use hive_vpc::flow::FlowProgram;
use hive_vpc::model::{
    Direction, NetworkInterface, NetworkInterfaceId, Peer, Protocol, SecurityGroupId,
    SecurityGroupRule, SubnetId, VpcId,
};
use hive_vpc::reference::{CtState, L3, Packet, Reason, Transport, decide};
use hive_vpc::security_group::{RuleInput, parse_rule};
use hive_vpc_store::{NodeBindings, RepoOptions, VpcRepo};

use crate::cli::{
    FlowsArgs, InterfaceCommand, RuleArgs, SecurityGroupCommand, SubnetCommand, TraceArgs,
    VpcCommand, VpcFilter,
};
use crate::context::Context;
use crate::error::CliError;
use crate::output::{Format, Table};

/// Open the network repository in `store`.
pub async fn repo_on(ctx: &Context, store: &dyn KvStore) -> Result<VpcRepo, CliError> {
    let options = RepoOptions {
        replicas: ctx.config.storage.replicas.max(1),
        ..RepoOptions::default()
    };
    Ok(VpcRepo::open(store, &options).await?)
}

/// `init`'s part: the default network from `[vpc]` (VPC on VLAN 1, default subnet and
/// security group), as the server makes it; a sentence for the table, or JSON null when
/// VPC networking is disabled.
pub async fn init_default(ctx: &Context, store: Arc<dyn KvStore>) -> Result<Value, CliError> {
    if !ctx.config.vpc.enabled {
        return Ok(Value::Null);
    }
    let repo = repo_on(ctx, store.as_ref()).await?;
    let outcome = repo
        .bootstrap_default(&ctx.account, &ctx.config.vpc)
        .await?;
    let n = &outcome.network;
    Ok(Value::String(format!(
        "default network {}: {} {} (VLAN {}), subnet {} {}, security group {}",
        if outcome.created {
            "created"
        } else {
            "present"
        },
        n.vpc.id,
        n.vpc.cidr_block,
        n.vpc.vlan,
        n.subnet.id,
        n.subnet.cidr_block,
        n.default_group.id
    )))
}

/// Run a `vpc` command.
pub async fn run(ctx: &Context, command: &VpcCommand) -> Result<(), CliError> {
    let store = ctx.store().await?;
    let repo = repo_on(ctx, store.as_ref()).await?;
    let acct = ctx.account.as_str();
    match command {
        VpcCommand::List => {
            let vpcs = repo.list_vpcs(acct).await?;
            let mut t = Table::new(["VPC ID", "CIDR", "VLAN", "DEFAULT", "STATE"]);
            let mut out = Vec::new();
            for v in &vpcs {
                t.row([
                    v.id.to_string(),
                    v.cidr_block.to_string(),
                    v.vlan.to_string(),
                    v.is_default.to_string(),
                    format!("{:?}", v.state).to_lowercase(),
                ]);
                out.push(json!({"vpc_id": v.id.as_str(), "cidr_block": v.cidr_block.to_string(), "vlan": v.vlan, "is_default": v.is_default, "tags": v.tags}));
            }
            ctx.printer.emit(&t, &out);
        }
        VpcCommand::Create { cidr } => {
            let new = repo.create_vpc(acct, cidr, &[]).await?;
            ctx.printer.message(
                &format!(
                    "created {} {} on VLAN {} (default security group {})",
                    new.vpc.id, new.vpc.cidr_block, new.vpc.vlan, new.default_group.id
                ),
                &json!({"vpc_id": new.vpc.id.as_str(), "vlan": new.vpc.vlan, "default_group_id": new.default_group.id.as_str()}),
            );
        }
        VpcCommand::Delete { vpc_id } => {
            repo.delete_vpc(acct, &VpcId::parse(vpc_id)?).await?;
            ctx.printer
                .message(&format!("deleted {vpc_id}"), &json!({"deleted": vpc_id}));
        }
        VpcCommand::Subnet(c) => subnet(ctx, &repo, acct, c).await?,
        VpcCommand::SecurityGroup(c) => security_group(ctx, &repo, acct, c).await?,
        VpcCommand::Interface(c) => interface(ctx, &repo, acct, c).await?,
        VpcCommand::Flows(a) => flows(ctx, store.as_ref(), &repo, a).await?,
        VpcCommand::Trace(a) => trace(ctx, &repo, acct, a).await?,
        VpcCommand::Nodes => nodes(ctx, store.as_ref()).await?,
    }
    Ok(())
}

async fn subnet(
    ctx: &Context,
    repo: &VpcRepo,
    acct: &str,
    c: &SubnetCommand,
) -> Result<(), CliError> {
    match c {
        SubnetCommand::List(VpcFilter { vpc_id }) => {
            let subnets = repo.list_subnets(acct).await?;
            let mut t = Table::new(["SUBNET ID", "VPC ID", "CIDR", "GATEWAY", "FREE", "ZONE"]);
            let mut out = Vec::new();
            for s in subnets
                .iter()
                .filter(|s| vpc_id.as_deref().is_none_or(|v| s.vpc_id.as_str() == v))
            {
                t.row([
                    s.id.to_string(),
                    s.vpc_id.to_string(),
                    s.cidr_block.to_string(),
                    s.gateway().to_string(),
                    s.available_ip_address_count().to_string(),
                    s.availability_zone.clone(),
                ]);
                out.push(json!({"subnet_id": s.id.as_str(), "vpc_id": s.vpc_id.as_str(), "cidr_block": s.cidr_block.to_string(), "gateway": s.gateway().to_string(), "available_ip_address_count": s.available_ip_address_count()}));
            }
            ctx.printer.emit(&t, &out);
        }
        SubnetCommand::Create { vpc_id, cidr } => {
            let s = repo
                .create_subnet(acct, &VpcId::parse(vpc_id)?, cidr, None, &[])
                .await?;
            ctx.printer.message(
                &format!(
                    "created {} {} (gateway {})",
                    s.id,
                    s.cidr_block,
                    s.gateway()
                ),
                &json!({"subnet_id": s.id.as_str(), "cidr_block": s.cidr_block.to_string()}),
            );
        }
        SubnetCommand::Delete { subnet_id } => {
            repo.delete_subnet(acct, &SubnetId::parse(subnet_id)?)
                .await?;
            ctx.printer.message(
                &format!("deleted {subnet_id}"),
                &json!({"deleted": subnet_id}),
            );
        }
    }
    Ok(())
}

/// `tcp 22`, `udp 53-54`, `icmp 8:0`, `all`.
fn protocol_text(p: &Protocol) -> String {
    match p {
        Protocol::All => "all".into(),
        Protocol::Tcp(r) if r.from == r.to => format!("tcp {}", r.from),
        Protocol::Tcp(r) => format!("tcp {}-{}", r.from, r.to),
        Protocol::Udp(r) if r.from == r.to => format!("udp {}", r.from),
        Protocol::Udp(r) => format!("udp {}-{}", r.from, r.to),
        Protocol::Icmp { icmp_type, code } => match (icmp_type, code) {
            (None, _) => "icmp all".into(),
            (Some(t), None) => format!("icmp {t}"),
            (Some(t), Some(c)) => format!("icmp {t}:{c}"),
        },
        Protocol::Number(n) => format!("proto {n}"),
    }
}

fn peer_text(p: &Peer) -> String {
    match p {
        Peer::Cidr(c) => c.to_string(),
        Peer::Group(g) => g.to_string(),
    }
}

fn rule_row(r: &SecurityGroupRule) -> [String; 5] {
    [
        r.id.to_string(),
        match r.direction {
            Direction::Ingress => "ingress".into(),
            Direction::Egress => "egress".into(),
        },
        protocol_text(&r.protocol),
        peer_text(&r.peer),
        r.description.clone().unwrap_or_default(),
    ]
}

/// The rule described on the command line, in EC2's terms (`IpProtocol`, `FromPort`,
/// `ToPort`, `CidrIp` or a group), parsed by the same function as the API's.
fn rule_spec(a: &RuleArgs) -> Result<hive_vpc::security_group::RuleSpec, CliError> {
    let bad = |m: String| {
        CliError::usage(
            m,
            "ports: --port 22, --port 8000-8080; ICMP: --port 8 or --port 8:0",
        )
    };
    let protocol = a.protocol.to_ascii_lowercase();
    let (from, to) = match (&a.port, protocol.as_str()) {
        (None, "tcp" | "udp") => (Some(0), Some(65535)),
        (None, _) => (Some(-1), Some(-1)),
        (Some(p), "icmp") => match p.split_once(':') {
            Some((t, c)) => (
                Some(t.parse().map_err(|_| bad(format!("bad ICMP type {t}")))?),
                Some(c.parse().map_err(|_| bad(format!("bad ICMP code {c}")))?),
            ),
            None => (
                Some(p.parse().map_err(|_| bad(format!("bad ICMP type {p}")))?),
                Some(-1),
            ),
        },
        (Some(p), _) => {
            let (f, t) = p.split_once('-').unwrap_or((p, p));
            (
                Some(f.parse().map_err(|_| bad(format!("bad port {f}")))?),
                Some(t.parse().map_err(|_| bad(format!("bad port {t}")))?),
            )
        }
    };
    let input = RuleInput {
        ip_protocol: if protocol == "all" {
            "-1".into()
        } else {
            protocol
        },
        from_port: from,
        to_port: to,
        cidr_ip: a.cidr.clone(),
        group_id: a.source_group.clone(),
        description: None,
    };
    if input.cidr_ip.is_none() && input.group_id.is_none() {
        return Err(CliError::usage(
            "a rule needs a peer",
            "add --cidr 10.0.0.0/16 or --source-group sg-...",
        ));
    }
    let direction = if a.egress {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    Ok(parse_rule(direction, &input)?)
}

async fn security_group(
    ctx: &Context,
    repo: &VpcRepo,
    acct: &str,
    c: &SecurityGroupCommand,
) -> Result<(), CliError> {
    match c {
        SecurityGroupCommand::List(VpcFilter { vpc_id }) => {
            let groups = repo.list_security_groups(acct).await?;
            let mut t = Table::new(["GROUP ID", "VPC ID", "NAME", "RULES", "DESCRIPTION"]);
            let mut out = Vec::new();
            for g in groups
                .iter()
                .filter(|g| vpc_id.as_deref().is_none_or(|v| g.vpc_id.as_str() == v))
            {
                t.row([
                    g.id.to_string(),
                    g.vpc_id.to_string(),
                    g.name.clone(),
                    g.rules.len().to_string(),
                    g.description.clone(),
                ]);
                out.push(json!({"group_id": g.id.as_str(), "vpc_id": g.vpc_id.as_str(), "name": g.name, "description": g.description, "rules": g.rules.iter().map(|r| rule_row(r).to_vec()).collect::<Vec<_>>()}));
            }
            ctx.printer.emit(&t, &out);
        }
        SecurityGroupCommand::Create {
            vpc_id,
            name,
            description,
        } => {
            let g = repo
                .create_security_group(acct, &VpcId::parse(vpc_id)?, name, description, &[])
                .await?;
            ctx.printer.message(
                &format!("created {} ({name}) in {vpc_id}", g.id),
                &json!({"group_id": g.id.as_str()}),
            );
        }
        SecurityGroupCommand::Delete { group_id } => {
            repo.delete_security_group(acct, &SecurityGroupId::parse(group_id)?)
                .await?;
            ctx.printer.message(
                &format!("deleted {group_id}"),
                &json!({"deleted": group_id}),
            );
        }
        SecurityGroupCommand::Rules { group_id } => {
            let g = repo
                .get_security_group(acct, &SecurityGroupId::parse(group_id)?)
                .await?;
            let mut t = Table::new(["RULE ID", "DIRECTION", "PROTOCOL", "PEER", "DESCRIPTION"]);
            for r in &g.rules {
                t.row(rule_row(r));
            }
            let rows: Vec<_> = g.rules.iter().map(|r| rule_row(r).to_vec()).collect();
            ctx.printer
                .emit(&t, &json!({"group_id": group_id, "rules": rows}));
        }
        SecurityGroupCommand::Allow(a) => {
            let spec = rule_spec(a)?;
            let added = repo
                .authorize(acct, &SecurityGroupId::parse(&a.group_id)?, vec![spec])
                .await?;
            let mut t = Table::new(["RULE ID", "DIRECTION", "PROTOCOL", "PEER", "DESCRIPTION"]);
            for r in &added {
                t.row(rule_row(r));
            }
            let rows: Vec<_> = added.iter().map(|r| rule_row(r).to_vec()).collect();
            ctx.printer.emit(&t, &json!({"added": rows}));
        }
        SecurityGroupCommand::Revoke(a) => {
            let spec = rule_spec(a)?;
            let revoked = repo
                .revoke(acct, &SecurityGroupId::parse(&a.group_id)?, &[spec])
                .await?;
            let ids: Vec<String> = revoked.revoked.iter().map(|r| r.id.to_string()).collect();
            ctx.printer.message(
                &format!("revoked {}", ids.join(", ")),
                &json!({"revoked": ids}),
            );
        }
    }
    Ok(())
}

fn interface_json(i: &NetworkInterface) -> Value {
    json!({
        "network_interface_id": i.id.as_str(),
        "subnet_id": i.subnet_id.as_str(),
        "vpc_id": i.vpc_id.as_str(),
        "private_ip_address": i.private_ip.to_string(),
        "mac_address": i.mac.to_string(),
        "groups": i.groups.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "description": i.description,
    })
}

async fn interface(
    ctx: &Context,
    repo: &VpcRepo,
    acct: &str,
    c: &InterfaceCommand,
) -> Result<(), CliError> {
    match c {
        InterfaceCommand::List { subnet_id } => {
            let enis = repo.list_network_interfaces(acct).await?;
            let mut t = Table::new(["ENI ID", "SUBNET ID", "PRIVATE IP", "MAC", "GROUPS"]);
            let mut out = Vec::new();
            for i in enis.iter().filter(|i| {
                subnet_id
                    .as_deref()
                    .is_none_or(|s| i.subnet_id.as_str() == s)
            }) {
                t.row([
                    i.id.to_string(),
                    i.subnet_id.to_string(),
                    i.private_ip.to_string(),
                    i.mac.to_string(),
                    i.groups
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ]);
                out.push(interface_json(i));
            }
            ctx.printer.emit(&t, &out);
        }
        InterfaceCommand::Create {
            subnet_id,
            groups,
            private_ip,
        } => {
            let request = CreateInterface {
                private_ip: match private_ip {
                    Some(ip) => Some(ip.parse().map_err(|_| {
                        CliError::usage(
                            format!("{ip} is not an IPv4 address"),
                            "e.g. --private-ip 10.0.1.10",
                        )
                    })?),
                    None => None,
                },
                groups: groups
                    .iter()
                    .map(|g| SecurityGroupId::parse(g))
                    .collect::<Result<_, _>>()?,
                description: String::new(),
            };
            let i = repo
                .create_network_interface(acct, &SubnetId::parse(subnet_id)?, &request, &[])
                .await?;
            ctx.printer.message(
                &format!("created {} {} {}", i.id, i.private_ip, i.mac),
                &interface_json(&i),
            );
        }
        InterfaceCommand::Delete { eni_id } => {
            repo.delete_network_interface(acct, &NetworkInterfaceId::parse(eni_id)?)
                .await?;
            ctx.printer
                .message(&format!("deleted {eni_id}"), &json!({"deleted": eni_id}));
        }
    }
    Ok(())
}

/// The switch of this node per `[vpc]`, when Open vSwitch answers.
fn live_switch(ctx: &Context) -> Result<OvsSwitch, CliError> {
    let switch = OvsSwitch::new(NetSyncOptions::from_config(&ctx.config.vpc).ovs)?;
    switch.check()?;
    Ok(switch)
}

/// `vpc nodes`: the node registry and the bindings per node.
async fn nodes(ctx: &Context, store: &dyn KvStore) -> Result<(), CliError> {
    let plane = hive_node::netsync::node_plane(store, &ctx.config)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let live = plane.registry.live_nodes().await?;
    let bindings = plane.registry.bindings().await?;
    let now = time::OffsetDateTime::now_utc();
    let mut t = Table::new([
        "NODE",
        "TUNNEL IP",
        "TYPE",
        "BOUND ENIS",
        "HEARTBEAT AGE",
        "UP SINCE",
    ]);
    let mut out = Vec::new();
    for n in live.values() {
        let bound = bindings.values().filter(|b| b.node == n.name).count();
        let age_ms = (now - n.heartbeat_at).whole_milliseconds().max(0);
        let tunnel = n
            .tunnel_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "-".into());
        let since = n
            .started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        t.row([
            n.name.clone(),
            tunnel.clone(),
            n.tunnel_type.clone(),
            bound.to_string(),
            format!("{age_ms} ms"),
            since.clone(),
        ]);
        out.push(json!({"node": n.name, "tunnel_ip": n.tunnel_ip, "tunnel_type": n.tunnel_type, "bound_enis": bound, "heartbeat_age_ms": age_ms as u64, "started_at": since, "tunnel_port": hive_vpc_store::nodes::tunnel_port_name(&n.name)}));
    }
    ctx.printer.emit(&t, &out);
    Ok(())
}

/// `facts` plus the interfaces bound on live remote nodes behind the bridge's tunnel ports
/// (read from the node registry; nothing to read on a bridge without tunnels).
pub async fn with_remotes(
    ctx: &Context,
    store: &dyn KvStore,
    facts: SwitchFacts,
) -> Result<SwitchFacts, CliError> {
    if facts.tunnels.is_empty() {
        return Ok(facts);
    }
    let plane = hive_node::netsync::node_plane(store, &ctx.config)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(hive_node::netsync::with_cluster(facts, &plane).await?)
}

/// The node's program: bound ports and gateway from the live bridge when Open vSwitch is
/// reachable, none otherwise (the base program and the rules, without local ports).
async fn program(
    ctx: &Context,
    store: &dyn KvStore,
    repo: &VpcRepo,
) -> Result<(FlowProgram, Option<OvsSwitch>), CliError> {
    let switch = live_switch(ctx).ok();
    let facts = match &switch {
        Some(s) => with_remotes(ctx, store, read_switch_facts(s)?).await?,
        None => SwitchFacts::default(),
    };
    let program = compiled_program(repo, &facts, &ctx.config.vpc)
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok((program, switch))
}

async fn flows(
    ctx: &Context,
    store: &dyn KvStore,
    repo: &VpcRepo,
    a: &FlowsArgs,
) -> Result<(), CliError> {
    let (program, switch) = program(ctx, store, repo).await?;
    if !a.diff {
        match ctx.printer.format {
            Format::Json => ctx.printer.json(&json!({
                "flows": program.flows().map(|f| json!({"table": f.table, "priority": f.priority, "cookie": format!("{:#x}", f.cookie), "match": f.matches, "actions": f.actions})).collect::<Vec<_>>(),
            })),
            Format::Table => ctx.printer.message(program.to_ofctl().trim_end(), &Value::Null),
        }
        return Ok(());
    }
    let Some(switch) = switch else {
        return Err(CliError::usage(
            "--diff needs the live bridge, and Open vSwitch does not answer",
            "start openvswitch-switch (or set OVS_RUNDIR), then hive-cli ovs setup",
        ));
    };
    let report = switch.drift(&program)?;
    let mut t = Table::new(["CHANGE", "FLOW"]);
    for f in &report.missing {
        t.row(["missing", f.as_str()]);
    }
    for f in &report.rogue {
        t.row(["rogue", f.as_str()]);
    }
    for c in &report.changed {
        t.row(["changed".to_owned(), format!("{c:?}")]);
    }
    let doc = json!({"clean": report.is_clean(), "missing": report.missing, "rogue": report.rogue, "changed": report.changed.len()});
    if report.is_clean() {
        ctx.printer.message(
            &format!(
                "the bridge matches the compiled program ({} flows)",
                program.len()
            ),
            &doc,
        );
        Ok(())
    } else {
        ctx.printer.emit(&t, &doc);
        Err(CliError::Failed(format!(
            "{} flow(s) differ (repair: hive-cli ovs reconcile)",
            report.len()
        )))
    }
}

/// Local ports for every interface, so the reference model can judge any pair: the live
/// bridge's bindings where an interface is plugged, numbers past them where not.
async fn trace_state(
    ctx: &Context,
    repo: &VpcRepo,
    acct: &str,
) -> Result<(NodeState, Option<OvsSwitch>), CliError> {
    let switch = live_switch(ctx).ok();
    let facts = match &switch {
        Some(s) => read_switch_facts(s)?,
        None => SwitchFacts::default(),
    };
    let mut bindings: NodeBindings = facts.bindings(ctx.config.vpc.metadata_enabled);
    let mut next = bindings
        .ports
        .values()
        .max()
        .copied()
        .unwrap_or(0)
        .max(1000)
        + 1;
    for i in repo.list_network_interfaces(acct).await? {
        bindings.ports.entry(i.id.clone()).or_insert_with(|| {
            next += 1;
            next
        });
    }
    Ok((repo.node_state(&bindings).await?, switch))
}

fn reason_text(r: &Reason) -> String {
    match r {
        Reason::NewConnection { egress, ingress } => {
            let side = |s: &Option<(SecurityGroupId, hive_vpc::model::SecurityGroupRuleId)>,
                        what: &str| {
                s.as_ref().map(|(g, r)| format!("{what} rule {r} of {g}"))
            };
            [side(egress, "egress"), side(ingress, "ingress")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
        }
        other => format!("{other:?}"),
    }
}

async fn trace(ctx: &Context, repo: &VpcRepo, acct: &str, a: &TraceArgs) -> Result<(), CliError> {
    let (state, switch) = trace_state(ctx, repo, acct).await?;
    let from_id = NetworkInterfaceId::parse(&a.from)?;
    let Some(src) = state.ports.iter().find(|p| p.eni == from_id) else {
        return Err(CliError::usage(
            format!("{} is not an interface of account {acct}", a.from),
            "list them with: hive-cli vpc eni list",
        ));
    };
    let (dst_ip, dst_mac) = if a.to.starts_with("eni-") {
        let id = NetworkInterfaceId::parse(&a.to)?;
        let Some(dst) = state.ports.iter().find(|p| p.eni == id) else {
            return Err(CliError::usage(
                format!("{} is not an interface of account {acct}", a.to),
                "list them with: hive-cli vpc eni list",
            ));
        };
        // Same subnet: straight to the peer's MAC; otherwise through the VPC router.
        let mac = if dst.subnet == src.subnet {
            dst.mac
        } else {
            ROUTER_MAC
        };
        (dst.ip, mac)
    } else {
        let ip: Ipv4Addr = a.to.parse().map_err(|_| {
            CliError::usage(
                format!("{} is neither an interface id nor an IPv4 address", a.to),
                "e.g. --to 10.0.1.10",
            )
        })?;
        let mac = state
            .ports
            .iter()
            .find(|p| p.ip == ip && p.subnet == src.subnet)
            .map_or(ROUTER_MAC, |p| p.mac);
        (ip, mac)
    };
    let transport = match a.protocol.to_ascii_lowercase().as_str() {
        "tcp" => Transport::Tcp {
            src: 40000,
            dst: a.port,
        },
        "udp" => Transport::Udp {
            src: 40000,
            dst: a.port,
        },
        "icmp" => Transport::Icmp {
            icmp_type: u8::try_from(a.port).unwrap_or(8),
            code: 0,
        },
        other => {
            return Err(CliError::usage(
                format!("unknown protocol {other}"),
                "use tcp, udp or icmp",
            ));
        }
    };
    let packet = Packet {
        in_port: src.ofport,
        tun_id: None,
        eth_src: src.mac,
        eth_dst: dst_mac,
        vlan: None,
        l3: L3::Ipv4 {
            src: src.ip,
            dst: dst_ip,
            transport,
            ct: CtState::New,
        },
    };
    let decision = decide(&state, &packet);
    let verdict = if decision.allowed() { "allow" } else { "deny" };
    let why = reason_text(&decision.reason);
    let mut t = Table::new(["SOURCE", "VERDICT", "WHY"]);
    t.row([
        "reference model".to_owned(),
        verdict.to_owned(),
        why.clone(),
    ]);
    let mut doc =
        json!({"packet": packet.trace_flow(), "reference": {"verdict": verdict, "reason": why}});
    if a.ovs {
        let Some(switch) = switch else {
            return Err(CliError::usage(
                "--ovs needs Open vSwitch, and it does not answer",
                "start openvswitch-switch (or set OVS_RUNDIR)",
            ));
        };
        let plugged = repo_port_is_plugged(&switch, &a.from)?;
        if !plugged {
            return Err(CliError::usage(
                format!(
                    "{} is not plugged into the bridge, so the switch cannot trace it",
                    a.from
                ),
                "plug the VM's port with external_ids:iface-id=<eni-id>",
            ));
        }
        let flow = packet.trace_flow();
        let result = switch.trace(&flow, &[CtState::New.trace_flags()])?;
        let ovs_verdict = if result.outputs.is_empty() {
            "deny"
        } else {
            "allow"
        };
        t.row([
            "ofproto/trace".to_owned(),
            ovs_verdict.to_owned(),
            if result.outputs.is_empty() {
                "dropped".to_owned()
            } else {
                format!("output to {}", result.outputs.join(","))
            },
        ]);
        doc["ovs"] = json!({"verdict": ovs_verdict, "outputs": result.outputs});
        if ovs_verdict != verdict {
            ctx.printer.emit(&t, &doc);
            return Err(CliError::Failed(
                "the switch and the reference model disagree: run hive-cli ovs reconcile".into(),
            ));
        }
    }
    ctx.printer.emit(&t, &doc);
    Ok(())
}

fn repo_port_is_plugged(switch: &OvsSwitch, eni: &str) -> Result<bool, CliError> {
    Ok(switch.bound_ports()?.iter().any(|p| p.iface_id == eni))
}
