//! The CLI's errors: each says what went wrong and, where there is one, what to do next.

use std::path::PathBuf;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] hive_node::config::ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Storage(#[from] hive_node::storage::StorageError),
    /// The sealing key or the bootstrap failed.
    #[error(transparent)]
    Bootstrap(#[from] hive_node::bootstrap::BootstrapError),
    /// The store failed.
    #[error("storage: {0}")]
    Kv(#[from] hive_kv::KvError),
    /// IAM refused (the message is AWS's).
    #[error("{code}: {0}", code = .0.code())]
    Iam(#[from] hive_iam::error::IamError),
    /// EC2 networking refused (the message is EC2's).
    #[error("{code}: {0}", code = .0.code())]
    Vpc(#[from] hive_vpc::error::VpcError),
    /// Open vSwitch failed.
    #[error("Open vSwitch: {0}")]
    Ovs(#[from] hive_ovs::OvsError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The command line asks for something impossible.
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do instead.
        hint: Option<String>,
    },
    /// The command ran and found problems it already reported (doctor, lint).
    #[error("{0}")]
    Failed(String),
    /// The lab failed.
    #[error(transparent)]
    Lab(#[from] crate::commands::lab::LabError),
}

impl CliError {
    /// A usage error with a hint.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// What the operator can do next, when we know.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Usage { hint, .. } => hint.clone(),
            Self::Lab(e) => e.hint(),
            Self::Storage(_) => Some(
                "check --data-dir is writable, or that the NATS server in --nats-url runs with JetStream (-js)".into(),
            ),
            Self::Bootstrap(_) => Some(
                "every process sharing this store needs the same encryption key (HIVE_ENCRYPTION_KEY_FILE)".into(),
            ),
            Self::Ovs(hive_ovs::OvsError::NotInstalled { .. }) => {
                Some("install Open vSwitch: apt-get install -y openvswitch-switch".into())
            }
            Self::Ovs(_) => Some(
                "is ovs-vswitchd running? (systemctl start openvswitch-switch, or set OVS_RUNDIR)".into(),
            ),
            Self::Iam(e) if e.code() == "NoSuchEntity" => {
                Some("list what exists with `hive-cli iam user list` (or group/role/policy)".into())
            }
            _ => None,
        }
    }

    /// The process exit code: 2 for usage and configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage { .. } | Self::Config(_) => 2,
            Self::Lab(crate::commands::lab::LabError::Exit(code)) => *code,
            _ => 1,
        }
    }
}

/// Read a file, or standard input for `-`.
pub fn read_input(path: &std::path::Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text).map(|_| ()))
    };
    result.map_err(|source| CliError::File {
        path: path.to_owned(),
        source,
    })?;
    Ok(text)
}
