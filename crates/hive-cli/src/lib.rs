//! # hive-cli — Hive's operator tool
//!
//! Will own `hive-cli`: `init`, `iam`, `vpc`, `ovs`, `doctor` and `lab`, composing the crates
//! directly on the embedded store or JetStream. (Built by the CLI issue; nothing runs yet.)
