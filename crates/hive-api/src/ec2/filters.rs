//! `Filter.N.Name` / `Filter.N.Value.M` filters of the EC2 `Describe*` actions, and
//! `MaxResults` / `NextToken` pagination.
//!
//! Semantics follow EC2: the values of one filter are ORed, separate filters are ANDed; a value
//! may hold the wildcards `*` (any run of characters) and `?` (one character), and `\` escapes
//! them; matching is case-sensitive. `tag:<key>` matches the value of the tag `<key>`,
//! `tag-key` any tag key and `tag-value` any tag value. A filter name the action does not
//! support is `InvalidParameterValue` ("The filter 'x' is invalid"), checked before anything
//! is read, as EC2 does.

use hive_vpc::error::VpcError;

use crate::error::ApiError;
use crate::wire::query::Params;

/// Most filters one request may carry (EC2's limit).
const MAX_FILTERS: usize = 50;
/// Most values one filter may carry (EC2's limit).
const MAX_FILTER_VALUES: usize = 200;

/// One `Filter.N`: a name and the values any of which may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    /// `Filter.N.Name`.
    pub name: String,
    /// `Filter.N.Value.M`, in index order.
    pub values: Vec<String>,
}

/// The filters of a request, checked against the names the action supports (`tag:<key>`,
/// `tag-key` and `tag-value` are always allowed when `tagged`).
pub(crate) fn parse(
    params: &Params,
    supported: &[&str],
    tagged: bool,
) -> Result<Vec<Filter>, ApiError> {
    let structs = params.structs("Filter")?;
    if structs.len() > MAX_FILTERS {
        return Err(ApiError::new(
            "FilterLimitExceeded",
            format!("The maximum number of filters ({MAX_FILTERS}) has been exceeded."),
            400,
        ));
    }
    let mut filters = Vec::with_capacity(structs.len());
    for s in structs {
        let name = s.required("Name")?.to_owned();
        let known = supported.contains(&name.as_str())
            || (tagged
                && (name == "tag-key"
                    || name == "tag-value"
                    || name.strip_prefix("tag:").is_some_and(|k| !k.is_empty())));
        if !known {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "The filter '{}' is invalid",
                    crate::error::truncate(&name, 128)
                ),
                400,
            ));
        }
        let values: Vec<String> = s.list("Value")?.into_iter().map(str::to_owned).collect();
        if values.len() > MAX_FILTER_VALUES {
            return Err(ApiError::new(
                "FilterLimitExceeded",
                format!(
                    "The maximum number of filter values ({MAX_FILTER_VALUES}) has been exceeded."
                ),
                400,
            ));
        }
        filters.push(Filter { name, values });
    }
    Ok(filters)
}

/// Whether a resource passes every filter. `fields(name)` gives the resource's values for a
/// supported, non-tag filter name; `tags` are its tags.
pub(crate) fn matches<'a, F>(filters: &[Filter], tags: &[(String, String)], fields: F) -> bool
where
    F: Fn(&str) -> Vec<std::borrow::Cow<'a, str>>,
{
    filters.iter().all(|f| {
        let any = |candidates: &mut dyn Iterator<Item = &str>| {
            let mut hit = false;
            for c in candidates {
                if f.values.iter().any(|pattern| wildcard_match(pattern, c)) {
                    hit = true;
                    break;
                }
            }
            hit
        };
        if let Some(key) = f.name.strip_prefix("tag:") {
            any(&mut tags
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str()))
        } else if f.name == "tag-key" {
            any(&mut tags.iter().map(|(k, _)| k.as_str()))
        } else if f.name == "tag-value" {
            any(&mut tags.iter().map(|(_, v)| v.as_str()))
        } else {
            let values = fields(&f.name);
            any(&mut values.iter().map(|v| v.as_ref()))
        }
    })
}

/// EC2 filter wildcards: `*` matches any run (also empty), `?` exactly one character, `\`
/// makes the next character literal. Iterative with backtracking to the last `*`, so linear
/// in practice and never recursive (no stack risk on hostile patterns).
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        One,
        Lit(char),
    }
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                t += 1;
            }
            Some(Tok::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| *t == Tok::Star)
}

/// The items whose id is among `ids` (all of them when `ids` is empty), in their order; an id
/// asked for that no item has is EC2's `*.NotFound` for that id (checked before any filter).
pub(crate) fn requested<T, I: PartialEq>(
    all: impl IntoIterator<Item = T>,
    ids: &[I],
    id: impl Fn(&T) -> &I,
    not_found: impl Fn(&I) -> VpcError,
) -> Result<Vec<T>, ApiError> {
    let all: Vec<T> = all.into_iter().collect();
    if let Some(missing) = ids.iter().find(|i| !all.iter().any(|t| id(t) == *i)) {
        return Err(not_found(missing).into());
    }
    Ok(all
        .into_iter()
        .filter(|t| ids.is_empty() || ids.contains(id(t)))
        .collect())
}

/// One page of a `Describe*` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// `NextToken` for the following page, when there is one.
    pub next_token: Option<String>,
}

/// `MaxResults` within `min..=max` (as the action's model says), if given.
pub(crate) fn max_results(params: &Params, min: i64, max: i64) -> Result<Option<usize>, ApiError> {
    Ok(params
        .int_in("MaxResults", min, max)?
        .and_then(|n| usize::try_from(n).ok()))
}

/// Cut `items` (sorted by `key`, keys unique) into the page after `NextToken`, of at most
/// `max` items (all when `None`). The token is the hex of the last key handed out, so a page
/// stays correct when items are added or removed between calls.
pub(crate) fn paginate<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    max: Option<usize>,
    token: Option<&str>,
) -> Result<Page<T>, ApiError> {
    if let Some(token) = token {
        let after = decode_token(token)?;
        items.retain(|item| key(item) > after.as_str());
    }
    match max {
        Some(max) if items.len() > max => {
            items.truncate(max);
            let next = items.last().map(|last| encode_token(key(last)));
            Ok(Page {
                items,
                next_token: next,
            })
        }
        _ => Ok(Page {
            items,
            next_token: None,
        }),
    }
}

fn encode_token(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::new(
            "InvalidPaginationToken",
            format!(
                "The pagination token '{}' is invalid.",
                crate::error::truncate(token, 64)
            ),
            400,
        )
    };
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::query::Dialect;
    use std::borrow::Cow;

    /// The obvious exponential matcher, as the reference for the iterative one.
    fn reference_match(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|i| reference_match(rest, &text[i..])),
            Some(('?', rest)) => !text.is_empty() && reference_match(rest, &text[1..]),
            Some(('\\', rest)) => {
                let (lit, rest) = match rest.split_first() {
                    Some((c, r)) => (*c, r),
                    None => ('\\', rest),
                };
                text.first() == Some(&lit) && reference_match(rest, &text[1..])
            }
            Some((c, rest)) => text.first() == Some(c) && reference_match(rest, &text[1..]),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        #[test]
        fn wildcard_agrees_with_reference(
            pattern in "[ab*?\\\\]{0,8}",
            text in "[ab*?\\\\]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            proptest::prop_assert_eq!(wildcard_match(&pattern, &text), reference_match(&p, &t));
        }

        #[test]
        fn tokens_never_panic(token in ".{0,40}") {
            let _ = paginate(vec!["a".to_owned()], |s| s.as_str(), Some(5), Some(&token));
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("vpc-*", "vpc-123"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*b*", "abc"));
        assert!(!wildcard_match("*b*", "acd"));
        assert!(wildcard_match("a\\*", "a*"));
        assert!(!wildcard_match("a\\*", "ab"));
        assert!(wildcard_match("prod", "prod"));
        assert!(!wildcard_match("Prod", "prod"));
        assert!(wildcard_match("*.0/16", "10.0.0.0/16"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
    }

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes())
            .expect("valid")
            .with_dialect(Dialect::Ec2)
    }

    #[test]
    fn parse_checks_names() {
        let p = params(
            "Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-1&Filter.2.Name=tag:Env&Filter.2.Value.1=prod",
        );
        let f = parse(&p, &["vpc-id"], true).expect("valid");
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].values, ["prod"]);
        let e = parse(&p, &["vpc-id"], false).expect_err("tags unsupported");
        assert_eq!(e.code(), "InvalidParameterValue");
        let e = parse(&params("Filter.1.Name=bogus"), &["vpc-id"], true).expect_err("bogus");
        assert_eq!(e.message(), "The filter 'bogus' is invalid");
        let e = parse(&params("Filter.1.Value.1=x"), &["vpc-id"], true).expect_err("no name");
        assert_eq!(e.code(), "MissingParameter");
    }

    #[test]
    fn matching_ands_filters_and_ors_values() {
        let tags = vec![("Env".to_owned(), "prod".to_owned())];
        let f = |name: &str, values: &[&str]| Filter {
            name: name.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        };
        let fields = |name: &str| match name {
            "vpc-id" => vec![Cow::Borrowed("vpc-1")],
            _ => vec![],
        };
        assert!(matches(&[f("vpc-id", &["vpc-2", "vpc-1"])], &tags, fields));
        assert!(!matches(&[f("vpc-id", &["vpc-2"])], &tags, fields));
        assert!(matches(
            &[f("vpc-id", &["vpc-*"]), f("tag:Env", &["prod"])],
            &tags,
            fields
        ));
        assert!(!matches(
            &[f("vpc-id", &["vpc-*"]), f("tag:Env", &["dev"])],
            &tags,
            fields
        ));
        assert!(matches(&[f("tag-key", &["E*"])], &tags, fields));
        assert!(matches(&[f("tag-value", &["prod"])], &tags, fields));
        assert!(!matches(&[f("tag:Other", &["*"])], &tags, fields));
        assert!(matches(&[], &tags, fields));
    }

    #[test]
    fn pagination_walks_every_item_once() {
        let items: Vec<String> = (0..23).map(|i| format!("vpc-{i:03}")).collect();
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let page = paginate(items.clone(), |s| s.as_str(), Some(5), token.as_deref())
                .expect("valid token");
            seen.extend(page.items);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
        let all = paginate(items.clone(), |s| s.as_str(), None, None).expect("all");
        assert_eq!(all.items.len(), 23);
        assert!(all.next_token.is_none());
        for bad in ["zz", "abc", "ff"] {
            let e =
                paginate(items.clone(), |s| s.as_str(), Some(5), Some(bad)).expect_err("bad token");
            assert_eq!(e.code(), "InvalidPaginationToken", "{bad}");
        }
    }
}
