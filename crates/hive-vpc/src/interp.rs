//! A small interpreter of our own OpenFlow programs: it parses the subset of `ovs-ofctl` flow
//! syntax the compiler emits and runs a packet through the tables, with OVS's semantics for
//! priorities, conjunctive matches (`conjunction`, `conj_id`), `goto_table`, `resubmit`,
//! registers and conntrack (the packet's [`CtState`] is what `ct()` reports, as with
//! `ofproto/trace --ct-next`). It exists to prove the compiler against the reference model
//! without a switch; it is strict: anything it does not understand, and any lookup where two
//! flows of one priority with different actions match, is an error rather than a guess.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::flow::FlowProgram;
use crate::model::MacAddr;
use crate::reference::{CtState, L3, Output, Packet, Transport};

/// Why a program could not be interpreted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    /// A flow uses syntax outside the supported subset.
    #[error("cannot parse flow `{flow}`: {reason}")]
    Parse {
        /// The flow text.
        flow: String,
        /// What is wrong.
        reason: String,
    },
    /// Two flows of one priority with different actions both match the packet.
    #[error("ambiguous lookup in table {table} at priority {priority}")]
    Ambiguous {
        /// Table.
        table: u8,
        /// Priority.
        priority: u16,
    },
    /// No flow matched (the program is not fail-closed in this table).
    #[error("table miss in table {table}")]
    Miss {
        /// Table.
        table: u8,
    },
    /// Resubmit recursion too deep, or too many steps.
    #[error("pipeline too deep")]
    TooDeep,
    /// An action sequence OVS would not execute as written (e.g. actions after `ct(table=)`).
    #[error("unsupported action sequence in table {table}: {reason}")]
    Unsupported {
        /// Table.
        table: u8,
        /// What.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EthType {
    Ip,
    Arp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    EthType(EthType),
    NwProto(u8),
    InPort(u32),
    TunId(u64),
    VlanTci(u16, u16),
    DlSrc(MacAddr),
    DlDst(MacAddr),
    NwSrc(u32, u32),
    NwDst(u32, u32),
    ArpSpa(u32),
    ArpTpa(u32),
    ArpSha(MacAddr),
    ArpOp(u16),
    TpDst(u16, u16),
    IcmpType(u8),
    IcmpCode(u8),
    Reg(usize, u32, u32),
    CtState { set: u8, clear: u8 },
    ConjId(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Drop,
    Goto(u8),
    Resubmit(u8),
    Load {
        reg: usize,
        value: u32,
        lo: u8,
        hi: u8,
    },
    Conjunction {
        id: u32,
        k: u8,
        n: u8,
    },
    Ct {
        table: Option<u8>,
        zone: u16,
        commit: bool,
    },
    ModDlDst(MacAddr),
    SetTunId(u64),
    SetEthSrc(MacAddr),
    SetArpOp(u16),
    SetArpSha(MacAddr),
    SetArpSpa(Ipv4Addr),
    /// `move:` of one whole field to another.
    Move(MoveField, MoveField),
    Output(u32),
    InPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MoveField {
    EthSrc,
    EthDst,
    ArpSha,
    ArpTha,
    ArpSpa,
    ArpTpa,
}

impl MoveField {
    fn is_mac(self) -> bool {
        matches!(
            self,
            MoveField::EthSrc | MoveField::EthDst | MoveField::ArpSha | MoveField::ArpTha
        )
    }
}

fn move_field(name: &str) -> Option<MoveField> {
    Some(match name {
        "NXM_OF_ETH_SRC[]" => MoveField::EthSrc,
        "NXM_OF_ETH_DST[]" => MoveField::EthDst,
        "NXM_NX_ARP_SHA[]" => MoveField::ArpSha,
        "NXM_NX_ARP_THA[]" => MoveField::ArpTha,
        "NXM_OF_ARP_SPA[]" => MoveField::ArpSpa,
        "NXM_OF_ARP_TPA[]" => MoveField::ArpTpa,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
struct PFlow {
    priority: u16,
    cookie: u64,
    fields: Vec<Field>,
    actions: Vec<Action>,
    conj_id: Option<u32>,
    conjunctive: bool,
}

/// One step of a trace: the flow that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Table.
    pub table: u8,
    /// Priority of the matching flow.
    pub priority: u16,
    /// Its cookie (see [`crate::compile::explain_cookie`]).
    pub cookie: u64,
}

/// What the program did with a packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ports the packet was sent to (never its in_port: OVS drops those).
    pub outputs: Vec<Output>,
    /// Zone of the `ct(table=..)` lookup, if any.
    pub ct_zone: Option<u16>,
    /// Zone of `ct(commit)`, if the connection was committed.
    pub commit_zone: Option<u16>,
    /// The flows that matched, in order.
    pub steps: Vec<Step>,
    /// Packets sent back out of their in_port (ARP replies of the VPC router), as sent.
    pub replies: Vec<Packet>,
}

/// Copy one whole field of the packet to another (`move:`); widths were checked when parsed.
/// ARP fields of a non-ARP packet read as absent and are not written.
fn move_value(pkt: &mut Packet, from: MoveField, to: MoveField) {
    let mac = match (from, &pkt.l3) {
        (MoveField::EthSrc, _) => Some(pkt.eth_src),
        (MoveField::EthDst, _) => Some(pkt.eth_dst),
        (MoveField::ArpSha, L3::Arp { sha, .. }) => Some(*sha),
        (MoveField::ArpTha, L3::Arp { tha, .. }) => Some(*tha),
        _ => None,
    };
    let ip = match (from, &pkt.l3) {
        (MoveField::ArpSpa, L3::Arp { spa, .. }) => Some(*spa),
        (MoveField::ArpTpa, L3::Arp { tpa, .. }) => Some(*tpa),
        _ => None,
    };
    match (to, &mut pkt.l3, mac, ip) {
        (MoveField::EthSrc, _, Some(m), _) => pkt.eth_src = m,
        (MoveField::EthDst, _, Some(m), _) => pkt.eth_dst = m,
        (MoveField::ArpSha, L3::Arp { sha, .. }, Some(m), _) => *sha = m,
        (MoveField::ArpTha, L3::Arp { tha, .. }, Some(m), _) => *tha = m,
        (MoveField::ArpSpa, L3::Arp { spa, .. }, _, Some(a)) => *spa = a,
        (MoveField::ArpTpa, L3::Arp { tpa, .. }, _, Some(a)) => *tpa = a,
        _ => {}
    }
}

/// A parsed program, ready to run packets.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// table → flows sorted by descending priority.
    tables: BTreeMap<u8, Vec<PFlow>>,
}

const CT_TRK: u8 = 1;
const CT_NEW: u8 = 2;
const CT_EST: u8 = 4;
const CT_REL: u8 = 8;
const CT_INV: u8 = 16;

fn perr(flow: &str, reason: impl Into<String>) -> InterpError {
    InterpError::Parse {
        flow: flow.to_string(),
        reason: reason.into(),
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    parse_u64(s).and_then(|v| u32::try_from(v).ok())
}

fn parse_mac(s: &str) -> Option<MacAddr> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(MacAddr(m))
}

fn parse_ip_masked(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u32>().ok()?),
        None => (s, 32),
    };
    if len > 32 {
        return None;
    }
    let ip: Ipv4Addr = ip.parse().ok()?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, mask))
}

fn parse_value_mask(s: &str) -> Option<(u64, Option<u64>)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u64(v)?, Some(parse_u64(m)?))),
        None => Some((parse_u64(s)?, None)),
    }
}

/// Split on commas outside parentheses and brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn parse_reg_name(s: &str) -> Option<usize> {
    let n: usize = s.strip_prefix("reg")?.parse().ok()?;
    (n < 16).then_some(n)
}

fn parse_field(line: &str, tok: &str, fields: &mut Vec<Field>) -> Result<(), InterpError> {
    let bad = |what: &str| perr(line, format!("bad {what} in `{tok}`"));
    let Some((name, value)) = tok.split_once('=') else {
        match tok {
            "ip" => fields.push(Field::EthType(EthType::Ip)),
            "arp" => fields.push(Field::EthType(EthType::Arp)),
            "tcp" | "udp" | "icmp" => {
                fields.push(Field::EthType(EthType::Ip));
                let p = match tok {
                    "tcp" => 6,
                    "udp" => 17,
                    _ => 1,
                };
                fields.push(Field::NwProto(p));
            }
            _ => return Err(perr(line, format!("unknown match `{tok}`"))),
        }
        return Ok(());
    };
    let f = match name {
        "in_port" => Field::InPort(parse_u32(value).ok_or_else(|| bad("port"))?),
        "tun_id" => Field::TunId(parse_u64(value).ok_or_else(|| bad("tun_id"))?),
        "vlan_tci" => {
            let (v, m) = parse_value_mask(value).ok_or_else(|| bad("vlan_tci"))?;
            Field::VlanTci(v as u16, m.unwrap_or(0xffff) as u16)
        }
        "dl_src" => Field::DlSrc(parse_mac(value).ok_or_else(|| bad("mac"))?),
        "dl_dst" => Field::DlDst(parse_mac(value).ok_or_else(|| bad("mac"))?),
        "arp_sha" => Field::ArpSha(parse_mac(value).ok_or_else(|| bad("mac"))?),
        "nw_src" => {
            let (v, m) = parse_ip_masked(value).ok_or_else(|| bad("address"))?;
            Field::NwSrc(v, m)
        }
        "nw_dst" => {
            let (v, m) = parse_ip_masked(value).ok_or_else(|| bad("address"))?;
            Field::NwDst(v, m)
        }
        "arp_spa" => Field::ArpSpa(u32::from(
            value.parse::<Ipv4Addr>().map_err(|_| bad("address"))?,
        )),
        "arp_tpa" => Field::ArpTpa(u32::from(
            value.parse::<Ipv4Addr>().map_err(|_| bad("address"))?,
        )),
        "nw_proto" => Field::NwProto(value.parse().map_err(|_| bad("proto"))?),
        "arp_op" => Field::ArpOp(value.parse().map_err(|_| bad("arp_op"))?),
        "tp_dst" => {
            let (v, m) = parse_value_mask(value).ok_or_else(|| bad("port"))?;
            let v = u16::try_from(v).map_err(|_| bad("port"))?;
            let m = u16::try_from(m.unwrap_or(0xffff)).map_err(|_| bad("mask"))?;
            Field::TpDst(v, m)
        }
        "icmp_type" => Field::IcmpType(value.parse().map_err(|_| bad("type"))?),
        "icmp_code" => Field::IcmpCode(value.parse().map_err(|_| bad("code"))?),
        "conj_id" => Field::ConjId(parse_u32(value).ok_or_else(|| bad("conj_id"))?),
        "ct_state" => {
            let (mut set, mut clear) = (0u8, 0u8);
            let mut rest = value;
            while !rest.is_empty() {
                let plus = rest.starts_with('+');
                if !plus && !rest.starts_with('-') {
                    return Err(bad("ct_state"));
                }
                let body = &rest[1..];
                let end = body.find(['+', '-']).unwrap_or(body.len());
                let bit = match &body[..end] {
                    "trk" => CT_TRK,
                    "new" => CT_NEW,
                    "est" => CT_EST,
                    "rel" => CT_REL,
                    "inv" => CT_INV,
                    _ => return Err(bad("ct_state flag")),
                };
                if plus {
                    set |= bit;
                } else {
                    clear |= bit;
                }
                rest = &body[end..];
            }
            Field::CtState { set, clear }
        }
        _ => match parse_reg_name(name) {
            Some(r) => {
                let (v, m) = parse_value_mask(value).ok_or_else(|| bad("register value"))?;
                let v = u32::try_from(v).map_err(|_| bad("register value"))?;
                let m =
                    u32::try_from(m.unwrap_or(0xffff_ffff)).map_err(|_| bad("register mask"))?;
                Field::Reg(r, v, m)
            }
            None => return Err(perr(line, format!("unknown field `{name}`"))),
        },
    };
    fields.push(f);
    Ok(())
}

fn parse_action(line: &str, tok: &str) -> Result<Action, InterpError> {
    let bad = || perr(line, format!("bad action `{tok}`"));
    if tok == "drop" {
        return Ok(Action::Drop);
    }
    if let Some(t) = tok.strip_prefix("goto_table:") {
        return Ok(Action::Goto(t.parse().map_err(|_| bad())?));
    }
    if let Some(t) = tok
        .strip_prefix("resubmit(,")
        .and_then(|t| t.strip_suffix(')'))
    {
        return Ok(Action::Resubmit(t.parse().map_err(|_| bad())?));
    }
    if let Some(p) = tok.strip_prefix("output:") {
        return Ok(Action::Output(parse_u32(p).ok_or_else(bad)?));
    }
    if let Some(m) = tok.strip_prefix("mod_dl_dst:") {
        return Ok(Action::ModDlDst(parse_mac(m).ok_or_else(bad)?));
    }
    if tok == "IN_PORT" {
        return Ok(Action::InPort);
    }
    if let Some(rest) = tok.strip_prefix("set_field:") {
        let (v, field) = rest.split_once("->").ok_or_else(bad)?;
        return Ok(match field {
            "tun_id" => Action::SetTunId(parse_u64(v).ok_or_else(bad)?),
            "eth_src" => Action::SetEthSrc(parse_mac(v).ok_or_else(bad)?),
            "arp_op" => Action::SetArpOp(v.parse().map_err(|_| bad())?),
            "arp_sha" => Action::SetArpSha(parse_mac(v).ok_or_else(bad)?),
            "arp_spa" => Action::SetArpSpa(v.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        });
    }
    if let Some(rest) = tok.strip_prefix("move:") {
        let (a, b) = rest.split_once("->").ok_or_else(bad)?;
        let (a, b) = (
            move_field(a).ok_or_else(bad)?,
            move_field(b).ok_or_else(bad)?,
        );
        if a.is_mac() != b.is_mac() {
            return Err(perr(
                line,
                format!("move between fields of different widths in `{tok}`"),
            ));
        }
        return Ok(Action::Move(a, b));
    }
    if let Some(rest) = tok.strip_prefix("load:") {
        // load:V->NXM_NX_REGn[] | [b] | [a..b]
        let (v, dst) = rest.split_once("->").ok_or_else(bad)?;
        let value = parse_u32(v).ok_or_else(bad)?;
        let dst = dst.strip_prefix("NXM_NX_REG").ok_or_else(bad)?;
        let (reg, bits) = dst.split_once('[').ok_or_else(bad)?;
        let reg: usize = reg.parse().map_err(|_| bad())?;
        let bits = bits.strip_suffix(']').ok_or_else(bad)?;
        let (lo, hi) = if bits.is_empty() {
            (0, 31)
        } else if let Some((a, b)) = bits.split_once("..") {
            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
        } else {
            let b: u8 = bits.parse().map_err(|_| bad())?;
            (b, b)
        };
        if reg >= 16 || lo > hi || hi > 31 {
            return Err(bad());
        }
        let width = u32::from(hi - lo) + 1;
        if width < 32 && value >> width != 0 {
            return Err(perr(line, format!("value too wide in `{tok}`")));
        }
        return Ok(Action::Load { reg, value, lo, hi });
    }
    if let Some(inner) = tok
        .strip_prefix("conjunction(")
        .and_then(|t| t.strip_suffix(')'))
    {
        let (id, kn) = inner.split_once(',').ok_or_else(bad)?;
        let (k, n) = kn.split_once('/').ok_or_else(bad)?;
        let (id, k, n) = (
            parse_u32(id).ok_or_else(bad)?,
            k.parse::<u8>().map_err(|_| bad())?,
            n.parse::<u8>().map_err(|_| bad())?,
        );
        if !(2..=64).contains(&n) || k == 0 || k > n {
            return Err(perr(line, format!("conjunction out of range in `{tok}`")));
        }
        return Ok(Action::Conjunction { id, k, n });
    }
    if let Some(inner) = tok.strip_prefix("ct(").and_then(|t| t.strip_suffix(')')) {
        let (mut table, mut zone, mut commit) = (None, None, false);
        for part in inner.split(',') {
            if part == "commit" {
                commit = true;
            } else if let Some(t) = part.strip_prefix("table=") {
                table = Some(t.parse().map_err(|_| bad())?);
            } else if let Some(z) = part.strip_prefix("zone=") {
                zone = Some(z.parse().map_err(|_| bad())?);
            } else {
                return Err(bad());
            }
        }
        let zone = zone.ok_or_else(|| perr(line, "ct() without a zone"))?;
        return Ok(Action::Ct {
            table,
            zone,
            commit,
        });
    }
    Err(perr(line, format!("unknown action `{tok}`")))
}

fn has_ip(fields: &[Field]) -> bool {
    fields.contains(&Field::EthType(EthType::Ip))
}

fn has_proto(fields: &[Field], p: u8) -> bool {
    fields.contains(&Field::NwProto(p))
}

/// OpenFlow prerequisites, as OVS checks them when a flow is added.
fn check_prerequisites(line: &str, fields: &[Field]) -> Result<(), InterpError> {
    let arp = fields.contains(&Field::EthType(EthType::Arp));
    for f in fields {
        let ok = match f {
            Field::NwSrc(..) | Field::NwDst(..) | Field::NwProto(_) => has_ip(fields),
            Field::ArpSpa(_) | Field::ArpTpa(_) | Field::ArpSha(_) | Field::ArpOp(_) => arp,
            Field::TpDst(..) => has_proto(fields, 6) || has_proto(fields, 17),
            Field::IcmpType(_) | Field::IcmpCode(_) => has_proto(fields, 1),
            _ => true,
        };
        if !ok {
            return Err(perr(line, format!("missing prerequisite for {f:?}")));
        }
    }
    Ok(())
}

struct Ctx {
    /// The packet as modified so far (matches see modifications, as in OVS).
    pkt: Packet,
    regs: [u32; 16],
    tun_out: Option<u64>,
    ct: u8,
    out: Outcome,
    budget: u32,
}

impl Ctx {
    fn matches(&self, f: &Field) -> bool {
        let p = &self.pkt;
        let ip = match p.l3 {
            L3::Ipv4 {
                src,
                dst,
                transport,
                ..
            } => Some((u32::from(src), u32::from(dst), transport)),
            _ => None,
        };
        let arp = match p.l3 {
            L3::Arp { sha, spa, tpa, .. } => Some((sha, u32::from(spa), u32::from(tpa))),
            _ => None,
        };
        match *f {
            Field::EthType(EthType::Ip) => ip.is_some(),
            Field::EthType(EthType::Arp) => arp.is_some(),
            Field::NwProto(n) => ip.is_some_and(|(_, _, t)| t.proto() == n),
            Field::InPort(n) => p.in_port == n,
            Field::TunId(t) => p.tun_id.unwrap_or(0) == t,
            Field::VlanTci(v, m) => {
                let tci = p.vlan.map_or(0, |id| 0x1000 | (id & 0x0fff));
                tci & m == v & m
            }
            Field::DlSrc(m) => p.eth_src == m,
            Field::DlDst(m) => p.eth_dst == m,
            Field::NwSrc(v, m) => ip.is_some_and(|(s, _, _)| s & m == v),
            Field::NwDst(v, m) => ip.is_some_and(|(_, d, _)| d & m == v),
            Field::ArpSpa(a) => arp.is_some_and(|(_, spa, _)| spa == a),
            Field::ArpTpa(a) => arp.is_some_and(|(_, _, tpa)| tpa == a),
            Field::ArpSha(m) => arp.is_some_and(|(sha, _, _)| sha == m),
            Field::ArpOp(o) => matches!(p.l3, L3::Arp { op, .. } if op == o),
            Field::TpDst(v, m) => ip.is_some_and(|(_, _, t)| match t {
                Transport::Tcp { dst, .. } | Transport::Udp { dst, .. } => dst & m == v & m,
                _ => false,
            }),
            Field::IcmpType(ty) => ip.is_some_and(
                |(_, _, t)| matches!(t, Transport::Icmp { icmp_type, .. } if icmp_type == ty),
            ),
            Field::IcmpCode(c) => {
                ip.is_some_and(|(_, _, t)| matches!(t, Transport::Icmp { code, .. } if code == c))
            }
            Field::Reg(r, v, m) => self.regs[r] & m == v & m,
            Field::CtState { set, clear } => self.ct & set == set && self.ct & clear == 0,
            // Handled by the lookup.
            Field::ConjId(_) => true,
        }
    }

    fn flow_matches(&self, f: &PFlow) -> bool {
        f.fields.iter().all(|x| self.matches(x))
    }
}

impl Interpreter {
    /// Parse a program.
    pub fn new(program: &FlowProgram) -> Result<Self, InterpError> {
        let mut tables: BTreeMap<u8, Vec<PFlow>> = BTreeMap::new();
        for flow in program.flows() {
            let line = flow.to_string();
            let mut fields = Vec::new();
            for tok in split_top(&flow.matches) {
                parse_field(&line, tok, &mut fields)?;
            }
            check_prerequisites(&line, &fields)?;
            let actions = split_top(&flow.actions)
                .into_iter()
                .map(|a| parse_action(&line, a))
                .collect::<Result<Vec<_>, _>>()?;
            let conjunctive = actions
                .iter()
                .any(|a| matches!(a, Action::Conjunction { .. }));
            if conjunctive
                && !actions
                    .iter()
                    .all(|a| matches!(a, Action::Conjunction { .. }))
            {
                return Err(perr(&line, "conjunction mixed with other actions"));
            }
            if actions.contains(&Action::Drop) && actions.len() > 1 {
                return Err(perr(&line, "drop mixed with other actions"));
            }
            let conj_id = fields.iter().find_map(|f| match f {
                Field::ConjId(c) => Some(*c),
                _ => None,
            });
            tables.entry(flow.table).or_default().push(PFlow {
                priority: flow.priority,
                cookie: flow.cookie,
                fields,
                actions,
                conj_id,
                conjunctive,
            });
        }
        for flows in tables.values_mut() {
            flows.sort_by_key(|f| std::cmp::Reverse(f.priority));
        }
        Ok(Interpreter { tables })
    }

    /// Run `packet` through the program from table 0.
    pub fn run(&self, packet: &Packet) -> Result<Outcome, InterpError> {
        let mut ctx = Ctx {
            pkt: *packet,
            regs: [0; 16],
            tun_out: None,
            ct: 0,
            out: Outcome::default(),
            budget: 4096,
        };
        self.exec_table(0, &mut ctx, 0)?;
        Ok(ctx.out)
    }

    /// The highest-priority hard flow matching with `conj_id` (0: ordinary lookup).
    fn lookup_hard<'a>(
        &'a self,
        table: u8,
        ctx: &Ctx,
        conj_id: u32,
        below: Option<u16>,
    ) -> Result<Option<&'a PFlow>, InterpError> {
        let Some(flows) = self.tables.get(&table) else {
            return Ok(None);
        };
        let mut best: Option<&PFlow> = None;
        for f in flows {
            if f.conjunctive || below.is_some_and(|b| f.priority > b) {
                continue;
            }
            if let Some(b) = best
                && f.priority < b.priority
            {
                break;
            }
            if f.conj_id.is_some_and(|c| c != conj_id) || (conj_id == 0 && f.conj_id.is_some()) {
                continue;
            }
            if !ctx.flow_matches(f) {
                continue;
            }
            match best {
                None => best = Some(f),
                Some(b) if b.actions != f.actions => {
                    return Err(InterpError::Ambiguous {
                        table,
                        priority: f.priority,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(best)
    }

    /// OVS lookup: the best hard flow, unless a conjunction completes at a higher priority, in
    /// which case the flow found by a `conj_id` lookup.
    fn lookup<'a>(&'a self, table: u8, ctx: &Ctx) -> Result<Option<&'a PFlow>, InterpError> {
        let hard = self.lookup_hard(table, ctx, 0, None)?;
        let Some(flows) = self.tables.get(&table) else {
            return Ok(None);
        };
        let floor = hard.map(|h| h.priority);
        // Conjunctive flows grouped by priority, above the hard match.
        let mut by_prio: BTreeMap<u16, Vec<&PFlow>> = BTreeMap::new();
        for f in flows.iter().filter(|f| f.conjunctive) {
            if floor.is_some_and(|p| f.priority < p) {
                continue;
            }
            if floor == Some(f.priority) && ctx.flow_matches(f) {
                return Err(InterpError::Ambiguous {
                    table,
                    priority: f.priority,
                });
            }
            if ctx.flow_matches(f) {
                by_prio.entry(f.priority).or_default().push(f);
            }
        }
        for (&prio, soft) in by_prio.iter().rev() {
            // id → (n, clauses seen as a bitmask)
            let mut seen: BTreeMap<u32, (u8, u64)> = BTreeMap::new();
            for f in soft {
                for a in &f.actions {
                    if let Action::Conjunction { id, k, n } = *a {
                        let e = seen.entry(id).or_insert((n, 0));
                        if e.0 != n {
                            return Err(InterpError::Unsupported {
                                table,
                                reason: format!("conjunction {id} with mixed n"),
                            });
                        }
                        e.1 |= 1 << (k - 1);
                    }
                }
            }
            let mut found: Option<&PFlow> = None;
            for (id, (n, mask)) in seen {
                let full = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
                if mask != full {
                    continue;
                }
                if let Some(f) = self.lookup_hard(table, ctx, id, None)? {
                    match found {
                        None => found = Some(f),
                        Some(g) if g.actions != f.actions => {
                            return Err(InterpError::Ambiguous {
                                table,
                                priority: prio,
                            });
                        }
                        Some(_) => {}
                    }
                }
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(hard)
    }

    fn exec_table(&self, table: u8, ctx: &mut Ctx, depth: u32) -> Result<(), InterpError> {
        if depth > 64 || ctx.budget == 0 {
            return Err(InterpError::TooDeep);
        }
        ctx.budget -= 1;
        let flow = self
            .lookup(table, ctx)?
            .ok_or(InterpError::Miss { table })?;
        ctx.out.steps.push(Step {
            table,
            priority: flow.priority,
            cookie: flow.cookie,
        });
        let n = flow.actions.len();
        for (i, a) in flow.actions.iter().enumerate() {
            match *a {
                Action::Drop | Action::Conjunction { .. } => {}
                Action::Goto(t) => {
                    if i + 1 != n || t <= table {
                        return Err(InterpError::Unsupported {
                            table,
                            reason: "goto_table not last or not forward".into(),
                        });
                    }
                    return self.exec_table(t, ctx, depth + 1);
                }
                Action::Resubmit(t) => self.exec_table(t, ctx, depth + 1)?,
                Action::Load { reg, value, lo, hi } => {
                    let width = u32::from(hi - lo) + 1;
                    let mask = if width == 32 {
                        u32::MAX
                    } else {
                        ((1u32 << width) - 1) << lo
                    };
                    ctx.regs[reg] = (ctx.regs[reg] & !mask) | ((value << lo) & mask);
                }
                Action::Ct {
                    table: next,
                    zone,
                    commit,
                } => {
                    if commit {
                        ctx.out.commit_zone = Some(zone);
                    }
                    if let Some(next) = next {
                        if i + 1 != n {
                            return Err(InterpError::Unsupported {
                                table,
                                reason: "actions after ct(table=)".into(),
                            });
                        }
                        ctx.out.ct_zone = Some(zone);
                        let state = match ctx.pkt.l3 {
                            L3::Ipv4 { ct, .. } => ct,
                            _ => CtState::Invalid,
                        };
                        ctx.ct = CT_TRK
                            | match state {
                                CtState::New => CT_NEW,
                                CtState::Established => CT_EST,
                                CtState::Related => CT_REL,
                                CtState::Invalid => CT_INV,
                            };
                        return self.exec_table(next, ctx, depth + 1);
                    }
                }
                Action::ModDlDst(m) => ctx.pkt.eth_dst = m,
                Action::SetTunId(t) => ctx.tun_out = Some(t),
                Action::SetEthSrc(m) => ctx.pkt.eth_src = m,
                Action::SetArpOp(_) | Action::SetArpSha(_) | Action::SetArpSpa(_)
                    if !matches!(ctx.pkt.l3, L3::Arp { .. }) =>
                {
                    return Err(InterpError::Unsupported {
                        table,
                        reason: "ARP field set on a non-ARP packet".into(),
                    });
                }
                Action::SetArpOp(v) => {
                    if let L3::Arp { op, .. } = &mut ctx.pkt.l3 {
                        *op = v;
                    }
                }
                Action::SetArpSha(m) => {
                    if let L3::Arp { sha, .. } = &mut ctx.pkt.l3 {
                        *sha = m;
                    }
                }
                Action::SetArpSpa(ip) => {
                    if let L3::Arp { spa, .. } = &mut ctx.pkt.l3 {
                        *spa = ip;
                    }
                }
                Action::Move(from, to) => move_value(&mut ctx.pkt, from, to),
                Action::Output(p) => {
                    if p != ctx.pkt.in_port {
                        ctx.out.outputs.push(Output {
                            port: p,
                            tun_id: ctx.tun_out,
                            eth_dst: ctx.pkt.eth_dst,
                        });
                    }
                }
                Action::InPort => {
                    ctx.out.outputs.push(Output {
                        port: ctx.pkt.in_port,
                        tun_id: ctx.tun_out,
                        eth_dst: ctx.pkt.eth_dst,
                    });
                    ctx.out.replies.push(ctx.pkt);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flow;

    fn prog(lines: &[(u8, u16, &str, &str)]) -> FlowProgram {
        lines
            .iter()
            .map(|(t, p, m, a)| Flow {
                table: *t,
                priority: *p,
                cookie: 0,
                matches: (*m).into(),
                actions: (*a).into(),
            })
            .collect()
    }

    fn tcp(dst: u16) -> Packet {
        Packet {
            in_port: 1,
            tun_id: None,
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan: None,
            l3: L3::Ipv4 {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                transport: Transport::Tcp { src: 1000, dst },
                ct: CtState::New,
            },
        }
    }

    #[test]
    fn conjunction_needs_every_dimension() {
        let p = prog(&[
            (0, 0, "", "drop"),
            (0, 300, "conj_id=7", "output:2"),
            (0, 200, "ip,nw_src=10.0.0.1", "conjunction(7,1/2)"),
            (0, 200, "tcp,tp_dst=22", "conjunction(7,2/2)"),
        ]);
        let i = Interpreter::new(&p).expect("parses");
        assert_eq!(i.run(&tcp(22)).expect("runs").outputs.len(), 1);
        assert!(i.run(&tcp(23)).expect("runs").outputs.is_empty());
    }

    #[test]
    fn ambiguity_and_missing_prerequisites_are_errors() {
        let p = prog(&[(0, 5, "ip", "output:2"), (0, 5, "tcp", "output:3")]);
        let i = Interpreter::new(&p).expect("parses");
        assert!(matches!(i.run(&tcp(1)), Err(InterpError::Ambiguous { .. })));
        assert!(Interpreter::new(&prog(&[(0, 5, "tp_dst=80", "drop")])).is_err());
        assert!(Interpreter::new(&prog(&[(0, 5, "ip", "conjunction(1,1/2),output:1")])).is_err());
    }

    #[test]
    fn output_to_in_port_is_dropped_and_loads_are_bitwise() {
        let p = prog(&[
            (
                0,
                1,
                "",
                "load:0x1->NXM_NX_REG3[1],resubmit(,1),goto_table:2",
            ),
            (1, 1, "reg3=0x2/0x2", "load:0x5->NXM_NX_REG4[]"),
            (2, 1, "reg4=5", "output:1,output:9"),
        ]);
        let out = Interpreter::new(&p)
            .expect("parses")
            .run(&tcp(1))
            .expect("runs");
        assert_eq!(
            out.outputs.iter().map(|o| o.port).collect::<Vec<_>>(),
            vec![9]
        );
    }
}
