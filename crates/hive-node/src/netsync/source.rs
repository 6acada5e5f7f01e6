//! Where the desired network state comes from: the VPC repository (the store), read whole on
//! every rebuild, plus what the bridge says about this node (bound ports, gateway port).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use futures::StreamExt;
use futures::stream::BoxStream;
use hive_ovs::{BoundPort, TunnelPort};
use hive_vpc::compile::NodeState;
use hive_vpc::model::NetworkInterfaceId;
use hive_vpc_store::nodes::NodeRegistry;
use hive_vpc_store::{GatewayBinding, NodeBindings, VpcRepo};

use super::NetSyncError;

/// What the bridge says about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchFacts {
    /// Ports bound to interfaces by `external_ids:iface-id`, sorted by OpenFlow port.
    pub ports: Vec<BoundPort>,
    /// The gateway port `hive-int0`, when the bridge has it.
    pub gateway: Option<GatewayBinding>,
    /// Tunnel ports on the bridge.
    pub tunnels: Vec<TunnelPort>,
    /// Interfaces bound on other live nodes, by the OpenFlow port of the tunnel towards their
    /// node (empty on a single node; filled by [`super::plane::with_cluster`] and the sync).
    pub remotes: BTreeMap<NetworkInterfaceId, u32>,
}

impl SwitchFacts {
    /// The repository's view of these facts. An interface bound to several ports (a
    /// hypervisor mistake) keeps the lowest port number; the others get nothing but drops.
    pub fn bindings(&self, metadata: bool) -> NodeBindings {
        let mut ports: BTreeMap<NetworkInterfaceId, u32> = BTreeMap::new();
        for port in &self.ports {
            match ports.entry(NetworkInterfaceId::new_unchecked(port.iface_id.clone())) {
                Entry::Vacant(v) => {
                    v.insert(port.ofport);
                }
                Entry::Occupied(o) => {
                    tracing::warn!(
                        iface_id = %port.iface_id,
                        kept = *o.get(),
                        ignored = port.ofport,
                        "interface bound to more than one switch port; using the first"
                    );
                }
            }
        }
        NodeBindings {
            ports,
            gateway: self.gateway,
            metadata,
            remotes: self.remotes.clone(),
        }
    }
}

/// The node's desired state, built from the store only.
pub(super) async fn node_state(
    repo: &VpcRepo,
    facts: &SwitchFacts,
    metadata: bool,
) -> Result<NodeState, NetSyncError> {
    repo.node_state(&facts.bindings(metadata))
        .await
        .map_err(NetSyncError::from)
}

/// A stream that yields whenever the stored network state may have changed (also for other
/// processes' writes on the same store), including port bindings when `registry` is given;
/// it ends when a watch breaks.
pub(super) async fn changes(
    repo: &VpcRepo,
    registry: Option<&NodeRegistry>,
) -> Result<BoxStream<'static, ()>, NetSyncError> {
    let records = repo.watch().await?.map(|item| item.map(|_| ())).boxed();
    let stream = match registry {
        Some(registry) => {
            futures::stream::select(records, registry.watch_bindings().await?).boxed()
        }
        None => records,
    };
    Ok(stream
        .take_while(|item| {
            if let Err(e) = item {
                tracing::warn!(error = %e, "store watch failed; subscribing again");
            }
            std::future::ready(item.is_ok())
        })
        .map(|_| ())
        .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ofport: u32, iface: &str) -> BoundPort {
        BoundPort {
            ofport,
            name: format!("p{ofport}"),
            iface_id: iface.into(),
            mac: None,
        }
    }

    #[test]
    fn duplicate_bindings_keep_the_first_port() {
        let facts = SwitchFacts {
            ports: vec![port(3, "eni-a"), port(5, "eni-b"), port(7, "eni-a")],
            gateway: Some(GatewayBinding {
                ofport: 1,
                mac: None,
            }),
            ..SwitchFacts::default()
        };
        let b = facts.bindings(true);
        assert_eq!(b.ports.len(), 2);
        assert_eq!(b.ports[&NetworkInterfaceId::new_unchecked("eni-a")], 3);
        assert_eq!(b.ports[&NetworkInterfaceId::new_unchecked("eni-b")], 5);
        assert!(b.metadata);
        assert_eq!(b.gateway.map(|g| g.ofport), Some(1));
    }
}
