//! The lab's contact with the machine: root and tool checks, commands (in namespaces), detached
//! processes identified by pid *and* start time (a reused pid is never taken for ours), free
//! ports and HTTP probes. Every command runs under a time limit.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hive_ovs::exec::{find_program_hint, run_argv, shell_quote};
use serde::{Deserialize, Serialize};

use super::error::{LabError, apt};

/// Time limit of one command.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Every program the lab runs, with its Debian package.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("iptables", "iptables"),
    ("nats-server", "nats-server"),
    ("ovs-vswitchd", "openvswitch-switch"),
    ("ovsdb-server", "openvswitch-switch"),
    ("ovsdb-tool", "openvswitch-switch"),
    ("ovs-vsctl", "openvswitch-switch"),
    ("kill", "procps"),
];

/// Fail unless the effective user is root.
pub fn require_root() -> Result<(), LabError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(LabError::io("reading /proc/self/status"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok());
    if euid == Some(0) {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// Fail, naming the `apt-get install` line, unless every program in [`TOOLS`] is installed.
pub fn require_tools() -> Result<(), LabError> {
    let mut programs = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for (program, package) in TOOLS {
        if find(program).is_err() {
            programs.push((*program).to_owned());
            if !packages.contains(package) {
                packages.push(package);
            }
        }
    }
    if programs.is_empty() {
        Ok(())
    } else {
        Err(LabError::MissingTools {
            programs,
            install: apt(&packages),
        })
    }
}

/// The path of `program` (PATH, then the sbin directories).
pub fn find(program: &str) -> Result<PathBuf, LabError> {
    let package = TOOLS
        .iter()
        .find(|(p, _)| *p == program)
        .map_or("the package providing it", |(_, pkg)| *pkg);
    find_program_hint(program, None, "see the lab's install line").map_err(|_| {
        LabError::MissingTools {
            programs: vec![program.to_owned()],
            install: apt(&[package]),
        }
    })
}

/// Run `program args...` with extra environment; its standard output.
pub fn run_env(program: &str, args: &[String], env: &[(&str, &Path)]) -> Result<String, LabError> {
    let path = find(program)?;
    let os: Vec<OsString> = args.iter().map(OsString::from).collect();
    let shown = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(run_argv(&path, &os, env, TIMEOUT, &shown, &[])?.stdout)
}

/// Run `program args...`; its standard output.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    run_env(program, &args, &[])
}

/// `ip args...`.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// The default route of namespace `ns`: via `gateway`.
pub fn default_route(ns: &str, gateway: std::net::Ipv4Addr) -> Result<String, LabError> {
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &gateway.to_string(),
    ])
}

/// `ip netns exec <ns> program args...`.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let path = find(program)?;
    let mut all = vec!["netns".to_owned(), "exec".into(), ns.into()];
    all.push(path.display().to_string());
    all.extend(args.iter().map(|a| (*a).to_owned()));
    run_env("ip", &all, &[])
}

/// The network namespaces that exist.
pub fn namespaces() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A process the lab started: its pid and its start time (clock ticks after boot), which
/// together name it for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// Process id.
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22.
    pub start: u64,
}

/// State letter and start time of `pid`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let (_, rest) = text.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl Proc {
    /// The running process `pid`, if there is one.
    pub fn of(pid: u32) -> Option<Self> {
        stat(pid).map(|(_, start)| Self { pid, start })
    }

    /// The process whose pid is in `pidfile`.
    pub fn from_pidfile(pidfile: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(pidfile)
            .map_err(LabError::io(format!("reading {}", pidfile.display())))?;
        text.trim()
            .parse()
            .ok()
            .and_then(Self::of)
            .ok_or_else(|| LabError::Start {
                what: pidfile.display().to_string(),
                detail: format!("no running process with pid {:?}", text.trim()),
            })
    }

    /// Whether it still runs (not exited, not a zombie, not a newer process with its pid).
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if state != 'Z' && start == self.start)
    }
}

/// Whether `proc` is set and running.
pub fn running(proc: Option<&Proc>) -> bool {
    proc.is_some_and(Proc::alive)
}

fn signal(pid: u32, sig: &str) {
    if let Ok(kill) = find("kill") {
        let _ = Command::new(kill)
            .args([format!("-{sig}"), pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn wait_all_gone(procs: &[Proc], limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        if procs.iter().all(|p| !p.alive()) {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop processes: SIGTERM, then SIGKILL to those still running after 5 s.
pub fn terminate(procs: &[Proc]) {
    let live: Vec<Proc> = procs.iter().copied().filter(Proc::alive).collect();
    for p in &live {
        signal(p.pid, "TERM");
    }
    if !wait_all_gone(&live, Duration::from_secs(5)) {
        for p in live.iter().filter(|p| p.alive()) {
            tracing::warn!(pid = p.pid, "did not stop on SIGTERM; killing it");
            signal(p.pid, "KILL");
        }
        wait_all_gone(&live, Duration::from_secs(2));
    }
}

/// Processes named one of `programs` (as the kernel shortens them: 15 bytes) whose command
/// line mentions a path under `dir`: what a lab started there, even without its record (an
/// operator's `tail -f` of a log there is left alone).
pub fn processes_under(dir: &Path, programs: &[&str]) -> Vec<Proc> {
    let needle = format!("{}/", dir.display());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let short: Vec<&str> = programs.iter().map(|p| p.get(..15).unwrap_or(p)).collect();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| short.contains(&comm.trim_end()))
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .any(|arg| String::from_utf8_lossy(arg).contains(&needle))
                })
                .unwrap_or(false)
        })
        .filter_map(Proc::of)
        .collect()
}

/// Processes inside namespace `ns`.
pub fn processes_in(ns: &str) -> Vec<Proc> {
    ip(&["netns", "pids", ns])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter_map(Proc::of)
        .collect()
}

/// Start `program` in its own process group, detached from our terminal and standard
/// streams (output appended to `log`), with exactly the environment `env`.
pub fn spawn_detached(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<(Child, Proc), LabError> {
    let what = format!("starting {}", program.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(LabError::io(format!("opening {}", log.display())))?;
    let err_file = file.try_clone().map_err(LabError::io(what.clone()))?;
    let child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err_file)
        .process_group(0)
        .spawn()
        .map_err(LabError::io(what))?;
    let pid = child.id();
    // Start time 0 (never matches) when it is already gone: it counts as not running.
    let proc = Proc::of(pid).unwrap_or(Proc { pid, start: 0 });
    Ok((child, proc))
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Wait until `ready()` holds, the child exits (error with the log's tail) or `limit` passes.
pub fn wait_ready(
    what: &str,
    child: &mut Child,
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LabError> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LabError::Start {
                what: what.to_owned(),
                detail: format!(
                    "exited with {status}; last lines of {}:\n{}",
                    log.display(),
                    log_tail(log, 15)
                ),
            });
        }
        if ready() {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(LabError::Start {
                what: what.to_owned(),
                detail: format!(
                    "not ready within {limit:?}; last lines of {}:\n{}",
                    log.display(),
                    log_tail(log, 15)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ports handed out by this process (a port is bound and released when chosen, so without
/// this record one `up` could choose the same port twice).
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A free TCP port on 127.0.0.1, chosen at random *below* the kernel's ephemeral range: a port
/// from bind(:0) could be taken meanwhile by any outgoing connection (the NATS routes make
/// several), one below that range only by a listener.
pub fn free_port() -> Result<u16, LabError> {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if ephemeral_low > 11_000 {
        let span = u32::from(ephemeral_low - 10_000);
        let mut random = [0u8; 64];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .is_ok()
        {
            for pair in random.chunks(2) {
                let r = u32::from(u16::from_le_bytes([pair[0], pair[1]]));
                let port = u16::try_from(10_000 + r % span).unwrap_or(10_000);
                if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                    handed.push(port);
                    return Ok(port);
                }
            }
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(LabError::io("finding a free port"))?;
    handed.push(port);
    Ok(port)
}

/// The status code of `GET <path>` on 127.0.0.1:`port`, if it answers within a second.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// 32 random bytes from the kernel, as 64 hex characters.
pub fn random_key_hex() -> Result<String, LabError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(LabError::io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Write `text` to a new file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(LabError::io(format!("writing {}", path.display())))
}

/// Kill processes at once (SIGKILL), as a crash would, and wait until they are gone.
pub fn kill_now(procs: &[Proc]) {
    let live: Vec<Proc> = procs.iter().copied().filter(Proc::alive).collect();
    for p in &live {
        signal(p.pid, "KILL");
    }
    wait_all_gone(&live, Duration::from_secs(3));
}
