//! The tower layers of the server, one cross-cutting concern each. A layer is one async
//! function `(state, request, next) -> HttpResponse`, made a tower layer by [`from_fn`]; they
//! are composed in [`super::Server::into_service`], outermost first:
//!
//! 1. [`request_id`]: a fresh request id in the request extensions and the
//!    `x-amzn-RequestId` response header;
//! 2. [`trace`]: a `tracing` span per request (id, method, path, client; never headers,
//!    query strings or bodies, which can carry credentials) and one log line per response;
//! 3. [`metrics`]: request counts by service/action/outcome and the latency histogram;
//! 4. [`timeout`]: the per-request deadline (`RequestTimeout`, 408);
//! 5. [`auth_throttle`]: refuses sources that failed authentication too often
//!    (`Throttling`, 400); a source is the TCP peer address (forwarding headers are not
//!    trusted, so behind a proxy every client shares the proxy's budget);
//! 6. [`body_limit`]: reads the body up to the limit (`RequestEntityTooLarge`, 413).
//!
//! Every layer has `Error = Infallible` (a function returns a response, not a `Result`):
//! failures are AWS error responses, never dropped connections. Layers learn what happened
//! inside from the [`Outcome`] response extension.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::NeverError;
use http_body_util::{BodyExt, Limited};
use hyper::{Request, header};
use tower::{Layer, Service, ServiceExt as _};
use tracing::Instrument;

use super::metrics::Metrics;
use super::{ClientAddr, HttpResponse, Outcome, RequestId, error_response, protocol_hint};
use crate::error::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response header carrying the request id, as AWS names it.
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

// ---------------------------------------------------------------------------------------------

/// The layer running `f` around the inner service: `f(state.clone(), request, next)` per
/// request, where [`Next::run`] calls the rest of the stack (or is never called, when `f`
/// answers by itself).
pub fn from_fn<St, F>(state: St, f: F) -> FnLayer<St, F> {
    FnLayer { state, f }
}

/// See [`from_fn`].
#[derive(Debug, Clone)]
pub struct FnLayer<St, F> {
    state: St,
    f: F,
}

impl<S, St: Clone, F: Clone> Layer<S> for FnLayer<St, F> {
    type Service = FnService<St, F, S>;
    fn layer(&self, inner: S) -> Self::Service {
        FnService {
            state: self.state.clone(),
            f: self.f.clone(),
            inner,
        }
    }
}

/// The service of an [`FnLayer`]: always ready (the inner service is made ready by
/// [`Next::run`]), never failing.
#[derive(Debug, Clone)]
pub struct FnService<St, F, S> {
    state: St,
    f: F,
    inner: S,
}

impl<St, F, S, B, Fut> Service<Request<B>> for FnService<St, F, S>
where
    St: Clone,
    F: Fn(St, Request<B>, Next<S>) -> Fut,
    Fut: Future<Output = HttpResponse>,
    S: Clone,
{
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = NeverError<Fut>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let next = Next {
            inner: self.inner.clone(),
        };
        (self.f)(self.state.clone(), req, next).never_error()
    }
}

/// The rest of the stack below a layer function.
#[derive(Debug)]
pub struct Next<S> {
    inner: S,
}

/// What a layer function calls: an infallible service of `Request<B>`.
pub trait Inner<B>: Service<Request<B>, Response = HttpResponse, Error = Infallible> {}

impl<S, B> Inner<B> for S where S: Service<Request<B>, Response = HttpResponse, Error = Infallible> {}

impl<S> Next<S> {
    /// Wait until the rest of the stack is ready, and call it with `req`.
    pub async fn run<B>(self, req: Request<B>) -> HttpResponse
    where
        S: Inner<B>,
    {
        let Ok(resp) = self.inner.oneshot(req).await;
        resp
    }
}

/// Paths of the operational endpoints, exempt from authentication throttling.
fn is_ops_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

fn request_id_of<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn outcome_of(resp: &HttpResponse) -> Outcome {
    resp.extensions()
        .get::<Outcome>()
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------

/// Gives every request an id (a UUID, as AWS does) and echoes it in `x-amzn-RequestId`.
pub async fn request_id<B>((): (), mut req: Request<B>, next: Next<impl Inner<B>>) -> HttpResponse {
    let id = RequestId(uuid::Uuid::new_v4().to_string().into());
    req.extensions_mut().insert(id.clone());
    let mut resp = next.run(req).await;
    if let Ok(value) = header::HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    resp
}

/// A `tracing` span per request and one structured log line per response.
pub async fn trace<B>((): (), req: Request<B>, next: Next<impl Inner<B>>) -> HttpResponse {
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
    async move {
        let started = Instant::now();
        let resp = next.run(req).await;
        let outcome = outcome_of(&resp);
        tracing::info!(
            status = resp.status().as_u16(),
            service = outcome.service.map(|s| s.signing_name()).unwrap_or("-"),
            action = outcome.action.unwrap_or("-"),
            error_code = outcome.error_code.as_deref().unwrap_or("-"),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Counts requests and their latency in `metrics`.
pub async fn metrics<B>(
    metrics: Arc<Metrics>,
    req: Request<B>,
    next: Next<impl Inner<B>>,
) -> HttpResponse {
    let started = Instant::now();
    let resp = next.run(req).await;
    let outcome = outcome_of(&resp);
    let service = outcome.service.map(|s| s.signing_name()).unwrap_or("-");
    let action = outcome.action.unwrap_or("unknown");
    let result = outcome.error_code.as_deref().unwrap_or("ok");
    metrics.record_request(service, action, result, started.elapsed());
    if outcome.auth_failure {
        metrics.record_auth_failure(result);
    }
    resp
}

/// Answers `RequestTimeout` (408) when the rest of the stack takes longer than `limit`.
pub async fn timeout<B>(
    limit: Duration,
    req: Request<B>,
    next: Next<impl Inner<B>>,
) -> HttpResponse {
    let request_id = request_id_of(&req);
    let protocol = protocol_hint(&req);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            error_response(&ApiError::request_timeout(), protocol, &request_id, None)
        }
    }
}

/// Refuses API requests (`Throttling`) from sources that `throttle` refuses, counting the
/// refusals in `metrics`, and counts the failures reported by the inner [`Outcome`].
pub async fn auth_throttle<B>(
    (throttle, metrics): (Arc<AuthThrottle>, Arc<Metrics>),
    req: Request<B>,
    next: Next<impl Inner<B>>,
) -> HttpResponse {
    let ip = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let exempt = is_ops_path(req.uri().path());
    if let Some(ip) = ip.filter(|ip| !exempt && throttle.is_throttled(*ip, Instant::now())) {
        metrics.record_throttled();
        tracing::warn!(client = %ip, "refused: too many failed authentications");
        return error_response(
            &ApiError::throttling(),
            protocol_hint(&req),
            &request_id_of(&req),
            None,
        );
    }
    let resp = next.run(req).await;
    let failed = resp
        .extensions()
        .get::<Outcome>()
        .is_some_and(|o| o.auth_failure);
    if let (true, Some(ip)) = (failed, ip) {
        throttle.record_failure(ip, Instant::now());
    }
    resp
}

/// Reads the whole body, refusing more than `limit` bytes with `RequestEntityTooLarge` (413);
/// the rest of the stack receives `Request<Bytes>`.
pub async fn body_limit<B>(
    limit: usize,
    req: Request<B>,
    next: Next<impl Inner<Bytes>>,
) -> HttpResponse
where
    B: hyper::body::Body,
    B::Error: Into<BoxError>,
{
    let request_id = request_id_of(&req);
    let protocol = protocol_hint(&req);
    let too_large = || {
        error_response(
            &ApiError::request_entity_too_large(limit),
            protocol,
            &request_id,
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
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            tracing::debug!(error = %e, "request body could not be read");
            return error_response(&ApiError::incomplete_body(), protocol, &request_id, None);
        }
    };
    next.run(Request::from_parts(parts, bytes)).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Appends `tag` to `x-order` on the way out; the outer one answers `/stop` by itself.
    async fn tagging<B>(
        tag: &'static str,
        req: Request<B>,
        next: Next<impl Inner<B>>,
    ) -> HttpResponse {
        if tag == "outer" && req.uri().path() == "/stop" {
            let mut resp = HttpResponse::new(Full::default());
            *resp.status_mut() = hyper::StatusCode::FORBIDDEN;
            return resp;
        }
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .append("x-order", header::HeaderValue::from_static(tag));
        resp
    }

    #[tokio::test]
    async fn fn_layers_run_outermost_first_and_may_answer_alone() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let inner = tower::service_fn(move |_req: Request<Bytes>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(HttpResponse::new(Full::default())) }
        });
        let svc = tower::ServiceBuilder::new()
            .layer(from_fn("outer", tagging))
            .layer(from_fn("inner", tagging))
            .service(inner);

        let Ok(resp) = svc.clone().oneshot(Request::new(Bytes::new())).await;
        let order: Vec<_> = resp.headers().get_all("x-order").iter().collect();
        assert_eq!(
            order,
            ["inner", "outer"],
            "the outer layer sees the response last"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let stop = Request::builder()
            .uri("/stop")
            .body(Bytes::new())
            .expect("a valid request");
        let Ok(resp) = svc.oneshot(stop).await;
        assert_eq!(resp.status(), hyper::StatusCode::FORBIDDEN);
        assert!(resp.headers().get("x-order").is_none());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the inner service was not called"
        );
    }

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
