//! Parsers for what the OVS tools print: `dump-flows`, `diff-flows`, `ofproto/trace`,
//! `dpif/show` and `ovs-vsctl -f json` tables. They never panic: odd input is an error value.

use std::collections::BTreeMap;

use hive_vpc::flow::Flow;

use crate::error::OvsError;

/// OpenFlow's default priority, which `dump-flows` leaves out.
const DEFAULT_PRIORITY: u16 = 32768;

/// Statistics and timers `dump-flows` prints that are not part of a flow's identity or action.
const VOLATILE: &[&str] = &["duration", "n_packets", "n_bytes", "idle_age", "hard_age"];

/// Parse `ovs-ofctl dump-flows` output into flows, dropping statistics (duration, counters,
/// ages). Header lines (`OFPST_FLOW reply ...`) are skipped.
pub fn parse_dump_flows(text: &str) -> Result<Vec<Flow>, OvsError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("OFPST_") && !l.starts_with("NXST_"))
        .map(parse_dump_line)
        .collect()
}

/// Parse one `dump-flows` line, e.g. `cookie=0x3, table=1, priority=10,tcp,tp_dst=22 actions=output:1`.
pub fn parse_dump_line(line: &str) -> Result<Flow, OvsError> {
    let bad = |why: &str| OvsError::Parse {
        what: "dump-flows line",
        detail: format!("{why}: {line}"),
    };
    let (head, actions) = line
        .split_once(" actions=")
        .ok_or_else(|| bad("no actions"))?;
    let mut flow = Flow {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        matches: String::new(),
        actions: actions.trim().to_string(),
    };
    let mut matches: Vec<&str> = Vec::new();
    for segment in head.trim().split(", ") {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        match key {
            "cookie" => flow.cookie = parse_u64(value).ok_or_else(|| bad("bad cookie"))?,
            "table" => flow.table = value.parse().map_err(|_| bad("bad table"))?,
            k if VOLATILE.contains(&k) => {}
            "idle_timeout" | "hard_timeout" | "importance" => matches.push(segment),
            _ => {
                for part in segment.split(',').filter(|p| !p.is_empty()) {
                    match part.split_once('=') {
                        Some(("priority", p)) => {
                            flow.priority = p.parse().map_err(|_| bad("bad priority"))?
                        }
                        _ => matches.push(part),
                    }
                }
            }
        }
    }
    flow.matches = matches.join(",");
    Ok(flow)
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Turn `ovs-ofctl -O OpenFlow13 parse-flows` output back into flow lines.
///
/// `parse-flows` shows each flow as the flow_mod that goes on the wire, decoded again: the
/// form the switch stores and `dump-flows` prints. Actions that exist only as OpenFlow 1.0
/// spellings come back in their 1.3 form (`mod_dl_dst:M` becomes `set_field:M->eth_dst`), which
/// is what makes a program comparable with the live table by `diff-flows`.
pub fn canonical_from_parse_flows(text: &str) -> Result<String, OvsError> {
    let mut out = String::new();
    for line in text.lines() {
        let Some((_, mod_text)) = line.split_once("): ADD ") else {
            continue;
        };
        let (head, actions) = mod_text
            .split_once(" actions=")
            .ok_or_else(|| OvsError::Parse {
                what: "parse-flows line",
                detail: line.to_string(),
            })?;
        let mut parts: Vec<String> = Vec::new();
        for token in head.split_whitespace() {
            let part = match token.split_once(':') {
                Some(("table", n)) => format!("table={n}"),
                Some(("cookie", c)) => format!("cookie={c}"),
                Some(("idle", n)) => format!("idle_timeout={n}"),
                Some(("hard", n)) => format!("hard_timeout={n}"),
                Some(("importance", n)) => format!("importance={n}"),
                _ => token.to_string(),
            };
            parts.push(part);
        }
        parts.push(format!("actions={actions}"));
        out.push_str(&parts.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// One line of `ovs-ofctl diff-flows A B` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    /// `true` for `-` (only in A, the desired program), `false` for `+` (only in B, the switch).
    pub only_in_first: bool,
    /// The flow's identity as OVS prints it (table, priority, match), without cookie or actions.
    pub key: String,
    /// The whole flow as OVS prints it.
    pub text: String,
}

/// Parse `diff-flows` output: `-` lines are in the first table only, `+` lines in the second.
pub fn parse_diff_flows(text: &str) -> Result<Vec<DiffLine>, OvsError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (only_in_first, rest) = match line.as_bytes().first() {
            Some(b'-') => (true, &line[1..]),
            Some(b'+') => (false, &line[1..]),
            _ => {
                return Err(OvsError::Parse {
                    what: "diff-flows line",
                    detail: line.to_string(),
                });
            }
        };
        let head = rest.split_once(" actions=").map_or(rest, |(h, _)| h);
        let key = head
            .split(' ')
            .filter(|t| !t.starts_with("cookie="))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(DiffLine {
            only_in_first,
            key,
            text: rest.trim().to_string(),
        });
    }
    Ok(out)
}

/// A datapath port as `ovs-appctl dpif/show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpPort {
    /// Bridge the port belongs to.
    pub bridge: String,
    /// Port (interface) name.
    pub name: String,
    /// OpenFlow port number, if it has one.
    pub ofport: Option<u32>,
    /// Datapath port number.
    pub dp_port: u32,
}

/// Parse `ovs-appctl dpif/show`: `  bridge:` headers followed by `    name OF/DP: (type)` lines.
pub fn parse_dpif_show(text: &str) -> Vec<DpPort> {
    let mut bridge = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 2 && trimmed.ends_with(':') {
            bridge = trimmed.trim_end_matches(':').to_string();
        } else if indent >= 4 {
            let mut words = trimmed.split_whitespace();
            let (Some(name), Some(nums)) = (words.next(), words.next()) else {
                continue;
            };
            let nums = nums.trim_end_matches(':');
            let Some((of, dp)) = nums.split_once('/') else {
                continue;
            };
            let Ok(dp_port) = dp.parse() else { continue };
            out.push(DpPort {
                bridge: bridge.clone(),
                name: name.to_string(),
                ofport: of.parse().ok(),
                dp_port,
            });
        }
    }
    out
}

/// What `ovs-appctl ofproto/trace` says the switch does with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceResult {
    /// Names of the ports that receive the packet, in datapath order (empty means dropped).
    pub outputs: Vec<String>,
    /// Every `Datapath actions:` line (one per pipeline pass with `--ct-next`).
    pub datapath_actions: Vec<String>,
    /// Whether some pass commits the connection to conntrack (`ct(commit...)`).
    pub commits: bool,
    /// The full trace, for failure messages.
    pub raw: String,
}

impl TraceResult {
    /// Whether the packet goes nowhere.
    pub fn is_drop(&self) -> bool {
        self.outputs.is_empty()
    }
}

/// Split a datapath action list at top-level commas (commas inside parentheses stay).
fn split_top(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Parse a trace; datapath port numbers become port names through `ports` (from `dpif/show`).
pub fn parse_trace(text: &str, ports: &[DpPort]) -> Result<TraceResult, OvsError> {
    let datapath_actions: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Datapath actions:"))
        .map(|a| a.trim().to_string())
        .collect();
    if datapath_actions.is_empty() {
        let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Err(OvsError::Parse {
            what: "ofproto/trace output",
            detail: format!("no \"Datapath actions:\" line ({tail})"),
        });
    }
    let name_of = |dp: u32| {
        ports
            .iter()
            .find(|p| p.dp_port == dp)
            .map_or_else(|| format!("dp{dp}"), |p| p.name.clone())
    };
    let mut outputs = Vec::new();
    let mut commits = false;
    for line in &datapath_actions {
        for action in split_top(line) {
            if let Ok(dp) = action.parse::<u32>() {
                outputs.push(name_of(dp));
            } else if let Some(inner) = action.strip_prefix("tnl_push(") {
                // Output through a tunnel: report the tunnel port, not the underlay.
                if let Some(dp) = inner
                    .strip_prefix("tnl_port(")
                    .and_then(|r| r.split(')').next())
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    outputs.push(name_of(dp));
                }
            } else if action.starts_with("ct(") && action.contains("commit") {
                commits = true;
            }
        }
    }
    Ok(TraceResult {
        outputs,
        datapath_actions,
        commits,
        raw: text.to_string(),
    })
}

/// One cell of an OVSDB table as `ovs-vsctl -f json` prints it.
#[derive(Debug, Clone, PartialEq)]
pub enum DbValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A map (`external_ids`, `options`, `statistics`).
    Map(BTreeMap<String, String>),
    /// A set of zero or several values (an unset optional column is an empty set).
    Set(Vec<DbValue>),
    /// Anything else, as its JSON text.
    Other(String),
}

impl DbValue {
    /// The value as a string, if it is one (a one-element set is its element).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            DbValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            DbValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The strings of a set (or of a single string).
    pub fn strings(&self) -> Vec<String> {
        match self {
            DbValue::Str(s) => vec![s.clone()],
            DbValue::Set(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The value as a map (an empty map for anything else).
    pub fn map(&self) -> BTreeMap<String, String> {
        match self {
            DbValue::Map(m) => m.clone(),
            _ => BTreeMap::new(),
        }
    }
}

fn db_value(v: &serde_json::Value) -> DbValue {
    use serde_json::Value;
    match v {
        Value::String(s) => DbValue::Str(s.clone()),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| DbValue::Other(n.to_string()), DbValue::Int),
        Value::Bool(b) => DbValue::Bool(*b),
        Value::Array(a) if a.len() == 2 && a[0] == "map" => {
            let mut map = BTreeMap::new();
            for pair in a[1].as_array().into_iter().flatten() {
                if let Some([k, v]) = pair.as_array().map(Vec::as_slice) {
                    let text = |x: &Value| x.as_str().map_or_else(|| x.to_string(), str::to_string);
                    map.insert(text(k), text(v));
                }
            }
            DbValue::Map(map)
        }
        Value::Array(a) if a.len() == 2 && a[0] == "uuid" => {
            DbValue::Str(a[1].as_str().unwrap_or_default().to_string())
        }
        Value::Array(a) if a.len() == 2 && a[0] == "set" => {
            match a[1].as_array().map(Vec::as_slice) {
                Some([one]) => db_value(one),
                Some(items) => DbValue::Set(items.iter().map(db_value).collect()),
                None => DbValue::Other(v.to_string()),
            }
        }
        other => DbValue::Other(other.to_string()),
    }
}

/// Parse `ovs-vsctl -f json ... list TABLE` into rows keyed by column heading.
pub fn parse_db_table(text: &str) -> Result<Vec<BTreeMap<String, DbValue>>, OvsError> {
    let bad = |detail: String| OvsError::Parse {
        what: "ovs-vsctl json table",
        detail,
    };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let headings: Vec<String> = doc["headings"]
        .as_array()
        .ok_or_else(|| bad("no headings".into()))?
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_string())
        .collect();
    let rows = doc["data"]
        .as_array()
        .ok_or_else(|| bad("no data".into()))?;
    Ok(rows
        .iter()
        .filter_map(|row| row.as_array())
        .map(|cells| {
            headings
                .iter()
                .cloned()
                .zip(cells.iter().map(db_value))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_flows_lines_are_normalised() {
        let text = "OFPST_FLOW reply (OF1.3) (xid=0x2):\n \
            cookie=0x2, duration=0.019s, table=0, n_packets=3, n_bytes=9, priority=100,ip,nw_src=10.0.1.0/24 actions=ct(table=1,zone=5)\n \
            cookie=0x1, duration=0.019s, table=0, n_packets=0, n_bytes=0, priority=0 actions=drop\n \
            cookie=0x3, table=1, priority=10,tcp,tp_dst=22 actions=output:1\n \
            cookie=0x0, duration=1s, table=2, n_packets=0, n_bytes=0, idle_age=5, arp actions=NORMAL\n";
        let flows = parse_dump_flows(text).expect("parses");
        assert_eq!(flows.len(), 4);
        assert_eq!(
            flows[0],
            Flow {
                table: 0,
                priority: 100,
                cookie: 2,
                matches: "ip,nw_src=10.0.1.0/24".into(),
                actions: "ct(table=1,zone=5)".into()
            }
        );
        assert_eq!(flows[1].matches, "");
        assert_eq!(flows[1].priority, 0);
        assert_eq!(
            (flows[2].table, flows[2].priority, flows[2].matches.as_str()),
            (1, 10, "tcp,tp_dst=22")
        );
        assert_eq!(
            (flows[3].table, flows[3].priority, flows[3].matches.as_str()),
            (2, 32768, "arp")
        );
        assert!(parse_dump_line("cookie=0x1, priority=0").is_err());
        assert!(parse_dump_line("cookie=0xzz, priority=0 actions=drop").is_err());
    }

    #[test]
    fn parse_flows_output_becomes_flow_lines() {
        let text = "usable protocols: OXM,NXM+table_id\nchosen protocol: OXM-OpenFlow13\n\
            OFPT_FLOW_MOD (OF1.3) (xid=0x1): ADD priority=0 actions=drop\n\
            OFPT_FLOW_MOD (OF1.3) (xid=0x2): ADD table:60 priority=100,reg1=0x42 cookie:0x5 actions=set_field:02:16:3e:00:00:04->eth_dst,output:14\n\
            OFPT_FLOW_MOD (OF1.3) (xid=0x3): ADD priority=5,ip idle:10 actions=ct(commit,zone=5),resubmit(,3)\n";
        assert_eq!(
            canonical_from_parse_flows(text).expect("parses"),
            "priority=0,actions=drop\n\
             table=60,priority=100,reg1=0x42,cookie=0x5,actions=set_field:02:16:3e:00:00:04->eth_dst,output:14\n\
             priority=5,ip,idle_timeout=10,actions=ct(commit,zone=5),resubmit(,3)\n"
        );
        assert!(
            canonical_from_parse_flows("OFPT_FLOW_MOD (OF1.3) (xid=0x1): ADD priority=0").is_err()
        );
    }

    #[test]
    fn diff_flows_lines_pair_by_key() {
        let text = "-priority=100,ip cookie=0x2 actions=ct(table=1)\n+priority=100,ip cookie=0x9 actions=ct(table=1)\n+table=1 priority=20,udp cookie=0x4 actions=NORMAL\n";
        let lines = parse_diff_flows(text).expect("parses");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].key, lines[1].key);
        assert!(lines[0].only_in_first && !lines[1].only_in_first);
        assert_eq!(lines[2].key, "table=1 priority=20,udp");
        assert!(parse_diff_flows("?what").is_err());
    }

    #[test]
    fn traces_name_the_output_ports() {
        let ports = parse_dpif_show(
            "dummy@ovs-dummy: hit:0 missed:0\n  hive-vpc0:\n    hive-int0 3/4: (dummy-internal)\n    p1 1/1: (dummy)\n    p2 2/3: (dummy)\n    vx-n2 5/6: (vxlan)\n",
        );
        assert_eq!(ports.len(), 4);
        assert_eq!(
            ports[2],
            DpPort {
                bridge: "hive-vpc0".into(),
                name: "p2".into(),
                ofport: Some(2),
                dp_port: 3
            }
        );
        let trace = "Flow: x\nDatapath actions: ct(zone=1),recirc(0x4)\n\nrecirc\nDatapath actions: ct(commit,zone=1),3,4\n";
        let r = parse_trace(trace, &ports).expect("parses");
        assert_eq!(r.outputs, vec!["p2".to_string(), "hive-int0".to_string()]);
        assert!(r.commits && !r.is_drop());
        let r = parse_trace("Datapath actions: drop\n", &ports).expect("parses");
        assert!(r.is_drop() && !r.commits);
        assert!(parse_trace("garbage", &ports).is_err());
        assert_eq!(
            split_top("set(eth(src=1,dst=2)),1"),
            vec!["set(eth(src=1,dst=2))", "1"]
        );
    }

    #[test]
    fn db_tables_parse() {
        let text = r#"{"data":[["p3",4,["map",[]]],["p2",2,["map",[["iface-id","eni-2"]]]],["p9",["set",[]],["map",[]]]],"headings":["name","ofport","external_ids"]}"#;
        let rows = parse_db_table(text).expect("parses");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1]["name"].as_str(), Some("p2"));
        assert_eq!(rows[1]["ofport"].as_int(), Some(2));
        assert_eq!(
            rows[1]["external_ids"]
                .map()
                .get("iface-id")
                .map(String::as_str),
            Some("eni-2")
        );
        assert_eq!(rows[2]["ofport"].as_int(), None);
        assert!(parse_db_table("not json").is_err());
    }
}
