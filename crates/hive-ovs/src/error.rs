//! The one error type of the adapter: every way talking to Open vSwitch can fail, as data.

use std::time::Duration;

/// What went wrong while driving Open vSwitch.
///
/// Commands are shown as the operator would type them; no variant ever carries secrets (the
/// adapter handles none).
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// An `ovs-*` program is not installed (not on `PATH`, nor in `/usr/sbin`, `/usr/bin`, ...).
    #[error("{program} not found: Open vSwitch is not installed (hint: {hint})")]
    NotInstalled {
        /// The missing program.
        program: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The database server or `ovs-vswitchd` is not running (or not where we look for it).
    #[error(
        "Open vSwitch is not running ({detail}); start it (systemctl start openvswitch-switch) or point OVS_RUNDIR at a running one"
    )]
    NotRunning {
        /// What the tool said.
        detail: String,
    },
    /// The bridge does not exist on the switch.
    #[error("bridge {bridge} does not exist (run the bridge setup first)")]
    NoSuchBridge {
        /// The bridge name.
        bridge: String,
    },
    /// A command did not finish in time and was killed.
    #[error("`{cmd}` did not finish within {after:?} and was killed")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The time limit.
        after: Duration,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line.
        cmd: String,
        /// Exit status as text (`exit status: 1`, `signal: 9`).
        status: String,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// Output of a tool could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// Which output (e.g. `dump-flows line`).
        what: &'static str,
        /// The offending text or reason.
        detail: String,
    },
    /// A name or value handed to the adapter is not acceptable to Open vSwitch or unsafe to pass.
    #[error("invalid {what}: {value:?} ({why})")]
    Invalid {
        /// What kind of value (bridge name, port name, ...).
        what: &'static str,
        /// The value.
        value: String,
        /// Why it is rejected.
        why: &'static str,
    },
    /// Reconcile repaired the table but the switch still differs from the program.
    #[error("drift persists after repair: {remaining} flow(s) still differ")]
    DriftPersists {
        /// Number of differing lines after the repair.
        remaining: usize,
    },
    /// Local I/O (temporary files, spawning) failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The install hint every "not installed" error carries.
pub const INSTALL_HINT: &str = "apt-get install -y openvswitch-switch";
