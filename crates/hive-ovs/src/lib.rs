//! # hive-ovs — the Open vSwitch adapter of Hive
//!
//! Brings the setup guide's bridge `hive-vpc0` into being, installs the OpenFlow programs that
//! `hive-vpc` compiles atomically (bundles) and as minimal diffs, repairs drift, and connects
//! nodes with tunnel ports. It is the only crate that runs `ovs-*` commands.
