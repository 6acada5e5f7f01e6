//! # hive-api — Hive's AWS-compatible endpoint
//!
//! The `hive-api` server (hyper + tower): the AWS query protocol for IAM and STS and the EC2
//! query protocol for VPC networking, on one endpoint. It is the only crate that knows the AWS
//! wire protocols; the decisions belong to `hive-iam` and `hive-vpc`, storage to `hive-kv`.
//!
//! - [`config`]: `hive.toml`, `HIVE_*` environment variables, secret files and flags.
//! - [`wire`]: service routing facts, form decoding ([`wire::query`]) and XML writing
//!   ([`wire::xml`]).
//! - [`error`]: [`error::ApiError`] and its AWS error bodies.
//! - [`server`]: the tower stack (request id, tracing, metrics, timeout, throttling, body
//!   limit), health/readiness/metrics endpoints, routing to per-service handlers
//!   ([`server::AwsService`]), and the authentication seam ([`server::Authenticator`]).
//! - [`storage`]: the embedded SQLite store or NATS JetStream, from `hive-kv`.
//! - [`tls`]: optional TLS termination with rustls.
//! - [`telemetry`]: text or JSON logs.
//!
//! Not here yet: the SigV4 authenticator over `hive-iam` (every request is refused by
//! [`server::DenyAll`] until it lands), the IAM/STS/EC2 action handlers and the admin bootstrap.

pub mod config;
pub mod error;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod wire;
