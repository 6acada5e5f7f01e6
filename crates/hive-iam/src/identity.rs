//! Identity records and AWS's rules for them: accounts, users, groups, roles, managed policies
//! with versions, inline policies, access keys and temporary credentials; names, paths, tags,
//! unique ids and ARNs.
//!
//! The records are the JSON values stored in the KV buckets. Their field names follow the
//! operators' setup guide (`username`, `arn`, `created_at`, `groups`, `policies`, `access_keys`;
//! `access_key_id`, `username`, `status`, `created_at`) so that `nats kv get` shows what the guide
//! shows; every extra field has a serde default so that a record written by hand per the guide
//! still loads. Randomness (unique ids, key ids, secrets) is passed in by the caller.

use std::collections::BTreeMap;
use std::fmt;

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::IamError;
use crate::seal::SecretString;

/// The default account of a Hive node (the setup guide's account).
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";
/// At most this many access keys per user.
pub const MAX_ACCESS_KEYS_PER_USER: usize = 2;
/// At most this many versions per managed policy.
pub const MAX_POLICY_VERSIONS: usize = 5;
/// At most this many managed policies attached to one user, group or role (AWS default quota).
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// At most this many tags per entity.
pub const MAX_TAGS: usize = 50;
/// Longest tag key.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value.
pub const MAX_TAG_VALUE_LEN: usize = 256;
/// Longest path.
pub const MAX_PATH_LEN: usize = 512;
/// Shortest allowed `MaxSessionDuration` of a role, in seconds.
pub const MIN_ROLE_SESSION_SECONDS: u32 = 3600;
/// Longest allowed `MaxSessionDuration` of a role, in seconds.
pub const MAX_ROLE_SESSION_SECONDS: u32 = 43_200;
/// Default lifetime of temporary credentials, in seconds (the sessions bucket's TTL).
pub const DEFAULT_SESSION_SECONDS: u32 = 3600;
/// Length of a secret access key.
pub const SECRET_KEY_LEN: usize = 40;

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The kinds of IAM entity that have names, unique ids and ARNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    /// An IAM user.
    User,
    /// An IAM group.
    Group,
    /// An IAM role.
    Role,
    /// A customer managed policy.
    Policy,
}

impl EntityKind {
    /// Prefix of the entity's unique id (`AIDA`, `AGPA`, `AROA`, `ANPA`).
    pub fn id_prefix(self) -> &'static str {
        match self {
            Self::User => "AIDA",
            Self::Group => "AGPA",
            Self::Role => "AROA",
            Self::Policy => "ANPA",
        }
    }

    /// The resource type in the entity's ARN (`user`, `group`, `role`, `policy`).
    pub fn arn_type(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Role => "role",
            Self::Policy => "policy",
        }
    }

    /// Longest name AWS accepts for this kind.
    pub fn max_name_len(self) -> usize {
        match self {
            Self::User | Self::Role => 64,
            Self::Group | Self::Policy => 128,
        }
    }

    /// The parameter name AWS uses in validation messages.
    fn name_param(self) -> &'static str {
        match self {
            Self::User => "userName",
            Self::Group => "groupName",
            Self::Role => "roleName",
            Self::Policy => "policyName",
        }
    }

    /// The word AWS uses in messages ("user", "group", "role", "policy").
    pub fn noun(self) -> &'static str {
        self.arn_type()
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

fn validation(msg: impl Into<String>) -> IamError {
    IamError::Validation(msg.into())
}

/// Checks a 12-digit account id.
pub fn validate_account_id(account_id: &str) -> Result<(), IamError> {
    if account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(validation(format!(
            "Account id {account_id:?} is not 12 digits"
        )))
    }
}

/// Whether `c` is in AWS's name character class `[\w+=,.@-]`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// Checks a user, group, role or policy name against AWS's pattern `[\w+=,.@-]+` and length.
pub fn validate_name(kind: EntityKind, name: &str) -> Result<(), IamError> {
    let param = kind.name_param();
    if name.is_empty() {
        return Err(validation(format!(
            "1 validation error detected: Value at '{param}' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )));
    }
    if name.chars().count() > kind.max_name_len() {
        return Err(validation(format!(
            "1 validation error detected: Value at '{param}' failed to satisfy constraint: Member must have length less than or equal to {}",
            kind.max_name_len()
        )));
    }
    if !name.chars().all(is_name_char) {
        return Err(validation(format!(
            "1 validation error detected: Value at '{param}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
        )));
    }
    Ok(())
}

/// Checks a path against AWS's pattern `(\u002F)|(\u002F[\u0021-\u007E]+\u002F)`, 1-512 chars.
pub fn validate_path(path: &str) -> Result<(), IamError> {
    let pattern_ok = path == "/"
        || (path.len() >= 3
            && path.starts_with('/')
            && path.ends_with('/')
            && path.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    if path.len() > MAX_PATH_LEN {
        return Err(validation(format!(
            "1 validation error detected: Value at 'path' failed to satisfy constraint: Member must have length less than or equal to {MAX_PATH_LEN}"
        )));
    }
    if !pattern_ok {
        return Err(validation(
            "1 validation error detected: Value at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

/// Checks a role's `MaxSessionDuration` (3600-43200 seconds).
pub fn validate_max_session_duration(seconds: u32) -> Result<(), IamError> {
    if (MIN_ROLE_SESSION_SECONDS..=MAX_ROLE_SESSION_SECONDS).contains(&seconds) {
        Ok(())
    } else {
        Err(validation(format!(
            "1 validation error detected: Value '{seconds}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between {MIN_ROLE_SESSION_SECONDS} and {MAX_ROLE_SESSION_SECONDS}"
        )))
    }
}

/// Case-insensitive form of a name, used for uniqueness index keys.
pub fn normalize_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A tag on an entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Tag key (1-128 characters).
    pub key: String,
    /// Tag value (0-256 characters).
    pub value: String,
}

/// Whether `c` is in AWS's tag character class `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric()
        || c.is_whitespace()
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// Checks a tag set: at most 50 tags, keys 1-128 and values 0-256 characters, AWS's character
/// class, no `aws:` prefix, keys unique case-insensitively.
pub fn validate_tags(tags: &[Tag]) -> Result<(), IamError> {
    if tags.len() > MAX_TAGS {
        return Err(IamError::LimitExceeded(format!(
            "The number of tags has reached the maximum limit of {MAX_TAGS}."
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        let key_len = tag.key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY_LEN || !tag.key.chars().all(is_tag_char) {
            return Err(validation(format!(
                "1 validation error detected: Value at 'tags.{}.member.key' failed to satisfy constraint: Member must have length between 1 and {MAX_TAG_KEY_LEN} and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]+",
                seen.len() + 1
            )));
        }
        if tag.value.chars().count() > MAX_TAG_VALUE_LEN || !tag.value.chars().all(is_tag_char) {
            return Err(validation(format!(
                "1 validation error detected: Value at 'tags.{}.member.value' failed to satisfy constraint: Member must have length less than or equal to {MAX_TAG_VALUE_LEN} and satisfy regular expression pattern: [\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*",
                seen.len() + 1
            )));
        }
        if tag.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(IamError::InvalidInput(
                "Tag keys starting with 'aws:' are reserved for AWS use.".into(),
            ));
        }
        if !seen.insert(tag.key.to_lowercase()) {
            return Err(IamError::InvalidInput(format!(
                "Duplicate tag keys found. Tag key {:?} is repeated.",
                tag.key
            )));
        }
    }
    Ok(())
}

/// Merges `new` into `existing` (same key, case-insensitively, replaces), then validates.
pub fn merge_tags(existing: &[Tag], new: &[Tag]) -> Result<Vec<Tag>, IamError> {
    validate_tags(new)?;
    let mut merged: Vec<Tag> = existing
        .iter()
        .filter(|t| !new.iter().any(|n| n.key.eq_ignore_ascii_case(&t.key)))
        .cloned()
        .collect();
    merged.extend(new.iter().cloned());
    validate_tags(&merged)?;
    Ok(merged)
}

fn random_from<R: RngCore + ?Sized>(rng: &mut R, alphabet: &[u8], len: usize) -> String {
    // Rejection sampling keeps the distribution uniform over the alphabet.
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        let b = usize::from(byte[0]);
        if b < limit {
            out.push(char::from(alphabet[b % alphabet.len()]));
        }
    }
    out
}

/// A new unique id: the kind's prefix and 17 upper-case alphanumerics (21 characters).
pub fn generate_unique_id<R: RngCore + ?Sized>(kind: EntityKind, rng: &mut R) -> String {
    format!("{}{}", kind.id_prefix(), random_from(rng, UPPER_ALNUM, 17))
}

/// A deterministic unique id for a record written by hand without one (derived from its ARN).
pub fn derived_unique_id(kind: EntityKind, arn: &str) -> String {
    let digest = Sha256::digest(arn.as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| char::from(UPPER_ALNUM[usize::from(*b) % UPPER_ALNUM.len()]))
        .collect();
    format!("{}{tail}", kind.id_prefix())
}

/// Checks a unique id of the given kind: prefix then 17 characters `[A-Z0-9]`.
pub fn is_valid_unique_id(kind: EntityKind, id: &str) -> bool {
    id.len() == 21
        && id.starts_with(kind.id_prefix())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A new long-term access key id: `AKIA` + 16 characters `[A-Z0-9]`.
pub fn generate_access_key_id<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> String {
    format!("AKIA{}", random_from(rng, UPPER_ALNUM, 16))
}

/// A new temporary access key id: `ASIA` + 16 characters `[A-Z0-9]`.
pub fn generate_temporary_key_id<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> String {
    format!("ASIA{}", random_from(rng, UPPER_ALNUM, 16))
}

/// A new 40-character secret access key from a CSPRNG.
pub fn generate_secret_access_key<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> SecretString {
    SecretString::new(random_from(rng, SECRET_ALPHABET, SECRET_KEY_LEN))
}

/// A new session token for temporary credentials (172 characters from a CSPRNG).
pub fn generate_session_token<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> SecretString {
    SecretString::new(random_from(rng, SECRET_ALPHABET, 172))
}

/// Whether a string has the shape of a long-term (`AKIA`) or temporary (`ASIA`) key id.
pub fn is_valid_access_key_id(id: &str) -> bool {
    id.len() == 20
        && (id.starts_with("AKIA") || id.starts_with("ASIA"))
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// SHA-256 of a session token, as stored (the token itself is never stored).
pub fn session_token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The ARN of a user, group, role or policy: `arn:aws:iam::<account>:<type><path><name>`.
pub fn arn(account_id: &str, kind: EntityKind, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account_id}:{}{path}{name}", kind.arn_type())
}

/// The ARN of an account's root identity.
pub fn root_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:root")
}

/// The ARN of an assumed-role session: `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
pub fn assumed_role_arn(account_id: &str, role_name: &str, session_name: &str) -> String {
    format!("arn:aws:sts::{account_id}:assumed-role/{role_name}/{session_name}")
}

/// The parts of an IAM ARN of a user, group, role or policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedArn {
    /// Account id.
    pub account_id: String,
    /// Entity kind.
    pub kind: EntityKind,
    /// Path, `/` when none.
    pub path: String,
    /// Name.
    pub name: String,
}

/// Parses `arn:aws:iam::<account>:<type><path><name>`; `None` when it is not one.
pub fn parse_arn(arn: &str) -> Option<ParsedArn> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account_id, resource) = rest.split_once(':')?;
    validate_account_id(account_id).ok()?;
    let (type_name, path_and_name) = resource.split_once('/')?;
    let kind = match type_name {
        "user" => EntityKind::User,
        "group" => EntityKind::Group,
        "role" => EntityKind::Role,
        "policy" => EntityKind::Policy,
        _ => return None,
    };
    let (path, name) = match path_and_name.rfind('/') {
        Some(i) => (
            format!("/{}", &path_and_name[..=i]),
            &path_and_name[i + 1..],
        ),
        None => ("/".to_owned(), path_and_name),
    };
    validate_name(kind, name).ok()?;
    validate_path(&path).ok()?;
    Some(ParsedArn {
        account_id: account_id.to_owned(),
        kind,
        path,
        name: name.to_owned(),
    })
}

fn default_account() -> String {
    DEFAULT_ACCOUNT_ID.to_owned()
}

fn root_path() -> String {
    "/".to_owned()
}

fn default_max_session() -> u32 {
    DEFAULT_SESSION_SECONDS
}

/// A user record (bucket `users`). Guide fields first; the rest default when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// User name.
    pub username: String,
    /// `arn:aws:iam::<account>:user<path><name>`.
    pub arn: String,
    /// Creation time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Names of the groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// ARNs of the managed policies attached to the user (plain names are read as policies of
    /// the user's account).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Ids of the user's access keys.
    #[serde(default)]
    pub access_keys: Vec<String>,
    /// Unique id (`AIDA...`).
    #[serde(default)]
    pub user_id: String,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Path.
    #[serde(default = "root_path")]
    pub path: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// ARN of the managed policy used as permissions boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Inline policies: name to document text.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    /// Console password hash, when a login profile exists (not used by the API itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_profile: Option<String>,
}

/// A group record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Group name.
    pub group_name: String,
    /// `arn:aws:iam::<account>:group<path><name>`.
    pub arn: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Unique id (`AGPA...`).
    #[serde(default)]
    pub group_id: String,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Path.
    #[serde(default = "root_path")]
    pub path: String,
    /// ARNs of attached managed policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Inline policies: name to document text.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    /// User names of the members. The user records' `groups` are authoritative for
    /// authorization; this list serves listing and `DeleteConflict` checks.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A role record (bucket `roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// Role name.
    pub role_name: String,
    /// `arn:aws:iam::<account>:role<path><name>`.
    pub arn: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Unique id (`AROA...`).
    #[serde(default)]
    pub role_id: String,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Path.
    #[serde(default = "root_path")]
    pub path: String,
    /// Trust policy document text (decides `sts:AssumeRole`).
    pub assume_role_policy_document: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Longest session, in seconds (3600-43200).
    #[serde(default = "default_max_session")]
    pub max_session_duration: u32,
    /// ARNs of attached managed policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Inline policies: name to document text.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
    /// ARN of the permissions boundary policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_boundary: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// One version of a managed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `v1`, `v2`, ...
    pub version_id: String,
    /// Document text as submitted.
    pub document: String,
    /// Whether this is the default version.
    pub is_default: bool,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A customer managed policy record (bucket `policies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Policy name.
    pub policy_name: String,
    /// `arn:aws:iam::<account>:policy<path><name>`.
    pub arn: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change of the default version.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Unique id (`ANPA...`).
    #[serde(default)]
    pub policy_id: String,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Path.
    #[serde(default = "root_path")]
    pub path: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Versions, at most five, exactly one default.
    pub versions: Vec<PolicyVersion>,
    /// The number the next version gets (`v<N>`); version ids are never reused.
    #[serde(default)]
    pub next_version: u32,
    /// ARNs of the users, groups and roles the policy is attached to.
    #[serde(default)]
    pub attachments: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl PolicyRecord {
    /// The default version.
    pub fn default_version(&self) -> Option<&PolicyVersion> {
        self.versions.iter().find(|v| v.is_default)
    }

    /// The default version's id (`v1` when the record has none, which validation prevents).
    pub fn default_version_id(&self) -> &str {
        self.default_version()
            .map_or("v1", |v| v.version_id.as_str())
    }

    /// Checks the version invariants: 1-5 versions, exactly one default, unique ids.
    pub fn check_versions(&self) -> Result<(), IamError> {
        let defaults = self.versions.iter().filter(|v| v.is_default).count();
        let mut ids: Vec<&str> = self
            .versions
            .iter()
            .map(|v| v.version_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if self.versions.is_empty()
            || self.versions.len() > MAX_POLICY_VERSIONS
            || defaults != 1
            || ids.len() != self.versions.len()
        {
            return Err(IamError::InvalidInput(format!(
                "Policy {} has an invalid set of versions",
                self.arn
            )));
        }
        Ok(())
    }
}

/// Status of an access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    /// The key authenticates.
    Active,
    /// The key is kept but does not authenticate.
    Inactive,
}

impl KeyStatus {
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }

    /// Parses `Active` / `Inactive` (AWS spelling).
    pub fn parse(s: &str) -> Result<Self, IamError> {
        match s {
            "Active" => Ok(Self::Active),
            "Inactive" => Ok(Self::Inactive),
            _ => Err(validation(format!(
                "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            ))),
        }
    }
}

/// When, where and for what an access key was last used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    /// Time of the last authenticated request.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Service of that request (`iam`, `sts`, `ec2`).
    pub service: String,
    /// Region of that request.
    pub region: String,
}

/// Serde for a clear-text secret that a hand-written record may carry (guide format).
mod clear_text_secret {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::seal::SecretString;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<SecretString>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            // Only written back when it was already stored in clear text (a hand-written
            // record awaiting re-sealing); the repository never introduces clear text.
            Some(secret) => serializer.serialize_some(secret.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::new))
    }
}

/// An access key record (bucket `access-keys`, keyed by access key id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// `AKIA...`.
    pub access_key_id: String,
    /// Owner.
    pub username: String,
    /// Active or Inactive.
    pub status: KeyStatus,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// The secret, sealed (`v1:<key id>:<nonce>:<ciphertext>`), bound to the key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_sealed: Option<String>,
    /// A clear-text secret from a record written by hand per the setup guide; it still
    /// authenticates but is reported for re-sealing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "clear_text_secret"
    )]
    pub secret_access_key: Option<SecretString>,
    /// Last use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<LastUsed>,
}

/// A temporary-credentials record (bucket `sessions`, keyed by access key id, TTL-expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret, sealed and bound to the key id.
    pub secret_access_key_sealed: String,
    /// SHA-256 (hex) of the session token; the token itself is not stored.
    pub session_token_sha256: String,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expiration: OffsetDateTime,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Account id.
    #[serde(default = "default_account")]
    pub account_id: String,
    /// Who the session acts as.
    pub principal: Principal,
    /// Session policy document that intersects with the identity's policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<String>,
    /// Session tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Principal {
    /// The account's root identity.
    Root {
        /// Account id.
        account_id: String,
    },
    /// An IAM user.
    User {
        /// Account id.
        account_id: String,
        /// User name.
        username: String,
        /// Unique id (`AIDA...`).
        user_id: String,
        /// User ARN.
        arn: String,
    },
    /// A session of an assumed role.
    AssumedRole {
        /// Account id.
        account_id: String,
        /// Role name.
        role_name: String,
        /// Role unique id (`AROA...`).
        role_id: String,
        /// Role session name.
        session_name: String,
        /// The role's ARN.
        role_arn: String,
    },
}

impl Principal {
    /// The principal's account.
    pub fn account_id(&self) -> &str {
        match self {
            Self::Root { account_id }
            | Self::User { account_id, .. }
            | Self::AssumedRole { account_id, .. } => account_id,
        }
    }

    /// The ARN that `aws sts get-caller-identity` reports.
    pub fn arn(&self) -> String {
        match self {
            Self::Root { account_id } => root_arn(account_id),
            Self::User { arn, .. } => arn.clone(),
            Self::AssumedRole {
                account_id,
                role_name,
                session_name,
                ..
            } => assumed_role_arn(account_id, role_name, session_name),
        }
    }

    /// The `UserId` that `aws sts get-caller-identity` reports (`aws:userid`).
    pub fn user_id(&self) -> String {
        match self {
            Self::Root { account_id } => account_id.clone(),
            Self::User { user_id, .. } => user_id.clone(),
            Self::AssumedRole {
                role_id,
                session_name,
                ..
            } => format!("{role_id}:{session_name}"),
        }
    }
}

/// Credentials found for an access key id, ready to verify a signature with.
#[derive(Debug, Clone)]
pub struct Credential {
    /// Access key id (`AKIA...` or `ASIA...`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret: SecretString,
    /// Who the key belongs to.
    pub principal: Principal,
    /// Active or Inactive (temporary credentials are always Active).
    pub status: KeyStatus,
    /// Expiry of temporary credentials.
    pub expiration: Option<OffsetDateTime>,
    /// SHA-256 (hex) of the session token that must accompany temporary credentials.
    pub session_token_sha256: Option<String>,
    /// Session policy of temporary credentials.
    pub session_policy: Option<String>,
    /// The stored secret is in clear text or sealed under an older key: re-seal it.
    pub needs_reseal: bool,
}

impl Credential {
    /// Whether these are temporary credentials.
    pub fn is_temporary(&self) -> bool {
        self.session_token_sha256.is_some()
    }

    /// Checks the `X-Amz-Security-Token` presented with a request against these credentials:
    /// temporary credentials need their token, long-term keys must come without one.
    /// Compared in constant time.
    pub fn check_session_token(&self, presented: Option<&str>) -> bool {
        match (&self.session_token_sha256, presented) {
            (None, None) => true,
            (Some(expected), Some(token)) => {
                let got = session_token_digest(token);
                expected.as_bytes().ct_eq(got.as_bytes()).into()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn names() {
        assert!(validate_name(EntityKind::User, "admin").is_ok());
        assert!(validate_name(EntityKind::User, "a+b=c,d.e@f-g_h").is_ok());
        assert!(validate_name(EntityKind::User, &"a".repeat(64)).is_ok());
        assert!(validate_name(EntityKind::User, &"a".repeat(65)).is_err());
        assert!(validate_name(EntityKind::Group, &"a".repeat(128)).is_ok());
        assert!(validate_name(EntityKind::Group, &"a".repeat(129)).is_err());
        assert!(validate_name(EntityKind::Role, &"a".repeat(65)).is_err());
        assert!(validate_name(EntityKind::Policy, &"a".repeat(128)).is_ok());
        for bad in ["", "a b", "a/b", "a:b", "é", "a*"] {
            let err = validate_name(EntityKind::User, bad).expect_err(bad);
            assert_eq!(err.code(), "ValidationError");
        }
    }

    #[test]
    fn paths() {
        for ok in ["/", "/a/", "/division_abc/subdivision_xyz/", "/!~/"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        // The inner part of a path needs at least one character, so "//" is refused.
        for bad in ["", "a", "/a", "a/", "//", "//x", "/a b/", "/\u{e9}/"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        assert!(validate_path(&format!("/{}/", "a".repeat(510))).is_ok());
        assert!(validate_path(&format!("/{}/", "a".repeat(511))).is_err());
    }

    #[test]
    fn ids_and_keys() {
        let mut rng = StdRng::seed_from_u64(7);
        for kind in [
            EntityKind::User,
            EntityKind::Group,
            EntityKind::Role,
            EntityKind::Policy,
        ] {
            let id = generate_unique_id(kind, &mut rng);
            assert!(is_valid_unique_id(kind, &id), "{id}");
        }
        let akid = generate_access_key_id(&mut rng);
        assert!(akid.starts_with("AKIA") && is_valid_access_key_id(&akid));
        let asia = generate_temporary_key_id(&mut rng);
        assert!(asia.starts_with("ASIA") && is_valid_access_key_id(&asia));
        let secret = generate_secret_access_key(&mut rng);
        assert_eq!(secret.len(), 40);
        assert_ne!(secret, generate_secret_access_key(&mut rng));
        let derived = derived_unique_id(EntityKind::User, "arn:aws:iam::000000000000:user/admin");
        assert!(is_valid_unique_id(EntityKind::User, &derived));
        assert_eq!(
            derived,
            derived_unique_id(EntityKind::User, "arn:aws:iam::000000000000:user/admin")
        );
    }

    #[test]
    fn arns() {
        assert_eq!(
            arn(DEFAULT_ACCOUNT_ID, EntityKind::User, "/", "admin"),
            "arn:aws:iam::000000000000:user/admin"
        );
        assert_eq!(
            arn("123456789012", EntityKind::Role, "/svc/", "r"),
            "arn:aws:iam::123456789012:role/svc/r"
        );
        let p = parse_arn("arn:aws:iam::123456789012:policy/a/b/P1").expect("parses");
        assert_eq!(
            p,
            ParsedArn {
                account_id: "123456789012".into(),
                kind: EntityKind::Policy,
                path: "/a/b/".into(),
                name: "P1".into()
            }
        );
        assert_eq!(
            parse_arn("arn:aws:iam::000000000000:user/admin").map(|p| p.name),
            Some("admin".into())
        );
        for bad in [
            "",
            "arn:aws:iam::1:user/x",
            "arn:aws:iam::000000000000:thing/x",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::000000000000:user/",
        ] {
            assert!(parse_arn(bad).is_none(), "{bad}");
        }
        assert_eq!(
            assumed_role_arn("000000000000", "r", "s"),
            "arn:aws:sts::000000000000:assumed-role/r/s"
        );
    }

    #[test]
    fn tags() {
        let t = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        assert!(validate_tags(&[t("env", "prod"), t("team", "")]).is_ok());
        assert!(validate_tags(&[t("", "x")]).is_err());
        assert!(validate_tags(&[t(&"k".repeat(129), "x")]).is_err());
        assert!(validate_tags(&[t("k", &"v".repeat(257))]).is_err());
        assert!(validate_tags(&[t("aws:x", "v")]).is_err());
        assert!(validate_tags(&[t("a", "1"), t("A", "2")]).is_err());
        let many: Vec<Tag> = (0..51).map(|i| t(&format!("k{i}"), "v")).collect();
        assert_eq!(
            validate_tags(&many).expect_err("51 tags").code(),
            "LimitExceeded"
        );
        let merged = merge_tags(&[t("a", "1"), t("b", "2")], &[t("A", "3")]).expect("merge");
        assert_eq!(merged, vec![t("b", "2"), t("A", "3")]);
    }

    #[test]
    fn misc_limits() {
        assert!(validate_max_session_duration(3600).is_ok());
        assert!(validate_max_session_duration(43_200).is_ok());
        assert!(validate_max_session_duration(3599).is_err());
        assert!(validate_max_session_duration(43_201).is_err());
        assert!(validate_account_id("000000000000").is_ok());
        assert!(validate_account_id("00000000000a").is_err());
        assert_eq!(KeyStatus::parse("Active").expect("ok"), KeyStatus::Active);
        assert!(KeyStatus::parse("active").is_err());
    }

    #[test]
    fn guide_records_load() {
        let user: UserRecord = serde_json::from_str(
            r#"{"username":"admin","arn":"arn:aws:iam::000000000000:user/admin",
                "created_at":"2024-01-01T00:00:00Z","groups":["administrators"],
                "policies":[],"access_keys":["AKIAIOSFODNN7EXAMPLE"]}"#,
        )
        .expect("guide user record");
        assert_eq!(user.path, "/");
        assert_eq!(user.account_id, DEFAULT_ACCOUNT_ID);
        let key: AccessKeyRecord = serde_json::from_str(
            r#"{"access_key_id":"AKIAIOSFODNN7EXAMPLE","username":"admin",
                "secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "status":"Active","created_at":"2024-01-01T00:00:00Z"}"#,
        )
        .expect("guide key record");
        assert_eq!(key.status, KeyStatus::Active);
        let shown = format!("{key:?}");
        assert!(!shown.contains("wJalr"), "{shown}");
        assert_eq!(
            key.secret_access_key.as_ref().map(SecretString::expose),
            Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        );
        let json = serde_json::to_value(&user).expect("serialize");
        for field in [
            "username",
            "arn",
            "created_at",
            "groups",
            "policies",
            "access_keys",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
    }

    #[test]
    fn session_token_check() {
        let cred = Credential {
            access_key_id: "ASIAXXXXXXXXXXXXXXXX".into(),
            secret: SecretString::new("s"),
            principal: Principal::Root {
                account_id: DEFAULT_ACCOUNT_ID.into(),
            },
            status: KeyStatus::Active,
            expiration: None,
            session_token_sha256: Some(session_token_digest("tok")),
            session_policy: None,
            needs_reseal: false,
        };
        assert!(cred.check_session_token(Some("tok")));
        assert!(!cred.check_session_token(Some("tok2")));
        assert!(!cred.check_session_token(None));
        let long_term = Credential {
            session_token_sha256: None,
            ..cred
        };
        assert!(long_term.check_session_token(None));
        assert!(!long_term.check_session_token(Some("tok")));
        assert!(!format!("{long_term:?}").contains("\"s\""));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn name_validation_matches_pattern(name in "[\\PC]{0,70}") {
            let expected = !name.is_empty()
                && name.chars().count() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
            prop_assert_eq!(validate_name(EntityKind::User, &name).is_ok(), expected);
        }

        #[test]
        fn valid_names_always_accepted(name in "[A-Za-z0-9_+=,.@-]{1,64}") {
            prop_assert!(validate_name(EntityKind::User, &name).is_ok());
            prop_assert!(validate_name(EntityKind::Group, &name).is_ok());
        }

        #[test]
        fn path_validation_matches_pattern(path in "[\\x20-\\x7f/]{0,20}") {
            let expected = path == "/"
                || (path.len() >= 3 && path.starts_with('/') && path.ends_with('/')
                    && path.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            prop_assert_eq!(validate_path(&path).is_ok(), expected);
        }

        #[test]
        fn unique_ids_valid(seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            for kind in [EntityKind::User, EntityKind::Group, EntityKind::Role, EntityKind::Policy] {
                let id = generate_unique_id(kind, &mut rng);
                prop_assert!(is_valid_unique_id(kind, &id));
            }
            prop_assert!(is_valid_access_key_id(&generate_access_key_id(&mut rng)));
        }

        #[test]
        fn arn_roundtrip(name in "[A-Za-z0-9_+=,.@-]{1,64}", path in "(/|/[a-z]{1,8}/)") {
            let a = arn(DEFAULT_ACCOUNT_ID, EntityKind::Role, &path, &name);
            let parsed = parse_arn(&a).expect("own ARNs parse");
            prop_assert_eq!(parsed.name, name);
            prop_assert_eq!(parsed.path, path);
        }
    }
}
