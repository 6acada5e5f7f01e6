//! A private Open vSwitch in a temporary directory, for tests, benches and `hive-cli lab`.
//!
//! [`Sandbox::start`] creates a database, starts `ovsdb-server` and `ovs-vswitchd` on sockets
//! inside the directory (no root, no kernel module, nothing shared with a system OVS), and stops
//! both by their pids when dropped. [`SandboxMode::Dummy`] runs the switch with
//! `--enable-dummy=override`: bridges get the dummy datapath, ports are dummy netdevs, packets
//! are traced with `ofproto/trace` or injected with `netdev-dummy/receive`.
//! [`SandboxMode::Netdev`] runs the userspace datapath for real packets (veths, needs root).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::OvsError;
use crate::exec::{OvsCommand, Runner, Tool, find_program_hint};
use crate::ovs::OvsSwitch;
use crate::parse::{DpPort, TraceResult, parse_dpif_show, parse_trace};
use crate::switch::{DatapathType, OvsConfig, validate_name};

/// How the sandboxed switch forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Dummy datapath: traces and injected packets, no privileges.
    Dummy,
    /// Userspace datapath: real packets through system devices (root).
    Netdev,
}

/// A running private Open vSwitch; stopped on drop.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    mode: SandboxMode,
    runner: Runner,
    daemons: Vec<(Tool, u32)>,
}

/// Where Debian keeps the database schema; `OVS_PKGDATADIR` overrides it as for the OVS tools.
fn schema_path() -> PathBuf {
    let dir = std::env::var_os("OVS_PKGDATADIR")
        .map_or_else(|| PathBuf::from("/usr/share/openvswitch"), PathBuf::from);
    dir.join("vswitch.ovsschema")
}

impl Sandbox {
    /// Start a sandbox. Fails with [`OvsError::NotInstalled`] (naming
    /// `apt-get install -y openvswitch-switch`) when Open vSwitch is missing.
    pub fn start(mode: SandboxMode) -> Result<Self, OvsError> {
        let dir = tempfile::Builder::new()
            .prefix("hive-ovs-")
            .tempdir()
            .map_err(|source| OvsError::Io {
                what: "creating the sandbox directory".into(),
                source,
            })?;
        let schema = schema_path();
        if !schema.is_file() {
            return Err(OvsError::NotInstalled {
                program: schema.display().to_string(),
                hint: crate::error::INSTALL_HINT,
            });
        }
        let runner = Runner {
            rundir: Some(dir.path().to_path_buf()),
            bin_dir: None,
            timeout: Duration::from_secs(20),
        };
        let mut sandbox = Self {
            dir,
            mode,
            runner,
            daemons: Vec::new(),
        };
        let d = sandbox.dir.path().to_path_buf();
        let p = |name: &str| d.join(name).display().to_string();
        sandbox.runner.run(&OvsCommand::new(
            Tool::OvsdbTool,
            [
                "create".to_string(),
                p("conf.db"),
                schema.display().to_string(),
            ],
        ))?;
        sandbox.runner.run(&OvsCommand::new(
            Tool::OvsdbServer,
            [
                "--detach".to_string(),
                "--no-chdir".into(),
                format!("--pidfile={}", p("ovsdb-server.pid")),
                format!("--log-file={}", p("ovsdb-server.log")),
                format!("--remote=punix:{}", p("db.sock")),
                p("conf.db"),
            ],
        ))?;
        sandbox
            .daemons
            .push((Tool::OvsdbServer, read_pid(&d.join("ovsdb-server.pid"))?));
        sandbox.runner.run(&OvsCommand::new(
            Tool::Vsctl,
            [
                format!("--db=unix:{}", p("db.sock")),
                "--no-wait".into(),
                "init".into(),
            ],
        ))?;
        let mut args = vec![
            "--detach".to_string(),
            "--no-chdir".into(),
            format!("--pidfile={}", p("ovs-vswitchd.pid")),
            format!("--log-file={}", p("ovs-vswitchd.log")),
            "--disable-system".into(),
        ];
        if mode == SandboxMode::Dummy {
            args.push("--enable-dummy=override".into());
        }
        args.push(format!("unix:{}", p("db.sock")));
        sandbox.runner.run(&OvsCommand::new(Tool::Vswitchd, args))?;
        sandbox
            .daemons
            .push((Tool::Vswitchd, read_pid(&d.join("ovs-vswitchd.pid"))?));
        Ok(sandbox)
    }

    /// The sandbox directory (`OVS_RUNDIR`, database, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The mode it runs in.
    pub fn mode(&self) -> SandboxMode {
        self.mode
    }

    /// The database remote (`unix:DIR/db.sock`).
    pub fn db(&self) -> String {
        format!("unix:{}", self.dir().join("db.sock").display())
    }

    /// An adapter configuration that drives this sandbox's `bridge` (no environment needed).
    pub fn config(&self, bridge: &str) -> OvsConfig {
        OvsConfig {
            bridge: bridge.to_string(),
            datapath_type: match self.mode {
                SandboxMode::Dummy => DatapathType::Dummy,
                SandboxMode::Netdev => DatapathType::Netdev,
            },
            rundir: Some(self.dir().to_path_buf()),
            db: Some(self.db()),
            ..OvsConfig::default()
        }
    }

    /// The adapter for this sandbox's `bridge`.
    pub fn switch(&self, bridge: &str) -> Result<OvsSwitch, OvsError> {
        OvsSwitch::new(self.config(bridge))
    }

    fn tool(&self, tool: Tool, args: &[&str]) -> Result<String, OvsError> {
        let mut all: Vec<String> = Vec::new();
        if tool == Tool::Vsctl {
            all.push(format!("--db={}", self.db()));
        }
        all.extend(args.iter().map(|s| s.to_string()));
        Ok(self.runner.run(&OvsCommand::new(tool, all))?.stdout)
    }

    /// Run `ovs-vsctl` against the sandbox; returns stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, OvsError> {
        self.tool(Tool::Vsctl, args)
    }

    /// Run `ovs-ofctl` against the sandbox (by hand, e.g. to cause drift); returns stdout.
    pub fn ofctl(&self, args: &[&str]) -> Result<String, OvsError> {
        self.tool(Tool::Ofctl, args)
    }

    /// Run `ovs-appctl` against the sandbox's `ovs-vswitchd`; returns stdout.
    pub fn appctl(&self, args: &[&str]) -> Result<String, OvsError> {
        self.tool(Tool::Appctl, args)
    }

    /// Add a port to `bridge` (a dummy netdev in dummy mode, the existing device `name`
    /// otherwise), optionally bound to an ENI and at a chosen OpenFlow port; returns its ofport.
    pub fn add_port(
        &self,
        bridge: &str,
        name: &str,
        iface_id: Option<&str>,
        ofport: Option<u32>,
    ) -> Result<u32, OvsError> {
        validate_name("port name", name)?;
        let mut args: Vec<String> = vec![
            "add-port".into(),
            bridge.into(),
            name.into(),
            "--".into(),
            "set".into(),
            "interface".into(),
            name.into(),
        ];
        if self.mode == SandboxMode::Dummy {
            args.push("type=dummy".into());
        }
        if let Some(id) = iface_id {
            args.push(format!("external_ids:iface-id={id}"));
        }
        if let Some(p) = ofport {
            args.push(format!("ofport_request={p}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&refs)?;
        let out = self.vsctl(&["get", "interface", name, "ofport"])?;
        out.trim().parse().map_err(|_| OvsError::Parse {
            what: "ofport",
            detail: out.trim().to_string(),
        })
    }

    /// `ofproto/trace` of `flow` (ovs-ofctl match syntax with `in_port=`) through `bridge`,
    /// feeding `ct_next[i]` to the i-th conntrack step (`trk,new`, `trk,est`, ...).
    pub fn trace(
        &self,
        bridge: &str,
        flow: &str,
        ct_next: &[&str],
    ) -> Result<TraceResult, OvsError> {
        let ports = self.dp_ports(bridge)?;
        self.trace_with(bridge, flow, ct_next, &ports)
    }

    /// The datapath ports of `bridge` (`dpif/show`), to name the ports in traces.
    pub fn dp_ports(&self, bridge: &str) -> Result<Vec<DpPort>, OvsError> {
        let ports = parse_dpif_show(&self.appctl(&["dpif/show"])?);
        Ok(ports.into_iter().filter(|p| p.bridge == bridge).collect())
    }

    /// [`Sandbox::trace`] with the datapath ports already known (many traces, one lookup).
    pub fn trace_with(
        &self,
        bridge: &str,
        flow: &str,
        ct_next: &[&str],
        ports: &[DpPort],
    ) -> Result<TraceResult, OvsError> {
        let mut args = vec!["ofproto/trace", bridge, flow];
        for state in ct_next {
            args.extend(["--ct-next", state]);
        }
        parse_trace(&self.appctl(&args)?, ports)
    }

    /// Inject a packet into dummy port `port` (`netdev-dummy/receive`): a datapath flow or the
    /// frame as hex (see [`Frame::hex`]).
    pub fn receive(&self, port: &str, packet: &str) -> Result<(), OvsError> {
        self.appctl(&["netdev-dummy/receive", port, packet])
            .map(|_| ())
    }

    /// The userspace conntrack table (`dpctl/dump-conntrack`), one entry per line.
    pub fn conntrack(&self) -> Result<Vec<String>, OvsError> {
        Ok(self
            .appctl(&["dpctl/dump-conntrack"])?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Packets the switch has sent out of `port` on `bridge` (live OpenFlow port statistics).
    pub fn tx_packets(&self, bridge: &str, port: &str) -> Result<u64, OvsError> {
        let out = self.ofctl(&["-O", "OpenFlow13", "dump-ports", bridge, port])?;
        out.split("tx pkts=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| OvsError::Parse {
                what: "dump-ports output",
                detail: out.clone(),
            })
    }

    /// Stop the daemons now (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Newest first: the switch before its database.
        while let Some((tool, pid)) = self.daemons.pop() {
            let target = self
                .dir()
                .join(format!("{}.{pid}.ctl", tool.program()))
                .display()
                .to_string();
            let quick = Runner {
                timeout: Duration::from_secs(5),
                ..self.runner.clone()
            };
            let _ = quick.run(&OvsCommand::new(
                Tool::Appctl,
                ["-t".to_string(), target, "exit".into()],
            ));
            if !wait_gone(pid, Duration::from_secs(3)) {
                tracing::warn!(
                    pid,
                    program = tool.program(),
                    "sandbox daemon did not exit; killing it"
                );
                if let Ok(kill) = find_program_hint("kill", None, "apt-get install -y procps") {
                    let _ = std::process::Command::new(kill)
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                wait_gone(pid, Duration::from_secs(2));
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_pid(path: &Path) -> Result<u32, OvsError> {
    let text = std::fs::read_to_string(path).map_err(|source| OvsError::Io {
        what: format!("reading {}", path.display()),
        source,
    })?;
    text.trim().parse().map_err(|_| OvsError::Parse {
        what: "pid file",
        detail: text.trim().to_string(),
    })
}

/// Whether process `pid` has exited (gone, or a zombie awaiting its reaper) within `limit`.
fn wait_gone(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 3, after the parenthesised command name, is the state; Z = zombie.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        if stat.is_empty() || state == Some('Z') {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// L4 payload of a test frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// TCP with ports, flags (`SYN` = 0x02, `ACK` = 0x10, ...), sequence and acknowledgement.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Flags byte.
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
    },
    /// UDP with ports.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMP with type and code (echo request 8/0, reply 0/0).
    Icmp {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
    },
}

/// An Ethernet/IPv4 frame with correct checksums, for `netdev-dummy/receive` (userspace
/// conntrack validates checksums and TCP sequence numbers, so packets must be real).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Optional 802.1Q VLAN id.
    pub vlan: Option<u16>,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport.
    pub l4: L4,
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Frame {
    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let (proto, mut l4) = match self.l4 {
            L4::Tcp {
                src,
                dst,
                flags,
                seq,
                ack,
            } => {
                let mut t = Vec::with_capacity(20);
                t.extend(src.to_be_bytes());
                t.extend(dst.to_be_bytes());
                t.extend(seq.to_be_bytes());
                t.extend(ack.to_be_bytes());
                t.extend([0x50, flags]);
                t.extend(64240u16.to_be_bytes());
                t.extend([0, 0, 0, 0]);
                (6u8, t)
            }
            L4::Udp { src, dst } => {
                let mut u = Vec::with_capacity(12);
                u.extend(src.to_be_bytes());
                u.extend(dst.to_be_bytes());
                u.extend(12u16.to_be_bytes());
                u.extend([0, 0, b'h', b'i', b'v', b'e']);
                (17u8, u)
            }
            L4::Icmp { kind, code } => (
                1u8,
                vec![kind, code, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i', b'v', b'e'],
            ),
        };
        let len = u16::try_from(l4.len()).unwrap_or(u16::MAX);
        let csum = match proto {
            1 => checksum(&[&l4]),
            _ => {
                let mut pseudo = Vec::with_capacity(12);
                pseudo.extend(self.src.octets());
                pseudo.extend(self.dst.octets());
                pseudo.extend([0, proto]);
                pseudo.extend(len.to_be_bytes());
                checksum(&[&pseudo, &l4])
            }
        };
        let at = match proto {
            6 => 16,
            17 => 6,
            _ => 2,
        };
        l4[at..at + 2].copy_from_slice(&csum.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend((20 + len).to_be_bytes());
        ip.extend([0, 1, 0x40, 0, 64, proto, 0, 0]);
        ip.extend(self.src.octets());
        ip.extend(self.dst.octets());
        let ipsum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&ipsum.to_be_bytes());
        let mut frame = Vec::with_capacity(18 + ip.len() + l4.len());
        frame.extend(self.dst_mac);
        frame.extend(self.src_mac);
        if let Some(vid) = self.vlan {
            frame.extend([0x81, 0x00]);
            frame.extend((vid & 0x0fff).to_be_bytes());
        }
        frame.extend([0x08, 0x00]);
        frame.extend(ip);
        frame.extend(l4);
        frame
    }

    /// The frame as the hex string `netdev-dummy/receive` accepts.
    pub fn hex(&self) -> String {
        self.bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_valid_checksums() {
        let f = Frame {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan: None,
            src: Ipv4Addr::new(10, 0, 1, 4),
            dst: Ipv4Addr::new(10, 0, 1, 5),
            l4: L4::Tcp {
                src: 40000,
                dst: 22,
                flags: 0x02,
                seq: 1000,
                ack: 0,
            },
        };
        let b = f.bytes();
        assert_eq!(b.len(), 14 + 20 + 20);
        // A correct header sums to zero (checksum of the whole header is 0).
        assert_eq!(checksum(&[&b[14..34]]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend([10, 0, 1, 4, 10, 0, 1, 5, 0, 6, 0, 20]);
        assert_eq!(checksum(&[&pseudo, &b[34..]]), 0);
        assert!(f.hex().starts_with("020000000002020000000001080045"));
        let icmp = Frame {
            l4: L4::Icmp { kind: 8, code: 0 },
            vlan: Some(5),
            ..f
        }
        .bytes();
        assert_eq!(&icmp[12..16], &[0x81, 0x00, 0x00, 0x05]);
        assert_eq!(checksum(&[&icmp[38..]]), 0);
    }
}
