//! The identity repository: IAM entities stored in the setup guide's KV buckets through the
//! `hive-kv` port, with AWS's referential rules.
//!
//! ## Layout
//!
//! | bucket (default name) | key | value |
//! |---|---|---|
//! | `hive-iam-users` | `<account>.user.<name>` | [`UserRecord`] |
//! | `hive-iam-users` | `<account>.group.<name>` | [`GroupRecord`] (groups share the users bucket) |
//! | `hive-iam-users` | `<account>.bootstrap` | bootstrap claim, then done marker (`bootstrap` module) |
//! | `hive-iam-roles` | `<account>.role.<name>` | [`RoleRecord`] |
//! | `hive-iam-policies` | `<account>.policy.<name>` | [`PolicyRecord`] |
//! | `hive-iam-access-keys` | `<access key id>` | [`AccessKeyRecord`] |
//! | `hive-iam-sessions` | `<access key id>` | [`SessionRecord`] (TTL one hour) |
//!
//! `<name>` is the lower-cased name escaped with [`hive_kv::encode_key_segment`]: names are unique
//! case-insensitively within an account because `create` on that key fails when any spelling
//! exists, and lookups are case-insensitive as in IAM. Records keep the name as written. A user
//! record written by hand per the guide under the bare key `<name>` is still found (default
//! account only).
//!
//! ## Consistency
//!
//! Every read-modify-write is a compare-and-swap with bounded retry, and deletions happen at the
//! revision that was checked. Relations that span two records are written in the order that
//! fails closed: the side that grants access is written last and removed first. A user's
//! `groups` and an entity's `policies` are authoritative for authorization; a group's `members`
//! and a policy's `attachments` guard deletion (`DeleteConflict`) and serve listings. A new access
//! key is reserved in the user record before its key record exists, and credential lookups
//! require both, so an interrupted write can leave a dangling reference but never a key that
//! authenticates without its user.

mod accounts;
mod bootstrap;
pub mod buckets;
mod import;
mod policy_usage;

pub use policy_usage::{PolicyEntity, PolicyUsage};

pub use bootstrap::{BootstrapClaim, BootstrapOutcome, BootstrapStep};
pub use hive_iam::policy::{
    CompiledEffective, EffectivePolicies, SourcedPolicy, StoredPolicyError,
};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::buckets::{IamBucketNames, IamBuckets};
use hive_kv::{Bucket, KvError, KvStore, TypedBucket, encode_key_segment};
use rand::rngs::OsRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use hive_iam::error::{IamError, Result, StorageFault};
use hive_iam::identity::{
    AccessKeyRecord, Credential, DEFAULT_ACCOUNT_ID, EntityKind, GroupRecord, KeyStatus, LastUsed,
    MAX_ACCESS_KEYS_PER_USER, MAX_ATTACHED_POLICIES, MAX_POLICY_VERSIONS, PolicyRecord,
    PolicyVersion, Principal, RoleRecord, SessionRecord, Tag, UserRecord, arn, derived_unique_id,
    generate_access_key_id, generate_secret_access_key, generate_session_token,
    generate_temporary_key_id, generate_unique_id, merge_tags, normalize_name, parse_arn,
    session_token_digest, validate_account_id, validate_max_session_duration, validate_name,
    validate_path, validate_tags,
};
use hive_iam::policy::{PolicyDocument, PolicyKind, SizeLimit, validate_size};
use hive_iam::seal::{Keyring, SecretString};

/// Compare-and-swap attempts before giving up with `ConcurrentModification`.
pub const CAS_RETRIES: u32 = 64;
/// Name of the bootstrap administrator.
pub const ADMIN_USER: &str = "admin";
/// Name of the bootstrap administrators group.
pub const ADMIN_GROUP: &str = "administrators";
/// Name of the bootstrap policy.
pub const ADMIN_POLICY: &str = "AdministratorAccess";
/// The bootstrap policy: Allow `*` on `*`.
pub const ADMIN_POLICY_DOCUMENT: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
/// Shortest session AWS STS grants, in seconds.
pub const MIN_SESSION_SECONDS: u32 = 900;
/// A key's last-used time is rewritten at most this often for the same service and region.
const LAST_USED_GRANULARITY: time::Duration = time::Duration::seconds(60);

/// A user, group or role, for operations that apply to all three (policies, inline policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A user, by name.
    User(String),
    /// A group, by name.
    Group(String),
    /// A role, by name.
    Role(String),
}

impl Target {
    fn kind(&self) -> EntityKind {
        match self {
            Self::User(_) => EntityKind::User,
            Self::Group(_) => EntityKind::Group,
            Self::Role(_) => EntityKind::Role,
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::User(n) | Self::Group(n) | Self::Role(n) => n,
        }
    }
}

/// A managed policy attached to an entity, as `ListAttached*Policies` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPolicy {
    /// Policy name.
    pub policy_name: String,
    /// Policy ARN.
    pub policy_arn: String,
}

/// A new access key, with its secret (shown once).
#[derive(Debug, Clone)]
pub struct NewAccessKey {
    /// The stored record (its secret sealed).
    pub record: AccessKeyRecord,
    /// The secret access key.
    pub secret_access_key: SecretString,
}

/// New temporary credentials.
#[derive(Debug, Clone)]
pub struct TemporaryCredentials {
    /// `ASIA...`.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretString,
    /// The session token to send as `X-Amz-Security-Token`.
    pub session_token: SecretString,
    /// Expiry.
    pub expiration: OffsetDateTime,
    /// Who the credentials act as.
    pub principal: Principal,
}

/// A storage failure as the identity core names it: this crate owns the mapping. What may
/// succeed on a retry (unreachable, not there yet, contention) is transient.
pub fn storage_error(e: KvError) -> IamError {
    let transient = matches!(
        e,
        KvError::Unavailable(_)
            | KvError::BucketNotFound(_)
            | KvError::RevisionConflict { .. }
            | KvError::AlreadyExists { .. }
    );
    IamError::Storage(StorageFault {
        transient,
        message: e.to_string(),
    })
}

/// What a read-modify-write through [`TypedBucket::update_with`] can fail with.
enum Failed {
    Kv(KvError),
    Iam(IamError),
}

impl From<KvError> for Failed {
    fn from(e: KvError) -> Self {
        Self::Kv(e)
    }
}

/// Records that can carry managed-policy attachments and inline policies.
trait PolicyHolder {
    fn attached_mut(&mut self) -> &mut Vec<String>;
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String>;
    fn boundary_mut(&mut self) -> Option<&mut Option<String>>;
}

impl PolicyHolder for UserRecord {
    fn attached_mut(&mut self) -> &mut Vec<String> {
        &mut self.policies
    }
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.inline_policies
    }
    fn boundary_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.permissions_boundary)
    }
}

impl PolicyHolder for GroupRecord {
    fn attached_mut(&mut self) -> &mut Vec<String> {
        &mut self.policies
    }
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.inline_policies
    }
    fn boundary_mut(&mut self) -> Option<&mut Option<String>> {
        None
    }
}

impl PolicyHolder for RoleRecord {
    fn attached_mut(&mut self) -> &mut Vec<String> {
        &mut self.policies
    }
    fn inline_mut(&mut self) -> &mut BTreeMap<String, String> {
        &mut self.inline_policies
    }
    fn boundary_mut(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.permissions_boundary)
    }
}

fn entity_key(account_id: &str, kind: EntityKind, name: &str) -> String {
    format!(
        "{account_id}.{}.{}",
        kind.arn_type(),
        encode_key_segment(&normalize_name(name))
    )
}

fn no_such(kind: EntityKind, name: &str) -> IamError {
    match kind {
        EntityKind::Policy => IamError::NoSuchEntity(format!("Policy {name} was not found.")),
        _ => IamError::NoSuchEntity(format!("The {kind} with name {name} cannot be found.")),
    }
}

fn already_exists(kind: EntityKind, name: &str) -> IamError {
    let noun = match kind {
        EntityKind::User => "User",
        EntityKind::Group => "Group",
        EntityKind::Role => "Role",
        EntityKind::Policy => "A policy called",
    };
    match kind {
        EntityKind::Policy => IamError::EntityAlreadyExists(format!(
            "{noun} {name} already exists. Duplicate names are not allowed."
        )),
        _ => IamError::EntityAlreadyExists(format!("{noun} with name {name} already exists.")),
    }
}

/// Policy references in hand-written records may be plain names: read them as ARNs of
/// policies in the record's account.
fn normalize_policy_refs(account_id: &str, refs: &mut Vec<String>) {
    for r in refs.iter_mut() {
        if !r.starts_with("arn:") {
            *r = arn(account_id, EntityKind::Policy, "/", r);
        }
    }
    refs.dedup();
}

fn check_identity_document(text: &str, limit: SizeLimit) -> Result<()> {
    validate_size(text, limit)?;
    PolicyDocument::parse(text, PolicyKind::Identity)?;
    Ok(())
}

fn check_path(path: Option<&str>) -> Result<String> {
    let path = path.unwrap_or("/");
    validate_path(path)?;
    Ok(path.to_owned())
}

fn new_id(kind: EntityKind) -> String {
    generate_unique_id(kind, &mut OsRng)
}

/// The identity repository. Cheap to clone; all state lives in the buckets.
#[derive(Clone)]
pub struct IamRepo {
    users: TypedBucket<UserRecord>,
    groups: TypedBucket<GroupRecord>,
    users_raw: Arc<dyn Bucket>,
    roles: TypedBucket<RoleRecord>,
    policies: TypedBucket<PolicyRecord>,
    keys: TypedBucket<AccessKeyRecord>,
    sessions: TypedBucket<SessionRecord>,
    keyring: Keyring,
}

impl std::fmt::Debug for IamRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamRepo")
            .field("users", &self.users_raw.name())
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// What a `Tag*` or `Untag*` action does to a tag list.
#[derive(Clone, Copy)]
enum TagChange<'a> {
    /// Adds these tags, replacing those with the same keys (case-insensitively).
    Set(&'a [Tag]),
    /// Removes the tags with these keys (case-insensitively); absent keys are ignored, as on AWS.
    Remove(&'a [String]),
}

impl IamRepo {
    /// A repository over opened buckets; secrets are sealed with `keyring`.
    pub fn new(buckets: IamBuckets, keyring: Keyring) -> Self {
        Self {
            users: TypedBucket::new(buckets.users.clone()).with_retries(CAS_RETRIES),
            groups: TypedBucket::new(buckets.users.clone()).with_retries(CAS_RETRIES),
            users_raw: buckets.users,
            roles: TypedBucket::new(buckets.roles).with_retries(CAS_RETRIES),
            policies: TypedBucket::new(buckets.policies).with_retries(CAS_RETRIES),
            keys: TypedBucket::new(buckets.access_keys).with_retries(CAS_RETRIES),
            sessions: TypedBucket::new(buckets.sessions).with_retries(CAS_RETRIES),
            keyring,
        }
    }

    /// Creates or opens the five buckets in `store` and returns a repository over them.
    pub async fn open(
        store: &dyn KvStore,
        names: &IamBucketNames,
        keyring: Keyring,
    ) -> Result<Self> {
        let buckets = names.open_all(store, 1).await.map_err(storage_error)?;
        Ok(Self::new(buckets, keyring))
    }

    /// The keyring sealing secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    // ----- generic helpers -------------------------------------------------------------

    /// Read-modify-write of an existing record with compare-and-swap and retry.
    async fn modify<T, F>(
        bucket: &TypedBucket<T>,
        key: &str,
        missing: impl Fn() -> IamError + Send + Sync,
        mut change: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnMut(&mut T) -> Result<()> + Send,
    {
        let written = bucket
            .update_with(key, |current: Option<T>| match current {
                None => Err(Failed::Iam(missing())),
                Some(mut value) => {
                    change(&mut value).map_err(Failed::Iam)?;
                    Ok(value)
                }
            })
            .await;
        match written {
            Ok(v) => Ok(v.value),
            Err(Failed::Kv(KvError::RevisionConflict { .. })) => {
                Err(IamError::ConcurrentModification(format!(
                    "Too many concurrent changes to {key}; try again."
                )))
            }
            Err(Failed::Kv(e)) => Err(storage_error(e)),
            Err(Failed::Iam(e)) => Err(e),
        }
    }

    /// Deletes a record at the revision `check` approved.
    async fn delete_checked<T>(
        bucket: &TypedBucket<T>,
        key: &str,
        missing: impl Fn() -> IamError,
        check: impl Fn(&T) -> Result<()>,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
    {
        for _ in 0..CAS_RETRIES {
            let current = bucket
                .get(key)
                .await
                .map_err(storage_error)?
                .ok_or_else(&missing)?;
            check(&current.value)?;
            match bucket.delete(key, Some(current.revision)).await {
                Ok(()) => return Ok(current.value),
                Err(KvError::RevisionConflict { .. }) => continue,
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(IamError::ConcurrentModification(format!(
            "Too many concurrent changes to {key}; try again."
        )))
    }

    async fn create_record<T>(
        bucket: &TypedBucket<T>,
        key: &str,
        value: &T,
        kind: EntityKind,
        name: &str,
    ) -> Result<()>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
    {
        match bucket.create(key, value).await {
            Ok(_) => Ok(()),
            Err(KvError::AlreadyExists { .. }) => Err(already_exists(kind, name)),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// The `List*` actions: every record of one kind in an account whose path starts with
    /// `path_prefix` (default `/`).
    async fn list_by_path<T>(
        bucket: &TypedBucket<T>,
        account_id: &str,
        kind: EntityKind,
        path_prefix: Option<&str>,
        path: fn(&T) -> &str,
    ) -> Result<Vec<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
    {
        validate_account_id(account_id)?;
        let key_prefix = format!("{account_id}.{}.", kind.arn_type());
        let path_prefix = path_prefix.unwrap_or("/");
        Ok(bucket
            .list(Some(&key_prefix))
            .await
            .map_err(storage_error)?
            .into_iter()
            .map(|(_, v)| v.value)
            .filter(|record| path(record).starts_with(path_prefix))
            .collect())
    }

    /// The `Get*` actions for groups and roles: the record under its name, or `NoSuchEntity`.
    async fn get_named<T>(
        bucket: &TypedBucket<T>,
        account_id: &str,
        kind: EntityKind,
        name: &str,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
    {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, kind, name);
        bucket
            .get(&key)
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
            .ok_or_else(|| no_such(kind, name))
    }

    /// The `Tag*` and `Untag*` actions for users and roles: changes the tag list of the named
    /// record in one compare-and-set write (`NoSuchEntity` when absent).
    async fn change_tags<T>(
        bucket: &TypedBucket<T>,
        (account_id, kind, name): (&str, EntityKind, &str),
        tags_of: fn(&mut T) -> &mut Vec<Tag>,
        change: TagChange<'_>,
    ) -> Result<()>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
    {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, kind, name);
        Self::modify(
            bucket,
            &key,
            || no_such(kind, name),
            |record| {
                let tags = tags_of(record);
                match change {
                    TagChange::Set(new) => *tags = merge_tags(tags, new)?,
                    TagChange::Remove(keys) => {
                        tags.retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
                    }
                }
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// Applies `change` to the user, group or role named by `target`; returns its ARN.
    async fn modify_holder<F>(
        &self,
        account_id: &str,
        target: &Target,
        mut change: F,
    ) -> Result<String>
    where
        F: FnMut(&mut dyn PolicyHolder) -> Result<()> + Send,
    {
        validate_account_id(account_id)?;
        let kind = target.kind();
        let name = target.name();
        let key = entity_key(account_id, kind, name);
        let missing = || no_such(kind, name);
        match target {
            Target::User(_) => Self::modify(&self.users, &key, missing, |r| {
                normalize_policy_refs(account_id, &mut r.policies);
                change(r)
            })
            .await
            .map(|r| r.arn),
            Target::Group(_) => Self::modify(&self.groups, &key, missing, |r| change(r))
                .await
                .map(|r| r.arn),
            Target::Role(_) => Self::modify(&self.roles, &key, missing, |r| change(r))
                .await
                .map(|r| r.arn),
        }
    }

    // ----- users ------------------------------------------------------------------------

    /// `CreateUser`.
    pub async fn create_user(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
        tags: Vec<Tag>,
    ) -> Result<UserRecord> {
        self.create_user_record(account_id, name, path, tags, None)
            .await
    }

    /// `CreateUser`, with or without a permissions boundary (an existing policy's ARN): the
    /// user is written in one record, so it never exists without its boundary.
    async fn create_user_record(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
        tags: Vec<Tag>,
        permissions_boundary: Option<&str>,
    ) -> Result<UserRecord> {
        validate_account_id(account_id)?;
        validate_name(EntityKind::User, name)?;
        let path = check_path(path)?;
        validate_tags(&tags)?;
        let permissions_boundary = match permissions_boundary {
            Some(boundary) => Some(self.get_policy(boundary).await?.arn),
            None => None,
        };
        let record = UserRecord {
            username: name.to_owned(),
            arn: arn(account_id, EntityKind::User, &path, name),
            created_at: OffsetDateTime::now_utc(),
            groups: Vec::new(),
            policies: Vec::new(),
            access_keys: Vec::new(),
            user_id: new_id(EntityKind::User),
            account_id: account_id.to_owned(),
            path,
            tags,
            permissions_boundary,
            inline_policies: BTreeMap::new(),
            login_profile: None,
        };
        let key = entity_key(account_id, EntityKind::User, name);
        Self::create_record(&self.users, &key, &record, EntityKind::User, name).await?;
        Ok(record)
    }

    /// `GetUser` (case-insensitive). Fills in what hand-written records leave out.
    pub async fn get_user(&self, account_id: &str, name: &str) -> Result<UserRecord> {
        self.find_user(account_id, name)
            .await?
            .ok_or_else(|| no_such(EntityKind::User, name))
    }

    async fn find_user(&self, account_id: &str, name: &str) -> Result<Option<UserRecord>> {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, EntityKind::User, name);
        let mut found = self
            .users
            .get(&key)
            .await
            .map_err(storage_error)?
            .map(|v| v.value);
        if found.is_none() && account_id == DEFAULT_ACCOUNT_ID {
            // The setup guide's hand-written layout: the bare user name as key.
            if hive_kv::validate_key(name).is_ok() {
                found = self.users.get(name).await.ok().flatten().map(|v| v.value);
            }
        }
        Ok(found.map(|mut u| {
            if u.user_id.is_empty() {
                u.user_id = derived_unique_id(EntityKind::User, &u.arn);
            }
            normalize_policy_refs(&u.account_id.clone(), &mut u.policies);
            u
        }))
    }

    /// `ListUsers`, filtered by path prefix.
    pub async fn list_users(
        &self,
        account_id: &str,
        path_prefix: Option<&str>,
    ) -> Result<Vec<UserRecord>> {
        Self::list_by_path(
            &self.users,
            account_id,
            EntityKind::User,
            path_prefix,
            |u: &UserRecord| &u.path,
        )
        .await
    }

    /// `DeleteUser`: refused while the user has access keys, policies or group memberships.
    pub async fn delete_user(&self, account_id: &str, name: &str) -> Result<()> {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, EntityKind::User, name);
        Self::delete_checked(
            &self.users,
            &key,
            || no_such(EntityKind::User, name),
            |u: &UserRecord| {
                let reason = if !u.access_keys.is_empty() {
                    Some("must delete access keys first")
                } else if !u.inline_policies.is_empty() {
                    Some("must delete policies first")
                } else if !u.policies.is_empty() {
                    Some("must detach all policies first")
                } else if !u.groups.is_empty() {
                    Some("must remove user from all groups first")
                } else if u.login_profile.is_some() {
                    Some("must delete login profile first")
                } else {
                    None
                };
                match reason {
                    Some(r) => Err(IamError::DeleteConflict(format!(
                        "Cannot delete entity, {r}."
                    ))),
                    None => Ok(()),
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// `TagUser`.
    pub async fn tag_user(&self, account_id: &str, name: &str, tags: &[Tag]) -> Result<()> {
        let named = (account_id, EntityKind::User, name);
        Self::change_tags(&self.users, named, |u| &mut u.tags, TagChange::Set(tags)).await
    }

    /// `UntagUser`.
    pub async fn untag_user(&self, account_id: &str, name: &str, keys: &[String]) -> Result<()> {
        let named = (account_id, EntityKind::User, name);
        Self::change_tags(&self.users, named, |u| &mut u.tags, TagChange::Remove(keys)).await
    }

    // ----- groups -----------------------------------------------------------------------

    /// `CreateGroup`.
    pub async fn create_group(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
    ) -> Result<GroupRecord> {
        validate_account_id(account_id)?;
        validate_name(EntityKind::Group, name)?;
        let path = check_path(path)?;
        let record = GroupRecord {
            group_name: name.to_owned(),
            arn: arn(account_id, EntityKind::Group, &path, name),
            created_at: OffsetDateTime::now_utc(),
            group_id: new_id(EntityKind::Group),
            account_id: account_id.to_owned(),
            path,
            policies: Vec::new(),
            inline_policies: BTreeMap::new(),
            members: Vec::new(),
        };
        let key = entity_key(account_id, EntityKind::Group, name);
        Self::create_record(&self.groups, &key, &record, EntityKind::Group, name).await?;
        Ok(record)
    }

    /// `GetGroup` (the record; its `members` list names the users).
    pub async fn get_group(&self, account_id: &str, name: &str) -> Result<GroupRecord> {
        Self::get_named(&self.groups, account_id, EntityKind::Group, name).await
    }

    /// `ListGroups`, filtered by path prefix.
    pub async fn list_groups(
        &self,
        account_id: &str,
        path_prefix: Option<&str>,
    ) -> Result<Vec<GroupRecord>> {
        Self::list_by_path(
            &self.groups,
            account_id,
            EntityKind::Group,
            path_prefix,
            |g: &GroupRecord| &g.path,
        )
        .await
    }

    /// `DeleteGroup`: refused while it has members, attached or inline policies.
    pub async fn delete_group(&self, account_id: &str, name: &str) -> Result<()> {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, EntityKind::Group, name);
        Self::delete_checked(
            &self.groups,
            &key,
            || no_such(EntityKind::Group, name),
            |g: &GroupRecord| {
                let reason = if !g.members.is_empty() {
                    Some("must remove users from group first")
                } else if !g.inline_policies.is_empty() {
                    Some("must delete policies first")
                } else if !g.policies.is_empty() {
                    Some("must detach all policies first")
                } else {
                    None
                };
                match reason {
                    Some(r) => Err(IamError::DeleteConflict(format!(
                        "Cannot delete entity, {r}."
                    ))),
                    None => Ok(()),
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// `AddUserToGroup` (idempotent). The group lists the member first; the user record,
    /// which grants the group's permissions, is written last.
    pub async fn add_user_to_group(&self, account_id: &str, group: &str, user: &str) -> Result<()> {
        validate_account_id(account_id)?;
        let user_record = self.get_user(account_id, user).await?;
        let username = user_record.username.clone();
        let gkey = entity_key(account_id, EntityKind::Group, group);
        let group_record = Self::modify(
            &self.groups,
            &gkey,
            || no_such(EntityKind::Group, group),
            |g| {
                if !g.members.iter().any(|m| m.eq_ignore_ascii_case(&username)) {
                    g.members.push(username.clone());
                }
                Ok(())
            },
        )
        .await?;
        let group_name = group_record.group_name.clone();
        let ukey = entity_key(account_id, EntityKind::User, user);
        let added = Self::modify(
            &self.users,
            &ukey,
            || no_such(EntityKind::User, user),
            |u| {
                if !u.groups.iter().any(|g| g.eq_ignore_ascii_case(&group_name)) {
                    u.groups.push(group_name.clone());
                }
                Ok(())
            },
        )
        .await;
        if let Err(e) = added {
            // The user vanished meanwhile: take the member back out of the group.
            let _ = Self::modify(
                &self.groups,
                &gkey,
                || no_such(EntityKind::Group, group),
                |g| {
                    g.members.retain(|m| !m.eq_ignore_ascii_case(&username));
                    Ok(())
                },
            )
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// `RemoveUserFromGroup`. The user record loses the group first.
    pub async fn remove_user_from_group(
        &self,
        account_id: &str,
        group: &str,
        user: &str,
    ) -> Result<()> {
        validate_account_id(account_id)?;
        let group_record = self.get_group(account_id, group).await?;
        let ukey = entity_key(account_id, EntityKind::User, user);
        let mut was_member = false;
        let user_record = Self::modify(
            &self.users,
            &ukey,
            || no_such(EntityKind::User, user),
            |u| {
                let before = u.groups.len();
                u.groups
                    .retain(|g| !g.eq_ignore_ascii_case(&group_record.group_name));
                was_member = before != u.groups.len();
                Ok(())
            },
        )
        .await?;
        let gkey = entity_key(account_id, EntityKind::Group, group);
        let mut listed = false;
        Self::modify(
            &self.groups,
            &gkey,
            || no_such(EntityKind::Group, group),
            |g| {
                let before = g.members.len();
                g.members
                    .retain(|m| !m.eq_ignore_ascii_case(&user_record.username));
                listed = before != g.members.len();
                Ok(())
            },
        )
        .await?;
        if !was_member && !listed {
            return Err(IamError::NoSuchEntity(format!(
                "User {user} is not in group {group}."
            )));
        }
        Ok(())
    }

    /// `ListGroupsForUser`.
    pub async fn list_groups_for_user(
        &self,
        account_id: &str,
        user: &str,
    ) -> Result<Vec<GroupRecord>> {
        let u = self.get_user(account_id, user).await?;
        let mut out = Vec::new();
        for g in &u.groups {
            if let Ok(group) = self.get_group(account_id, g).await {
                out.push(group);
            }
        }
        Ok(out)
    }

    // ----- roles ------------------------------------------------------------------------

    /// `CreateRole`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_role(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
        assume_role_policy_document: &str,
        description: Option<&str>,
        max_session_duration: Option<u32>,
        tags: Vec<Tag>,
    ) -> Result<RoleRecord> {
        validate_account_id(account_id)?;
        validate_name(EntityKind::Role, name)?;
        let path = check_path(path)?;
        validate_tags(&tags)?;
        let max_session_duration = max_session_duration.unwrap_or(3600);
        validate_max_session_duration(max_session_duration)?;
        validate_size(assume_role_policy_document, SizeLimit::TrustPolicy)?;
        PolicyDocument::parse(assume_role_policy_document, PolicyKind::Trust)?;
        if description.is_some_and(|d| d.chars().count() > 1000) {
            return Err(IamError::Validation(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".into(),
            ));
        }
        let record = RoleRecord {
            role_name: name.to_owned(),
            arn: arn(account_id, EntityKind::Role, &path, name),
            created_at: OffsetDateTime::now_utc(),
            role_id: new_id(EntityKind::Role),
            account_id: account_id.to_owned(),
            path,
            assume_role_policy_document: assume_role_policy_document.to_owned(),
            description: description.map(str::to_owned),
            max_session_duration,
            policies: Vec::new(),
            inline_policies: BTreeMap::new(),
            permissions_boundary: None,
            tags,
        };
        let key = entity_key(account_id, EntityKind::Role, name);
        Self::create_record(&self.roles, &key, &record, EntityKind::Role, name).await?;
        Ok(record)
    }

    /// `GetRole`.
    pub async fn get_role(&self, account_id: &str, name: &str) -> Result<RoleRecord> {
        Self::get_named(&self.roles, account_id, EntityKind::Role, name).await
    }

    /// `ListRoles`, filtered by path prefix.
    pub async fn list_roles(
        &self,
        account_id: &str,
        path_prefix: Option<&str>,
    ) -> Result<Vec<RoleRecord>> {
        Self::list_by_path(
            &self.roles,
            account_id,
            EntityKind::Role,
            path_prefix,
            |r: &RoleRecord| &r.path,
        )
        .await
    }

    /// `UpdateAssumeRolePolicy`.
    pub async fn update_assume_role_policy(
        &self,
        account_id: &str,
        name: &str,
        document: &str,
    ) -> Result<()> {
        validate_account_id(account_id)?;
        validate_size(document, SizeLimit::TrustPolicy)?;
        PolicyDocument::parse(document, PolicyKind::Trust)?;
        let key = entity_key(account_id, EntityKind::Role, name);
        Self::modify(
            &self.roles,
            &key,
            || no_such(EntityKind::Role, name),
            |r| {
                r.assume_role_policy_document = document.to_owned();
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// `UpdateRole`: description and maximum session duration.
    pub async fn update_role(
        &self,
        account_id: &str,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<u32>,
    ) -> Result<()> {
        validate_account_id(account_id)?;
        if let Some(d) = max_session_duration {
            validate_max_session_duration(d)?;
        }
        let key = entity_key(account_id, EntityKind::Role, name);
        Self::modify(
            &self.roles,
            &key,
            || no_such(EntityKind::Role, name),
            |r| {
                if let Some(d) = description {
                    r.description = Some(d.to_owned());
                }
                if let Some(m) = max_session_duration {
                    r.max_session_duration = m;
                }
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// `DeleteRole`: refused while it has attached or inline policies.
    pub async fn delete_role(&self, account_id: &str, name: &str) -> Result<()> {
        validate_account_id(account_id)?;
        let key = entity_key(account_id, EntityKind::Role, name);
        Self::delete_checked(
            &self.roles,
            &key,
            || no_such(EntityKind::Role, name),
            |r: &RoleRecord| {
                if !r.inline_policies.is_empty() {
                    Err(IamError::DeleteConflict(
                        "Cannot delete entity, must delete policies first.".into(),
                    ))
                } else if !r.policies.is_empty() {
                    Err(IamError::DeleteConflict(
                        "Cannot delete entity, must detach all policies first.".into(),
                    ))
                } else {
                    Ok(())
                }
            },
        )
        .await
        .map(|_| ())
    }

    // ----- managed policies -------------------------------------------------------------

    fn policy_key_from_arn(policy_arn: &str) -> Result<(String, String)> {
        let parsed = parse_arn(policy_arn)
            .filter(|p| p.kind == EntityKind::Policy)
            .ok_or_else(|| IamError::InvalidInput(format!("ARN {policy_arn} is not valid.")))?;
        Ok((
            entity_key(&parsed.account_id, EntityKind::Policy, &parsed.name),
            parsed.name,
        ))
    }

    /// `CreatePolicy`: version `v1`, the default.
    pub async fn create_policy(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
        document: &str,
        description: Option<&str>,
        tags: Vec<Tag>,
    ) -> Result<PolicyRecord> {
        validate_account_id(account_id)?;
        validate_name(EntityKind::Policy, name)?;
        let path = check_path(path)?;
        validate_tags(&tags)?;
        check_identity_document(document, SizeLimit::Managed)?;
        let now = OffsetDateTime::now_utc();
        let record = PolicyRecord {
            policy_name: name.to_owned(),
            arn: arn(account_id, EntityKind::Policy, &path, name),
            created_at: now,
            updated_at: now,
            policy_id: new_id(EntityKind::Policy),
            account_id: account_id.to_owned(),
            path,
            description: description.map(str::to_owned),
            versions: vec![PolicyVersion {
                version_id: "v1".into(),
                document: document.to_owned(),
                is_default: true,
                created_at: now,
            }],
            next_version: 2,
            attachments: Vec::new(),
            tags,
        };
        let key = entity_key(account_id, EntityKind::Policy, name);
        Self::create_record(&self.policies, &key, &record, EntityKind::Policy, name).await?;
        Ok(record)
    }

    /// `GetPolicy` by ARN.
    pub async fn get_policy(&self, policy_arn: &str) -> Result<PolicyRecord> {
        let (key, _) = Self::policy_key_from_arn(policy_arn)?;
        self.policies
            .get(&key)
            .await
            .map_err(storage_error)?
            .map(|v| v.value)
            .filter(|p| p.arn == policy_arn)
            .ok_or_else(|| no_such(EntityKind::Policy, policy_arn))
    }

    /// `ListPolicies` (customer managed, of one account).
    pub async fn list_policies(
        &self,
        account_id: &str,
        path_prefix: Option<&str>,
    ) -> Result<Vec<PolicyRecord>> {
        Self::list_by_path(
            &self.policies,
            account_id,
            EntityKind::Policy,
            path_prefix,
            |p: &PolicyRecord| &p.path,
        )
        .await
    }

    /// `DeletePolicy`: refused while attached anywhere, used as a permissions boundary, or with
    /// non-default versions.
    pub async fn delete_policy(&self, policy_arn: &str) -> Result<()> {
        let (key, _) = Self::policy_key_from_arn(policy_arn)?;
        // Boundaries are recorded only on the users and roles that use them.
        if self.is_permissions_boundary(policy_arn).await? {
            return Err(IamError::DeleteConflict(
                "Cannot delete a policy attached to entities.".into(),
            ));
        }
        Self::delete_checked(
            &self.policies,
            &key,
            || no_such(EntityKind::Policy, policy_arn),
            |p: &PolicyRecord| {
                if p.arn != policy_arn {
                    Err(no_such(EntityKind::Policy, policy_arn))
                } else if !p.attachments.is_empty() {
                    Err(IamError::DeleteConflict(
                        "Cannot delete a policy attached to entities.".into(),
                    ))
                } else if p.versions.len() > 1 {
                    Err(IamError::DeleteConflict(
                        "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".into(),
                    ))
                } else {
                    Ok(())
                }
            },
        )
        .await
        .map(|_| ())
    }

    async fn modify_policy<F>(&self, policy_arn: &str, mut change: F) -> Result<PolicyRecord>
    where
        F: FnMut(&mut PolicyRecord) -> Result<()> + Send,
    {
        let (key, _) = Self::policy_key_from_arn(policy_arn)?;
        Self::modify(
            &self.policies,
            &key,
            || no_such(EntityKind::Policy, policy_arn),
            |p| {
                if p.arn != policy_arn {
                    return Err(no_such(EntityKind::Policy, policy_arn));
                }
                change(p)
            },
        )
        .await
    }

    /// `CreatePolicyVersion`: at most five versions.
    pub async fn create_policy_version(
        &self,
        policy_arn: &str,
        document: &str,
        set_as_default: bool,
    ) -> Result<PolicyVersion> {
        check_identity_document(document, SizeLimit::Managed)?;
        let mut created = None;
        self.modify_policy(policy_arn, |p| {
            if p.versions.len() >= MAX_POLICY_VERSIONS {
                return Err(IamError::LimitExceeded(format!(
                    "A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new version, you must delete an existing version."
                )));
            }
            let number = p.next_version.max(p.versions.len() as u32 + 1);
            let now = OffsetDateTime::now_utc();
            if set_as_default {
                for v in &mut p.versions {
                    v.is_default = false;
                }
                p.updated_at = now;
            }
            let version = PolicyVersion {
                version_id: format!("v{number}"),
                document: document.to_owned(),
                is_default: set_as_default,
                created_at: now,
            };
            p.versions.push(version.clone());
            p.next_version = number + 1;
            p.check_versions()?;
            created = Some(version);
            Ok(())
        })
        .await?;
        created.ok_or_else(|| IamError::ConcurrentModification("policy version not created".into()))
    }

    /// `GetPolicyVersion`.
    pub async fn get_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<PolicyVersion> {
        let p = self.get_policy(policy_arn).await?;
        p.versions
            .into_iter()
            .find(|v| v.version_id == version_id)
            .ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "Policy {policy_arn} version {version_id} does not exist or is not attachable."
                ))
            })
    }

    /// `SetDefaultPolicyVersion`.
    pub async fn set_default_policy_version(
        &self,
        policy_arn: &str,
        version_id: &str,
    ) -> Result<()> {
        self.modify_policy(policy_arn, |p| {
            if !p.versions.iter().any(|v| v.version_id == version_id) {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {policy_arn} version {version_id} does not exist or is not attachable."
                )));
            }
            for v in &mut p.versions {
                v.is_default = v.version_id == version_id;
            }
            p.updated_at = OffsetDateTime::now_utc();
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// `DeletePolicyVersion`: the default version cannot be deleted.
    pub async fn delete_policy_version(&self, policy_arn: &str, version_id: &str) -> Result<()> {
        self.modify_policy(policy_arn, |p| {
            let Some(i) = p.versions.iter().position(|v| v.version_id == version_id) else {
                return Err(IamError::NoSuchEntity(format!(
                    "Policy {policy_arn} version {version_id} does not exist or is not attachable."
                )));
            };
            if p.versions[i].is_default {
                return Err(IamError::DeleteConflict(
                    "Cannot delete the default version of a policy.".into(),
                ));
            }
            p.versions.remove(i);
            Ok(())
        })
        .await
        .map(|_| ())
    }

    // ----- attachments, inline policies, boundaries ----------------------------------

    /// `AttachUserPolicy` / `AttachGroupPolicy` / `AttachRolePolicy` (idempotent). The policy
    /// records the attachment first; the entity, which grants, is written last.
    pub async fn attach_policy(
        &self,
        account_id: &str,
        target: &Target,
        policy_arn: &str,
    ) -> Result<()> {
        validate_account_id(account_id)?;
        let entity_arn = self.entity_arn(account_id, target).await?;
        let policy = self
            .modify_policy(policy_arn, |p| {
                if !p.attachments.contains(&entity_arn) {
                    p.attachments.push(entity_arn.clone());
                }
                Ok(())
            })
            .await?;
        let policy_arn = policy.arn;
        let attached = self
            .modify_holder(account_id, target, |h| {
                let list = h.attached_mut();
                if list.contains(&policy_arn) {
                    return Ok(());
                }
                if list.len() >= MAX_ATTACHED_POLICIES {
                    return Err(IamError::LimitExceeded(format!(
                        "Cannot exceed quota for PoliciesPerUser: {MAX_ATTACHED_POLICIES}"
                    )));
                }
                list.push(policy_arn.clone());
                Ok(())
            })
            .await;
        if let Err(e) = attached {
            // Undo the attachment record unless the entity already had the policy.
            let still = self.attached_policies(account_id, target).await;
            if !still.is_ok_and(|l| l.iter().any(|a| a.policy_arn == policy_arn)) {
                let _ = self
                    .modify_policy(&policy_arn, |p| {
                        p.attachments.retain(|a| a != &entity_arn);
                        Ok(())
                    })
                    .await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// `DetachUserPolicy` / `DetachGroupPolicy` / `DetachRolePolicy`. The entity loses the
    /// policy first.
    pub async fn detach_policy(
        &self,
        account_id: &str,
        target: &Target,
        policy_arn: &str,
    ) -> Result<()> {
        let mut found = false;
        let entity_arn = self
            .modify_holder(account_id, target, |h| {
                let list = h.attached_mut();
                let before = list.len();
                list.retain(|a| a != policy_arn);
                found = before != list.len();
                Ok(())
            })
            .await?;
        if !found {
            return Err(IamError::NoSuchEntity(format!(
                "Policy {policy_arn} was not found."
            )));
        }
        match self
            .modify_policy(policy_arn, |p| {
                p.attachments.retain(|a| a != &entity_arn);
                Ok(())
            })
            .await
        {
            // A policy deleted by hand meanwhile has no attachment list to clean.
            Ok(_) | Err(IamError::NoSuchEntity(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn entity_arn(&self, account_id: &str, target: &Target) -> Result<String> {
        Ok(match target {
            Target::User(n) => self.get_user(account_id, n).await?.arn,
            Target::Group(n) => self.get_group(account_id, n).await?.arn,
            Target::Role(n) => self.get_role(account_id, n).await?.arn,
        })
    }

    /// `ListAttachedUserPolicies` / `...Group...` / `...Role...`.
    pub async fn attached_policies(
        &self,
        account_id: &str,
        target: &Target,
    ) -> Result<Vec<AttachedPolicy>> {
        let arns = match target {
            Target::User(n) => self.get_user(account_id, n).await?.policies,
            Target::Group(n) => self.get_group(account_id, n).await?.policies,
            Target::Role(n) => self.get_role(account_id, n).await?.policies,
        };
        Ok(arns
            .into_iter()
            .map(|a| AttachedPolicy {
                policy_name: parse_arn(&a).map(|p| p.name).unwrap_or_else(|| a.clone()),
                policy_arn: a,
            })
            .collect())
    }

    /// `PutUserPolicy` / `PutGroupPolicy` / `PutRolePolicy`: creates or replaces.
    pub async fn put_inline_policy(
        &self,
        account_id: &str,
        target: &Target,
        name: &str,
        document: &str,
    ) -> Result<()> {
        validate_name(EntityKind::Policy, name)?;
        PolicyDocument::parse(document, PolicyKind::Identity)?;
        let limit = match target {
            Target::User(_) => SizeLimit::UserInline,
            Target::Group(_) => SizeLimit::GroupInline,
            Target::Role(_) => SizeLimit::RoleInline,
        };
        self.modify_holder(account_id, target, |h| {
            let inline = h.inline_mut();
            inline.insert(name.to_owned(), document.to_owned());
            // The quota counts all inline policies of the entity together.
            let all: String = inline.values().map(String::as_str).collect();
            validate_size(&all, limit)?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// `GetUserPolicy` / `GetGroupPolicy` / `GetRolePolicy`.
    pub async fn get_inline_policy(
        &self,
        account_id: &str,
        target: &Target,
        name: &str,
    ) -> Result<String> {
        let inline = match target {
            Target::User(n) => self.get_user(account_id, n).await?.inline_policies,
            Target::Group(n) => self.get_group(account_id, n).await?.inline_policies,
            Target::Role(n) => self.get_role(account_id, n).await?.inline_policies,
        };
        inline.get(name).cloned().ok_or_else(|| {
            IamError::NoSuchEntity(format!(
                "The {} policy with name {name} cannot be found.",
                target.kind()
            ))
        })
    }

    /// `ListUserPolicies` / `ListGroupPolicies` / `ListRolePolicies`.
    pub async fn list_inline_policies(
        &self,
        account_id: &str,
        target: &Target,
    ) -> Result<Vec<String>> {
        Ok(match target {
            Target::User(n) => self.get_user(account_id, n).await?.inline_policies,
            Target::Group(n) => self.get_group(account_id, n).await?.inline_policies,
            Target::Role(n) => self.get_role(account_id, n).await?.inline_policies,
        }
        .into_keys()
        .collect())
    }

    /// `DeleteUserPolicy` / `DeleteGroupPolicy` / `DeleteRolePolicy`.
    pub async fn delete_inline_policy(
        &self,
        account_id: &str,
        target: &Target,
        name: &str,
    ) -> Result<()> {
        let kind = target.kind();
        self.modify_holder(account_id, target, |h| {
            h.inline_mut().remove(name).map(|_| ()).ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "The {kind} policy with name {name} cannot be found."
                ))
            })
        })
        .await
        .map(|_| ())
    }

    /// `PutUserPermissionsBoundary` / `PutRolePermissionsBoundary`; `None` deletes it.
    pub async fn set_permissions_boundary(
        &self,
        account_id: &str,
        target: &Target,
        policy_arn: Option<&str>,
    ) -> Result<()> {
        if let Some(a) = policy_arn {
            self.get_policy(a).await?;
        }
        self.modify_holder(account_id, target, |h| match h.boundary_mut() {
            Some(b) => {
                *b = policy_arn.map(str::to_owned);
                Ok(())
            }
            None => Err(IamError::InvalidInput(
                "Groups cannot have a permissions boundary.".into(),
            )),
        })
        .await
        .map(|_| ())
    }

    // ----- access keys ------------------------------------------------------------------

    /// `CreateAccessKey`: at most two per user. The id is reserved in the user record first.
    pub async fn create_access_key(&self, account_id: &str, user: &str) -> Result<NewAccessKey> {
        let access_key_id = generate_access_key_id(&mut OsRng);
        let secret = generate_secret_access_key(&mut OsRng);
        self.add_access_key(account_id, user, access_key_id, secret)
            .await
    }

    /// Stores a key pair for `user` (new or imported): reserved in the user record first,
    /// then the key record with the secret sealed; the reservation is undone on failure.
    async fn add_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: String,
        secret: SecretString,
    ) -> Result<NewAccessKey> {
        let (ukey, owner) = self
            .reserve_access_key(account_id, user, &access_key_id)
            .await?;
        let record = self.key_record(account_id, &owner, &access_key_id, &secret);
        if let Err(e) = self.keys.create(&access_key_id, &record).await {
            let _ = Self::modify(
                &self.users,
                &ukey,
                || no_such(EntityKind::User, user),
                |u| {
                    u.access_keys.retain(|k| k != &access_key_id);
                    Ok(())
                },
            )
            .await;
            return Err(storage_error(e));
        }
        Ok(NewAccessKey {
            record,
            secret_access_key: secret,
        })
    }

    /// The access key `access_key_id` of `user`: made with a new secret unless its record
    /// exists, in which case (an earlier attempt made it) its sealed secret is opened. The
    /// reservation stays on failure, so a later call finishes the same key.
    async fn ensure_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> Result<NewAccessKey> {
        let (_, owner) = self
            .reserve_access_key(account_id, user, access_key_id)
            .await?;
        let secret = generate_secret_access_key(&mut OsRng);
        let record = self.key_record(account_id, &owner, access_key_id, &secret);
        match self.keys.create(access_key_id, &record).await {
            Ok(_) => Ok(NewAccessKey {
                record,
                secret_access_key: secret,
            }),
            Err(KvError::AlreadyExists { .. }) => {
                let record = self.owned_key(account_id, user, access_key_id).await?;
                let (secret, _) = self.key_secret(&record)?;
                Ok(NewAccessKey {
                    record,
                    secret_access_key: secret,
                })
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Lists `access_key_id` in `user`'s record (once; at most two keys per user), the
    /// reservation without which a key record does not authenticate. Returns the record's
    /// storage key and the record.
    async fn reserve_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> Result<(String, UserRecord)> {
        validate_account_id(account_id)?;
        let ukey = self.user_storage_key(account_id, user).await?;
        let owner = Self::modify(
            &self.users,
            &ukey,
            || no_such(EntityKind::User, user),
            |u| {
                if u.access_keys.iter().any(|k| k == access_key_id) {
                    return Ok(());
                }
                if u.access_keys.len() >= MAX_ACCESS_KEYS_PER_USER {
                    return Err(IamError::LimitExceeded(format!(
                        "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}"
                    )));
                }
                u.access_keys.push(access_key_id.to_owned());
                Ok(())
            },
        )
        .await?;
        Ok((ukey, owner))
    }

    /// A new active key record of `owner` in `account_id`, its secret sealed.
    fn key_record(
        &self,
        account_id: &str,
        owner: &UserRecord,
        access_key_id: &str,
        secret: &SecretString,
    ) -> AccessKeyRecord {
        AccessKeyRecord {
            access_key_id: access_key_id.to_owned(),
            username: owner.username.clone(),
            status: KeyStatus::Active,
            created_at: OffsetDateTime::now_utc(),
            account_id: account_id.to_owned(),
            secret_access_key_sealed: Some(self.keyring.seal_secret(
                secret,
                access_key_id.as_bytes(),
                &mut OsRng,
            )),
            secret_access_key: None,
            last_used: None,
        }
    }

    /// A key record's secret (sealed, or in clear text as the setup guide writes it by hand)
    /// and whether it needs sealing with the active key.
    fn key_secret(&self, key: &AccessKeyRecord) -> Result<(SecretString, bool)> {
        let id = key.access_key_id.as_bytes();
        match (&key.secret_access_key_sealed, &key.secret_access_key) {
            (Some(sealed), _) => Ok((
                self.keyring.open_string(sealed, id)?,
                self.keyring.needs_reseal(sealed),
            )),
            (None, Some(clear)) => Ok((clear.clone(), true)),
            (None, None) => Err(IamError::CorruptRecord {
                key: key.access_key_id.clone(),
                reason: "access key record has no secret".into(),
            }),
        }
    }

    /// The storage key of a user record: canonical, or the guide's bare-name key.
    async fn user_storage_key(&self, account_id: &str, user: &str) -> Result<String> {
        let key = entity_key(account_id, EntityKind::User, user);
        if self.users.get(&key).await.map_err(storage_error)?.is_some() {
            return Ok(key);
        }
        if account_id == DEFAULT_ACCOUNT_ID
            && hive_kv::validate_key(user).is_ok()
            && self.users.get(user).await.ok().flatten().is_some()
        {
            return Ok(user.to_owned());
        }
        Err(no_such(EntityKind::User, user))
    }

    /// `ListAccessKeys` of a user.
    pub async fn list_access_keys(
        &self,
        account_id: &str,
        user: &str,
    ) -> Result<Vec<AccessKeyRecord>> {
        let u = self.get_user(account_id, user).await?;
        let mut out = Vec::new();
        for id in &u.access_keys {
            if let Some(k) = self.keys.get(id).await.map_err(storage_error)? {
                out.push(k.value);
            }
        }
        Ok(out)
    }

    /// The key record of `access_key_id`, checked to belong to `user` of `account_id`.
    async fn owned_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> Result<AccessKeyRecord> {
        let missing = || {
            IamError::NoSuchEntity(format!(
                "The Access Key with id {access_key_id} cannot be found."
            ))
        };
        if hive_kv::validate_key(access_key_id).is_err() {
            return Err(missing());
        }
        let k = self
            .keys
            .get(access_key_id)
            .await
            .map_err(storage_error)?
            .ok_or_else(missing)?
            .value;
        if k.account_id != account_id || !k.username.eq_ignore_ascii_case(user) {
            return Err(missing());
        }
        Ok(k)
    }

    /// `UpdateAccessKey`: Active or Inactive.
    pub async fn update_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
        status: KeyStatus,
    ) -> Result<()> {
        self.owned_key(account_id, user, access_key_id).await?;
        Self::modify(
            &self.keys,
            access_key_id,
            || {
                IamError::NoSuchEntity(format!(
                    "The Access Key with id {access_key_id} cannot be found."
                ))
            },
            |k| {
                k.status = status;
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// `DeleteAccessKey`: the key record goes first, then the user's reference.
    pub async fn delete_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
    ) -> Result<()> {
        let listed = self
            .get_user(account_id, user)
            .await?
            .access_keys
            .iter()
            .any(|k| k == access_key_id);
        match self.owned_key(account_id, user, access_key_id).await {
            Ok(_) => self
                .keys
                .delete(access_key_id, None)
                .await
                .map_err(storage_error)?,
            // A reference left by an interrupted CreateAccessKey: clean it below.
            Err(IamError::NoSuchEntity(_)) if listed => {}
            Err(e) => return Err(e),
        }
        let ukey = self.user_storage_key(account_id, user).await?;
        Self::modify(
            &self.users,
            &ukey,
            || no_such(EntityKind::User, user),
            |u| {
                u.access_keys.retain(|k| k != access_key_id);
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    /// Records that a key authenticated a request (`GetAccessKeyLastUsed`). Skips the write
    /// when the same service and region were recorded less than a minute ago.
    pub async fn record_key_use(
        &self,
        access_key_id: &str,
        service: &str,
        region: &str,
        now: OffsetDateTime,
    ) -> Result<()> {
        if !access_key_id.starts_with("AKIA") || hive_kv::validate_key(access_key_id).is_err() {
            return Ok(());
        }
        let Some(current) = self.keys.get(access_key_id).await.map_err(storage_error)? else {
            return Ok(());
        };
        if current.value.last_used.as_ref().is_some_and(|l| {
            l.service == service && l.region == region && now - l.time < LAST_USED_GRANULARITY
        }) {
            return Ok(());
        }
        Self::modify(
            &self.keys,
            access_key_id,
            || {
                IamError::NoSuchEntity(format!(
                    "The Access Key with id {access_key_id} cannot be found."
                ))
            },
            |k| {
                k.last_used = Some(LastUsed {
                    time: now,
                    service: service.to_owned(),
                    region: region.to_owned(),
                });
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }

    // ----- authentication ---------------------------------------------------------------

    /// Credentials for an access key id (`AKIA...` or `ASIA...`): the secret, the principal and
    /// the key's status. `Ok(None)` when the key is unknown or its user no longer lists it;
    /// `Err(ExpiredToken)` for expired temporary credentials.
    pub async fn lookup_credential(
        &self,
        access_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Credential>> {
        if !hive_iam::identity::is_valid_access_key_id(access_key_id)
            && hive_kv::validate_key(access_key_id).is_err()
        {
            return Ok(None);
        }
        if access_key_id.starts_with("ASIA") {
            return self.lookup_session(access_key_id, now).await;
        }
        let Some(key) = self.keys.get(access_key_id).await.map_err(storage_error)? else {
            return Ok(None);
        };
        let key = key.value;
        let Some(user) = self.find_user(&key.account_id, &key.username).await? else {
            return Ok(None);
        };
        if !user.access_keys.iter().any(|k| k == access_key_id) {
            return Ok(None);
        }
        let (secret, needs_reseal) = self.key_secret(&key)?;
        Ok(Some(Credential {
            access_key_id: access_key_id.to_owned(),
            secret,
            principal: Principal::User {
                account_id: user.account_id.clone(),
                username: user.username.clone(),
                user_id: user.user_id.clone(),
                arn: user.arn.clone(),
            },
            status: key.status,
            expiration: None,
            session_token_sha256: None,
            session_policy: None,
            needs_reseal,
        }))
    }

    async fn lookup_session(
        &self,
        access_key_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Credential>> {
        let Some(s) = self
            .sessions
            .get(access_key_id)
            .await
            .map_err(storage_error)?
        else {
            return Ok(None);
        };
        let s = s.value;
        if now >= s.expiration {
            return Err(IamError::ExpiredToken);
        }
        let secret = self
            .keyring
            .open_string(&s.secret_access_key_sealed, access_key_id.as_bytes())?;
        Ok(Some(Credential {
            access_key_id: access_key_id.to_owned(),
            secret,
            principal: s.principal,
            status: KeyStatus::Active,
            expiration: Some(s.expiration),
            session_token_sha256: Some(s.session_token_sha256),
            session_policy: s.session_policy,
            needs_reseal: self.keyring.needs_reseal(&s.secret_access_key_sealed),
        }))
    }

    /// Issues temporary credentials for `principal`, valid `duration_seconds` (900-43200;
    /// the sessions bucket's TTL still removes records after its own lifetime).
    pub async fn create_session(
        &self,
        principal: Principal,
        duration_seconds: u32,
        session_policy: Option<&str>,
        tags: Vec<Tag>,
        now: OffsetDateTime,
    ) -> Result<TemporaryCredentials> {
        if !(MIN_SESSION_SECONDS..=hive_iam::identity::MAX_ROLE_SESSION_SECONDS)
            .contains(&duration_seconds)
        {
            return Err(IamError::Validation(format!(
                "1 validation error detected: Value '{duration_seconds}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_SESSION_SECONDS} and {}",
                hive_iam::identity::MAX_ROLE_SESSION_SECONDS
            )));
        }
        if let Some(p) = session_policy {
            validate_size(p, SizeLimit::Managed)?;
            PolicyDocument::parse(p, PolicyKind::Identity)?;
        }
        validate_tags(&tags)?;
        let access_key_id = generate_temporary_key_id(&mut OsRng);
        let secret = generate_secret_access_key(&mut OsRng);
        let token = generate_session_token(&mut OsRng);
        let expiration = now + time::Duration::seconds(i64::from(duration_seconds));
        let record = SessionRecord {
            access_key_id: access_key_id.clone(),
            secret_access_key_sealed: self.keyring.seal_secret(
                &secret,
                access_key_id.as_bytes(),
                &mut OsRng,
            ),
            session_token_sha256: session_token_digest(token.expose()),
            expiration,
            created_at: now,
            account_id: principal.account_id().to_owned(),
            principal: principal.clone(),
            session_policy: session_policy.map(str::to_owned),
            tags,
        };
        self.sessions
            .create(&access_key_id, &record)
            .await
            .map_err(storage_error)?;
        Ok(TemporaryCredentials {
            access_key_id,
            secret_access_key: secret,
            session_token: token,
            expiration,
            principal,
        })
    }

    /// Temporary credentials for a session of a role (`sts:AssumeRole` after the caller has
    /// evaluated the role's trust policy): checks the session name and the role's maximum
    /// session duration.
    pub async fn assume_role_session(
        &self,
        account_id: &str,
        role_name: &str,
        session_name: &str,
        duration_seconds: Option<u32>,
        session_policy: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<TemporaryCredentials> {
        let role = self.get_role(account_id, role_name).await?;
        let valid_session = (2..=64).contains(&session_name.len())
            && session_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !valid_session {
            return Err(IamError::Validation(
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*".into(),
            ));
        }
        let duration = duration_seconds.unwrap_or(hive_iam::identity::DEFAULT_SESSION_SECONDS);
        if duration > role.max_session_duration {
            return Err(IamError::Validation(format!(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({}).",
                role.max_session_duration
            )));
        }
        let principal = Principal::AssumedRole {
            account_id: role.account_id.clone(),
            role_name: role.role_name.clone(),
            role_id: role.role_id.clone(),
            session_name: session_name.to_owned(),
            role_arn: role.arn.clone(),
        };
        self.create_session(principal, duration, session_policy, Vec::new(), now)
            .await
    }

    /// The policies that decide requests of `principal` (and of its session, when given).
    pub async fn effective_policies(
        &self,
        principal: &Principal,
        session_policy: Option<&str>,
    ) -> Result<EffectivePolicies> {
        let mut out = EffectivePolicies {
            session: session_policy.map(str::to_owned),
            ..EffectivePolicies::default()
        };
        let (inline, attached, boundary, holder_arn, groups, account_id) = match principal {
            Principal::Root { .. } => return Ok(out),
            Principal::User {
                account_id,
                username,
                ..
            } => {
                let u = self.get_user(account_id, username).await?;
                (
                    u.inline_policies,
                    u.policies,
                    u.permissions_boundary,
                    u.arn,
                    u.groups,
                    account_id,
                )
            }
            Principal::AssumedRole {
                account_id,
                role_name,
                ..
            } => {
                let r = self.get_role(account_id, role_name).await?;
                (
                    r.inline_policies,
                    r.policies,
                    r.permissions_boundary,
                    r.arn,
                    Vec::new(),
                    account_id,
                )
            }
        };
        self.collect(&mut out.identity, &holder_arn, inline, attached)
            .await?;
        for g in groups {
            // A group deleted by hand leaves a dangling name: it grants nothing.
            if let Ok(group) = self.get_group(account_id, &g).await {
                self.collect(
                    &mut out.identity,
                    &group.arn,
                    group.inline_policies,
                    group.policies,
                )
                .await?;
            }
        }
        if let Some(b) = boundary {
            let p = self.get_policy(&b).await?;
            let doc = p
                .default_version()
                .map(|v| v.document.clone())
                .ok_or_else(|| IamError::CorruptRecord {
                    key: b.clone(),
                    reason: "policy has no default version".into(),
                })?;
            out.boundary = Some(SourcedPolicy {
                source: b,
                document: doc,
            });
        }
        Ok(out)
    }

    async fn collect(
        &self,
        out: &mut Vec<SourcedPolicy>,
        holder_arn: &str,
        inline: BTreeMap<String, String>,
        attached: Vec<String>,
    ) -> Result<()> {
        for (name, document) in inline {
            out.push(SourcedPolicy {
                source: format!("{holder_arn}:inline/{name}"),
                document,
            });
        }
        for a in attached {
            match self.get_policy(&a).await {
                Ok(p) => {
                    if let Some(v) = p.default_version() {
                        out.push(SourcedPolicy {
                            source: a,
                            document: v.document.clone(),
                        });
                    }
                }
                // A dangling reference grants nothing.
                Err(IamError::NoSuchEntity(_) | IamError::InvalidInput(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ----- re-sealing -------------------------------------------------------------------

    /// Access keys whose secret is stored in clear text (hand-written per the setup guide) or
    /// sealed under a key other than the active one.
    pub async fn keys_needing_reseal(&self) -> Result<Vec<String>> {
        Ok(self
            .keys
            .list(None)
            .await
            .map_err(storage_error)?
            .into_iter()
            .filter(|(_, k)| match &k.value.secret_access_key_sealed {
                Some(sealed) => self.keyring.needs_reseal(sealed),
                None => true,
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// Seals every clear-text secret and re-seals those under older keys with the active key;
    /// returns how many records were rewritten.
    pub async fn reseal_keys(&self) -> Result<usize> {
        let mut count = 0;
        for id in self.keys_needing_reseal().await? {
            if self.reseal_key(&id).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Seals one key's clear-text secret, or re-seals it with the active key; `false` when
    /// there was nothing to do (already sealed with the active key).
    pub async fn reseal_key(&self, access_key_id: &str) -> Result<bool> {
        let id = access_key_id;
        let keyring = &self.keyring;
        let mut changed = false;
        Self::modify(
            &self.keys,
            id,
            || IamError::NoSuchEntity(format!("The Access Key with id {id} cannot be found.")),
            |k| {
                changed = false;
                let secret = match (&k.secret_access_key_sealed, &k.secret_access_key) {
                    (Some(sealed), _) if keyring.needs_reseal(sealed) => {
                        keyring.open_string(sealed, id.as_bytes())?
                    }
                    (None, Some(clear)) => clear.clone(),
                    _ => return Ok(()),
                };
                k.secret_access_key_sealed =
                    Some(keyring.seal_secret(&secret, id.as_bytes(), &mut OsRng));
                k.secret_access_key = None;
                changed = true;
                Ok(())
            },
        )
        .await?;
        Ok(changed)
    }
}
