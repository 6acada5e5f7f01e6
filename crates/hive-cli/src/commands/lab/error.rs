//! What can go wrong while building, driving or tearing down a lab; each error says what to do.

use std::path::PathBuf;

/// The apt-get line for Debian packages.
pub fn apt(packages: &[&str]) -> String {
    format!("apt-get install -y {}", packages.join(" "))
}

/// A failed lab step.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab changes the machine's networking: only root may.
    #[error(
        "hive-cli lab must run as root: it creates network namespaces, veth pairs, Linux bridges and iptables rules, and starts Open vSwitch and NATS"
    )]
    NotRoot,
    /// Programs the lab runs are not installed.
    #[error("missing programs: {}", programs.join(", "))]
    MissingTools {
        /// The programs not found.
        programs: Vec<String>,
        /// The command that installs them.
        install: String,
    },
    /// The lab name is not usable in interface names.
    #[error("invalid lab name {0:?}: 1 to 4 characters of [a-z0-9]")]
    InvalidName(String),
    /// A lab with this name already runs.
    #[error("lab {name} is already up (state in {})", dir.display())]
    AlreadyUp {
        /// The lab name.
        name: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// No lab with this name runs.
    #[error("no lab named {name} is up (no {})", state.display())]
    NotUp {
        /// The lab name.
        name: String,
        /// The state file looked for.
        state: PathBuf,
    },
    /// A command line is impossible (node number, ENI not in the lab, ...).
    #[error("{0}")]
    Usage(String),
    /// A program the lab ran failed.
    #[error(transparent)]
    Command(#[from] hive_ovs::OvsError),
    /// A process the lab started did not come up.
    #[error("{what} did not start: {detail}")]
    Start {
        /// Which process.
        what: String,
        /// What happened (exit status or time out, and the log's last lines).
        detail: String,
    },
    /// Local I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be read.
    #[error("store: {0}")]
    Store(String),
    /// A step of the lab could not run to its end (a worker thread failed).
    #[error("{0}")]
    Failed(String),
    /// A command run for the operator (`lab vm exec`) ended with this exit code; nothing
    /// more to report.
    #[error("the command exited with {0}")]
    Exit(u8),
}

impl LabError {
    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotRoot => Some(
                "run as root: it creates network namespaces and starts daemons (e.g. sudo hive-cli lab up --nodes 1)".into(),
            ),
            Self::MissingTools { install, .. } => Some(install.clone()),
            Self::AlreadyUp { name, .. } => {
                Some(format!("tear it down first: hive-cli lab down --name {name}"))
            }
            Self::NotUp { .. } => Some(
                "start one with hive-cli lab up --nodes N (give --name/--dir as given to up)".into(),
            ),
            Self::Start { .. } => Some(
                "the log above says why (a failed `lab up` has removed everything it made; `lab status` shows what runs)".into(),
            ),
            _ => None,
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
