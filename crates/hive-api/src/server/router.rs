//! The innermost service: operational endpoints (`/health`, `/ready`, `/metrics`) and the AWS
//! API at `/`: decode parameters, pick the service, authenticate, dispatch the action.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};

use super::handler::{
    AuthRequest, Authenticator, AwsService, Endpoint, EndpointReply, Readiness, RequestContext,
};
use super::metrics::Metrics;
use super::{ClientAddr, HttpResponse, Outcome, RequestId, error_response};
use crate::error::ApiError;
use crate::wire::query::{Dialect, Params};
use crate::wire::{Protocol, ServiceId, scope_service};

/// How long `/ready` waits for the storage check.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// Routes requests; cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    services: HashMap<ServiceId, Arc<dyn AwsService>>,
    authenticator: Arc<dyn Authenticator>,
    readiness: Arc<dyn Readiness>,
    metrics: Arc<Metrics>,
    endpoints: HashMap<&'static str, Arc<dyn Endpoint>>,
}

impl Router {
    /// A router over `services`.
    pub fn new(
        services: HashMap<ServiceId, Arc<dyn AwsService>>,
        authenticator: Arc<dyn Authenticator>,
        readiness: Arc<dyn Readiness>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(RouterInner {
                services,
                authenticator,
                readiness,
                metrics,
                endpoints: HashMap::new(),
            }),
        }
    }

    /// Also serve these extra endpoints, by exact path.
    pub fn with_endpoints(mut self, endpoints: HashMap<&'static str, Arc<dyn Endpoint>>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.endpoints = endpoints;
        }
        self
    }
}

impl tower::Service<Request<Bytes>> for Router {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.route(req).await) })
    }
}

fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
    action: &'static str,
) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp.extensions_mut().insert(Outcome {
        action: Some(action),
        error_code: (!status.is_success()).then(|| status.as_u16().to_string()),
        ..Outcome::default()
    });
    resp
}

impl RouterInner {
    async fn route(&self, req: Request<Bytes>) -> HttpResponse {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/health") => plain(
                StatusCode::OK,
                "application/json",
                r#"{"status":"ok"}"#,
                "health",
            ),
            (&Method::GET, "/ready") => self.ready().await,
            (&Method::GET, "/metrics") => plain(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
                "metrics",
            ),
            (&Method::GET | &Method::POST, "/") => self.api(req, &request_id).await,
            (_, "/") => error_response(
                &ApiError::method_not_allowed(),
                Protocol::Query,
                &request_id,
                None,
            ),
            (method, path) if self.endpoints.contains_key(path) => {
                let method = method.clone();
                let path = path.to_owned();
                let (parts, body) = req.into_parts();
                let reply = match self.endpoints.get(path.as_str()) {
                    Some(e) => e.call(&method, &parts.headers, &body).await,
                    None => EndpointReply::Error(ApiError::not_found()),
                };
                match reply {
                    EndpointReply::Ok {
                        status,
                        content_type,
                        body,
                    } => plain(status, content_type, body, "endpoint"),
                    EndpointReply::Error(e) => {
                        error_response(&e, Protocol::Query, &request_id, None)
                    }
                    EndpointReply::AuthFailure(e) => error_response(
                        &e,
                        Protocol::Query,
                        &request_id,
                        Some(Outcome {
                            auth_failure: true,
                            ..Outcome::default()
                        }),
                    ),
                }
            }
            _ => error_response(&ApiError::not_found(), Protocol::Query, &request_id, None),
        }
    }

    async fn ready(&self) -> HttpResponse {
        let result = match tokio::time::timeout(READY_TIMEOUT, self.readiness.check()).await {
            Ok(result) => result,
            Err(_) => Err(format!("storage check took longer than {READY_TIMEOUT:?}")),
        };
        match result {
            Ok(()) => plain(
                StatusCode::OK,
                "application/json",
                r#"{"status":"ready"}"#,
                "ready",
            ),
            Err(reason) => {
                tracing::warn!(%reason, "not ready");
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"unavailable"}"#,
                    "ready",
                )
            }
        }
    }

    async fn api(&self, req: Request<Bytes>, request_id: &str) -> HttpResponse {
        let (parts, body) = req.into_parts();
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let query = parts.uri.query();

        // Which service: the signature's credential scope first, then `Version`.
        let scoped = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(scope_service)
            .and_then(ServiceId::from_signing_name);
        let fail = |e: &ApiError, protocol: Protocol, service: Option<ServiceId>| {
            error_response(
                e,
                protocol,
                request_id,
                Some(Outcome {
                    service,
                    ..Outcome::default()
                }),
            )
        };
        let hint = super::protocol_hint_parts(&parts.headers, query);

        let mut params = match decode(&parts.method, &parts.headers, query, &body) {
            Ok(p) => p,
            Err(e) => return fail(&e, hint, scoped),
        };
        let scoped = scoped.or_else(|| {
            params
                .get("X-Amz-Credential")
                .and_then(scope_service)
                .and_then(ServiceId::from_signing_name)
        });
        let service = match (scoped, params.version()) {
            (Some(s), Some(v)) if v != s.version() => {
                return fail(&ApiError::no_such_version(v), s.protocol(), Some(s));
            }
            (Some(s), _) => s,
            (None, Some(v)) => match ServiceId::from_version(v) {
                Some(s) => s,
                None => return fail(&ApiError::no_such_version(v), hint, None),
            },
            (None, None) => {
                return fail(
                    &ApiError::new(
                        "MissingParameter",
                        "The request must contain the parameter Version",
                        400,
                    ),
                    hint,
                    None,
                );
            }
        };
        let protocol = service.protocol();
        params.set_dialect(match protocol {
            Protocol::Query => Dialect::Query,
            Protocol::Ec2 => Dialect::Ec2,
        });
        let Some(action_name) = params.action().map(str::to_owned) else {
            return fail(&ApiError::missing_action(), protocol, Some(service));
        };

        // Authenticate before anything about the action is revealed.
        let auth = AuthRequest {
            method: &parts.method,
            path: parts.uri.path(),
            query,
            headers: &parts.headers,
            body: &body,
            params: &params,
            service,
            client,
        };
        let caller = match self.authenticator.authenticate(&auth).await {
            Ok(caller) => caller,
            Err(e) => {
                tracing::info!(code = e.code(), "authentication failed");
                let outcome = Outcome {
                    service: Some(service),
                    // A store that cannot answer is not a guess at a key: counting it would
                    // throttle every client behind the address after an outage.
                    auth_failure: e.status() < 500,
                    ..Outcome::default()
                };
                return error_response(&e, protocol, request_id, Some(outcome));
            }
        };

        let handler = self.services.get(&service);
        let Some((handler, action)) =
            handler.and_then(|h| h.action(&action_name).map(|a| (h.clone(), a)))
        else {
            return fail(
                &ApiError::invalid_action(&action_name, protocol),
                protocol,
                Some(service),
            );
        };
        let ctx = RequestContext {
            request_id: request_id.to_owned(),
            service,
            action,
            caller,
            client,
        };
        let outcome = Outcome {
            service: Some(service),
            action: Some(action),
            ..Outcome::default()
        };
        // A panicking handler is a bug; the client still gets an AWS error, not a reset.
        let result = match AssertUnwindSafe(handler.call(&ctx, &params))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(_) => {
                tracing::error!(action, "handler panicked");
                Err(ApiError::internal())
            }
        };
        match result {
            Ok(xml) => {
                let mut resp = Response::new(Full::new(Bytes::from(xml)));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/xml"),
                );
                resp.extensions_mut().insert(outcome);
                resp
            }
            Err(e) => error_response(&e, protocol, request_id, Some(outcome)),
        }
    }
}

/// The parameters of a GET (query string) or POST (form body, plus any query string).
fn decode(
    method: &Method,
    headers: &hyper::HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Params, ApiError> {
    let mut params = Params::parse(query.unwrap_or("").as_bytes())?;
    if method == Method::POST && !body.is_empty() {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(ApiError::unsupported_media_type());
        }
        params.extend_from(body)?;
    }
    Ok(params)
}
