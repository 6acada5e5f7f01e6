//! [`ApiError`]: an AWS error as it goes on the wire (code, message, HTTP status, fault), and
//! its rendering for the query protocol (IAM, STS) and the EC2 protocol.
//!
//! Every failure a client can cause becomes a 4xx with an AWS code; only faults of the service
//! itself are 5xx, and their messages are generic (the detail goes to the log, never a secret).
//! The cores' errors ([`hive_iam::error::IamError`], [`hive_vpc::error::VpcError`]) convert
//! with `From`, keeping their AWS codes.

use std::borrow::Cow;
use std::fmt;

use crate::wire::Protocol;
use crate::wire::xml::escape_into;

/// Who is at fault, as AWS's `<Type>` element says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client sent something wrong (4xx).
    Sender,
    /// The service failed (5xx).
    Receiver,
}

impl Fault {
    /// The text AWS writes in `<Type>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sender => "Sender",
            Self::Receiver => "Receiver",
        }
    }
}

/// The generic message of every 500: the real cause is logged, never sent.
const INTERNAL_MESSAGE: &str = "We encountered an internal error. Please try again.";
/// The generic message of every 503.
const UNAVAILABLE_MESSAGE: &str = "The service is unavailable. Please try again.";
/// What every 503 answers in `Retry-After`: storage outages and contention are short, and
/// AWS clients back off on their own on top of it.
pub const RETRY_AFTER_SECS: u32 = 1;

/// An AWS error response: code, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: Cow<'static, str>,
    message: String,
    status: u16,
}

impl ApiError {
    /// An error with an AWS `code`, a `message` for the client, and an HTTP `status`.
    ///
    /// A status outside 400..=599 is clamped to 500 so that a mistake can never produce a
    /// "successful" error.
    pub fn new(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
        status: u16,
    ) -> Self {
        let status = if (400..=599).contains(&status) {
            status
        } else {
            500
        };
        Self {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    /// The AWS error code (`<Code>`).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the client (`<Message>`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Sender (4xx) or Receiver (5xx).
    pub fn fault(&self) -> Fault {
        if self.status < 500 {
            Fault::Sender
        } else {
            Fault::Receiver
        }
    }

    /// The action is not one this service implements (`InvalidAction`, 400).
    pub fn invalid_action(action: &str, protocol: Protocol) -> Self {
        let action = truncate(action, 64);
        let message = match protocol {
            Protocol::Query => format!("Could not find operation {action} for this service"),
            Protocol::Ec2 => format!("The action {action} is not valid for this web service."),
        };
        Self::new("InvalidAction", message, 400)
    }

    /// The request names no action (`MissingAction`, 400).
    pub fn missing_action() -> Self {
        Self::new(
            "MissingAction",
            "The request must contain the parameter Action.",
            400,
        )
    }

    /// The form encoding of the request could not be decoded (`MalformedQueryString`, 400).
    pub fn malformed_query_string(detail: impl fmt::Display) -> Self {
        Self::new(
            "MalformedQueryString",
            format!("The query string is malformed: {detail}"),
            400,
        )
    }

    /// The `Version` names no service served here (`NoSuchVersion`, 400).
    pub fn no_such_version(version: &str) -> Self {
        Self::new(
            "NoSuchVersion",
            format!(
                "The requested version ({}) is not valid.",
                truncate(version, 32)
            ),
            400,
        )
    }

    /// The request has no signature at all (`MissingAuthenticationToken`, 403).
    pub fn missing_authentication_token() -> Self {
        Self::new(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
            403,
        )
    }

    /// The access key or token is unknown (`InvalidClientTokenId`, 403).
    pub fn invalid_client_token_id() -> Self {
        Self::new(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            403,
        )
    }

    /// Too many failed authentications from this source (`Throttling`, 400).
    pub fn throttling() -> Self {
        Self::new("Throttling", "Rate exceeded", 400)
    }

    /// The body is larger than the server accepts (`RequestEntityTooLarge`, 413).
    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::new(
            "RequestEntityTooLarge",
            format!("Request body is larger than the limit of {limit} bytes"),
            413,
        )
    }

    /// The body could not be read completely (`IncompleteBody`, 400).
    pub fn incomplete_body() -> Self {
        Self::new(
            "IncompleteBody",
            "The request body could not be read completely",
            400,
        )
    }

    /// The request took longer than the server allows (`RequestTimeout`, 408).
    pub fn request_timeout() -> Self {
        Self::new(
            "RequestTimeout",
            "The request did not complete in time; retry it",
            408,
        )
    }

    /// The HTTP method is not used by this protocol (`MethodNotAllowed`, 405).
    pub fn method_not_allowed() -> Self {
        Self::new(
            "MethodNotAllowed",
            "The HTTP method is not allowed for this resource",
            405,
        )
    }

    /// Nothing is served at this path (`NotFound`, 404).
    pub fn not_found() -> Self {
        Self::new("NotFound", "Nothing is served at this path", 404)
    }

    /// A POST body that is not form-encoded (`UnsupportedMediaType`, 415).
    pub fn unsupported_media_type() -> Self {
        Self::new(
            "UnsupportedMediaType",
            "The request body must be application/x-www-form-urlencoded",
            415,
        )
    }

    /// The caller may not perform the action (`AccessDenied`, 403); `message` is the policy
    /// engine's AWS-style explanation.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDenied", message, 403)
    }

    /// The service failed (`InternalFailure`, 500). Log the cause before calling this: the
    /// client only sees a generic message.
    pub fn internal() -> Self {
        Self::new("InternalFailure", INTERNAL_MESSAGE, 500)
    }

    /// Storage or another dependency is unavailable (`ServiceUnavailable`, 503).
    pub fn service_unavailable() -> Self {
        Self::new("ServiceUnavailable", UNAVAILABLE_MESSAGE, 503)
    }

    /// Seconds the client should wait before retrying (`Retry-After`): set on every 503, which
    /// says "storage unavailable or contended, the same request may succeed".
    pub fn retry_after(&self) -> Option<u32> {
        (self.status == 503).then_some(RETRY_AFTER_SECS)
    }

    /// A core's error of the service itself (`status` 5xx) under its AWS `code`: the cause is
    /// logged, the client gets a generic message. 503 (retry) for storage outages and
    /// contention, 500 for bugs (corrupt records, sealing).
    fn server_fault(code: &'static str, status: u16, cause: &dyn fmt::Display) -> Self {
        if status == 503 {
            tracing::warn!(error = %cause, code, "storage unavailable or contended; the client is asked to retry");
            Self::new(code, UNAVAILABLE_MESSAGE, status)
        } else {
            tracing::error!(error = %cause, code, "internal failure");
            Self::new(code, INTERNAL_MESSAGE, status)
        }
    }

    /// The XML body for `protocol`, carrying `request_id`.
    pub fn to_xml(&self, protocol: Protocol, request_id: &str) -> String {
        let mut out = String::with_capacity(256 + self.message.len());
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        out.push('\n');
        match protocol {
            Protocol::Query => {
                out.push_str("<ErrorResponse><Error><Type>");
                out.push_str(self.fault().as_str());
                out.push_str("</Type><Code>");
                escape_into(&mut out, &self.code);
                out.push_str("</Code><Message>");
                escape_into(&mut out, &self.message);
                out.push_str("</Message></Error><RequestId>");
                escape_into(&mut out, request_id);
                out.push_str("</RequestId></ErrorResponse>");
            }
            Protocol::Ec2 => {
                out.push_str("<Response><Errors><Error><Code>");
                escape_into(&mut out, &self.code);
                out.push_str("</Code><Message>");
                escape_into(&mut out, &self.message);
                out.push_str("</Message></Error></Errors><RequestID>");
                escape_into(&mut out, request_id);
                out.push_str("</RequestID></Response>");
            }
        }
        out
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<hive_iam::error::IamError> for ApiError {
    fn from(e: hive_iam::error::IamError) -> Self {
        match e.http_status() {
            status @ 500.. => Self::server_fault(e.code(), status, &e),
            status => Self::new(e.code(), e.to_string(), status),
        }
    }
}

impl From<hive_vpc::error::VpcError> for ApiError {
    fn from(e: hive_vpc::error::VpcError) -> Self {
        match e.http_status() {
            status @ 500.. => Self::server_fault(e.code(), status, &e),
            status => Self::new(e.code(), e.to_string(), status),
        }
    }
}

/// At most `max` characters of `s` (on a char boundary), for echoing client input.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_error_body_has_type_code_message_request_id() {
        let e = ApiError::new(
            "NoSuchEntity",
            "The user with name bob cannot be found.",
            404,
        );
        let xml = e.to_xml(Protocol::Query, "req-1");
        assert!(xml.ends_with(
            "<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code>\
             <Message>The user with name bob cannot be found.</Message></Error>\
             <RequestId>req-1</RequestId></ErrorResponse>"
        ));
        assert_eq!(e.fault(), Fault::Sender);
    }

    #[test]
    fn ec2_error_body_uses_errors_and_request_id_caps() {
        let e = ApiError::new(
            "InvalidVpcID.NotFound",
            "The vpc ID 'vpc-1' does not exist",
            400,
        );
        let xml = e.to_xml(Protocol::Ec2, "r");
        assert!(xml.ends_with(
            "<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code>\
             <Message>The vpc ID &apos;vpc-1&apos; does not exist</Message></Error></Errors>\
             <RequestID>r</RequestID></Response>"
        ));
    }

    #[test]
    fn messages_are_escaped_and_status_is_clamped() {
        let e = ApiError::new("X", "<a & b>", 200);
        assert_eq!(e.status(), 500);
        assert_eq!(e.fault(), Fault::Receiver);
        assert!(
            e.to_xml(Protocol::Query, "id")
                .contains("<Message>&lt;a &amp; b&gt;</Message>")
        );
        assert!(
            e.to_xml(Protocol::Query, "id")
                .contains("<Type>Receiver</Type>")
        );
    }

    #[test]
    fn invalid_action_is_400_and_truncates_echo() {
        let long = "A".repeat(1000);
        let e = ApiError::invalid_action(&long, Protocol::Ec2);
        assert_eq!(e.status(), 400);
        assert_eq!(e.code(), "InvalidAction");
        assert!(e.message().len() < 200);
    }

    #[test]
    fn core_errors_keep_their_codes() {
        let e: ApiError = hive_iam::error::IamError::NoSuchEntity("no user".into()).into();
        assert_eq!(
            (e.code(), e.status(), e.message()),
            ("NoSuchEntity", 404, "no user")
        );
        let e: ApiError = hive_iam::error::IamError::CorruptRecord {
            key: "k".into(),
            reason: "secret-looking detail".into(),
        }
        .into();
        assert_eq!(e.status(), 500);
        assert!(!e.message().contains("secret-looking"));
        let e: ApiError = hive_vpc::error::VpcError::VpcLimitExceeded.into();
        assert_eq!((e.code(), e.status()), ("VpcLimitExceeded", 400));
        let e: ApiError = hive_vpc::error::VpcError::CorruptState("x".into()).into();
        assert_eq!(e.status(), 500);
        assert_eq!(e.retry_after(), None);
    }

    /// Storage outages and contention that outlasted the cores' retries are 503 with
    /// `Retry-After` in every service; corrupt records and sealing failures stay 500.
    #[test]
    fn storage_outages_and_contention_are_503_with_retry_after() {
        use hive_iam::error::IamError;
        use hive_kv::KvError;
        let conflict = || KvError::RevisionConflict {
            key: "users.alice".into(),
            expected: 3,
            actual: Some(4),
        };
        let exists = || KvError::AlreadyExists {
            bucket: "b".into(),
            key: "k".into(),
        };
        let unavailable = || KvError::Unavailable("nats get: timed out after 5s".into());
        let cases: Vec<(ApiError, &str)> = vec![
            (
                hive_iam_store::storage_error(unavailable()).into(),
                "ServiceUnavailable",
            ),
            (
                hive_iam_store::storage_error(conflict()).into(),
                "ServiceUnavailable",
            ),
            (
                hive_iam_store::storage_error(exists()).into(),
                "ServiceUnavailable",
            ),
            (
                hive_vpc_store::storage_error(unavailable()).into(),
                "ServiceUnavailable",
            ),
            (
                hive_vpc_store::storage_error(conflict()).into(),
                "RequestLimitExceeded",
            ),
            (
                hive_vpc_store::storage_error(exists()).into(),
                "RequestLimitExceeded",
            ),
            (ApiError::service_unavailable(), "ServiceUnavailable"),
        ];
        for (e, code) in cases {
            assert_eq!(
                (e.code(), e.status(), e.retry_after()),
                (code, 503, Some(1))
            );
            assert_eq!(e.fault(), Fault::Receiver);
            assert_eq!(
                e.message(),
                UNAVAILABLE_MESSAGE,
                "the cause stays in the log"
            );
        }
        let bugs: Vec<ApiError> = vec![
            IamError::CorruptRecord {
                key: "k".into(),
                reason: "r".into(),
            }
            .into(),
            IamError::Seal(hive_iam::seal::SealError::Malformed).into(),
            hive_vpc_store::storage_error(KvError::Codec("bad".into())).into(),
            ApiError::internal(),
        ];
        for e in bugs {
            assert_eq!((e.status(), e.retry_after()), (500, None), "{e}");
        }
        assert_eq!(ApiError::throttling().retry_after(), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("ab", 5), "ab");
    }
}
