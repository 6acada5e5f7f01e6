//! The AWS wire protocols hive-api speaks: which service a request is for, how its parameters
//! are encoded ([`query`]) and how responses are written ([`xml`]).
//!
//! Two protocols share one endpoint: the *query* protocol (IAM 2010-05-08, STS 2011-06-15;
//! `member` lists, `<XResponse><XResult>`) and the *EC2* protocol (2016-11-15; `item` lists,
//! lower-camel names, `requestId`). Both take form-encoded `Action=...&Version=...` parameters.

pub mod query;
pub mod xml;

use std::fmt;

/// The response dialect of an AWS service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The AWS query protocol (IAM, STS): `<member>` lists, `ErrorResponse` errors.
    Query,
    /// The EC2 query protocol: `<item>` lists, `<Response><Errors>` errors.
    Ec2,
}

/// An AWS service served on this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    /// Identity and Access Management, API version 2010-05-08.
    Iam,
    /// Security Token Service, API version 2011-06-15.
    Sts,
    /// Elastic Compute Cloud (the VPC networking subset), API version 2016-11-15.
    Ec2,
}

impl ServiceId {
    /// Every service, in a fixed order.
    pub const ALL: [ServiceId; 3] = [ServiceId::Iam, ServiceId::Sts, ServiceId::Ec2];

    /// The SigV4 credential-scope name (`.../<name>/aws4_request`).
    pub fn signing_name(self) -> &'static str {
        match self {
            Self::Iam => "iam",
            Self::Sts => "sts",
            Self::Ec2 => "ec2",
        }
    }

    /// The API version clients send in `Version`.
    pub fn version(self) -> &'static str {
        match self {
            Self::Iam => "2010-05-08",
            Self::Sts => "2011-06-15",
            Self::Ec2 => "2016-11-15",
        }
    }

    /// The XML namespace of the service's responses.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::Iam => "https://iam.amazonaws.com/doc/2010-05-08/",
            Self::Sts => "https://sts.amazonaws.com/doc/2011-06-15/",
            Self::Ec2 => "http://ec2.amazonaws.com/doc/2016-11-15/",
        }
    }

    /// The response dialect.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Iam | Self::Sts => Protocol::Query,
            Self::Ec2 => Protocol::Ec2,
        }
    }

    /// The service whose SigV4 signing name is `name`.
    pub fn from_signing_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.signing_name() == name)
    }

    /// The service whose API version is `version`.
    pub fn from_version(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.version() == version)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.signing_name())
    }
}

/// The service named in a SigV4 credential scope, from an `Authorization` header value
/// (`AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/iam/aws4_request, ...`) or an
/// `X-Amz-Credential` query value (`AKID/20240101/us-east-1/iam/aws4_request`).
///
/// Returns the raw service name (not necessarily one we serve); `None` when there is no
/// well-formed scope. This only routes: the signature itself is checked by the authenticator.
pub fn scope_service(credential_or_authorization: &str) -> Option<&str> {
    let credential = match credential_or_authorization.find("Credential=") {
        Some(at) => {
            let rest = &credential_or_authorization[at + "Credential=".len()..];
            rest.split([',', ' ']).next().unwrap_or(rest)
        }
        None => credential_or_authorization.trim(),
    };
    // AKID / date / region / service / aws4_request
    let mut parts = credential.rsplit('/');
    let terminator = parts.next()?;
    let service = parts.next()?;
    let _region = parts.next()?;
    let _date = parts.next()?;
    let _key = parts.next()?;
    (terminator == "aws4_request" && !service.is_empty()).then_some(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_from_header_and_query_forms() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20240101/us-east-1/iam/aws4_request, \
                      SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(scope_service(header), Some("iam"));
        assert_eq!(
            scope_service("AKIAEXAMPLE/20240101/us-east-1/sts/aws4_request"),
            Some("sts")
        );
        assert_eq!(
            scope_service(
                "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/ec2/aws4_request,SignedHeaders=host"
            ),
            Some("ec2")
        );
        assert_eq!(scope_service("garbage"), None);
        assert_eq!(scope_service("a/b/c/iam/other"), None);
        assert_eq!(scope_service("b/c/iam/aws4_request"), None);
    }

    #[test]
    fn service_lookup_round_trips() {
        for s in ServiceId::ALL {
            assert_eq!(ServiceId::from_signing_name(s.signing_name()), Some(s));
            assert_eq!(ServiceId::from_version(s.version()), Some(s));
        }
        assert_eq!(ServiceId::from_version("2099-01-01"), None);
        assert_eq!(ServiceId::Ec2.protocol(), Protocol::Ec2);
        assert_eq!(ServiceId::Sts.protocol(), Protocol::Query);
    }
}
