//! # hive-node — how a Hive node is composed
//!
//! What both frontends need to stand a node up, so that `hive-cli` works on a node's store
//! without the HTTP server:
//! - [`config`]: `hive.toml` with the setup guide's defaults and its `HIVE_*` overrides;
//! - [`storage`]: opening the store the configuration names (embedded SQLite or JetStream);
//! - [`bootstrap`]: the sealing key and the crash-safe first-start bootstrap of the admin;
//! - [`netsync`]: the switch sync that keeps `hive-vpc0` equal to the compiled state, and the
//!   node plane (registry, bindings, tunnels);
//! - [`retry`]: waiting for a store that is not ready yet.
//!
//! It must never know HTTP or the AWS wire protocols (`hive-api` serves this node), and it
//! decides nothing itself: the cores (`hive-iam`, `hive-vpc`) decide.

pub mod bootstrap;
pub mod config;
pub mod netsync;
pub mod retry;
pub mod storage;
