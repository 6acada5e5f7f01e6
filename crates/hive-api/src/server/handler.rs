//! The seams between the server and the rest of Hive: who is calling ([`Authenticator`],
//! [`Principal`]), what serves an action ([`AwsService`]), and whether storage is usable
//! ([`Readiness`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::{HeaderMap, Method};

use crate::error::ApiError;
use crate::wire::ServiceId;
use crate::wire::query::Params;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The 12-digit account id.
    pub account_id: String,
    /// The caller's ARN (`arn:aws:iam::000000000000:user/admin`, or an assumed-role ARN).
    pub arn: String,
    /// The unique id (`AIDA...` for users, `AROA...:session` for role sessions).
    pub user_id: String,
    /// The access key id that signed the request (not a secret), if any.
    pub access_key_id: Option<String>,
    /// The identity as `hive-iam` knows it (what policies are looked up for).
    pub identity: hive_iam::identity::Principal,
    /// The session policy of temporary credentials, intersected with the identity's policies.
    pub session_policy: Option<String>,
}

/// What an [`Authenticator`] sees of a request: everything SigV4 signs.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Request path, still percent-encoded as sent.
    pub path: &'a str,
    /// Raw query string, if any (presigned requests carry the signature here).
    pub query: Option<&'a str>,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// The raw body.
    pub body: &'a [u8],
    /// The decoded parameters (query string and form body).
    pub params: &'a Params,
    /// The service the request was routed to.
    pub service: ServiceId,
    /// The peer address.
    pub client: Option<SocketAddr>,
}

/// Decides who sent a request. Called before any action runs; an error is sent to the client
/// as is (and counted as an authentication failure for throttling).
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The caller, or the AWS error refusing the request.
    async fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Principal, ApiError>;
}

/// The fail-closed authenticator: refuses every request. Unsigned requests get
/// `MissingAuthenticationToken`, signed ones `InvalidClientTokenId` (no key is known).
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

#[async_trait]
impl Authenticator for DenyAll {
    async fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Principal, ApiError> {
        let signed = request.headers.contains_key(hyper::header::AUTHORIZATION)
            || request.params.get("X-Amz-Credential").is_some();
        Err(if signed {
            ApiError::invalid_client_token_id()
        } else {
            ApiError::missing_authentication_token()
        })
    }
}

/// What an [`Endpoint`] answers.
#[derive(Debug)]
pub enum EndpointReply {
    /// A response body of its own.
    Ok {
        /// HTTP status.
        status: hyper::StatusCode,
        /// `Content-Type`.
        content_type: &'static str,
        /// The body.
        body: bytes::Bytes,
    },
    /// An AWS error (query-protocol body).
    Error(ApiError),
    /// An AWS error that also counts as a failed authentication (for throttling).
    AuthFailure(ApiError),
}

/// An extra endpoint beside the AWS API at its own path (e.g. `POST /bootstrap`), served
/// without SigV4: it does its own checks.
#[async_trait]
pub trait Endpoint: Send + Sync + 'static {
    /// Answer one request.
    async fn call(&self, method: &Method, headers: &HeaderMap, body: &[u8]) -> EndpointReply;
}

/// Everything a handler knows about the request besides its parameters.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (also in `x-amzn-RequestId` and the body).
    pub request_id: String,
    /// The service.
    pub service: ServiceId,
    /// The action, as the service's [`AwsService::action`] named it.
    pub action: &'static str,
    /// The authenticated caller.
    pub caller: Principal,
    /// The peer address.
    pub client: Option<SocketAddr>,
}

/// One AWS service's actions. The server decodes, routes and authenticates; the service turns
/// parameters into an XML body (see [`crate::wire::xml`]) or an [`ApiError`].
///
/// ```
/// use async_trait::async_trait;
/// use hive_api::error::ApiError;
/// use hive_api::server::{AwsService, RequestContext};
/// use hive_api::wire::{Protocol, ServiceId, query::Params, xml};
///
/// struct Sts;
///
/// #[async_trait]
/// impl AwsService for Sts {
///     fn id(&self) -> ServiceId { ServiceId::Sts }
///     fn action(&self, name: &str) -> Option<&'static str> {
///         ["GetCallerIdentity"].into_iter().find(|a| *a == name)
///     }
///     async fn call(&self, ctx: &RequestContext, _params: &Params) -> Result<String, ApiError> {
///         match ctx.action {
///             "GetCallerIdentity" => Ok(xml::query_response(ServiceId::Sts, ctx.action, &ctx.request_id, |r| {
///                 r.text("UserId", &ctx.caller.user_id)
///                     .text("Account", &ctx.caller.account_id)
///                     .text("Arn", &ctx.caller.arn);
///             })),
///             other => Err(ApiError::invalid_action(other, Protocol::Query)),
///         }
///     }
/// }
/// // Server::new(config, readiness).service(std::sync::Arc::new(Sts))
/// ```
#[async_trait]
pub trait AwsService: Send + Sync + 'static {
    /// Which service this is.
    fn id(&self) -> ServiceId;
    /// The canonical name of `action` when this service implements it, `None` otherwise
    /// (the server then answers `InvalidAction`). Returning `&'static str` keeps metric
    /// labels bounded.
    fn action(&self, action: &str) -> Option<&'static str>;
    /// Run `ctx.action` with `params`; the `Ok` value is the complete XML body.
    async fn call(&self, ctx: &RequestContext, params: &Params) -> Result<String, ApiError>;
}

/// A deep health check of what the server depends on (storage), for `GET /ready`.
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when requests can be served; the error text is logged, not sent.
    async fn check(&self) -> Result<(), String>;
}

/// Readiness from a synchronous closure (tests, simple embeddings).
pub struct FnReadiness<F>(pub F);

#[async_trait]
impl<F> Readiness for FnReadiness<F>
where
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    async fn check(&self) -> Result<(), String> {
        (self.0)()
    }
}

/// Ready when the data directory exists and a file can be written and removed in it.
#[derive(Debug, Clone)]
pub struct DataDirReadiness {
    dir: PathBuf,
}

impl DataDirReadiness {
    /// Check `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl Readiness for DataDirReadiness {
    async fn check(&self) -> Result<(), String> {
        let probe = self
            .dir
            .join(format!(".ready-probe-{}", uuid::Uuid::new_v4().simple()));
        tokio::fs::write(&probe, b"ok")
            .await
            .map_err(|e| format!("cannot write in {}: {e}", self.dir.display()))?;
        tokio::fs::remove_file(&probe)
            .await
            .map_err(|e| format!("cannot remove {}: {e}", probe.display()))
    }
}

/// Ready when a read from a `hive-kv` store succeeds (a `get` in a small health bucket).
pub struct KvReadiness {
    store: Arc<dyn hive_kv::KvStore>,
}

impl KvReadiness {
    /// The bucket the probe reads; created on first use.
    pub const BUCKET: &'static str = "hive_health";

    /// Check `store`.
    pub fn new(store: Arc<dyn hive_kv::KvStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Readiness for KvReadiness {
    async fn check(&self) -> Result<(), String> {
        let bucket = self
            .store
            .create_or_open(&hive_kv::BucketConfig::new(Self::BUCKET))
            .await
            .map_err(|e| format!("storage: {e}"))?;
        bucket
            .get("probe")
            .await
            .map(|_| ())
            .map_err(|e| format!("storage: {e}"))
    }
}

/// One table per family of actions: every row names an action (or several sharing a handler)
/// and the expression serving it. The macro makes the family's `ACTIONS` list and its dispatch
/// function from the same rows, so what a service advertises and what it serves cannot
/// disagree. An optional `prepare` block runs before the dispatch (e.g. opening a
/// repository); the `_` arm answers an action the table lacks.
///
/// ```ignore
/// action_table! {
///     /// Serve `ctx.action`.
///     pub(super) async fn call(app: &App, ctx: &RequestContext, params: &Params) -> Result<String, ApiError> {
///         dispatch ctx.action => {
///             "GetRole" => get_role(app, ctx, params).await,
///             "AttachUserPolicy" | "AttachRolePolicy" => attach(app, ctx, params).await,
///             _ => Err(ApiError::invalid_action(ctx.action, Protocol::Query)),
///         }
///     }
/// }
/// ```
macro_rules! action_table {
    (
        $(#[$doc:meta])*
        $vis:vis async fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty {
            $(prepare { $($prepare:stmt;)* })?
            dispatch $on:expr => {
                $($action:literal $(| $alias:literal)* => $serve:expr,)+
                _ => $fallback:expr $(,)?
            }
        }
    ) => {
        /// The actions this table serves: the rows of its dispatch.
        pub const ACTIONS: &[&str] = &[$($action, $($alias,)*)+];

        $(#[$doc])*
        $vis async fn $name($($arg: $ty),*) -> $ret {
            $($($prepare)*)?
            match $on {
                $($action $(| $alias)* => $serve,)+
                _ => $fallback,
            }
        }
    };
}
pub(crate) use action_table;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_all_refuses_signed_and_unsigned() {
        let params = Params::default();
        let mut headers = HeaderMap::new();
        let method = Method::POST;
        let req = |headers: &HeaderMap| -> Result<Principal, ApiError> {
            let r = AuthRequest {
                method: &method,
                path: "/",
                query: None,
                headers,
                body: b"",
                params: &params,
                service: ServiceId::Iam,
                client: None,
            };
            futures::executor::block_on(DenyAll.authenticate(&r))
        };
        let e = req(&headers).expect_err("unsigned");
        assert_eq!((e.code(), e.status()), ("MissingAuthenticationToken", 403));
        headers.insert(
            hyper::header::AUTHORIZATION,
            hyper::header::HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x"),
        );
        assert_eq!(
            req(&headers).expect_err("signed").code(),
            "InvalidClientTokenId"
        );
    }

    #[tokio::test]
    async fn data_dir_readiness_fails_for_missing_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(DataDirReadiness::new(dir.path()).check().await.is_ok());
        assert!(
            DataDirReadiness::new(dir.path().join("absent"))
                .check()
                .await
                .is_err()
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("list").count(),
            0,
            "probe removed"
        );
    }

    #[tokio::test]
    async fn kv_readiness_reads_the_store() {
        let store: Arc<dyn hive_kv::KvStore> = Arc::new(hive_kv::memory::MemoryStore::new());
        assert!(KvReadiness::new(store).check().await.is_ok());
    }
}
