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
//! - [`app`]: shared state ([`app::App`]): the IAM repository, the authentication cache kept
//!   fresh by a KV watch, and authorization ([`app::App::authorize`]).
//! - [`auth`]: SigV4 authentication of every request ([`auth::SigV4Authenticator`]).
//! - [`bootstrap`]: the sealing key, the first administrator and the setup token.
//! - [`node`]: composition: storage, keyring, repository, bootstrap, services and server
//!   ([`node::start`]); the binary and the integration tests run the same node.
//! - [`retry`]: capped exponential backoff and waiting for a store that is not ready yet.

pub mod app;
pub mod auth;
pub mod bootstrap;
pub use hive_node::config;
pub mod ec2;
pub mod error;
pub mod iam;
pub mod netsync;
pub mod node;
pub use hive_node::retry;
pub mod server;
pub use hive_node::storage;
pub mod sts;
pub mod telemetry;
pub mod tls;
pub mod wire;
