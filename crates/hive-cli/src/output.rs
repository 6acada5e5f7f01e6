//! How results reach the operator: aligned tables for people, JSON for scripts
//! (`--output json`), colour only when standard output is a terminal.

use std::io::{IsTerminal, Write};

use serde::Serialize;
use serde_json::Value;

/// The output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document.
    Json,
}

/// A table: a header and rows of cells, printed with aligned columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row (missing cells print empty, extra cells are kept).
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text; `colour` wraps cells a [`Painter`] recognises.
    pub fn render(&self, painter: Painter) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |row: &[String], header: bool| {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let pad = width.saturating_sub(cell.chars().count());
                let shown = if header {
                    painter.bold(cell)
                } else {
                    painter.status(cell)
                };
                text.push_str(&shown);
                if i + 1 < widths.len() {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header, true);
        for row in &self.rows {
            line(row, false);
        }
        out
    }
}

/// Colours for terminals; plain text everywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Painter {
    enabled: bool,
}

impl Painter {
    /// Colour when standard output is a terminal and `NO_COLOR` is unset.
    pub fn for_stdout() -> Self {
        Self {
            enabled: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Never colour.
    pub fn plain() -> Self {
        Self { enabled: false }
    }

    fn wrap(self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Bold text (headers).
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    /// Status words (`pass`, `warn`, `fail`, `allow`, `deny`) in their colours; other text as is.
    pub fn status(self, text: &str) -> String {
        match text {
            "pass" | "allow" | "Allow" | "allowed" | "Active" | "ok" => self.wrap("32", text),
            "warn" | "warning" | "Inactive" => self.wrap("33", text),
            "fail" | "deny" | "Deny" | "explicitDeny" | "implicitDeny" | "error" => {
                self.wrap("31", text)
            }
            _ => text.to_owned(),
        }
    }
}

/// Writes results in the chosen [`Format`].
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// The format.
    pub format: Format,
    painter: Painter,
}

impl Printer {
    /// A printer for standard output.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            painter: Painter::for_stdout(),
        }
    }

    /// The painter for status words in free text.
    pub fn painter(&self) -> Painter {
        self.painter
    }

    /// Print `table` for people or `json` for scripts.
    pub fn emit(&self, table: &Table, json: &impl Serialize) {
        match self.format {
            Format::Table => print_stdout(&table.render(self.painter)),
            Format::Json => self.json(json),
        }
    }

    /// Print a single message for people, or `json` for scripts.
    pub fn message(&self, text: &str, json: &impl Serialize) {
        match self.format {
            Format::Table => print_stdout(&format!("{text}\n")),
            Format::Json => self.json(json),
        }
    }

    /// Print `value` as pretty JSON.
    pub fn json(&self, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(value)
            .unwrap_or_else(|e| Value::String(format!("cannot encode output: {e}")).to_string());
        print_stdout(&format!("{text}\n"));
    }
}

/// Write to standard output; a closed pipe (`| head`) ends quietly instead of panicking.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_trailing_space_is_trimmed() {
        let mut t = Table::new(["NAME", "ARN"]);
        t.row(["admin", "arn:aws:iam::000000000000:user/admin"])
            .row(["a-much-longer-name", "x"]);
        assert_eq!(
            t.render(Painter::plain()),
            "NAME                ARN\n\
             admin               arn:aws:iam::000000000000:user/admin\n\
             a-much-longer-name  x\n"
        );
    }

    #[test]
    fn colour_only_when_enabled() {
        assert_eq!(Painter::plain().status("fail"), "fail");
        let p = Painter { enabled: true };
        assert_eq!(p.status("fail"), "\x1b[31mfail\x1b[0m");
        assert_eq!(p.status("other"), "other");
    }
}
