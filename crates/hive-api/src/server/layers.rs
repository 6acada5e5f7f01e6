//! The tower layers of the server, one cross-cutting concern each. They are composed in
//! [`super::Server::into_service`], outermost first:
//!
//! 1. [`RequestIdLayer`]: a fresh request id in the request extensions and the
//!    `x-amzn-RequestId` response header;
//! 2. [`TraceLayer`]: a `tracing` span per request (id, method, path, client; never headers,
//!    query strings or bodies, which can carry credentials) and one log line per response;
//! 3. [`MetricsLayer`]: request counts by service/action/outcome and the latency histogram;
//! 4. [`TimeoutLayer`]: the per-request deadline (`RequestTimeout`, 408);
//! 5. [`AuthThrottleLayer`]: refuses sources that failed authentication too often
//!    (`Throttling`, 400); a source is the TCP peer address (forwarding headers are not
//!    trusted, so behind a proxy every client shares the proxy's budget);
//! 6. [`BodyLimitLayer`]: reads the body up to the limit (`RequestEntityTooLarge`, 413).
//!
//! Every layer has `Error = Infallible`: failures are AWS error responses, never dropped
//! connections. Layers learn what happened inside from the [`Outcome`] response extension.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Request, header};
use tower::{Layer, Service};
use tracing::Instrument;

use super::metrics::Metrics;
use super::{ClientAddr, HttpResponse, Outcome, RequestId, error_response, protocol_hint};
use crate::error::ApiError;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response header carrying the request id, as AWS names it.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

/// Paths of the operational endpoints, exempt from authentication throttling.
fn is_ops_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// Take the ready inner service, leaving a clone in its place (tower's usual dance for
/// services called from a `'static` future).
fn take<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}

fn request_id_of<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------------

/// Gives every request an id (a UUID, as AWS does) and echoes it in `x-amzn-RequestId`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = RequestId(uuid::Uuid::new_v4().to_string().into());
        req.extensions_mut().insert(id.clone());
        let mut inner = take(&mut self.inner);
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            if let Ok(value) = header::HeaderValue::from_str(&id.0) {
                resp.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// A `tracing` span per request and one structured log line per response.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner }
    }
}

/// See [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let client = req
            .extensions()
            .get::<ClientAddr>()
            .map(|c| c.0.to_string());
        let span = tracing::info_span!(
            "request",
            request_id = %request_id_of(&req),
            method = %req.method(),
            path = %crate::error::truncate(req.uri().path(), 128),
            client = client.as_deref().unwrap_or("-"),
        );
        let mut inner = take(&mut self.inner);
        Box::pin(
            async move {
                let started = Instant::now();
                let resp = inner.call(req).await?;
                let outcome = resp
                    .extensions()
                    .get::<Outcome>()
                    .cloned()
                    .unwrap_or_default();
                tracing::info!(
                    status = resp.status().as_u16(),
                    service = outcome.service.map(|s| s.signing_name()).unwrap_or("-"),
                    action = outcome.action.unwrap_or("-"),
                    error_code = outcome.error_code.as_deref().unwrap_or("-"),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "request finished"
                );
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

// ---------------------------------------------------------------------------------------------

/// Counts requests and their latency in [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// Record into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take(&mut self.inner);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let started = Instant::now();
            let resp = inner.call(req).await?;
            let outcome = resp
                .extensions()
                .get::<Outcome>()
                .cloned()
                .unwrap_or_default();
            let service = outcome.service.map(|s| s.signing_name()).unwrap_or("-");
            let action = outcome.action.unwrap_or("unknown");
            let result = outcome.error_code.as_deref().unwrap_or("ok");
            metrics.record_request(service, action, result, started.elapsed());
            if outcome.auth_failure {
                metrics.record_auth_failure(result);
            }
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Answers `RequestTimeout` (408) when the inner service takes longer than the deadline.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Allow `timeout` per request.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TimeoutService {
            inner,
            timeout: self.timeout,
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for TimeoutService<S>
where
    S: Service<Request<B>, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let request_id = request_id_of(&req);
        let protocol = protocol_hint(&req);
        let mut inner = take(&mut self.inner);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, inner.call(req)).await {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
                    Ok(error_response(
                        &ApiError::request_timeout(),
                        protocol,
                        &request_id,
                        None,
                    ))
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Failed authentications per source address, and the sources currently refused.
#[derive(Debug)]
pub struct AuthThrottle {
    threshold: u32,
    window: Duration,
    ban: Duration,
    table: Mutex<HashMap<IpAddr, Strikes>>,
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    window_start: Instant,
    failures: u32,
    banned_until: Option<Instant>,
}

/// Sources tracked before expired entries are swept, bounding memory under address churn.
const SWEEP_AT: usize = 10_000;

impl AuthThrottle {
    /// Refuse a source for `ban` once it has failed `threshold` times within `window`;
    /// a threshold of 0 disables throttling.
    pub fn new(threshold: u32, window: Duration, ban: Duration) -> Self {
        Self {
            threshold,
            window,
            ban,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` is refused at `now`.
    pub fn is_throttled(&self, ip: IpAddr, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|until| now < until)
    }

    /// Count a failed authentication from `ip` at `now`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= SWEEP_AT {
            let window = self.window;
            table.retain(|_, s| {
                s.banned_until.is_some_and(|u| now < u)
                    || now.duration_since(s.window_start) < window
            });
        }
        let strikes = table.entry(ip).or_insert(Strikes {
            window_start: now,
            failures: 0,
            banned_until: None,
        });
        if now.duration_since(strikes.window_start) >= self.window {
            strikes.window_start = now;
            strikes.failures = 0;
        }
        strikes.failures = strikes.failures.saturating_add(1);
        if strikes.failures >= self.threshold {
            strikes.banned_until = Some(now + self.ban);
            strikes.failures = 0;
            strikes.window_start = now;
        }
    }
}

/// Refuses API requests (`Throttling`) from sources that failed authentication too often, and
/// counts failures reported by the inner service's [`Outcome`].
#[derive(Debug, Clone)]
pub struct AuthThrottleLayer {
    throttle: Arc<AuthThrottle>,
    metrics: Arc<Metrics>,
}

impl AuthThrottleLayer {
    /// Use `throttle`, counting refusals in `metrics`.
    pub fn new(throttle: Arc<AuthThrottle>, metrics: Arc<Metrics>) -> Self {
        Self { throttle, metrics }
    }
}

impl<S> Layer<S> for AuthThrottleLayer {
    type Service = AuthThrottleService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthThrottleService {
            inner,
            throttle: self.throttle.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`AuthThrottleLayer`].
#[derive(Debug, Clone)]
pub struct AuthThrottleService<S> {
    inner: S,
    throttle: Arc<AuthThrottle>,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for AuthThrottleService<S>
where
    S: Service<Request<B>, Response = HttpResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ip = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        let exempt = is_ops_path(req.uri().path());
        let mut inner = take(&mut self.inner);
        let throttle = self.throttle.clone();
        if let Some(ip) = ip.filter(|ip| !exempt && throttle.is_throttled(*ip, Instant::now())) {
            self.metrics.record_throttled();
            tracing::warn!(client = %ip, "refused: too many failed authentications");
            let resp = error_response(
                &ApiError::throttling(),
                protocol_hint(&req),
                &request_id_of(&req),
                None,
            );
            return Box::pin(async move { Ok(resp) });
        }
        Box::pin(async move {
            let resp = inner.call(req).await?;
            let failed = resp
                .extensions()
                .get::<Outcome>()
                .is_some_and(|o| o.auth_failure);
            if let (true, Some(ip)) = (failed, ip) {
                throttle.record_failure(ip, Instant::now());
            }
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// Reads the whole body, refusing more than the limit with `RequestEntityTooLarge` (413); the
/// inner service receives `Request<Bytes>`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// Accept at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimitService {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimitService<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for BodyLimitService<S>
where
    S: Service<Request<Bytes>, Response = HttpResponse, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let limit = self.limit;
        let request_id = request_id_of(&req);
        let protocol = protocol_hint(&req);
        let too_large = move |request_id: &str| {
            error_response(
                &ApiError::request_entity_too_large(limit),
                protocol,
                request_id,
                None,
            )
        };
        // Refuse early on a declared length, before reading anything.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            let resp = too_large(&request_id);
            return Box::pin(async move { Ok(resp) });
        }
        let mut inner = take(&mut self.inner);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(too_large(&request_id));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "request body could not be read");
                    return Ok(error_response(
                        &ApiError::incomplete_body(),
                        protocol,
                        &request_id,
                        None,
                    ));
                }
            };
            inner.call(Request::from_parts(parts, bytes)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn throttle_bans_after_threshold_and_forgives_after_ban() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), Duration::from_secs(30));
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let t0 = Instant::now();
        t.record_failure(ip, t0);
        t.record_failure(ip, t0);
        assert!(!t.is_throttled(ip, t0));
        t.record_failure(ip, t0);
        assert!(t.is_throttled(ip, t0 + Duration::from_secs(1)));
        assert!(!t.is_throttled(other, t0), "only the failing source");
        assert!(
            !t.is_throttled(ip, t0 + Duration::from_secs(31)),
            "ban expires"
        );
    }

    #[test]
    fn throttle_window_resets_slow_failures() {
        let t = AuthThrottle::new(2, Duration::from_secs(10), Duration::from_secs(30));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        t.record_failure(ip, t0);
        t.record_failure(ip, t0 + Duration::from_secs(11));
        assert!(!t.is_throttled(ip, t0 + Duration::from_secs(11)));
        let disabled = AuthThrottle::new(0, Duration::from_secs(10), Duration::from_secs(30));
        for _ in 0..100 {
            disabled.record_failure(ip, t0);
        }
        assert!(!disabled.is_throttled(ip, t0));
    }

    #[test]
    fn throttle_table_is_swept() {
        let t = AuthThrottle::new(5, Duration::from_secs(1), Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            t.record_failure(IpAddr::V4(Ipv4Addr::from(i)), t0);
        }
        t.record_failure(IpAddr::V4(Ipv4Addr::LOCALHOST), t0 + Duration::from_secs(5));
        let len = t.table.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert_eq!(len, 1);
    }
}
