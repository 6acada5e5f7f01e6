//! Sealing of secrets at rest: AES-256-GCM under a rotatable 32-byte key.
//!
//! A key is given as 64 hex characters, from the environment (`HIVE_ENCRYPTION_KEY`, read only
//! when the caller asks via [`SealKey::from_env`]) or from a key file that must not be readable
//! by group or others (mode `0600`, [`SealKey::from_file`]). Each key has a short id (by default
//! the first 8 hex characters of the SHA-256 of the key) that travels with every ciphertext:
//!
//! ```text
//! v1:<key id>:<nonce, base64>:<ciphertext + tag, base64>
//! ```
//!
//! so a [`Keyring`] can hold one active key for sealing and older keys for opening, and a key can
//! be rotated without rewriting every record at once. The envelope prefix `v1:<key id>` and a
//! caller-chosen context (for example the access key id a secret belongs to) are bound as
//! associated data, so a sealed value cannot be moved to another record or relabelled with
//! another key id. Nonces are 96 random bits from the operating system's CSPRNG.
//!
//! Key material and opened secrets never appear in `Debug` or `Display`: keys print their id,
//! secrets print `***`.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The environment variable holding the sealing key as 64 hex characters.
pub const ENCRYPTION_KEY_ENV: &str = "HIVE_ENCRYPTION_KEY";

/// Envelope version tag of the sealed format.
const VERSION: &str = "v1";
/// AES-GCM nonce length in bytes (96 bits).
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a secret could not be sealed or opened.
///
/// Messages never contain key material or secrets.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key is not exactly 64 hexadecimal characters.
    #[error("encryption key must be 64 hexadecimal characters (32 bytes)")]
    InvalidKey,
    /// A configured key id is empty or contains characters other than `[A-Za-z0-9_-]`.
    #[error("key id must be 1-32 characters of [A-Za-z0-9_-]")]
    InvalidKeyId,
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:o}; it must not be accessible by group or others (chmod 600)"
    )]
    InsecureKeyFile {
        /// Path of the key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file could not be read.
    #[error("cannot read key file {path}: {reason}")]
    KeyFile {
        /// Path of the key file.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
    /// The environment variable is set but not valid Unicode.
    #[error("{ENCRYPTION_KEY_ENV} is not valid Unicode")]
    EnvNotUnicode,
    /// The sealed value is not in the `v1:<key id>:<nonce>:<ciphertext>` format.
    #[error("sealed value is malformed")]
    Malformed,
    /// The sealed value names a key the keyring does not hold.
    #[error("no key with id {0:?} in the keyring")]
    UnknownKey(String),
    /// Authentication failed: wrong key, wrong context, or tampered ciphertext.
    #[error("sealed value failed authentication")]
    Tampered,
    /// The opened plaintext is not UTF-8 (for [`Keyring::open_string`]).
    #[error("opened secret is not valid UTF-8")]
    NotUtf8,
}

/// A secret string: zeroized on drop, printed as `***`, compared in constant time.
#[derive(Clone, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl PartialEq for SecretString {
    /// Constant-time in the contents (the length may leak, as with any comparison).
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

/// One 32-byte AES-256 key with its id. `Debug` shows only the id.
#[derive(Clone)]
pub struct SealKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// Parses 64 hex characters (surrounding whitespace ignored); the id is derived from the key.
    pub fn from_hex(hex_key: &str) -> Result<Self, SealError> {
        let hex_key = hex_key.trim();
        if hex_key.len() != 64 {
            return Err(SealError::InvalidKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key, key.as_mut_slice()).map_err(|_| SealError::InvalidKey)?;
        let id = derive_key_id(&key);
        Ok(Self { id, key })
    }

    /// Parses 64 hex characters and labels the key with a configured id.
    pub fn from_hex_with_id(hex_key: &str, id: &str) -> Result<Self, SealError> {
        let valid_id = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_id {
            return Err(SealError::InvalidKeyId);
        }
        let mut key = Self::from_hex(hex_key)?;
        key.id = id.to_owned();
        Ok(key)
    }

    /// Reads the key from `HIVE_ENCRYPTION_KEY`; `Ok(None)` when the variable is unset.
    pub fn from_env() -> Result<Option<Self>, SealError> {
        match std::env::var(ENCRYPTION_KEY_ENV) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                Self::from_hex(&value).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SealError::EnvNotUnicode),
        }
    }

    /// Reads the key from a file holding 64 hex characters. The file must not be accessible by
    /// group or others (mode `0600` or stricter), as for SSH private keys.
    pub fn from_file(path: &Path) -> Result<Self, SealError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| SealError::KeyFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SealError::InsecureKeyFile { path: shown, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| SealError::KeyFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?,
            );
        Self::from_hex(&text)
    }

    /// Generates a fresh key from `rng` (the caller's cryptographic RNG, e.g. the OS's) and
    /// returns it with its hex form.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> (Self, SecretString) {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        let hex_form = SecretString::new(hex::encode(key.as_slice()));
        let id = derive_key_id(&key);
        (Self { id, key }, hex_form)
    }

    /// The key's id, as written into every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.as_slice().into())
    }
}

/// First 8 hex characters of SHA-256 of the key: identifies it without revealing it.
fn derive_key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::digest(key);
    hex::encode(&digest[..4])
}

/// One active key for sealing, older keys for opening values sealed before a rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    active: SealKey,
    older: Vec<SealKey>,
}

impl Keyring {
    /// A keyring with one key, used for both sealing and opening.
    pub fn new(active: SealKey) -> Self {
        Self {
            active,
            older: Vec::new(),
        }
    }

    /// Adds an older key, used only to open values sealed under it.
    pub fn with_old_key(mut self, key: SealKey) -> Self {
        if key.id != self.active.id && !self.older.iter().any(|k| k.id == key.id) {
            self.older.push(key);
        }
        self
    }

    /// Rotation: `new` seals from now on; every key of this ring still opens what it sealed
    /// (re-seal with `IamRepo::reseal_keys`, then retire the old key).
    pub fn rotate(self, new: SealKey) -> Self {
        let Self { active, older } = self;
        older.into_iter().fold(
            Keyring::new(new).with_old_key(active),
            Keyring::with_old_key,
        )
    }

    /// The id of the key new values are sealed under.
    pub fn active_id(&self) -> &str {
        &self.active.id
    }

    /// Seals `plaintext`, bound to `context` (e.g. the access key id the secret belongs to),
    /// under a nonce drawn from `rng` (the caller's cryptographic RNG).
    pub fn seal<R: RngCore + CryptoRng + ?Sized>(
        &self,
        plaintext: &[u8],
        context: &[u8],
        rng: &mut R,
    ) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let aad = associated_data(&self.active.id, context);
        let ct = self
            .active
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption only fails for inputs beyond 64 GiB");
        format!(
            "{VERSION}:{}:{}:{}",
            self.active.id,
            B64.encode(nonce),
            B64.encode(ct)
        )
    }

    /// Seals a secret string (see [`Keyring::seal`]).
    pub fn seal_secret<R: RngCore + CryptoRng + ?Sized>(
        &self,
        secret: &SecretString,
        context: &[u8],
        rng: &mut R,
    ) -> String {
        self.seal(secret.expose().as_bytes(), context, rng)
    }

    /// Opens a sealed value with whichever key of the ring sealed it.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (key_id, nonce, ct) = parse_envelope(sealed)?;
        let key = self.key(key_id)?;
        let aad = associated_data(key_id, context);
        key.cipher()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    /// Opens a sealed UTF-8 secret.
    pub fn open_string(&self, sealed: &str, context: &[u8]) -> Result<SecretString, SealError> {
        let bytes = self.open(sealed, context)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| SealError::NotUtf8)?;
        Ok(SecretString::new(text))
    }

    /// Whether a sealed value was sealed under a key other than the active one (or is not a
    /// sealed value at all) and should be re-sealed.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        match parse_envelope(sealed) {
            Ok((key_id, _, _)) => key_id != self.active.id,
            Err(_) => true,
        }
    }

    fn key(&self, id: &str) -> Result<&SealKey, SealError> {
        if self.active.id == id {
            return Ok(&self.active);
        }
        self.older
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))
    }
}

/// Whether a stored string looks like a sealed envelope (as opposed to clear text).
pub fn is_sealed(value: &str) -> bool {
    parse_envelope(value).is_ok()
}

fn associated_data(key_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(VERSION.len() + key_id.len() + context.len() + 2);
    aad.extend_from_slice(VERSION.as_bytes());
    aad.push(b':');
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(b':');
    aad.extend_from_slice(context);
    aad
}

fn parse_envelope(sealed: &str) -> Result<(&str, [u8; NONCE_LEN], Vec<u8>), SealError> {
    let mut parts = sealed.split(':');
    let (Some(version), Some(key_id), Some(nonce), Some(ct), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SealError::Malformed);
    };
    if version != VERSION || key_id.is_empty() {
        return Err(SealError::Malformed);
    }
    let nonce_bytes = B64.decode(nonce).map_err(|_| SealError::Malformed)?;
    let nonce: [u8; NONCE_LEN] = nonce_bytes
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Malformed)?;
    let ct = B64.decode(ct).map_err(|_| SealError::Malformed)?;
    // A GCM ciphertext carries at least its 16-byte tag.
    if ct.len() < 16 {
        return Err(SealError::Malformed);
    }
    Ok((key_id, nonce, ct))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff";

    fn ring(hex_key: &str) -> Keyring {
        Keyring::new(SealKey::from_hex(hex_key).expect("valid test key"))
    }

    #[test]
    fn roundtrip_and_format() {
        let r = ring(K1);
        let sealed = r.seal(
            b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            b"AKIAEXAMPLE",
            &mut OsRng,
        );
        let parts: Vec<_> = sealed.split(':').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "v1");
        assert_eq!(parts[1], r.active_id());
        assert_eq!(parts[1].len(), 8);
        assert!(!sealed.contains("wJalr"));
        let opened = r.open_string(&sealed, b"AKIAEXAMPLE").expect("opens");
        assert_eq!(opened.expose(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert!(is_sealed(&sealed));
        assert!(!is_sealed("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
    }

    #[test]
    fn nonces_differ() {
        let r = ring(K1);
        assert_ne!(r.seal(b"x", b"", &mut OsRng), r.seal(b"x", b"", &mut OsRng));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = ring(K1).seal(b"secret", b"", &mut OsRng);
        // A different key with the same configured id still cannot open it.
        let other =
            Keyring::new(SealKey::from_hex_with_id(K2, ring(K1).active_id()).expect("valid key"));
        assert!(matches!(other.open(&sealed, b""), Err(SealError::Tampered)));
        assert!(matches!(
            ring(K2).open(&sealed, b""),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn wrong_context_fails() {
        let r = ring(K1);
        let sealed = r.seal(b"secret", b"AKIA1", &mut OsRng);
        assert!(matches!(
            r.open(&sealed, b"AKIA2"),
            Err(SealError::Tampered)
        ));
    }

    #[test]
    fn rotation_opens_old_and_reports_reseal() {
        let old = ring(K1);
        let sealed_old = old.seal(b"secret", b"c", &mut OsRng);
        let rotated = Keyring::new(SealKey::from_hex(K2).expect("valid"))
            .with_old_key(SealKey::from_hex(K1).expect("valid"));
        assert_eq!(
            rotated
                .open(&sealed_old, b"c")
                .expect("old key opens")
                .as_slice(),
            b"secret"
        );
        assert!(rotated.needs_reseal(&sealed_old));
        let resealed = rotated.seal(b"secret", b"c", &mut OsRng);
        assert!(!rotated.needs_reseal(&resealed));
        assert!(rotated.needs_reseal("clear text"));
    }

    #[test]
    fn tamper_is_detected() {
        let r = ring(K1);
        let sealed = r.seal(b"secret value", b"", &mut OsRng);
        let parts: Vec<&str> = sealed.split(':').collect();
        let mut ct = B64.decode(parts[3]).expect("b64");
        ct[0] ^= 1;
        let tampered = format!("{}:{}:{}:{}", parts[0], parts[1], parts[2], B64.encode(&ct));
        assert!(matches!(r.open(&tampered, b""), Err(SealError::Tampered)));
        let mut nonce = B64.decode(parts[2]).expect("b64");
        nonce[0] ^= 1;
        let tampered = format!(
            "{}:{}:{}:{}",
            parts[0],
            parts[1],
            B64.encode(&nonce),
            parts[3]
        );
        assert!(matches!(r.open(&tampered, b""), Err(SealError::Tampered)));
        for bad in [
            "",
            "v1",
            "v2:a:b:c",
            "v1::AAAA:AAAA",
            "v1:a:!!:AAAA",
            "v1:a:b:c:d",
        ] {
            assert!(
                matches!(r.open(bad, b""), Err(SealError::Malformed)),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_keys_rejected() {
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(66)] {
            assert!(matches!(SealKey::from_hex(bad), Err(SealError::InvalidKey)));
        }
        assert!(SealKey::from_hex(&format!("  {K1}\n")).is_ok());
        assert!(matches!(
            SealKey::from_hex_with_id(K1, "a:b"),
            Err(SealError::InvalidKeyId)
        ));
    }

    #[test]
    fn debug_hides_material() {
        let k = SealKey::from_hex(K1).expect("valid");
        let shown = format!("{k:?} {:?}", Keyring::new(k.clone()));
        assert!(!shown.contains("0001020304"));
        assert!(shown.contains(k.id()));
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s, SecretString::new("hunter2"));
        assert_ne!(s, SecretString::new("hunter3"));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_mode_is_enforced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{K1}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SealKey::from_file(&path).expect_err("0644 must be refused");
        assert!(matches!(
            err,
            SealError::InsecureKeyFile { mode: 0o644, .. }
        ));
        assert!(!err.to_string().contains(K1));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let key = SealKey::from_file(&path).expect("0600 accepted");
        assert_eq!(key.id(), SealKey::from_hex(K1).expect("valid").id());
        assert!(matches!(
            SealKey::from_file(&dir.path().join("missing")),
            Err(SealError::KeyFile { .. })
        ));
    }

    #[test]
    fn generated_keys_work() {
        let (k, hex_form) = SealKey::generate(&mut OsRng);
        assert_eq!(hex_form.len(), 64);
        let again = SealKey::from_hex(hex_form.expose()).expect("valid");
        assert_eq!(k.id(), again.id());
        let sealed = Keyring::new(k).seal(b"x", b"", &mut OsRng);
        assert_eq!(
            Keyring::new(again)
                .open(&sealed, b"")
                .expect("opens")
                .as_slice(),
            b"x"
        );
    }
}
