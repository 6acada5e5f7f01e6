//! The HTTP server: one visible tower stack around the [`router::Router`].
//!
//! ```text
//! RequestId → Trace → Metrics → Timeout → AuthThrottle → BodyLimit → Router
//!                                                                     ├─ GET /health  (shallow, 200)
//!                                                                     ├─ GET /ready   (Readiness, 200/503)
//!                                                                     ├─ GET /metrics (Prometheus text)
//!                                                                     └─ GET|POST /   decode → service → authenticate → action
//! ```
//!
//! The service of a request is told by its SigV4 credential scope (`Authorization` header or
//! `X-Amz-Credential`) and `Version`; each service is an [`AwsService`]. Every request is
//! authenticated by the [`Authenticator`] before its action runs: `crate::auth`'s SigV4
//! authenticator in a running node, [`DenyAll`] (fail closed) by default. Extra endpoints
//! outside the AWS API (e.g. `POST /bootstrap`) are added with [`Server::endpoint`]. TLS is terminated here when configured
//! ([`Server::tls`], rustls).

pub mod handler;
pub mod layers;
pub mod metrics;
pub mod router;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower::util::BoxCloneService;

pub use handler::{
    AuthRequest, Authenticator, AwsService, DataDirReadiness, DenyAll, Endpoint, EndpointReply,
    FnReadiness, KvReadiness, Principal, Readiness, RequestContext,
};
use layers::{AuthThrottle, from_fn};
pub use metrics::Metrics;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::wire::{Protocol, ServiceId, scope_service};

/// Every response of the server.
pub type HttpResponse = Response<Full<Bytes>>;

/// The boxed service stack, ready to be served or called in tests.
pub type HttpService<B> = BoxCloneService<Request<B>, HttpResponse, Infallible>;

/// The request id, in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The peer address, in the request extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What happened to a request, in the response extensions, for the outer layers (metrics,
/// logs, throttling).
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The service the request was routed to.
    pub service: Option<ServiceId>,
    /// The action, when the service knows it (bounded label).
    pub action: Option<&'static str>,
    /// The AWS error code (or HTTP status for operational endpoints) when it failed.
    pub error_code: Option<String>,
    /// Whether authentication refused the request.
    pub auth_failure: bool,
}

/// An AWS error response in `protocol`'s shape, with `Retry-After` on a 503.
pub fn error_response(
    err: &ApiError,
    protocol: Protocol,
    request_id: &str,
    outcome: Option<Outcome>,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(err.to_xml(protocol, request_id))));
    *resp.status_mut() =
        StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    if let Some(secs) = err.retry_after() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    let mut outcome = outcome.unwrap_or_default();
    outcome.error_code = Some(err.code().to_owned());
    resp.extensions_mut().insert(outcome);
    resp
}

/// The error shape to use before the parameters are decoded: EC2 when the credential scope or
/// the query string says so, the query protocol otherwise.
pub fn protocol_hint<B>(req: &Request<B>) -> Protocol {
    protocol_hint_parts(req.headers(), req.uri().query())
}

pub(crate) fn protocol_hint_parts(headers: &HeaderMap, query: Option<&str>) -> Protocol {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(scope_service)
        .and_then(ServiceId::from_signing_name);
    let from_query = || {
        let q = query?;
        if q.contains("Version=2016-11-15") || q.contains("%2Fec2%2Faws4_request") {
            Some(ServiceId::Ec2)
        } else {
            None
        }
    };
    from_header
        .or_else(from_query)
        .map_or(Protocol::Query, ServiceId::protocol)
}

/// The server: configuration, seams and services; [`Server::serve`] runs it.
pub struct Server {
    config: ServerConfig,
    authenticator: Arc<dyn Authenticator>,
    readiness: Arc<dyn Readiness>,
    services: HashMap<ServiceId, Arc<dyn AwsService>>,
    metrics: Arc<Metrics>,
    tls: Option<crate::tls::TlsAcceptor>,
    endpoints: HashMap<&'static str, Arc<dyn Endpoint>>,
}

impl Server {
    /// A server with `config`'s limits, `readiness` for `/ready`, the fail-closed
    /// authenticator and no services yet.
    pub fn new(config: ServerConfig, readiness: Arc<dyn Readiness>) -> Self {
        Self {
            config,
            authenticator: Arc::new(DenyAll),
            readiness,
            services: HashMap::new(),
            metrics: Arc::new(Metrics::new()),
            tls: None,
            endpoints: HashMap::new(),
        }
    }

    /// Terminate TLS on every connection with `acceptor` (see [`crate::tls::acceptor`]).
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Authenticate requests with `authenticator`.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = authenticator;
        self
    }

    /// Serve `service`'s actions (replacing any earlier handler of the same service).
    pub fn service(mut self, service: Arc<dyn AwsService>) -> Self {
        self.services.insert(service.id(), service);
        self
    }

    /// Serve `endpoint` at `path` (outside the AWS API, without SigV4).
    pub fn endpoint(mut self, path: &'static str, endpoint: Arc<dyn Endpoint>) -> Self {
        self.endpoints.insert(path, endpoint);
        self
    }

    /// The metrics registry (shared with `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The complete tower stack, for any request body type.
    pub fn into_service<B>(self) -> HttpService<B>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let c = &self.config;
        let throttle = Arc::new(AuthThrottle::new(
            c.auth_failure_threshold,
            Duration::from_secs(c.auth_failure_window_secs),
            Duration::from_secs(c.auth_ban_secs),
        ));
        let router = router::Router::new(
            self.services,
            self.authenticator,
            self.readiness,
            self.metrics.clone(),
        )
        .with_endpoints(self.endpoints);
        let stack = tower::ServiceBuilder::new()
            .layer(from_fn((), layers::request_id))
            .layer(from_fn((), layers::trace))
            .layer(from_fn(self.metrics.clone(), layers::metrics))
            .layer(from_fn(
                Duration::from_millis(c.request_timeout_ms),
                layers::timeout,
            ))
            .layer(from_fn(
                (throttle, self.metrics.clone()),
                layers::auth_throttle,
            ))
            .layer(from_fn(c.max_body_bytes, layers::body_limit))
            .service(router);
        BoxCloneService::new(stack)
    }

    /// Accept HTTP/1.1 connections on `listener` until `shutdown` completes, then stop
    /// accepting, let in-flight requests finish within the configured grace period, and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let header_timeout = Duration::from_millis(self.config.header_read_timeout_ms);
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        let tls = self.tls.clone();
        let service: HttpService<Incoming> = self.into_service();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Reap finished connection tasks so the set does not grow.
            while connections.try_join_next().is_some() {}
            let service = service.clone();
            let stop = stop_rx.clone();
            let tls = tls.clone();
            connections.spawn(async move {
                match tls {
                    None => {
                        serve_connection(TokioIo::new(stream), peer, service, header_timeout, stop)
                            .await
                    }
                    // The handshake gets the same deadline as the request headers.
                    Some(acceptor) => {
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                serve_connection(
                                    TokioIo::new(tls_stream),
                                    peer,
                                    service,
                                    header_timeout,
                                    stop,
                                )
                                .await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(client = %peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(client = %peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        while connections.try_join_next().is_some() {}
        tracing::info!(in_flight = connections.len(), "shutting down");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over; closing remaining connections");
            connections.abort_all();
        }
        Ok(())
    }
}

/// Serve HTTP/1.1 on one connection until it closes, or finish gracefully when `stop` fires.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    service: HttpService<Incoming>,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let hyper_service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        service.clone().oneshot(req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, hyper_service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
