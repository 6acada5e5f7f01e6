//! OpenFlow programs in the text form `ovs-ofctl` reads, and the minimal diff between two.
//!
//! A flow is identified on the switch by (table, priority, match); two programs are compared on
//! that identity, so a changed action or cookie is a modify and never a delete-plus-add.

use std::collections::BTreeMap;
use std::fmt;

/// One OpenFlow flow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// Table number.
    pub table: u8,
    /// Priority (higher wins).
    pub priority: u16,
    /// Cookie naming what produced the flow (base program, port, or rule).
    pub cookie: u64,
    /// Match fields in `ovs-ofctl` syntax, comma separated (empty matches everything).
    pub matches: String,
    /// Actions in `ovs-ofctl` syntax.
    pub actions: String,
}

impl Flow {
    /// The identity of the flow on the switch: (table, priority, match).
    pub fn key(&self) -> (u8, u16, &str) {
        (self.table, self.priority, &self.matches)
    }

    fn fmt_match(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table={},priority={}", self.table, self.priority)?;
        if !self.matches.is_empty() {
            write!(f, ",{}", self.matches)?;
        }
        Ok(())
    }
}

impl fmt::Display for Flow {
    /// `table=T,priority=P,cookie=0xC,MATCH,actions=A`, one `ovs-ofctl add-flow` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table={},priority={},cookie={:#x}",
            self.table, self.priority, self.cookie
        )?;
        if !self.matches.is_empty() {
            write!(f, ",{}", self.matches)?;
        }
        write!(f, ",actions={}", self.actions)
    }
}

/// A complete flow table program, kept sorted and unique by flow identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowProgram {
    flows: BTreeMap<(u8, u16, String), Flow>,
}

impl FlowProgram {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a flow; a flow with the same identity is replaced and returned.
    pub fn insert(&mut self, flow: Flow) -> Option<Flow> {
        self.flows
            .insert((flow.table, flow.priority, flow.matches.clone()), flow)
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the program has no flows.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flows, ordered by table, priority and match.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    /// The program as `ovs-ofctl replace-flows` input: one flow per line.
    pub fn to_ofctl(&self) -> String {
        let mut out = String::new();
        for flow in self.flows() {
            out.push_str(&flow.to_string());
            out.push('\n');
        }
        out
    }

    /// The minimal changes that turn `self` into `target`.
    pub fn diff(&self, target: &FlowProgram) -> FlowDiff {
        let mut diff = FlowDiff::default();
        for (key, new) in &target.flows {
            match self.flows.get(key) {
                None => diff.add.push(new.clone()),
                Some(old) if old.actions != new.actions || old.cookie != new.cookie => {
                    diff.modify.push(new.clone())
                }
                Some(_) => {}
            }
        }
        for (key, old) in &self.flows {
            if !target.flows.contains_key(key) {
                diff.delete.push(old.clone());
            }
        }
        diff
    }
}

impl FlowProgram {
    /// Apply a diff (as the switch would apply its bundle): deletes, then modifies, then adds.
    pub fn apply(&mut self, diff: &FlowDiff) {
        for flow in &diff.delete {
            self.flows
                .remove(&(flow.table, flow.priority, flow.matches.clone()));
        }
        for flow in diff.modify.iter().chain(&diff.add) {
            self.insert(flow.clone());
        }
    }
}

impl FromIterator<Flow> for FlowProgram {
    /// Collect flows; of several flows with one identity only one is kept.
    fn from_iter<I: IntoIterator<Item = Flow>>(iter: I) -> Self {
        // Bulk construction from sorted input is much faster than one insert per flow.
        let flows = iter
            .into_iter()
            .map(|flow| ((flow.table, flow.priority, flow.matches.clone()), flow))
            .collect();
        FlowProgram { flows }
    }
}

/// The changes between two programs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowDiff {
    /// Flows to add.
    pub add: Vec<Flow>,
    /// Flows whose actions or cookie change (matched strictly by identity).
    pub modify: Vec<Flow>,
    /// Flows to remove (matched strictly by identity).
    pub delete: Vec<Flow>,
}

impl FlowDiff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.modify.is_empty() && self.delete.is_empty()
    }

    /// Number of flows touched.
    pub fn len(&self) -> usize {
        self.add.len() + self.modify.len() + self.delete.len()
    }

    /// The diff as `ovs-ofctl bundle` input: deletes first, then modifies, then adds, so that a
    /// flow never coexists with the one replacing it at the same identity.
    pub fn to_bundle(&self) -> String {
        let mut out = String::new();
        for flow in &self.delete {
            out.push_str("delete_strict ");
            out.push_str(&DisplayMatch(flow).to_string());
            out.push('\n');
        }
        for flow in &self.modify {
            out.push_str("modify_strict ");
            out.push_str(&flow.to_string());
            out.push('\n');
        }
        for flow in &self.add {
            out.push_str("add ");
            out.push_str(&flow.to_string());
            out.push('\n');
        }
        out
    }
}

struct DisplayMatch<'a>(&'a Flow);

impl fmt::Display for DisplayMatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_match(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(table: u8, priority: u16, matches: &str, actions: &str) -> Flow {
        Flow {
            table,
            priority,
            cookie: 1,
            matches: matches.into(),
            actions: actions.into(),
        }
    }

    #[test]
    fn diff_is_minimal_and_strict() {
        let old: FlowProgram = [
            flow(0, 0, "", "drop"),
            flow(0, 100, "ip", "ct(table=1)"),
            flow(1, 10, "tcp", "normal"),
        ]
        .into_iter()
        .collect();
        let new: FlowProgram = [
            flow(0, 0, "", "drop"),
            flow(0, 100, "ip", "ct(table=2)"),
            flow(1, 20, "udp", "normal"),
        ]
        .into_iter()
        .collect();
        let diff = old.diff(&new);
        assert_eq!(diff.add, vec![flow(1, 20, "udp", "normal")]);
        assert_eq!(diff.modify, vec![flow(0, 100, "ip", "ct(table=2)")]);
        assert_eq!(diff.delete, vec![flow(1, 10, "tcp", "normal")]);
        assert_eq!(
            diff.to_bundle(),
            "delete_strict table=1,priority=10,tcp\n\
             modify_strict table=0,priority=100,cookie=0x1,ip,actions=ct(table=2)\n\
             add table=1,priority=20,cookie=0x1,udp,actions=normal\n"
        );
        assert!(new.diff(&new).is_empty());
        let mut patched = old.clone();
        patched.apply(&diff);
        assert_eq!(patched, new);
    }
}
