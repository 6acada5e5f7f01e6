//! Input rules shared by every adapter, so that an input one adapter rejects is rejected by all
//! of them — and rejected *before* anything is written.
//!
//! Keys follow the rules of the official NATS client (`async-nats`), which is the gatekeeper in
//! front of JetStream: a key is a non-empty run of `[-/_=.a-zA-Z0-9]` that neither starts nor
//! ends with `.`. We are one step stricter and also refuse empty tokens (`a..b`), which NATS
//! subjects do not allow. Wildcards (`*`, `>`), spaces and non-ASCII characters are refused.
//!
//! Unicode (and any other character) can still be stored in a key through
//! [`encode_key_segment`], a reversible escaping into the allowed alphabet.

use crate::port::{BucketConfig, KvError, Result};

/// Largest value accepted when a bucket does not configure `max_value_size`.
///
/// A NATS server's default `max_payload` is 1 MiB for headers *and* payload; keeping 4 KiB free
/// for the KV headers (expected revision, operation) lets every adapter accept exactly the same
/// values.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 1024 * 1024 - 4096;

/// Most revisions per key a bucket may keep (JetStream's limit).
pub const MAX_HISTORY: u8 = 64;

/// Checks a key against the JetStream key rules (see the module docs).
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("keys must not be empty")
    } else if key.starts_with('.') || key.ends_with('.') {
        Some("keys must not start or end with '.'")
    } else if key.contains("..") {
        Some("keys must not contain an empty token ('..')")
    } else if key.contains(['*', '>']) {
        Some("keys must not contain the wildcards '*' or '>'")
    } else if !key.bytes().all(is_key_byte) {
        Some(
            "keys may only contain ASCII letters, digits and '-', '/', '_', '=', '.' \
             (escape other characters with hive_kv::encode_key_segment)",
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KvError::InvalidKey {
            key: key.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'=' | b'.')
}

/// Checks a bucket name: `[A-Za-z0-9_-]+`, as JetStream requires.
pub fn validate_bucket_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KvError::InvalidConfig(format!(
            "bucket name {name:?} must be a non-empty run of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

/// Checks a whole bucket configuration.
pub fn validate_config(config: &BucketConfig) -> Result<()> {
    validate_bucket_name(&config.name)?;
    if config.history == 0 || config.history > MAX_HISTORY {
        return Err(KvError::InvalidConfig(format!(
            "history of bucket {:?} must be within 1..={MAX_HISTORY}, not {}",
            config.name, config.history
        )));
    }
    if config.replicas == 0 || config.replicas > 5 {
        return Err(KvError::InvalidConfig(format!(
            "replicas of bucket {:?} must be within 1..=5, not {}",
            config.name, config.replicas
        )));
    }
    if let Some(ttl) = config.ttl
        && ttl < std::time::Duration::from_millis(100)
    {
        return Err(KvError::InvalidConfig(format!(
            "ttl of bucket {:?} must be at least 100 ms (JetStream's minimum)",
            config.name
        )));
    }
    if let Some(max) = config.max_value_size
        && (max == 0 || max > DEFAULT_MAX_VALUE_SIZE)
    {
        return Err(KvError::InvalidConfig(format!(
            "max_value_size of bucket {:?} must be within 1..={DEFAULT_MAX_VALUE_SIZE}",
            config.name
        )));
    }
    Ok(())
}

/// The value limit of a bucket.
pub fn value_limit(config: &BucketConfig) -> usize {
    config.max_value_size.unwrap_or(DEFAULT_MAX_VALUE_SIZE)
}

/// Checks a value against the bucket's limit.
pub fn validate_value(config: &BucketConfig, value: &[u8]) -> Result<()> {
    let limit = value_limit(config);
    if value.len() > limit {
        return Err(KvError::ValueTooLarge {
            size: value.len(),
            limit,
        });
    }
    Ok(())
}

/// Whether `key` matches an optional prefix filter.
pub(crate) fn matches_prefix(key: &str, prefix: Option<&str>) -> bool {
    prefix.is_none_or(|p| key.starts_with(p))
}

/// Escapes any string into one valid key *token* (no `.`), reversibly.
///
/// ASCII letters, digits, `-` and `_` are kept; every other byte of the UTF-8 encoding becomes
/// `=XX` (upper-case hex). Use it for user-chosen names (IAM names allow `+=,.@`, unicode…)
/// and join tokens with `.` or `/`. The empty string encodes as `=` alone so that the result is
/// never empty.
pub fn encode_key_segment(raw: &str) -> String {
    if raw.is_empty() {
        return "=".to_owned();
    }
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Reverses [`encode_key_segment`].
pub fn decode_key_segment(encoded: &str) -> Result<String> {
    let bad = |reason| KvError::InvalidKey {
        key: encoded.to_owned(),
        reason,
    };
    if encoded == "=" {
        return Ok(String::new());
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_val(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_val(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(bad("truncated or invalid '=XX' escape")),
            }
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return Err(bad("unexpected character in an encoded key segment"));
        }
    }
    String::from_utf8(out).map_err(|_| bad("escapes do not form UTF-8"))
}

fn hex_val(h: u8) -> Option<u8> {
    match h {
        b'0'..=b'9' => Some(h - b'0'),
        b'A'..=b'F' => Some(h - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_jetstream_keys() {
        for key in ["a", "users.alice", "a/b=c_d-e", "A.9.z", "=41"] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_bad_keys() {
        for key in [
            "", ".a", "a.", "a..b", "a*", "a.>", "a b", "ключ", "a\n", "a:b", "a@b", "é",
        ] {
            assert!(
                matches!(validate_key(key), Err(KvError::InvalidKey { .. })),
                "{key:?}"
            );
        }
    }

    #[test]
    fn bucket_names() {
        assert!(validate_bucket_name("hive-iam_users1").is_ok());
        for name in ["", "a.b", "a b", "a/b", "ü"] {
            assert!(validate_bucket_name(name).is_err(), "{name:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn encoded_segments_are_valid_and_round_trip(raw in any::<String>()) {
            let enc = encode_key_segment(&raw);
            prop_assert!(validate_key(&enc).is_ok());
            prop_assert!(!enc.contains('.'));
            prop_assert_eq!(decode_key_segment(&enc).unwrap(), raw);
        }

        #[test]
        fn validation_never_panics_and_matches_the_alphabet(key in ".{0,12}") {
            let ok = validate_key(&key).is_ok();
            let expected = !key.is_empty()
                && !key.starts_with('.')
                && !key.ends_with('.')
                && !key.contains("..")
                && key.bytes().all(is_key_byte);
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn decode_never_panics(s in ".{0,12}") {
            let _ = decode_key_segment(&s);
        }
    }
}
