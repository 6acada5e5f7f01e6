//! # hive-api — Hive's AWS-compatible endpoint
//!
//! Will own the `hive-api` server (hyper + tower): the AWS query protocol for IAM and STS and
//! the EC2 query protocol for VPC networking, SigV4 authentication and policy authorisation via
//! `hive-iam`, storage via `hive-kv`, and the switch via `hive-vpc` and `hive-ovs`. It is the only
//! crate that knows the AWS wire protocols. (Built by the API issues; nothing is served yet.)
