//! # hive-iam — the identity core of Hive
//!
//! Pure logic for Hive's identity plane, with AWS semantics:
//! - [`identity`]: accounts, users, groups, roles, managed and inline policies, access keys and
//!   temporary credentials, with AWS's names, paths, ids and ARNs;
//! - [`policy`]: parsing, validation (AWS limits and `MalformedPolicyDocument` messages),
//!   compilation and evaluation of identity, resource and trust policies, with explanations;
//! - [`sigv4`]: verification of AWS Signature Version 4 requests (header and presigned forms);
//! - [`seal`]: AES-256-GCM sealing of secrets at rest under a rotatable key;
//! - [`repo`]: the identity repository over the `hive-kv` storage port, using the setup guide's
//!   buckets and field names, with compare-and-swap on every read-modify-write.
//!
//! It performs no I/O of its own (storage goes through the `hive_kv` port), knows nothing of
//! HTTP, tokio, NATS or Open vSwitch, and never prints a secret.

pub mod error;
pub mod identity;
pub mod policy;
pub mod repo;
pub mod request;
pub mod seal;
pub mod sigv4;
