//! # hive-ovs — the Open vSwitch adapter of Hive
//!
//! Brings the setup guide's bridge `hive-vpc0` into being, installs the OpenFlow programs that
//! `hive-vpc` compiles — atomically (bundles) and as minimal diffs — repairs drift, and connects
//! nodes with tunnel ports. It is the only crate that runs `ovs-*` commands.
//!
//! ## Shape
//! - [`Switch`] is the port: what Hive needs from a switch (bridge setup, bound ports, install,
//!   diff, dump, reconcile, tunnels, conntrack flush). Blocking calls, each bounded by a time
//!   limit; async callers use `spawn_blocking`.
//! - [`OvsSwitch`] implements it over `ovs-vsctl`, `ovs-ofctl -O OpenFlow13` and `ovs-appctl`.
//!   [`DryRunSwitch`] records the very same command lines (built by the same functions on
//!   [`OvsConfig`]) and keeps the state they would produce in memory: for `doctor`, plans and
//!   callers' tests.
//! - [`host_plan`] gives the root-only host side (gateway address on `hive-int0`,
//!   `ip_forward`, NAT masquerade of 10.0.0.0/8 when `nat_enabled`) as explicit commands to
//!   print, or to apply when the operator asks. The adapter never touches host networking on
//!   its own.
//! - [`Sandbox`] runs a private `ovsdb-server` + `ovs-vswitchd` in a temporary directory for
//!   tests, benches and `hive-cli lab`.
//!
//! ## Invariants
//! - **Only this crate runs `ovs-*`.** Every command line is data ([`exec::OvsCommand`]).
//! - **No hang, no panic.** Every external command runs under a time limit and is killed when
//!   it expires ([`OvsError::Timeout`]); a missing binary is [`OvsError::NotInstalled`] (with
//!   `apt-get install -y openvswitch-switch`), a stopped database or switch daemon is
//!   [`OvsError::NotRunning`] (the bridge setup asks `ovs-vswitchd` first, since `ovs-vsctl`
//!   would otherwise wait for it), unexpected output is [`OvsError::Parse`].
//! - **Fail closed.** A new bridge is created in the same database transaction as
//!   `fail_mode=secure` (no moment in which it forwards on its own), with STP off and OpenFlow
//!   1.3–1.5 (1.0 is not needed: `ovs-ofctl` negotiates 1.3 with such a bridge; verified on
//!   OVS 3.1); a bridge without flows gets `table=0,priority=0,actions=drop`.
//! - **Atomic installs.** A whole program goes in one `ovs-ofctl --bundle replace-flows`; a diff
//!   in one `--bundle add-flows` with `delete_strict`/`add` lines. Bundles commit all or
//!   nothing: if the switch rejects any flow, the previous program stays, exactly (proven in
//!   `tests/sandbox_switch.rs`). Changed flows are sent as `add` (which replaces a flow of the
//!   same table, priority and match whole), not `modify_strict`: under OpenFlow 1.1+ a modify
//!   keeps the old cookie (verified on OVS 3.1), which would leave drift behind.
//! - **Exact drift repair.** The live table's text is canonicalised by OVS and differs from
//!   what we wrote (`mod_dl_dst:M` is stored as `set_field:M->eth_dst`, `normal` prints as
//!   `NORMAL`), so programs are never compared textually: [`OvsSwitch::canonical`] round-trips
//!   the program through the switch's own encoder (`ovs-ofctl parse-flows`), `diff-flows`
//!   compares that with the live table (cookies included), and a repair is one
//!   `--bundle replace-flows` of the canonical text, verified by a second `diff-flows`
//!   ([`OvsError::DriftPersists`] otherwise). The [`ReconcileReport`] lists flows restored,
//!   rogue flows removed and flows rewritten.
//! - **Honours the OVS environment.** Like the tools, the adapter finds the switch through
//!   `OVS_RUNDIR` (and `ovs-vsctl`'s default database `$OVS_RUNDIR/db.sock`); an explicit
//!   [`OvsConfig::rundir`] / [`OvsConfig::db`] drives a sandbox without touching the
//!   environment.
//!
//! ## Port binding
//! As in OVN, the hypervisor plugs a VM's tap into the bridge with
//! `external_ids:iface-id=<eni-id>` (and optionally `external_ids:attached-mac`).
//! [`Switch::bound_ports`] returns those ports with their OpenFlow numbers for the compiler;
//! unbound ports are left out, so the compiled program gives them nothing but the drop.
//!
//! ## Revoked rules and established connections
//! When the rule that allowed a connection is revoked, **the connection survives**; new
//! connections are refused at once. This is AWS's behaviour for tracked connections, and
//! what the compiler's design gives: replies and later packets of a committed connection
//! match `ct_state=+est+trk` (or `+rel`) and never look at rules. The diff that removes the
//! rule does not touch conntrack. An operator who wants revocation to cut existing
//! connections too calls [`Switch::flush_conntrack`] for the VPC's zone (its VLAN id) —
//! deliberately explicit, because it also cuts connections that other rules still allow
//! (their next non-SYN packet is no longer part of a tracked connection and is dropped).
//! `tests/vpc_layout.rs` proves both halves with real packets through userspace conntrack.
//!
//! ## Running a sandbox
//! ```no_run
//! use hive_ovs::{Sandbox, SandboxMode, Switch};
//! # fn main() -> Result<(), hive_ovs::OvsError> {
//! let sandbox = Sandbox::start(SandboxMode::Dummy)?; // ovsdb-server + ovs-vswitchd, no root
//! let switch = sandbox.switch("hive-vpc0")?;
//! switch.ensure_bridge()?;
//! sandbox.add_port("hive-vpc0", "p1", Some("eni-0123456789abcdef0"), Some(1))?;
//! let trace = sandbox.trace("hive-vpc0", "in_port=1,tcp,nw_dst=10.0.1.5,tp_dst=22", &["trk,new"])?;
//! assert!(trace.is_drop()); // fail closed
//! # Ok(()) }
//! // Dropping the sandbox stops both daemons by pid and removes the directory.
//! ```
//! The same by hand is in `../shared/REFERENCE.md` §4. [`SandboxMode::Netdev`] starts the
//! userspace datapath instead, for real packets through veths (needs root).

pub mod dryrun;
pub mod error;
pub mod exec;
pub mod host;
pub mod ovs;
pub mod parse;
pub mod sandbox;
pub mod switch;

pub use dryrun::DryRunSwitch;
pub use error::OvsError;
pub use host::{HostConfig, HostPlan, host_plan};
pub use ovs::OvsSwitch;
pub use parse::TraceResult;
pub use sandbox::{Frame, L4, Sandbox, SandboxMode};
pub use switch::{
    BoundPort, BridgeState, DatapathType, FlowChange, OvsConfig, ReconcileReport, Switch,
    TunnelKey, TunnelKind, TunnelPort, TunnelSpec,
};
