//! The multi-node plane's shared facts: which nodes are alive, and which node each network
//! interface is plugged into (OVN calls the latter port bindings).
//!
//! | bucket (default name) | key | value |
//! |---|---|---|
//! | `hive-vpc-nodes` | `<node name>` | [`NodeRecord`], rewritten every heartbeat; the bucket's TTL expires it |
//! | `hive-vpc-port-bindings` | `<eni-id>` | [`PortBinding`]: the node the interface is plugged into |
//!
//! A node is alive while its record is in the bucket: every node rewrites its own record each
//! [`NodeConfig::heartbeat_ms`], and the bucket's TTL ([`NodeConfig::node_ttl_ms`]) removes the
//! record of a node that stopped doing so. Liveness is thus judged by the store's clock alone,
//! never by comparing clocks of two machines.
//!
//! Bindings outlive their node on purpose: a node whose `hive-api` restarts finds its bindings
//! still there, and other nodes ignore the bindings of nodes that are not alive. Each node only
//! writes bindings naming itself ([`NodeRegistry::publish_bindings`]), so two nodes never fight
//! over a key unless an interface is really plugged into both (then the last writer wins, and
//! each node still serves its own port locally).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use hive_kv::{Bucket, BucketConfig, KvStore, TypedBucket, WatchFrom};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{list_values, storage_error};
use hive_vpc::compile::fnv1a64;
use hive_vpc::error::VpcError;
use hive_vpc::model::NetworkInterfaceId;

/// Default name of the node registry bucket.
pub const DEFAULT_NODES_BUCKET: &str = "hive-vpc-nodes";
/// Default name of the port bindings bucket.
pub const DEFAULT_BINDINGS_BUCKET: &str = "hive-vpc-port-bindings";
/// Revisions kept per binding (enough to see an interface move between nodes).
const BINDING_HISTORY: u8 = 5;

/// A live node as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's name (`[node] name`), unique in the cluster.
    pub name: String,
    /// Its underlay address for tunnels; `None`: it takes part in no tunnel.
    pub tunnel_ip: Option<IpAddr>,
    /// `vxlan` or `geneve`.
    pub tunnel_type: String,
    /// When this run of the node started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When the record was last written.
    #[serde(with = "time::serde::rfc3339")]
    pub heartbeat_at: OffsetDateTime,
}

impl NodeRecord {
    /// The record a node with `config` writes at a heartbeat.
    pub fn new(config: &NodeConfig, name: &str, started_at: OffsetDateTime) -> Self {
        Self {
            name: name.to_owned(),
            tunnel_ip: config.tunnel_ip,
            tunnel_type: config.tunnel_type.clone(),
            started_at,
            heartbeat_at: OffsetDateTime::now_utc(),
        }
    }
}

/// Which node an interface is plugged into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The interface.
    pub eni: NetworkInterfaceId,
    /// The node whose switch has a port with `external_ids:iface-id=<eni>`.
    pub node: String,
    /// When the binding was written.
    #[serde(with = "time::serde::rfc3339")]
    pub bound_at: OffsetDateTime,
}

/// What [`NodeRegistry::publish_bindings`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingChanges {
    /// Interfaces now bound to this node.
    pub bound: Vec<NetworkInterfaceId>,
    /// Interfaces no longer bound to this node.
    pub unbound: Vec<NetworkInterfaceId>,
}

/// The name of the tunnel port towards `node` on every other node's bridge: `hvt-` and 8 hex
/// digits of the name's hash, so it fits Linux's 15 characters whatever the node is called.
pub fn tunnel_port_name(node: &str) -> String {
    format!("hvt-{:08x}", fnv1a64(node.as_bytes()) as u32)
}

/// The node registry and port bindings over the hive-kv port. Cheap to clone.
#[derive(Clone)]
pub struct NodeRegistry {
    nodes: TypedBucket<NodeRecord>,
    bindings: TypedBucket<PortBinding>,
}

impl std::fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRegistry")
            .field("nodes", &self.nodes.bucket().name())
            .field("bindings", &self.bindings.bucket().name())
            .finish()
    }
}

impl NodeRegistry {
    /// The two bucket configurations: nodes expire after `config.node_ttl_ms`.
    pub fn bucket_configs(config: &NodeConfig, replicas: usize) -> [BucketConfig; 2] {
        [
            BucketConfig::new(&config.kv_bucket_nodes)
                .with_ttl(Duration::from_millis(config.node_ttl_ms))
                .with_replicas(replicas),
            BucketConfig::new(&config.kv_bucket_bindings)
                .with_history(BINDING_HISTORY)
                .with_replicas(replicas),
        ]
    }

    /// Creates or opens the buckets named in `config`.
    pub async fn open(
        store: &dyn KvStore,
        config: &NodeConfig,
        replicas: usize,
    ) -> Result<Self, VpcError> {
        let [nodes, bindings] = Self::bucket_configs(config, replicas);
        Ok(Self::new(
            store.create_or_open(&nodes).await.map_err(storage_error)?,
            store
                .create_or_open(&bindings)
                .await
                .map_err(storage_error)?,
        ))
    }

    /// A registry over opened buckets.
    pub fn new(nodes: Arc<dyn Bucket>, bindings: Arc<dyn Bucket>) -> Self {
        Self {
            nodes: TypedBucket::new(nodes),
            bindings: TypedBucket::new(bindings),
        }
    }

    /// Announce `record` (a heartbeat): the node stays alive for the bucket's TTL.
    pub async fn heartbeat(&self, record: &NodeRecord) -> Result<(), VpcError> {
        self.nodes
            .put(&record.name, record)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Withdraw a node at once (a clean decommission; a stopped node simply expires).
    pub async fn forget_node(&self, name: &str) -> Result<(), VpcError> {
        self.nodes.delete(name, None).await.map_err(storage_error)?;
        Ok(())
    }

    /// The nodes alive now, by name.
    pub async fn live_nodes(&self) -> Result<BTreeMap<String, NodeRecord>, VpcError> {
        Ok(list_values(&self.nodes, None)
            .await?
            .into_iter()
            // A record under another key than its name is not trusted to be that node.
            .filter(|(key, record)| key == &record.name)
            .collect())
    }

    /// Every binding, by interface.
    pub async fn bindings(&self) -> Result<BTreeMap<NetworkInterfaceId, PortBinding>, VpcError> {
        Ok(list_values(&self.bindings, None)
            .await?
            .into_iter()
            .filter(|(key, binding)| key == binding.eni.as_str())
            .map(|(_, binding)| (binding.eni.clone(), binding))
            .collect())
    }

    /// Make the store say that exactly `local` are bound to `node`: bind the new ones (taking
    /// them over from another node if they moved) and remove this node's bindings of
    /// interfaces it no longer has. Other nodes' bindings are left alone.
    pub async fn publish_bindings(
        &self,
        node: &str,
        local: &BTreeSet<NetworkInterfaceId>,
    ) -> Result<BindingChanges, VpcError> {
        let current = self.bindings().await?;
        let mut changes = BindingChanges::default();
        for eni in local {
            if current.get(eni).is_some_and(|b| b.node == node) {
                continue;
            }
            let binding = PortBinding {
                eni: eni.clone(),
                node: node.to_owned(),
                bound_at: OffsetDateTime::now_utc(),
            };
            self.bindings
                .put(eni.as_str(), &binding)
                .await
                .map_err(storage_error)?;
            changes.bound.push(eni.clone());
        }
        for (eni, binding) in &current {
            if binding.node == node && !local.contains(eni) {
                // At the revision read: a binding another node took meanwhile stays.
                match self
                    .bindings
                    .get(eni.as_str())
                    .await
                    .map_err(storage_error)?
                {
                    Some(v) if v.value.node == node => {
                        match self.bindings.delete(eni.as_str(), Some(v.revision)).await {
                            Ok(()) | Err(hive_kv::KvError::RevisionConflict { .. }) => {}
                            Err(e) => return Err(storage_error(e)),
                        }
                        changes.unbound.push(eni.clone());
                    }
                    _ => {}
                }
            }
        }
        Ok(changes)
    }

    /// A stream that yields whenever a binding changes (any node's write).
    pub async fn watch_bindings(
        &self,
    ) -> Result<BoxStream<'static, Result<(), VpcError>>, VpcError> {
        let stream = self
            .bindings
            .bucket()
            .watch(None, WatchFrom::Now)
            .await
            .map_err(storage_error)?;
        Ok(stream
            .map(|entry| entry.map(|_| ()).map_err(storage_error))
            .boxed())
    }
}

/// The `[node]` section of `hive.toml`: who this node is in a multi-node cluster.
///
/// ```toml
/// [node]
/// name = ""              # empty: the host name
/// tunnel_ip = "192.0.2.10"  # underlay address; unset: no tunnels (a single node)
/// tunnel_type = "vxlan"  # or "geneve"
/// heartbeat_ms = 1000
/// node_ttl_ms = 5000     # a node silent this long is gone (the nodes bucket's TTL)
/// ```
///
/// Every node of a cluster shares one JetStream; each announces itself every `heartbeat_ms`
/// and reaches the interfaces bound on other live nodes through one tunnel port per node.
/// `node_ttl_ms` is the nodes bucket's TTL, fixed when the first node creates the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster; empty means the host name.
    pub name: String,
    /// The node's underlay address, the remote end of other nodes' tunnels to it.
    pub tunnel_ip: Option<std::net::IpAddr>,
    /// Tunnel encapsulation: `vxlan` or `geneve`.
    pub tunnel_type: String,
    /// How often the node announces itself.
    pub heartbeat_ms: u64,
    /// How long after its last heartbeat a node counts as gone.
    pub node_ttl_ms: u64,
    /// The node registry bucket.
    pub kv_bucket_nodes: String,
    /// The port bindings bucket.
    pub kv_bucket_bindings: String,
}

/// The tunnel types `[node] tunnel_type` accepts.
pub const TUNNEL_TYPES: [&str; 2] = ["vxlan", "geneve"];

/// Longest node name (a KV key and a log field; host names are at most 63 per label).
const MAX_NODE_NAME: usize = 63;

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            tunnel_ip: None,
            tunnel_type: "vxlan".to_owned(),
            heartbeat_ms: 1000,
            node_ttl_ms: 5000,
            kv_bucket_nodes: DEFAULT_NODES_BUCKET.to_owned(),
            kv_bucket_bindings: DEFAULT_BINDINGS_BUCKET.to_owned(),
        }
    }
}

impl NodeConfig {
    /// Check the settings.
    pub fn validate(&self) -> Result<(), VpcError> {
        let bad = |field: &'static str, reason: String| VpcError::InvalidConfig { field, reason };
        if !self.name.is_empty() && !valid_node_name(&self.name) {
            return Err(bad(
                "name",
                format!(
                    "{:?} must be 1 to {MAX_NODE_NAME} characters of [A-Za-z0-9._-]",
                    self.name
                ),
            ));
        }
        if !TUNNEL_TYPES.contains(&self.tunnel_type.as_str()) {
            return Err(bad(
                "tunnel_type",
                format!("{:?} must be vxlan or geneve", self.tunnel_type),
            ));
        }
        if let Some(ip) = self.tunnel_ip
            && (ip.is_unspecified() || ip.is_loopback() || ip.is_multicast())
        {
            return Err(bad(
                "tunnel_ip",
                format!("{ip} cannot be reached by other nodes"),
            ));
        }
        if self.heartbeat_ms < 100 {
            return Err(bad("heartbeat_ms", "must be at least 100".into()));
        }
        if self.node_ttl_ms < 2 * self.heartbeat_ms {
            return Err(bad(
                "node_ttl_ms",
                format!(
                    "{} must be at least twice heartbeat_ms ({}), or a slow heartbeat would make the node flap",
                    self.node_ttl_ms, self.heartbeat_ms
                ),
            ));
        }
        Ok(())
    }

    /// The node's name: `[node] name`, or `hostname` when that is empty (and usable).
    pub fn resolved_name(&self, hostname: &str) -> Option<String> {
        let name = if self.name.is_empty() {
            hostname.trim()
        } else {
            self.name.as_str()
        };
        valid_node_name(name).then(|| name.to_owned())
    }
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_kv::memory::MemoryStore;

    fn eni(n: u8) -> NetworkInterfaceId {
        NetworkInterfaceId::new_unchecked(format!("eni-{n:017x}"))
    }

    fn config(ttl_ms: u64) -> NodeConfig {
        NodeConfig {
            node_ttl_ms: ttl_ms,
            heartbeat_ms: ttl_ms / 4,
            ..NodeConfig::default()
        }
    }

    #[tokio::test]
    async fn a_node_lives_while_it_heartbeats_and_expires_after() {
        let store = MemoryStore::new();
        let cfg = config(400);
        let reg = NodeRegistry::open(&store, &cfg, 1).await.unwrap();
        let started = OffsetDateTime::now_utc();
        reg.heartbeat(&NodeRecord::new(&cfg, "n1", started))
            .await
            .unwrap();
        reg.heartbeat(&NodeRecord::new(&cfg, "n2", started))
            .await
            .unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            reg.heartbeat(&NodeRecord::new(&cfg, "n1", started))
                .await
                .unwrap();
        }
        let live = reg.live_nodes().await.unwrap();
        assert_eq!(
            live.keys().collect::<Vec<_>>(),
            ["n1"],
            "n2 stopped and expired"
        );
        reg.forget_node("n1").await.unwrap();
        assert!(reg.live_nodes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bindings_follow_each_nodes_ports_and_leave_others_alone() {
        let store = MemoryStore::new();
        let reg = NodeRegistry::open(&store, &config(5000), 1).await.unwrap();
        let n1: BTreeSet<_> = [eni(1), eni(2)].into();
        let c = reg.publish_bindings("n1", &n1).await.unwrap();
        assert_eq!(c.bound, vec![eni(1), eni(2)]);
        let again = reg.publish_bindings("n1", &n1).await.unwrap();
        assert_eq!(again, BindingChanges::default(), "idempotent");
        // eni 2 moves to n2; n1 then unplugs it too.
        reg.publish_bindings("n2", &[eni(2)].into()).await.unwrap();
        let c = reg.publish_bindings("n1", &[eni(1)].into()).await.unwrap();
        assert!(c.unbound.is_empty(), "n1 does not remove n2's binding");
        let b = reg.bindings().await.unwrap();
        assert_eq!(b[&eni(1)].node, "n1");
        assert_eq!(b[&eni(2)].node, "n2");
        let c = reg.publish_bindings("n1", &BTreeSet::new()).await.unwrap();
        assert_eq!(c.unbound, vec![eni(1)]);
        assert_eq!(reg.bindings().await.unwrap().len(), 1);
    }

    #[test]
    fn tunnel_port_names_fit_linux_and_differ() {
        let a = tunnel_port_name("node1");
        let b = tunnel_port_name("node2");
        assert_ne!(a, b);
        assert!(a.len() <= 15 && a.starts_with("hvt-"));
        assert_eq!(a, tunnel_port_name("node1"));
    }
}
