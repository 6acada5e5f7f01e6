//! The error type of the identity core, [`IamError`], with the AWS error code of each case.
//!
//! Frontends map an `IamError` to the wire with [`IamError::code`] and
//! [`IamError::http_status`]; messages follow AWS's wording where AWS has one and never contain
//! secrets.

use crate::policy::PolicyError;
use crate::seal::SealError;

/// Errors of the identity core. Each variant maps to one AWS error code.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// The named entity does not exist (`NoSuchEntity`).
    #[error("{0}")]
    NoSuchEntity(String),
    /// An entity with that name already exists in the account (`EntityAlreadyExists`).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The entity still has subordinate entities or attachments (`DeleteConflict`).
    #[error("{0}")]
    DeleteConflict(String),
    /// An AWS quota would be exceeded (`LimitExceeded`).
    #[error("{0}")]
    LimitExceeded(String),
    /// A policy document is not valid (`MalformedPolicyDocument`) or too large
    /// (`LimitExceeded`).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A parameter fails AWS's pattern or length constraints (`ValidationError`).
    #[error("{0}")]
    Validation(String),
    /// A parameter is well-formed but not acceptable here (`InvalidInput`).
    #[error("{0}")]
    InvalidInput(String),
    /// The temporary credentials have expired (`ExpiredToken`).
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// Compare-and-swap kept losing to concurrent writers (`ConcurrentModification`).
    #[error("{0}")]
    ConcurrentModification(String),
    /// A stored record could not be decoded (`ServiceFailure`).
    #[error("stored record {key:?} is corrupt: {reason}")]
    CorruptRecord {
        /// Storage key of the record.
        key: String,
        /// Decoder message (never contains the record's contents).
        reason: String,
    },
    /// Sealing or opening a secret failed (`ServiceFailure`).
    #[error("secret sealing: {0}")]
    Seal(#[from] SealError),
    /// The storage backend failed: `ServiceUnavailable` (503) when it may succeed on retry
    /// ([`IamError::is_transient`]), `ServiceFailure` (500) otherwise. The store crate
    /// (`hive-iam-store`) says which.
    #[error("storage: {0}")]
    Storage(StorageFault),
    /// Signature verification failed (the SigV4 error's own code).
    #[error(transparent)]
    SigV4(#[from] SigV4Error),
}

/// A storage failure as the identity core sees it: what the store said, and whether the same
/// request may succeed later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StorageFault {
    /// The store could not do it *now*: it is unreachable or too slow, a bucket is not there
    /// (yet), or compare-and-swap contention outlasted the retries.
    pub transient: bool,
    /// What the store said (never a secret: stores see sealed values only).
    pub message: String,
}

impl IamError {
    /// The AWS error code, as sent in `<Code>`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSuchEntity(_) => "NoSuchEntity",
            Self::EntityAlreadyExists(_) => "EntityAlreadyExists",
            Self::DeleteConflict(_) => "DeleteConflict",
            Self::LimitExceeded(_) => "LimitExceeded",
            Self::Policy(PolicyError::Malformed(_)) => "MalformedPolicyDocument",
            Self::Policy(PolicyError::TooLarge { .. }) => "LimitExceeded",
            Self::Validation(_) => "ValidationError",
            Self::InvalidInput(_) => "InvalidInput",
            Self::ExpiredToken => "ExpiredToken",
            Self::ConcurrentModification(_) => "ConcurrentModification",
            Self::Storage(_) if self.is_transient() => "ServiceUnavailable",
            Self::CorruptRecord { .. } | Self::Seal(_) | Self::Storage(_) => "ServiceFailure",
            Self::SigV4(e) => e.code(),
        }
    }

    /// The HTTP status AWS answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NoSuchEntity(_) => 404,
            Self::EntityAlreadyExists(_)
            | Self::DeleteConflict(_)
            | Self::Policy(PolicyError::TooLarge { .. })
            | Self::LimitExceeded(_)
            | Self::ConcurrentModification(_) => 409,
            Self::Policy(PolicyError::Malformed(_))
            | Self::Validation(_)
            | Self::InvalidInput(_) => 400,
            Self::ExpiredToken => 403,
            Self::Storage(_) if self.is_transient() => 503,
            Self::CorruptRecord { .. } | Self::Seal(_) | Self::Storage(_) => 500,
            Self::SigV4(e) => e.http_status(),
        }
    }

    /// Whether the store could not do it *now*, so the same request may succeed later: it is
    /// unreachable or too slow, a bucket is not there (yet), or compare-and-swap contention
    /// outlasted the repository's retries (a conflict or an "already exists" surfacing where
    /// none was expected). Never the client's fault, and not a bug either.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Storage(StorageFault {
                transient: true,
                ..
            })
        )
    }

    /// Whether the client is at fault (`Sender`) rather than the service (`Receiver`).
    pub fn is_sender_fault(&self) -> bool {
        self.http_status() < 500
    }
}

/// Why a request does not authenticate. Each variant maps to the AWS error code of
/// [`SigV4Error::code`]; messages follow AWS's wording and never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor presigned query parameters.
    #[error("Request is missing Authentication Token")]
    MissingAuthenticationToken,
    /// The `Authorization` header or scope is malformed or incomplete.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The presigned query parameters are malformed or incomplete.
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    /// Both an `Authorization` header and presigned query parameters.
    #[error(
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified"
    )]
    MultipleAuthMechanisms,
    /// The access key id is unknown or not active.
    #[error("The security token included in the request is invalid.")]
    InvalidClientTokenId,
    /// Temporary credentials have expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The signature does not match.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureDoesNotMatch,
    /// The request time is more than 15 minutes off the server's clock.
    #[error(
        "Signature {kind}: {request_time} is now {relation} than {bound} ({now} {sign} 15 min.)"
    )]
    RequestTimeTooSkewed {
        /// `expired` or `not yet current`.
        kind: &'static str,
        /// `earlier` or `later`.
        relation: &'static str,
        /// `-` or `+`.
        sign: &'static str,
        /// The request's `X-Amz-Date`.
        request_time: String,
        /// The bound it crossed.
        bound: String,
        /// The server's time.
        now: String,
    },
    /// A presigned request is past its `X-Amz-Expires`.
    #[error("Request has expired")]
    RequestExpired,
    /// `X-Amz-Content-Sha256` does not match the body.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
}

impl SigV4Error {
    /// The AWS error code. Clock skew answers `SignatureDoesNotMatch` as IAM and STS do (EC2
    /// frontends answer `RequestExpired` for it).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationToken",
            Self::IncompleteSignature(_) => "IncompleteSignature",
            Self::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            Self::MultipleAuthMechanisms => "InvalidRequest",
            Self::InvalidClientTokenId => "InvalidClientTokenId",
            Self::ExpiredToken => "ExpiredToken",
            Self::SignatureDoesNotMatch | Self::RequestTimeTooSkewed { .. } => {
                "SignatureDoesNotMatch"
            }
            Self::RequestExpired => "RequestExpired",
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }

    /// The HTTP status AWS answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::IncompleteSignature(_)
            | Self::AuthorizationQueryParametersError(_)
            | Self::MultipleAuthMechanisms
            | Self::ContentSha256Mismatch => 400,
            _ => 403,
        }
    }
}

/// Result alias of the identity core.
pub type Result<T, E = IamError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(transient: bool) -> IamError {
        IamError::Storage(StorageFault {
            transient,
            message: "m".into(),
        })
    }

    #[test]
    fn storage_errors_are_unavailable_when_a_retry_may_succeed() {
        let e = fault(true);
        assert!(e.is_transient(), "{e}");
        assert_eq!((e.code(), e.http_status()), ("ServiceUnavailable", 503));
        for e in [
            fault(false),
            IamError::CorruptRecord {
                key: "k".into(),
                reason: "r".into(),
            },
        ] {
            assert!(!e.is_transient(), "{e}");
            assert_eq!((e.code(), e.http_status()), ("ServiceFailure", 500));
        }
        let e = IamError::ConcurrentModification("busy".into());
        assert_eq!((e.code(), e.http_status()), ("ConcurrentModification", 409));
    }
}
