//! First start: the sealing key and the account's administrator ([`hive_node::bootstrap`],
//! shared with `hive-cli`), and the `/bootstrap` endpoint that spends a setup token.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq as _;

pub use hive_node::bootstrap::*;

use hive_iam_store::{BootstrapStep, IamRepo, NewAccessKey};
use hive_kv::{BucketConfig, KvError, KvStore};
use hive_node::config::Secret;

use crate::error::ApiError;
use crate::server::{Endpoint, EndpointReply};

/// `POST /bootstrap`: one-time bootstrap guarded by the setup token (see the module docs).
pub struct SetupEndpoint {
    iam: Arc<IamRepo>,
    store: Arc<dyn KvStore>,
    token: Secret,
    claimant: Claimant,
    /// One request at a time: they share this process's claim.
    watch: tokio::sync::Mutex<ClaimWatch>,
}

impl std::fmt::Debug for SetupEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupEndpoint").finish_non_exhaustive()
    }
}

impl SetupEndpoint {
    /// The endpoint for `token` over `iam`, recording the spent token in `store`, claiming
    /// the bootstrap as `claimant`.
    pub fn new(
        iam: Arc<IamRepo>,
        store: Arc<dyn KvStore>,
        token: Secret,
        claimant: Claimant,
    ) -> Self {
        Self {
            iam,
            store,
            token,
            claimant,
            watch: tokio::sync::Mutex::new(ClaimWatch::default()),
        }
    }

    fn token_matches(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(SETUP_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let expected = self.token.expose().as_bytes();
        // Lengths differ only for a wrong token; the comparison of equal lengths is constant-time.
        presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
    }

    async fn run(&self) -> Result<NewAccessKey, ApiError> {
        let mut watch = self.watch.lock().await;
        let bucket = self
            .store
            .create_or_open(&BucketConfig::new(SETUP_BUCKET))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "setup bucket unavailable");
                ApiError::service_unavailable()
            })?;
        let claim = match step(&self.iam, ACCOUNT_ID, &self.claimant, &mut watch).await? {
            BootstrapStep::Claimed(claim) => claim,
            BootstrapStep::Busy { .. } => return Err(ApiError::service_unavailable()),
            BootstrapStep::Done => {
                return Err(ApiError::new(
                    "SetupTokenSpent",
                    "The setup token has been used; the account is bootstrapped.",
                    409,
                ));
            }
        };
        let marker = format!(
            r#"{{"spent_at":"{}","access_key_id":"{}"}}"#,
            time::OffsetDateTime::now_utc().unix_timestamp(),
            claim.key.record.access_key_id
        );
        match bucket.create(SETUP_SPENT_KEY, Bytes::from(marker)).await {
            // Already there: an earlier attempt of this claim recorded it.
            Ok(_) | Err(KvError::AlreadyExists { .. }) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot record the setup token as spent");
                return Err(ApiError::service_unavailable());
            }
        }
        if !self.iam.bootstrap_complete(&claim).await? {
            // Taken over by a process that judged this one dead: it hands the key out.
            return Err(ApiError::service_unavailable());
        }
        Ok(claim.key)
    }
}

#[async_trait]
impl Endpoint for SetupEndpoint {
    async fn call(&self, method: &Method, headers: &HeaderMap, _body: &[u8]) -> EndpointReply {
        if method != Method::POST {
            return EndpointReply::Error(ApiError::method_not_allowed());
        }
        if !self.token_matches(headers) {
            return EndpointReply::AuthFailure(ApiError::access_denied(
                "The setup token is missing or wrong.",
            ));
        }
        match self.run().await {
            Ok(key) => {
                tracing::info!(
                    access_key_id = %key.record.access_key_id,
                    "bootstrapped account {ACCOUNT_ID} through the setup token"
                );
                let body = zeroize::Zeroizing::new(format!(
                    r#"{{"AccountId":"{ACCOUNT_ID}","UserName":"{}","Arn":"{}","AccessKeyId":"{}","SecretAccessKey":"{}"}}"#,
                    hive_iam_store::ADMIN_USER,
                    hive_iam::identity::arn(
                        ACCOUNT_ID,
                        hive_iam::identity::EntityKind::User,
                        "/",
                        hive_iam_store::ADMIN_USER
                    ),
                    key.record.access_key_id,
                    key.secret_access_key.expose()
                ));
                EndpointReply::Ok {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: Bytes::from(body.as_bytes().to_vec()),
                }
            }
            Err(e) => EndpointReply::Error(e),
        }
    }
}
