//! The host side of the setup guide, as an explicit plan: the gateway address on the internal
//! port, IPv4 forwarding, and NAT masquerade of the VPC range. These steps need root and touch
//! the node's own networking, so the adapter never performs them on its own: the CLI prints the
//! plan, and applies it only when the operator asks.

use std::ffi::OsString;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::error::OvsError;
use crate::exec::{find_program_hint, run_argv, shell_quote};
use crate::switch::validate_name;

/// What the host side should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The internal port (`hive-int0`).
    pub internal_port: String,
    /// Gateway address of the default subnet (10.0.1.1).
    pub gateway: Ipv4Addr,
    /// Its prefix length (24).
    pub prefix_len: u8,
    /// Whether to masquerade VPC traffic leaving the node (`[vpc] nat_enabled`).
    pub nat_enabled: bool,
    /// The range masqueraded (10.0.0.0/8).
    pub nat_source: (Ipv4Addr, u8),
    /// Uplink interface for NAT; `None` masquerades out of any interface but the VPC range.
    pub uplink: Option<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            internal_port: "hive-int0".into(),
            gateway: Ipv4Addr::new(10, 0, 1, 1),
            prefix_len: 24,
            nat_enabled: false,
            nat_source: (Ipv4Addr::new(10, 0, 0, 0), 8),
            uplink: None,
        }
    }
}

/// One root command of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStep {
    /// Why the step exists (shown with the plan).
    pub why: &'static str,
    /// The command (`argv[0]` is the program name).
    pub argv: Vec<String>,
    /// A command whose success means the step is already done (skipped then).
    pub check: Option<Vec<String>>,
}

/// The host-side steps, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// The steps.
    pub steps: Vec<HostStep>,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Build the plan for `config`.
pub fn host_plan(config: &HostConfig) -> Result<HostPlan, OvsError> {
    validate_name("internal port name", &config.internal_port)?;
    if let Some(uplink) = &config.uplink {
        validate_name("uplink interface name", uplink)?;
    }
    if config.prefix_len > 32 || config.nat_source.1 > 32 {
        return Err(OvsError::Invalid {
            what: "prefix length",
            value: config.prefix_len.to_string(),
            why: "must be 0..=32",
        });
    }
    let port = config.internal_port.as_str();
    let address = format!("{}/{}", config.gateway, config.prefix_len);
    let mut steps = vec![
        HostStep {
            why: "gateway address of the default subnet on the internal port",
            argv: argv(&["ip", "address", "replace", &address, "dev", port]),
            check: None,
        },
        HostStep {
            why: "bring the internal port up",
            argv: argv(&["ip", "link", "set", port, "up"]),
            check: None,
        },
        HostStep {
            why: "route between subnets and out of the node",
            argv: argv(&["sysctl", "-w", "net.ipv4.ip_forward=1"]),
            check: None,
        },
    ];
    if config.nat_enabled {
        let source = format!("{}/{}", config.nat_source.0, config.nat_source.1);
        // Traffic staying inside the VPC range is never rewritten.
        let mut rule = vec!["POSTROUTING", "-s", &source, "!", "-d", &source];
        if let Some(uplink) = &config.uplink {
            rule.extend(["-o", uplink.as_str()]);
        }
        rule.extend(["-j", "MASQUERADE"]);
        let with = |op: &str| {
            let mut v = argv(&["iptables", "-t", "nat", op]);
            v.extend(rule.iter().map(|s| s.to_string()));
            v
        };
        steps.push(HostStep {
            why: "masquerade VPC traffic leaving the node",
            argv: with("-A"),
            check: Some(with("-C")),
        });
    }
    Ok(HostPlan { steps })
}

fn line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for HostPlan {
    /// The plan as a shell script an operator can read and run.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "# {}", step.why)?;
            match &step.check {
                Some(check) => writeln!(f, "{} 2>/dev/null || {}", line(check), line(&step.argv))?,
                None => writeln!(f, "{}", line(&step.argv))?,
            }
        }
        Ok(())
    }
}

impl HostPlan {
    /// Run the plan (needs root). Each command is bounded by `timeout`; the first failure stops it.
    /// Returns the steps that ran (steps whose check passed are skipped).
    pub fn apply(&self, timeout: Duration) -> Result<Vec<String>, OvsError> {
        let mut ran = Vec::new();
        for step in &self.steps {
            if let Some(check) = &step.check
                && run_step(check, timeout, &[0]).is_ok()
            {
                continue;
            }
            run_step(&step.argv, timeout, &[])?;
            ran.push(line(&step.argv));
        }
        Ok(ran)
    }
}

fn run_step(argv: &[String], timeout: Duration, ok: &[i32]) -> Result<(), OvsError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let hint = match program.as_str() {
        "iptables" => "apt-get install -y iptables",
        "sysctl" => "apt-get install -y procps",
        _ => "apt-get install -y iproute2",
    };
    let path = find_program_hint(program, None, hint)?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    run_argv(&path, &args, &[], timeout, &line(argv), ok).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_setup_guide() {
        let plan = host_plan(&HostConfig::default()).expect("valid");
        assert_eq!(
            plan.to_string(),
            "# gateway address of the default subnet on the internal port\nip address replace 10.0.1.1/24 dev hive-int0\n\
             # bring the internal port up\nip link set hive-int0 up\n\
             # route between subnets and out of the node\nsysctl -w net.ipv4.ip_forward=1\n"
        );
        let nat = host_plan(&HostConfig {
            nat_enabled: true,
            uplink: Some("eth0".into()),
            ..HostConfig::default()
        })
        .expect("valid");
        let text = nat.to_string();
        assert!(text.contains("iptables -t nat -C POSTROUTING -s 10.0.0.0/8 '!' -d 10.0.0.0/8 -o eth0 -j MASQUERADE 2>/dev/null || iptables -t nat -A POSTROUTING"), "{text}");
        assert!(
            host_plan(&HostConfig {
                internal_port: "x;rm".into(),
                ..HostConfig::default()
            })
            .is_err()
        );
    }
}
