//! Policy variables (`${aws:username}`, `${aws:PrincipalTag/team, 'none'}`, `${*}`, ...).
//!
//! Only `2012-10-17` documents substitute variables; in `2008-10-17` documents the text is
//! literal. A template is parsed when the policy is compiled; rendering it needs the request and
//! is the only place the evaluator allocates.
//!
//! Rules implemented:
//! - `${key}` is replaced by the single value of the condition key `key` (case-insensitive);
//! - `${key, 'default'}` uses `default` when the key is missing;
//! - a key that is missing (or multi-valued) with no default makes the element holding the
//!   template unusable for this request: a `Resource` entry then matches nothing, a condition
//!   value is ignored;
//! - `${*}`, `${?}` and `${$}` stand for a literal `*`, `?` and `$`;
//! - substituted text is always literal: a `*` inside a tag value is not a wildcard.

use super::context::RequestContext;
use super::wildcard::{LITERAL_QUESTION, LITERAL_STAR};

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(Box<str>),
    Var {
        key: Box<str>,
        default: Option<Box<str>>,
    },
    Star,
    Question,
    Dollar,
}

/// A string with policy variables, parsed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `None` when it contains no variable (so the caller keeps a static value).
    pub(crate) fn parse(text: &str) -> Option<Template> {
        if !text.contains("${") {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                break;
            };
            literal.push_str(&rest[..start]);
            let inner = after[..end].trim();
            let part = match inner {
                "*" => Some(Part::Star),
                "?" => Some(Part::Question),
                "$" => Some(Part::Dollar),
                _ => parse_variable(inner),
            };
            match part {
                Some(part) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal).into()));
                    }
                    parts.push(part);
                }
                // Not a variable: keep the text as written.
                None => literal.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal.into()));
        }
        if parts.iter().all(|p| matches!(p, Part::Text(_))) {
            return None;
        }
        Some(Template { parts })
    }

    /// Renders for a comparison operator: plain text.
    pub(crate) fn render_text(&self, req: &RequestContext) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Star => out.push('*'),
                Part::Question => out.push('?'),
                Part::Dollar => out.push('$'),
                Part::Var { key, default } => out.push_str(lookup(req, key, default.as_deref())?),
            }
        }
        Some(out)
    }

    /// Renders for a wildcard operator: text parts keep their wildcards, escapes and substituted
    /// values are marked literal (see [`super::wildcard`]).
    pub(crate) fn render_pattern(&self, req: &RequestContext) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let push_literal = |out: &mut Vec<u8>, s: &str| {
            out.extend(s.bytes().map(|b| match b {
                b'*' => LITERAL_STAR,
                b'?' => LITERAL_QUESTION,
                other => other,
            }));
        };
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Star => out.push(LITERAL_STAR),
                Part::Question => out.push(LITERAL_QUESTION),
                Part::Dollar => out.push(b'$'),
                Part::Var { key, default } => {
                    push_literal(&mut out, lookup(req, key, default.as_deref())?);
                }
            }
        }
        Some(out)
    }
}

fn parse_variable(inner: &str) -> Option<Part> {
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let default = default.strip_prefix('\'')?.strip_suffix('\'')?;
            (key.trim(), Some(default.into()))
        }
        None => (inner, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some(Part::Var {
        key: key.to_ascii_lowercase().into(),
        default,
    })
}

fn lookup<'a>(req: &'a RequestContext, key: &str, default: Option<&'a str>) -> Option<&'a str> {
    match req.get_lower(key) {
        Some([one]) => Some(one.as_str()),
        _ => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::context::Principal;

    fn req() -> RequestContext {
        RequestContext::new(
            Principal::user("123456789012", "bob", "AIDA1").with_tag("team", "a*b"),
            "s3:GetObject",
            "*",
        )
    }

    #[test]
    fn plain_text_is_not_a_template() {
        assert!(Template::parse("arn:aws:s3:::b/*").is_none());
        assert!(Template::parse("${unclosed").is_none());
        assert!(Template::parse("${a b}").is_none());
    }

    #[test]
    fn substitutes_variables_defaults_and_escapes() {
        let r = req();
        let t = Template::parse("home/${aws:username}/${AWS:UserId}").expect("template");
        assert_eq!(t.render_text(&r).as_deref(), Some("home/bob/AIDA1"));
        let t = Template::parse("${aws:PrincipalTag/missing, 'none'}-${$}").expect("template");
        assert_eq!(t.render_text(&r).as_deref(), Some("none-$"));
        let t = Template::parse("${aws:PrincipalTag/missing}").expect("template");
        assert_eq!(t.render_text(&r), None);
        let t = Template::parse("a${*}b${?}").expect("template");
        assert_eq!(t.render_text(&r).as_deref(), Some("a*b?"));
        assert_eq!(
            t.render_pattern(&r),
            Some(vec![b'a', LITERAL_STAR, b'b', LITERAL_QUESTION])
        );
    }

    #[test]
    fn substituted_values_are_literal_in_patterns() {
        let r = req();
        let t = Template::parse("x/${aws:PrincipalTag/team}/*").expect("template");
        assert_eq!(t.render_pattern(&r), Some(b"x/a\xFEb/*".to_vec()));
    }
}
