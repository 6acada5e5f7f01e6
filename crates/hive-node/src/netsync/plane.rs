//! The multi-node part of the switch sync: this node's heartbeat, its port bindings, and one
//! tunnel port per live remote node.
//!
//! Every heartbeat the node rewrites its record in the node registry and reads which other
//! nodes are alive; the bridge then gets a tunnel port (`hvt-<hash>`, key `flow`: the VPC's
//! VLAN travels as the VNI) for each live node with a tunnel address, and loses the ports of
//! nodes that are gone. Interfaces bound on live remote nodes enter the compiled program behind
//! their node's tunnel port; when a node disappears its tunnel and its interfaces leave the
//! program at the next heartbeat, so nothing is sent into a dead tunnel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hive_ovs::{OvsError, Switch, TunnelKey, TunnelKind, TunnelPort, TunnelSpec};
use hive_vpc::error::VpcError;
use hive_vpc::model::NetworkInterfaceId;
use hive_vpc_store::nodes::NodeConfig;
use hive_vpc_store::nodes::{NodeRecord, NodeRegistry, PortBinding, tunnel_port_name};
use time::OffsetDateTime;

use super::SwitchFacts;

/// This node's identity in the cluster and the registry it announces itself in.
#[derive(Debug, Clone)]
pub struct NodePlane {
    /// The node's name (resolved: `[node] name` or the host name).
    pub name: String,
    /// The `[node]` section.
    pub config: NodeConfig,
    /// The node registry and port bindings on the shared store.
    pub registry: NodeRegistry,
}

/// Remote nodes this node should have a tunnel to: alive, with a tunnel address, not itself.
pub fn remote_nodes<'a>(
    self_name: &str,
    live: &'a BTreeMap<String, NodeRecord>,
) -> BTreeMap<&'a str, IpAddr> {
    live.values()
        .filter(|n| n.name != self_name)
        .filter_map(|n| Some((n.name.as_str(), n.tunnel_ip?)))
        .collect()
}

/// The tunnel ports the bridge should carry for `remotes`.
pub fn tunnel_specs(kind: TunnelKind, remotes: &BTreeMap<&str, IpAddr>) -> Vec<TunnelSpec> {
    remotes
        .iter()
        .map(|(node, ip)| TunnelSpec {
            name: tunnel_port_name(node),
            kind,
            remote_ip: *ip,
            key: TunnelKey::Flow,
        })
        .collect()
}

/// Make the bridge carry exactly `desired` among Hive's tunnel ports (`hvt-*`; other tunnel
/// ports are the operator's), and return them as found afterwards. Blocking.
pub fn converge_tunnels(
    switch: &dyn Switch,
    desired: &[TunnelSpec],
) -> Result<Vec<TunnelPort>, OvsError> {
    let present = switch.tunnels()?;
    for port in &present {
        let ours = port.spec.name.starts_with("hvt-");
        if ours && !desired.iter().any(|d| d.name == port.spec.name) {
            switch.remove_tunnel(&port.spec.name)?;
        }
    }
    for spec in desired {
        if !present.iter().any(|p| &p.spec == spec) {
            switch.ensure_tunnel(spec)?;
        }
    }
    switch.tunnels()
}

/// Interface → OpenFlow port of the tunnel to the live node it is bound on, for every
/// interface bound on another node that has a usable tunnel port here.
pub fn remote_bindings(
    self_name: &str,
    live: &BTreeMap<String, NodeRecord>,
    tunnels: &[TunnelPort],
    bindings: &BTreeMap<NetworkInterfaceId, PortBinding>,
) -> BTreeMap<NetworkInterfaceId, u32> {
    let remotes = remote_nodes(self_name, live);
    let ofport_of: BTreeMap<&str, u32> = remotes
        .iter()
        .filter_map(|(node, ip)| {
            let name = tunnel_port_name(node);
            let port = tunnels
                .iter()
                .find(|t| t.spec.name == name && t.spec.remote_ip == *ip)?;
            Some((*node, port.ofport?))
        })
        .collect();
    bindings
        .iter()
        .filter_map(|(eni, b)| Some((eni.clone(), *ofport_of.get(b.node.as_str())?)))
        .collect()
}

/// `facts` with [`SwitchFacts::remotes`] filled from the store: the interfaces bound on the
/// live remote nodes this bridge has a tunnel port to (for the CLI's view of the program).
pub async fn with_cluster(
    mut facts: SwitchFacts,
    plane: &NodePlane,
) -> Result<SwitchFacts, VpcError> {
    let live = plane.registry.live_nodes().await?;
    let bindings = plane.registry.bindings().await?;
    facts.remotes = remote_bindings(&plane.name, &live, &facts.tunnels, &bindings);
    Ok(facts)
}

/// What the plane knows between heartbeats.
#[derive(Debug)]
pub(super) struct PlaneState {
    pub(super) plane: NodePlane,
    started_at: OffsetDateTime,
    /// Nodes alive at the last heartbeat (this one included).
    pub(super) live: BTreeMap<String, NodeRecord>,
    /// Interfaces last published as bound here; `None` forces a publication.
    published: Option<BTreeSet<NetworkInterfaceId>>,
    /// Whether the last heartbeat failed (logged once per outage).
    heartbeat_failing: bool,
}

impl PlaneState {
    pub(super) fn new(plane: NodePlane) -> Self {
        Self {
            plane,
            started_at: OffsetDateTime::now_utc(),
            live: BTreeMap::new(),
            published: None,
            heartbeat_failing: false,
        }
    }

    /// The encapsulation this node uses (validated config; VXLAN when unknown).
    pub(super) fn tunnel_kind(&self) -> TunnelKind {
        TunnelKind::parse(&self.plane.config.tunnel_type).unwrap_or(TunnelKind::Vxlan)
    }

    /// Announce this node and read who else is alive; true when the set of live nodes (or
    /// their addresses) changed.
    pub(super) async fn heartbeat(&mut self) -> bool {
        let record = NodeRecord::new(&self.plane.config, &self.plane.name, self.started_at);
        let result = async {
            self.plane.registry.heartbeat(&record).await?;
            self.plane.registry.live_nodes().await
        }
        .await;
        match result {
            Ok(live) => {
                if self.heartbeat_failing {
                    tracing::info!(node = %self.plane.name, "node heartbeat restored");
                }
                self.heartbeat_failing = false;
                let changed = remote_nodes(&self.plane.name, &live)
                    != remote_nodes(&self.plane.name, &self.live);
                if changed {
                    tracing::info!(
                        node = %self.plane.name,
                        live = ?live.keys().collect::<Vec<_>>(),
                        "cluster membership changed"
                    );
                }
                self.live = live;
                changed
            }
            Err(e) => {
                // The store is away: keep the tunnels and program we have (fail secure: the
                // flows still enforce the last known rules) until it answers again.
                if !self.heartbeat_failing {
                    tracing::warn!(node = %self.plane.name, error = %e, "node heartbeat failed");
                }
                self.heartbeat_failing = true;
                false
            }
        }
    }

    /// Publish the interfaces plugged here when they changed since the last publication (or
    /// `force`); errors leave the next call to try again.
    pub(super) async fn publish(
        &mut self,
        local: BTreeSet<NetworkInterfaceId>,
        force: bool,
    ) -> Result<(), VpcError> {
        if !force && self.published.as_ref() == Some(&local) {
            return Ok(());
        }
        let changes = self
            .plane
            .registry
            .publish_bindings(&self.plane.name, &local)
            .await;
        match changes {
            Ok(c) => {
                if !c.bound.is_empty() || !c.unbound.is_empty() {
                    tracing::info!(
                        node = %self.plane.name,
                        bound = c.bound.len(),
                        unbound = c.unbound.len(),
                        "port bindings published"
                    );
                }
                self.published = Some(local);
                Ok(())
            }
            Err(e) => {
                self.published = None;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, ip: Option<&str>) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            tunnel_ip: ip.map(|i| i.parse().unwrap()),
            tunnel_type: "vxlan".into(),
            started_at: OffsetDateTime::UNIX_EPOCH,
            heartbeat_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn eni(n: u8) -> NetworkInterfaceId {
        NetworkInterfaceId::new_unchecked(format!("eni-{n:017x}"))
    }

    #[test]
    fn remote_interfaces_need_a_live_node_with_a_tunnel_port() {
        let live: BTreeMap<String, NodeRecord> = [
            record("n1", Some("100.100.0.1")),
            record("n2", Some("100.100.0.2")),
            record("n3", None),
        ]
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
        let remotes = remote_nodes("n1", &live);
        assert_eq!(remotes.keys().copied().collect::<Vec<_>>(), ["n2"]);
        let specs = tunnel_specs(TunnelKind::Vxlan, &remotes);
        let tunnels = vec![TunnelPort {
            spec: specs[0].clone(),
            ofport: Some(7),
        }];
        let bind = |e: u8, node: &str| {
            (
                eni(e),
                PortBinding {
                    eni: eni(e),
                    node: node.into(),
                    bound_at: OffsetDateTime::UNIX_EPOCH,
                },
            )
        };
        let bindings: BTreeMap<_, _> = [
            bind(1, "n1"),   // local: not remote
            bind(2, "n2"),   // remote, live, tunnel port 7
            bind(3, "n3"),   // live but without a tunnel address
            bind(4, "gone"), // not alive
        ]
        .into();
        let r = remote_bindings("n1", &live, &tunnels, &bindings);
        assert_eq!(r, [(eni(2), 7)].into());
        // A tunnel port without an ofport yet (or to another address) carries nothing.
        let unready = vec![TunnelPort {
            spec: specs[0].clone(),
            ofport: None,
        }];
        assert!(remote_bindings("n1", &live, &unready, &bindings).is_empty());
    }
}
