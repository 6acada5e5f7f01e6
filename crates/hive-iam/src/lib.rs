//! # hive-iam — the identity core of Hive
//!
//! Pure logic for Hive's identity plane, with AWS semantics:
//! - [`identity`]: accounts, users, groups, roles, managed and inline policies, access keys and
//!   temporary credentials, with AWS's names, paths, ids and ARNs;
//! - [`policy`]: parsing, validation (AWS limits and `MalformedPolicyDocument` messages),
//!   compilation and evaluation of identity, resource and trust policies, with explanations;
//! - [`sigv4`]: verification of AWS Signature Version 4 requests (header and presigned forms);
//! - [`seal`]: AES-256-GCM sealing of secrets at rest under a rotatable key;
//! - [`request`]: the request context every frontend authorizes with, the root's rule and the
//!   `AssumeRole` trust decision.
//!
//! It must never know storage, buckets, HTTP, tokio, NATS or Open vSwitch, and never prints a
//! secret: `hive-iam-store` keeps identities in `hive-kv` buckets with compare-and-swap on
//! every read-modify-write.

pub mod error;
pub mod identity;
pub mod policy;
pub mod request;
pub mod seal;
pub mod sigv4;
