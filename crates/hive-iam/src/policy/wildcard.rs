//! Wildcard matching for actions, resources, `StringLike` and `ArnLike`, without allocation and
//! without exponential backtracking.
//!
//! `*` matches any run of characters (including none) and `?` exactly one character. The
//! matcher is the classic greedy two-pointer algorithm: on a mismatch only the most recent `*`
//! is extended, which is enough because a later `*` can absorb anything an earlier one could.
//! Its cost is `O(pattern × text)` in the worst case and linear for the patterns that policies
//! use in practice.
//!
//! Resource ARNs follow IAM's segment rule ([`resource_matches`]): a wildcard stays inside its
//! colon-separated ARN segment, except that a `*` that is the last character of a segment may
//! expand across the colons that follow.
//!
//! Patterns produced by policy-variable substitution mark characters that must be taken
//! literally (from `${*}`, `${?}` or a substituted value) with the bytes `0xFE` (a literal `*`)
//! and `0xFF` (a literal `?`), which never occur in UTF-8 text.
//!
//! ```
//! use hive_iam::policy::wildcard;
//!
//! assert!(wildcard::matches("s3:Get*", "s3:GetObject"));
//! assert!(wildcard::matches_ignore_ascii_case("S3:get*", "s3:GetObject"));
//! assert!(wildcard::resource_matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b"));
//! // A `*` in the middle of a segment does not cross a colon...
//! assert!(!wildcard::resource_matches("arn:aws:logs:*:1:log-group:a*b", "arn:aws:logs:r:1:log-group:a:b"));
//! // ...but a `*` that ends a segment does.
//! assert!(wildcard::resource_matches("arn:aws:logs:*:1:log-group:*", "arn:aws:logs:r:1:log-group:a:b"));
//! assert!(wildcard::arn_matches("arn:aws:iam::*:role/*", "arn:aws:iam::123456789012:role/admin"));
//! ```

/// Marker byte for a literal `*` in an encoded pattern.
pub(crate) const LITERAL_STAR: u8 = 0xFE;
/// Marker byte for a literal `?` in an encoded pattern.
pub(crate) const LITERAL_QUESTION: u8 = 0xFF;

/// Length in bytes of the UTF-8 character starting with `lead` (1 for a stray continuation).
#[inline]
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[inline]
fn literal_eq(p: u8, t: u8, ignore_case: bool) -> bool {
    match p {
        LITERAL_STAR => t == b'*',
        LITERAL_QUESTION => t == b'?',
        _ if ignore_case => p.eq_ignore_ascii_case(&t),
        _ => p == t,
    }
}

/// Greedy glob over bytes; `?` consumes one whole UTF-8 character.
#[inline]
pub(crate) fn glob(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // (pattern index after the last star, text index that star's absorption ends at)
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                star = Some((p, t));
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += char_len(text[t]);
                continue;
            }
            Some(&c) if literal_eq(c, text[t], ignore_case) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                // Extend the last star by one whole character and retry after it.
                let next = st + char_len(text[st]);
                star = Some((sp, next));
                p = sp;
                t = next;
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Whether `text` matches `pattern` (`*`, `?`), case-sensitively.
pub fn matches(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), false)
}

/// Whether `text` matches `pattern` (`*`, `?`), ignoring ASCII case (as for actions).
pub fn matches_ignore_ascii_case(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), true)
}

/// Most ARNs have at most this many colon-separated segments; longer ones spill to the heap.
const INLINE_SEGMENTS: usize = 16;

/// Calls `f` with the `(start, end)` byte ranges of the colon-separated segments of `text`.
fn with_segments<R>(text: &[u8], f: impl FnOnce(&[(usize, usize)]) -> R) -> R {
    let mut inline = [(0usize, 0usize); INLINE_SEGMENTS];
    let mut n = 0;
    let mut start = 0;
    let mut overflow = false;
    for (i, &b) in text.iter().enumerate() {
        if b == b':' {
            if n == INLINE_SEGMENTS - 1 {
                overflow = true;
                break;
            }
            inline[n] = (start, i);
            n += 1;
            start = i + 1;
        }
    }
    if !overflow {
        inline[n] = (start, text.len());
        return f(&inline[..=n]);
    }
    let mut segments = Vec::new();
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b':' {
            segments.push((start, i));
            start = i + 1;
        }
    }
    segments.push((start, text.len()));
    f(&segments)
}

/// Whether a resource matches a `Resource`/`NotResource` pattern under IAM's segment rule.
pub fn resource_matches(pattern: &str, resource: &str) -> bool {
    resource_glob(pattern.as_bytes(), resource.as_bytes())
}

/// [`resource_matches`] over (possibly encoded) bytes.
pub(crate) fn resource_glob(pattern: &[u8], text: &[u8]) -> bool {
    if pattern == b"*" {
        return true;
    }
    if !pattern.contains(&b'*') && !pattern.contains(&b'?') {
        return pattern.len() == text.len()
            && pattern
                .iter()
                .zip(text)
                .all(|(&p, &t)| literal_eq(p, t, false));
    }
    with_segments(pattern, |psegs| {
        with_segments(text, |tsegs| segment_glob(pattern, psegs, text, tsegs))
    })
}

/// Classic greedy glob one level up: units are ARN segments, a pattern segment matches one text
/// segment (wildcards confined to it), and a pattern segment ending in `*` may then absorb any
/// number of further text segments (the `*` expanding across colons).
fn segment_glob(
    pattern: &[u8],
    psegs: &[(usize, usize)],
    text: &[u8],
    tsegs: &[(usize, usize)],
) -> bool {
    let seg_match = |pi: usize, ti: usize| {
        let (ps, pe) = psegs[pi];
        let (ts, te) = tsegs[ti];
        glob(&pattern[ps..pe], &text[ts..te], false)
    };
    let spills = |pi: usize| {
        let (ps, pe) = psegs[pi];
        pe > ps && pattern[pe - 1] == b'*'
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < tsegs.len() {
        if pi < psegs.len() && seg_match(pi, ti) {
            let spill = spills(pi);
            pi += 1;
            ti += 1;
            if spill {
                star = Some((pi, ti));
            }
            continue;
        }
        match star {
            Some((sp, st)) if st < tsegs.len() => {
                star = Some((sp, st + 1));
                pi = sp;
                ti = st + 1;
            }
            _ => return false,
        }
    }
    pi == psegs.len()
}

/// Whether an ARN matches an `ArnEquals`/`ArnLike` pattern: each of the six colon-separated
/// components is matched separately (the last one, the resource, may itself contain colons).
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    arn_glob(pattern.as_bytes(), arn.as_bytes())
}

/// [`arn_matches`] over (possibly encoded) bytes.
pub(crate) fn arn_glob(pattern: &[u8], arn: &[u8]) -> bool {
    let mut p = pattern.splitn(6, |&b| b == b':');
    let mut t = arn.splitn(6, |&b| b == b':');
    for _ in 0..6 {
        match (p.next(), t.next()) {
            (Some(ps), Some(ts)) if glob(ps, ts, false) => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference glob straight from the definition, over characters.
    fn ref_glob(p: &[char], t: &[char], ci: bool) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| ref_glob(rest, &t[i..], ci)),
            Some(('?', rest)) => !t.is_empty() && ref_glob(rest, &t[1..], ci),
            Some((c, rest)) => {
                !t.is_empty()
                    && (if ci {
                        c.eq_ignore_ascii_case(&t[0])
                    } else {
                        *c == t[0]
                    })
                    && ref_glob(rest, &t[1..], ci)
            }
        }
    }

    /// Reference for IAM's resource rule, character by character: a `*` that is the last
    /// character of its segment may match colons; other wildcards may not.
    fn ref_resource(p: &[char], t: &[char]) -> bool {
        if p == ['*'] {
            return true;
        }
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => {
                let spills = rest.is_empty() || rest[0] == ':';
                (0..=t.len())
                    .take_while(|&i| spills || i == 0 || t[i - 1] != ':')
                    .any(|i| ref_resource(rest, &t[i..]))
            }
            Some(('?', rest)) => !t.is_empty() && t[0] != ':' && ref_resource(rest, &t[1..]),
            Some((c, rest)) => !t.is_empty() && *c == t[0] && ref_resource(rest, &t[1..]),
        }
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn glob_table() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a", "a", true),
            ("a", "A", false),
            ("?", "", false),
            ("?", "é", true),
            ("??", "é", false),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*a*b*c*", "xaxbxcx", true),
            ("*a*b*c*", "xaxcxbx", false),
            ("s3:Get*", "s3:GetObject", true),
            ("s3:Get*", "s3:PutObject", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("***", "x", true),
        ] {
            assert_eq!(matches(p, t), want, "{p} vs {t}");
        }
        assert!(matches_ignore_ascii_case("IAM:create*", "iam:CreateUser"));
        assert!(!matches("IAM:create*", "iam:CreateUser"));
    }

    #[test]
    fn literal_markers_match_only_the_literal() {
        let p = [b'a', LITERAL_STAR, b'b'];
        assert!(glob(&p, b"a*b", false));
        assert!(!glob(&p, b"axb", false));
        let q = [LITERAL_QUESTION];
        assert!(glob(&q, b"?", false));
        assert!(!glob(&q, b"x", false));
    }

    #[test]
    fn resource_table() {
        for (p, t, want) in [
            ("*", "arn:aws:s3:::b", true),
            ("*", "*", true),
            ("arn:aws:s3:::b", "arn:aws:s3:::b", true),
            ("arn:aws:s3:::b", "arn:aws:s3:::B", false),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y:z", true),
            (
                "arn:aws:ec2:*:*:instance/*",
                "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
                true,
            ),
            ("arn:aws:iam::*:user/a*b", "arn:aws:iam::1:user/a:b", false),
            ("arn:aws:iam::*:user/a*b", "arn:aws:iam::1:user/axxb", true),
            ("arn:aws:iam::?:user/x", "arn:aws:iam::1:user/x", true),
            ("arn:aws:iam::?:user/x", "arn:aws:iam:::user/x", false),
            (
                "arn:aws:ec2:*:instance/x",
                "arn:aws:ec2:r:1:instance/x",
                true,
            ),
            ("arn:aws:ec2:*", "arn:aws:ec2:r:1:instance/x", true),
            ("arn:aws:ec2", "arn:aws:ec2:r", false),
        ] {
            assert_eq!(resource_matches(p, t), want, "{p} vs {t}");
            assert_eq!(
                ref_resource(&chars(p), &chars(t)),
                want,
                "reference: {p} vs {t}"
            );
        }
    }

    #[test]
    fn arn_table() {
        for (p, t, want) in [
            ("arn:aws:iam::*:role/*", "arn:aws:iam::123:role/a", true),
            ("arn:aws:iam::123:role/a", "arn:aws:iam::123:role/a", true),
            ("arn:aws:iam::123:role/a", "arn:aws:iam::124:role/a", false),
            (
                "arn:aws:logs:*:*:log-group:*",
                "arn:aws:logs:r:1:log-group:x:y",
                true,
            ),
            ("arn:*:iam::*:*", "arn:aws:iam::1:user/x", true),
            ("arn:aws:iam::*:*", "not-an-arn", false),
            ("*", "arn:aws:iam::1:user/x", false),
        ] {
            assert_eq!(arn_matches(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn many_segments_spill_to_the_heap() {
        let text = "a:".repeat(40) + "end";
        let pattern = "a:".repeat(40) + "e*";
        assert!(resource_matches(&pattern, &text));
        assert!(resource_matches("a:*", &text));
        assert!(!resource_matches("a:*:x", &text));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(5000);
        let pattern = "*a".repeat(50) + "b";
        let start = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    fn alphabet() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('b'), Just(':'), Just('é'), Just('A')],
            0..10,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('a'),
                Just('b'),
                Just(':'),
                Just('*'),
                Just('?'),
                Just('é')
            ],
            0..8,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn glob_agrees_with_reference(p in pattern(), t in alphabet()) {
            prop_assert_eq!(matches(&p, &t), ref_glob(&chars(&p), &chars(&t), false));
            prop_assert_eq!(
                matches_ignore_ascii_case(&p, &t),
                ref_glob(&chars(&p), &chars(&t), true)
            );
        }

        #[test]
        fn resource_glob_agrees_with_reference(p in pattern(), t in alphabet()) {
            prop_assert_eq!(resource_matches(&p, &t), ref_resource(&chars(&p), &chars(&t)));
        }
    }
}
