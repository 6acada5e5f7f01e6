//! # hive-vpc — the network core of Hive
//!
//! Pure logic for Hive's network plane, with AWS semantics: state in, decisions and flow tables
//! out. No I/O, no tokio, no clock; randomness (ids, MACs) comes from an RNG the caller passes.
//! - [`model`]: VPCs, subnets, network interfaces, security groups and rules;
//! - IPAM and VLAN allocation that return new state for the caller to commit with
//!   compare-and-swap;
//! - [`flow`]: OpenFlow programs and the minimal diff between two of them;
//! - the flow compiler that turns one node's desired state into the program for `hive-vpc0`,
//!   and a reference model of AWS security-group semantics it is proven against;
//!
//! It must never know storage, buckets, HTTP, Open vSwitch commands, the clock or the OS RNG:
//! `hive-vpc-store` keeps this state in `hive-kv` buckets and commits the allocators' results
//! with compare-and-swap; `hive-ovs` installs the programs.

pub mod compile;
pub mod flow;
pub mod interp;
pub mod model;
pub mod reference;

mod bitmap;
pub mod cidr;
pub mod config;
pub mod eni;
pub mod error;
pub mod ids;
pub mod ipam;
pub mod security_group;
pub mod vlan;
pub mod vpc;
