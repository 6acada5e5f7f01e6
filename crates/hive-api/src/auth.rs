//! SigV4 authentication of every API request, over `hive-iam`'s verifier and the cached
//! credentials of [`App`].
//!
//! Both forms are accepted: the `Authorization` header and the presigned query string
//! (`X-Amz-Credential`, ...). Temporary credentials must carry their `X-Amz-Security-Token`.
//! Refusals answer what AWS IAM and STS answer:
//!
//! | case | code | status |
//! |---|---|---|
//! | no signature at all | `MissingAuthenticationToken` | 403 |
//! | unknown or inactive access key, wrong or missing session token | `InvalidClientTokenId` | 403 |
//! | wrong secret, tampered request, credential scoped to another service | `SignatureDoesNotMatch` | 403 |
//! | clock more than 15 minutes off | `SignatureDoesNotMatch` ("Signature expired: ...") | 403 |
//! | expired temporary credentials | `ExpiredToken` | 403 |
//! | malformed `Authorization` header | `IncompleteSignature` | 400 |
//!
//! (AWS IAM and STS report clock skew as `SignatureDoesNotMatch` with the message `Signature
//! expired: <time> is now earlier than <bound> (<now> - 15 min.)`, as the AWS CLI shows it;
//! `RequestTimeTooSkewed` is S3's word for it.)
//!
//! Successful authentications are recorded for `GetAccessKeyLastUsed` off the request path and
//! at most once a minute per key and service in this process. Nothing here logs a secret:
//! only access key ids (which are not secret) and error codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hive_iam::error::IamError;
use hive_iam::sigv4::{Payload, SigV4Error, SignedRequest, Verifier, parse_authorization};

use crate::app::App;
use crate::error::ApiError;
use crate::server::{AuthRequest, Authenticator, Principal};

/// How often one key's use (per service) is written to storage at most, from one process.
pub const KEY_USE_INTERVAL: Duration = Duration::from_secs(60);

/// Entries of the key-use throttle before it is emptied.
const KEY_USE_CAPACITY: usize = 16_384;

/// The SigV4 [`Authenticator`] over [`App`]'s IAM repository.
pub struct SigV4Authenticator {
    app: Arc<App>,
    verifier: Verifier,
    /// Last time a key's use was recorded, by access key id and service.
    key_use: Mutex<HashMap<Box<str>, HashMap<&'static str, Instant>>>,
}

impl std::fmt::Debug for SigV4Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Authenticator")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// The AWS error for a SigV4 refusal.
pub fn sigv4_error(e: &SigV4Error) -> ApiError {
    ApiError::new(e.code(), e.to_string(), e.http_status())
}

impl SigV4Authenticator {
    /// Authenticate against `app`'s credentials.
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            verifier: Verifier::new(),
            key_use: Mutex::new(HashMap::new()),
        }
    }

    /// Record that `access_key_id` was used for `service`, in the background, unless this
    /// process recorded it less than [`KEY_USE_INTERVAL`] ago.
    fn note_key_use(&self, access_key_id: &str, service: &'static str, region: &str) {
        // Temporary credentials have no last-used record.
        if !access_key_id.starts_with("AKIA") {
            return;
        }
        let now = Instant::now();
        {
            let mut seen = self.key_use.lock().unwrap_or_else(PoisonError::into_inner);
            // The common case (recorded recently) allocates nothing.
            if seen
                .get(access_key_id)
                .and_then(|by_service| by_service.get(service))
                .is_some_and(|t| now.duration_since(*t) < KEY_USE_INTERVAL)
            {
                return;
            }
            if seen.len() >= KEY_USE_CAPACITY {
                seen.clear();
            }
            seen.entry(access_key_id.into())
                .or_default()
                .insert(service, now);
        }
        let iam = self.app.iam.clone();
        let (id, service, region) = (
            access_key_id.to_owned(),
            service.to_owned(),
            region.to_owned(),
        );
        let at = self.app.now();
        tokio::spawn(async move {
            if let Err(e) = iam.record_key_use(&id, &service, &region, at).await {
                tracing::debug!(access_key_id = %id, error = %e, "cannot record key use");
            }
        });
    }
}

#[async_trait]
impl Authenticator for SigV4Authenticator {
    async fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Principal, ApiError> {
        let headers: Vec<(&str, &[u8])> = request
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let method = request.method.as_str();
        let signed = SignedRequest {
            method,
            path: request.path,
            query: request.query.unwrap_or(""),
            headers: &headers,
            payload: Payload::Bytes(request.body),
        };
        let parsed = parse_authorization(&signed).map_err(|e| sigv4_error(&e))?;
        let service = request.service.signing_name();
        if parsed.scope.service != service {
            return Err(ApiError::new(
                "SignatureDoesNotMatch",
                format!("Credential should be scoped to correct service: '{service}'. "),
                403,
            ));
        }
        let now = self.app.now();
        let credential = match self.app.credential(&parsed.access_key_id, now).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(sigv4_error(&SigV4Error::InvalidClientTokenId)),
            Err(IamError::ExpiredToken) => return Err(sigv4_error(&SigV4Error::ExpiredToken)),
            Err(e) if e.is_sender_fault() => {
                tracing::warn!(access_key_id = %parsed.access_key_id, error = %e, "credential lookup failed");
                return Err(sigv4_error(&SigV4Error::InvalidClientTokenId));
            }
            // Storage down or contended: 503, retry; a corrupt record or a secret that does
            // not open: 500.
            Err(e) => return Err(e.into()),
        };
        self.verifier
            .verify_credential(&signed, &parsed, &credential, now)
            .map_err(|e| sigv4_error(&e))?;
        self.note_key_use(&parsed.access_key_id, service, &parsed.scope.region);
        let identity = credential.principal.clone();
        Ok(Principal {
            account_id: identity.account_id().to_owned(),
            arn: identity.arn(),
            user_id: identity.user_id(),
            access_key_id: Some(parsed.access_key_id),
            session_policy: credential.session_policy.clone(),
            identity,
        })
    }
}
