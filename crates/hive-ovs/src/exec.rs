//! Running the `ovs-*` tools: command lines as data, binary lookup, and a hard time limit on
//! every run (the child is killed when it expires), so no call into Open vSwitch can hang.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{INSTALL_HINT, OvsError};

/// The Open vSwitch programs the adapter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `ovs-vsctl`: the configuration database (bridges, ports, interfaces).
    Vsctl,
    /// `ovs-ofctl`: OpenFlow tables.
    Ofctl,
    /// `ovs-appctl`: runtime commands to the daemons (trace, conntrack, dummy packets).
    Appctl,
    /// `ovsdb-tool`: creating a database file (sandbox only).
    OvsdbTool,
    /// `ovsdb-server`: the database daemon (sandbox only).
    OvsdbServer,
    /// `ovs-vswitchd`: the switch daemon (sandbox only).
    Vswitchd,
}

impl Tool {
    /// The program's file name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Vsctl => "ovs-vsctl",
            Tool::Ofctl => "ovs-ofctl",
            Tool::Appctl => "ovs-appctl",
            Tool::OvsdbTool => "ovsdb-tool",
            Tool::OvsdbServer => "ovsdb-server",
            Tool::Vswitchd => "ovs-vswitchd",
        }
    }
}

/// The argument that stands for the command's input file; replaced by a temporary file holding
/// [`OvsCommand::input`] when the command runs (`ovs-ofctl` reads flows from files only).
pub const INPUT_FILE: &str = "@INPUT";

/// One command line, as data: what [`crate::OvsSwitch`] runs and [`crate::DryRunSwitch`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsCommand {
    /// The program.
    pub tool: Tool,
    /// Its arguments; [`INPUT_FILE`] marks where the input file's path goes.
    pub args: Vec<String>,
    /// Contents of the input file, if the command reads one (flows, bundles).
    pub input: Option<String>,
    /// Exit codes that count as success besides 0 (`diff-flows` exits 2 on differences).
    pub ok_codes: Vec<i32>,
}

impl OvsCommand {
    /// A command with arguments and no input.
    pub fn new<I, S>(tool: Tool, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            tool,
            args: args.into_iter().map(Into::into).collect(),
            input: None,
            ok_codes: Vec::new(),
        }
    }

    /// The same command reading `input` from the file at [`INPUT_FILE`].
    pub fn with_input(mut self, input: String) -> Self {
        self.input = Some(input);
        self
    }

    /// The same command also accepting exit `code` as success.
    pub fn accepting(mut self, code: i32) -> Self {
        self.ok_codes.push(code);
        self
    }
}

impl fmt::Display for OvsCommand {
    /// The command as a shell line (arguments quoted where needed; the input file as `FILE`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tool.program())?;
        for arg in &self.args {
            f.write_str(" ")?;
            if arg == INPUT_FILE {
                f.write_str("FILE")?;
            } else {
                f.write_str(&shell_quote(arg))?;
            }
        }
        Ok(())
    }
}

/// Quote `arg` for a POSIX shell if it contains anything beyond a safe set.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%^".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code (the command succeeded, possibly with an accepted non-zero code).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Where and how to run the tools.
#[derive(Debug, Clone)]
pub struct Runner {
    /// `OVS_RUNDIR` for the children (where sockets, pid files and `<bridge>.mgmt` live); `None`
    /// inherits the environment, exactly like the OVS tools do.
    pub rundir: Option<PathBuf>,
    /// A directory searched first for the programs.
    pub bin_dir: Option<PathBuf>,
    /// Time limit of every command.
    pub timeout: Duration,
}

/// Directories searched after `PATH`: Debian puts the daemons in `/usr/sbin`, which is often
/// missing from a non-root `PATH`.
const EXTRA_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// Find `program` in `first`, `PATH` and the usual system directories.
pub fn find_program(program: &str, first: Option<&Path>) -> Result<PathBuf, OvsError> {
    find_program_hint(program, first, INSTALL_HINT)
}

/// Like [`find_program`], with the install hint for a program outside Open vSwitch.
pub fn find_program_hint(
    program: &str,
    first: Option<&Path>,
    hint: &'static str,
) -> Result<PathBuf, OvsError> {
    let mut dirs: Vec<PathBuf> = first.map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| OvsError::NotInstalled {
            program: program.to_string(),
            hint,
        })
}

impl Runner {
    /// Run `cmd` with this runner's time limit.
    pub fn run(&self, cmd: &OvsCommand) -> Result<Output, OvsError> {
        self.run_with_timeout(cmd, self.timeout)
    }

    /// Run `cmd`, killing it after `timeout`; map failures to typed errors.
    pub fn run_with_timeout(
        &self,
        cmd: &OvsCommand,
        timeout: Duration,
    ) -> Result<Output, OvsError> {
        let program = find_program(cmd.tool.program(), self.bin_dir.as_deref())?;
        // The input goes through a private temporary file: ovs-ofctl reads flows from files.
        let input_file = match &cmd.input {
            Some(text) => {
                let mut file = tempfile::Builder::new()
                    .prefix("hive-ovs-")
                    .suffix(".flows")
                    .tempfile()
                    .map_err(|source| OvsError::Io {
                        what: "creating a temporary flow file".into(),
                        source,
                    })?;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.flush())
                    .map_err(|source| OvsError::Io {
                        what: "writing a temporary flow file".into(),
                        source,
                    })?;
                Some(file)
            }
            None => None,
        };
        let args: Vec<OsString> = cmd
            .args
            .iter()
            .map(|a| match (&input_file, a.as_str()) {
                (Some(file), INPUT_FILE) => file.path().as_os_str().to_os_string(),
                _ => OsString::from(a),
            })
            .collect();
        let env: Vec<(&str, &Path)> = self
            .rundir
            .iter()
            .map(|d| ("OVS_RUNDIR", d.as_path()))
            .collect();
        let result = run_argv(
            &program,
            &args,
            &env,
            timeout,
            &cmd.to_string(),
            &cmd.ok_codes,
        );
        drop(input_file);
        result
    }
}

/// Run `program` with `args` and `env`, killing it after `timeout`; `shown` names it in errors.
pub fn run_argv(
    program: &Path,
    args: &[OsString],
    env: &[(&str, &Path)],
    timeout: Duration,
    shown: &str,
    ok_codes: &[i32],
) -> Result<Output, OvsError> {
    let shown = shown.to_string();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|source| OvsError::Io {
        what: format!("starting `{shown}`"),
        source,
    })?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                // Kill and reap; errors here mean the child is already gone.
                let _ = child.kill();
                let _ = child.wait();
                return Err(OvsError::Timeout {
                    cmd: shown,
                    after: timeout,
                });
            }
            Ok(None) => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(OvsError::Io {
                    what: format!("waiting for `{shown}`"),
                    source,
                });
            }
        }
    };
    // A daemon that detached may keep our pipes open; never wait on it for long.
    let grace = Duration::from_secs(2);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let code = status.code();
    match code {
        Some(c) if c == 0 || ok_codes.contains(&c) => Ok(Output {
            code: c,
            stdout,
            stderr,
        }),
        _ => Err(classify(shown, status.to_string(), stderr)),
    }
}

/// Read a pipe to its end on a thread; the bytes arrive on the returned channel.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    match pipe {
        Some(mut pipe) => {
            thread::spawn(move || {
                let mut buf = Vec::new();
                // A read error leaves what was read so far; the exit status tells the story.
                let _ = pipe.read_to_end(&mut buf);
                let _ = tx.send(buf);
            });
        }
        None => {
            let _ = tx.send(Vec::new());
        }
    }
    rx
}

/// Turn a failed command into the most specific error its stderr allows.
fn classify(cmd: String, status: String, stderr: String) -> OvsError {
    let text = stderr.trim().to_string();
    let not_running = [
        "database connection failed",
        "cannot read pidfile",
        "cannot connect to",
        "Connection refused",
    ];
    if not_running.iter().any(|m| text.contains(m)) {
        return OvsError::NotRunning { detail: text };
    }
    if let Some(pos) = text.find(" is not a bridge or a socket") {
        let head = &text[..pos];
        let bridge = head.rsplit(' ').next().unwrap_or(head).to_string();
        return OvsError::NoSuchBridge { bridge };
    }
    if let Some(pos) = text.find("no bridge named ") {
        let bridge = text[pos + "no bridge named ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        return OvsError::NoSuchBridge { bridge };
    }
    OvsError::CommandFailed {
        cmd,
        status,
        stderr: text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_is_shell_safe() {
        assert_eq!(shell_quote("hive-vpc0"), "hive-vpc0");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn missing_program_names_the_install_command() {
        let err = find_program("ovs-definitely-not-here", None).expect_err("no such program");
        assert!(
            err.to_string()
                .contains("apt-get install -y openvswitch-switch"),
            "{err}"
        );
    }

    #[test]
    fn errors_are_classified() {
        let e = classify(
            "x".into(),
            "exit status: 1".into(),
            "ovs-vsctl: unix:/x/db.sock: database connection failed (No such file or directory)"
                .into(),
        );
        assert!(matches!(e, OvsError::NotRunning { .. }), "{e:?}");
        let e = classify(
            "x".into(),
            "exit status: 1".into(),
            "ovs-ofctl: br9 is not a bridge or a socket".into(),
        );
        assert!(
            matches!(e, OvsError::NoSuchBridge { ref bridge } if bridge == "br9"),
            "{e:?}"
        );
        let e = classify("x".into(), "exit status: 1".into(), "boom".into());
        assert!(matches!(e, OvsError::CommandFailed { .. }), "{e:?}");
    }

    #[test]
    fn a_hanging_command_is_killed() {
        // A socket that accepts and never answers: ovs-appctl would wait forever on it.
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("silent.ctl");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind unix socket");
        let runner = Runner {
            rundir: None,
            bin_dir: None,
            timeout: Duration::from_millis(300),
        };
        let cmd = OvsCommand::new(
            Tool::Appctl,
            [
                "-t".to_string(),
                sock.display().to_string(),
                "version".into(),
            ],
        );
        let started = Instant::now();
        let err = runner.run(&cmd).expect_err("must time out");
        assert!(
            matches!(err, OvsError::Timeout { .. }),
            "{err:?} (needs: apt-get install -y openvswitch-switch)"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
