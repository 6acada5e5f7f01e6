//! The switch sync ([`hive_node::netsync`], shared with `hive-cli`), started for a node next
//! to its EC2 service, and its metrics endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};

pub use hive_node::netsync::*;

use crate::error::ApiError;
use crate::server::{Endpoint, EndpointReply};

/// The `GET` endpoint serving [`NetSyncStatus::render_prometheus`] (at [`METRICS_PATH`] beside
/// the server's `/metrics`); it follows the sync for as long as the sync runs.
pub fn metrics_endpoint(sync: &NetSync) -> Arc<dyn Endpoint> {
    Arc::new(MetricsEndpoint {
        status: sync.status_handle(),
    })
}

/// Serves the sync's status as Prometheus text.
struct MetricsEndpoint {
    status: StatusHandle,
}

#[async_trait]
impl Endpoint for MetricsEndpoint {
    async fn call(&self, method: &Method, _headers: &HeaderMap, _body: &[u8]) -> EndpointReply {
        if method != Method::GET {
            return EndpointReply::Error(ApiError::method_not_allowed());
        }
        EndpointReply::Ok {
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4",
            body: Bytes::from(self.status.status().render_prometheus()),
        }
    }
}

/// Start the switch sync of a node when `[vpc] enabled` (with the repository EC2 uses, and
/// the node registry on the same store), or `None` when the network plane is disabled or the
/// bridge's name is unusable. A store that is not ready yet is waited for in the background
/// ([`NetSync::start_when_ready`]); the server keeps serving meanwhile. Open vSwitch is found
/// through `OVS_RUNDIR` like the OVS tools; its absence is reported once by the sync.
pub fn start_for_node(
    ec2: &Arc<crate::ec2::Ec2Service>,
    store: &Arc<dyn hive_kv::KvStore>,
    config: &Arc<hive_node::config::Config>,
) -> Option<NetSync> {
    let vpc = &config.vpc;
    if !vpc.enabled {
        tracing::info!("[vpc] enabled = false: the switch is not programmed");
        return None;
    }
    let (ec2, store, config) = (Arc::clone(ec2), Arc::clone(store), Arc::clone(config));
    let options = NetSyncOptions::from_config(&config.vpc);
    let open = move || {
        let (ec2, store, config) = (Arc::clone(&ec2), Arc::clone(&store), Arc::clone(&config));
        async move {
            let repo = ec2.repo().await?;
            let plane = node_plane(store.as_ref(), &config).await?;
            tracing::info!(
                node = %plane.name,
                tunnel_ip = ?plane.config.tunnel_ip,
                "joining the node registry"
            );
            Ok((repo.as_ref().clone(), Some(plane)))
        }
    };
    match NetSync::start_when_ready(options, open) {
        Ok(sync) => Some(sync),
        Err(e) => {
            tracing::error!(error = %e, "switch sync not started");
            None
        }
    }
}
