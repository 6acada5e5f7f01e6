//! Account-level operations on users, groups and roles that the basic CRUD in the parent module
//! does not cover: creating a user with a permissions boundary in one write, renaming users and
//! groups (`UpdateUser`, `UpdateGroup`), role tags, and key and account look-ups.
//!
//! ## Renames
//!
//! A user or group lives under a key derived from its name, so a new name is a new record: the
//! copy is created first, then the old record is deleted at the revision that was copied (a
//! concurrent change to the old record aborts the copy and the rename starts over). Only then are
//! the references that name the entity brought along, in the order that fails closed:
//!
//! - access key records name their user; until they follow, the keys do not authenticate
//!   (a credential needs a user that lists the key);
//! - a user's `groups` grant the groups' policies; after a group rename the members regain them
//!   only when their records name the new group;
//! - a group's `members` and a policy's `attachments` guard deletion and serve listings; a stale
//!   entry there can refuse a delete but never grants anything.

use crate::storage_error;
use hive_kv::{KvError, Versioned};
use time::OffsetDateTime;

use super::{
    CAS_RETRIES, IamRepo, TagChange, already_exists, entity_key, no_such, normalize_policy_refs,
};
use hive_iam::error::{IamError, Result};
use hive_iam::identity::{
    EntityKind, GroupRecord, Tag, UserRecord, arn, derived_unique_id, validate_account_id,
    validate_name, validate_path,
};

/// The storage key and revision of a record that was copied under a new key.
struct Copied {
    key: String,
    revision: u64,
}

/// Where `UpdateUser`/`UpdateGroup` move a record: its account, and the new name and path
/// where given.
#[derive(Clone, Copy)]
struct Renamed<'a> {
    account_id: &'a str,
    name: Option<&'a str>,
    path: Option<&'a str>,
}

/// A record `UpdateUser`/`UpdateGroup` can move: one kind of entity with a name, a path and
/// the ARN made of them, and references elsewhere that follow a rename.
trait Renamable:
    Clone + PartialEq + serde::Serialize + serde::de::DeserializeOwned + Send + Sync
{
    /// The kind of entity, for keys, ARNs and errors.
    const KIND: EntityKind;

    /// The bucket the records of this kind live in.
    fn bucket(repo: &IamRepo) -> &hive_kv::TypedBucket<Self>;

    /// The name, path and ARN fields, to be rewritten together.
    fn name_path_arn(&mut self) -> (&mut String, &mut String, &mut String);

    /// Fills in what an older record leaves out before it is written back.
    fn adopt(&mut self, _account_id: &str) {}

    /// The record's storage key and current version; `None` when it went away between two
    /// reads (worth a new look), `NoSuchEntity` when there is none.
    async fn read(
        repo: &IamRepo,
        account_id: &str,
        name: &str,
    ) -> Result<Option<(String, Versioned<Self>)>>;

    /// Brings the references to a renamed record along (see [`IamRepo::rename`]).
    async fn follow(repo: &IamRepo, account_id: &str, old: &Self, new: &Self) -> Result<()>;
}

impl Renamable for UserRecord {
    const KIND: EntityKind = EntityKind::User;

    fn bucket(repo: &IamRepo) -> &hive_kv::TypedBucket<Self> {
        &repo.users
    }

    fn name_path_arn(&mut self) -> (&mut String, &mut String, &mut String) {
        (&mut self.username, &mut self.path, &mut self.arn)
    }

    fn adopt(&mut self, account_id: &str) {
        if self.user_id.is_empty() {
            // A hand-written record: keep the id it has been shown with.
            self.user_id = derived_unique_id(EntityKind::User, &self.arn);
        }
        self.account_id = account_id.to_owned();
        normalize_policy_refs(account_id, &mut self.policies);
    }

    async fn read(
        repo: &IamRepo,
        account_id: &str,
        name: &str,
    ) -> Result<Option<(String, Versioned<Self>)>> {
        // Hand-written records may stand under a key in another case.
        let key = repo.user_storage_key(account_id, name).await?;
        Ok(repo
            .users
            .get(&key)
            .await
            .map_err(storage_error)?
            .map(|v| (key, v)))
    }

    async fn follow(repo: &IamRepo, account_id: &str, old: &Self, new: &Self) -> Result<()> {
        repo.follow_user_rename(account_id, old, new).await
    }
}

impl Renamable for GroupRecord {
    const KIND: EntityKind = EntityKind::Group;

    fn bucket(repo: &IamRepo) -> &hive_kv::TypedBucket<Self> {
        &repo.groups
    }

    fn name_path_arn(&mut self) -> (&mut String, &mut String, &mut String) {
        (&mut self.group_name, &mut self.path, &mut self.arn)
    }

    async fn read(
        repo: &IamRepo,
        account_id: &str,
        name: &str,
    ) -> Result<Option<(String, Versioned<Self>)>> {
        let key = entity_key(account_id, EntityKind::Group, name);
        let current = repo
            .groups
            .get(&key)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| no_such(EntityKind::Group, name))?;
        Ok(Some((key, current)))
    }

    async fn follow(repo: &IamRepo, account_id: &str, old: &Self, new: &Self) -> Result<()> {
        repo.follow_group_rename(account_id, old, new).await
    }
}

/// What [`IamRepo::store_moved`] did with a renamed record.
enum Moved {
    /// Nothing changed: nothing was written.
    Unchanged,
    /// The record now stands under its new key (or in place).
    Stored,
    /// Another writer got there first: read again and retry.
    Raced,
}

impl IamRepo {
    /// `CreateUser` with an optional permissions boundary, written in one record so that the user
    /// never exists without its boundary. The boundary policy must exist.
    pub async fn create_user_with_boundary(
        &self,
        account_id: &str,
        name: &str,
        path: Option<&str>,
        tags: Vec<Tag>,
        permissions_boundary: Option<&str>,
    ) -> Result<UserRecord> {
        self.create_user_record(account_id, name, path, tags, permissions_boundary)
            .await
    }

    /// `UpdateUser`: a new name and/or path. Group memberships, access keys, attached and inline
    /// policies, tags and the unique id stay with the user; the groups' member lists, the key
    /// records and the policies' attachment lists follow (see the module documentation for the
    /// order). Returns the renamed record.
    pub async fn rename_user(
        &self,
        account_id: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<UserRecord> {
        self.rename(account_id, name, new_name, new_path).await
    }

    /// Brings the references to a renamed user along: key records, group member lists and
    /// policy attachment lists. Every reference is attempted; the first failure is returned.
    async fn follow_user_rename(
        &self,
        account_id: &str,
        old: &UserRecord,
        new: &UserRecord,
    ) -> Result<()> {
        let mut errors = FirstError::default();
        if old.username != new.username {
            for key_id in &new.access_keys {
                let r = Self::modify(
                    &self.keys,
                    key_id,
                    || no_such(EntityKind::User, key_id),
                    |k| {
                        if k.username.eq_ignore_ascii_case(&old.username) {
                            k.username = new.username.clone();
                        }
                        Ok(())
                    },
                )
                .await;
                errors.note(ignore_missing(r.map(|_| ())));
            }
            for group in &new.groups {
                let gkey = entity_key(account_id, EntityKind::Group, group);
                let names = (old.username.as_str(), new.username.as_str());
                let r =
                    Self::rename_listed(&self.groups, (&gkey, group), |g| &mut g.members, names);
                errors.note(r.await);
            }
        }
        errors.note(
            self.follow_attachments(&new.policies, &old.arn, &new.arn)
                .await,
        );
        errors.into_result()
    }

    /// Renames `old` to `new` in a name list of the record under `key` (a group's members or a
    /// user's groups); a record gone meanwhile has nothing to follow.
    async fn rename_listed<T: Renamable>(
        bucket: &hive_kv::TypedBucket<T>,
        (key, name): (&str, &str),
        list_of: fn(&mut T) -> &mut Vec<String>,
        (old, new): (&str, &str),
    ) -> Result<()> {
        let r = Self::modify(
            bucket,
            key,
            || no_such(T::KIND, name),
            |record| {
                rename_in(list_of(record), old, new);
                Ok(())
            },
        )
        .await;
        ignore_missing(r.map(|_| ()))
    }

    /// Brings a renamed user's or group's ARN along in the attachment lists of its policies.
    /// Every policy is attempted; the first failure is returned (a policy gone meanwhile is none).
    async fn follow_attachments(
        &self,
        policies: &[String],
        old_arn: &str,
        new_arn: &str,
    ) -> Result<()> {
        let mut errors = FirstError::default();
        if old_arn != new_arn {
            for policy_arn in policies {
                let r = self
                    .modify_policy(policy_arn, |p| {
                        replace_arn(&mut p.attachments, old_arn, new_arn);
                        Ok(())
                    })
                    .await;
                errors.note(ignore_missing(r.map(|_| ())));
            }
        }
        errors.into_result()
    }

    /// `UpdateGroup`: a new name and/or path. Members, attached and inline policies and the
    /// unique id stay with the group; the members' user records and the policies' attachment
    /// lists follow. Members hold no permissions from the group between the move of the group
    /// record and the update of their own records (fail closed). Returns the renamed record.
    pub async fn rename_group(
        &self,
        account_id: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<GroupRecord> {
        self.rename(account_id, name, new_name, new_path).await
    }

    /// `UpdateUser` and `UpdateGroup`: reads the record, gives it its new name, path and ARN,
    /// stores it (moving it when its key changes) and brings the references to it along.
    /// Retried from the read when another writer gets in between.
    async fn rename<T: Renamable>(
        &self,
        account_id: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<T> {
        validate_rename(account_id, T::KIND, new_name, new_path)?;
        let to = Renamed {
            account_id,
            name: new_name,
            path: new_path,
        };
        for _ in 0..CAS_RETRIES {
            let Some((old_key, current)) = T::read(self, account_id, name).await? else {
                continue; // deleted between two reads: look again
            };
            let old = current.value;
            let mut new = old.clone();
            new.adopt(account_id);
            let old_at = (old_key.as_str(), &old, current.revision);
            match Self::store_moved(T::bucket(self), old_at, &mut new, to).await? {
                Moved::Raced => continue,
                Moved::Unchanged => {}
                Moved::Stored => T::follow(self, account_id, &old, &new).await?,
            }
            return Ok(new);
        }
        Err(too_many_changes(T::KIND, name))
    }

    /// Brings the references to a renamed group along: its members' user records and policy
    /// attachment lists. Every reference is attempted; the first failure is returned.
    async fn follow_group_rename(
        &self,
        account_id: &str,
        old: &GroupRecord,
        new: &GroupRecord,
    ) -> Result<()> {
        let mut errors = FirstError::default();
        if old.group_name != new.group_name {
            for member in &new.members {
                let ukey = match self.user_storage_key(account_id, member).await {
                    Ok(k) => k,
                    Err(e) => {
                        errors.note(ignore_missing(Err(e)));
                        continue;
                    }
                };
                let names = (old.group_name.as_str(), new.group_name.as_str());
                let r = Self::rename_listed(&self.users, (&ukey, member), |u| &mut u.groups, names);
                errors.note(r.await);
            }
        }
        errors.note(
            self.follow_attachments(&new.policies, &old.arn, &new.arn)
                .await,
        );
        errors.into_result()
    }

    /// Gives `new` (a copy of `old`) its new name and path, and so its ARN, and stores it: in
    /// place when its key stays, else as a copy under the new key followed by a delete of the
    /// old one (the copy is dropped again if the delete fails). `old_at` is the old record's
    /// (key, record, revision read).
    async fn store_moved<T: Renamable>(
        bucket: &hive_kv::TypedBucket<T>,
        (old_key, old, revision): (&str, &T, u64),
        new: &mut T,
        to: Renamed<'_>,
    ) -> Result<Moved> {
        let (name, path, arn_field) = new.name_path_arn();
        if let Some(n) = to.name {
            *name = n.to_owned();
        }
        if let Some(p) = to.path {
            *path = p.to_owned();
        }
        *arn_field = arn(to.account_id, T::KIND, path, name);
        let new_key = entity_key(to.account_id, T::KIND, name);
        let new_name = name.clone();
        let new = &*new;
        if new_key == old_key {
            if new == old {
                return Ok(Moved::Unchanged);
            }
            return match bucket.update(old_key, new, revision).await {
                Ok(_) => Ok(Moved::Stored),
                Err(KvError::RevisionConflict { .. }) => Ok(Moved::Raced),
                Err(e) => Err(storage_error(e)),
            };
        }
        let copied = match bucket.create(&new_key, new).await {
            Ok(revision) => Copied {
                key: new_key,
                revision,
            },
            Err(KvError::AlreadyExists { .. }) => return Err(already_exists(T::KIND, &new_name)),
            Err(e) => return Err(storage_error(e)),
        };
        match bucket.delete(old_key, Some(revision)).await {
            Ok(()) => Ok(Moved::Stored),
            Err(e) => {
                Self::drop_copy(bucket, &copied).await;
                match e {
                    KvError::RevisionConflict { .. } => Ok(Moved::Raced),
                    e => Err(storage_error(e)),
                }
            }
        }
    }

    /// Removes the copy made by a rename that could not complete. The copy is deleted at the
    /// revision it was written with; if something changed it meanwhile it is deleted anyway
    /// (two records for one entity would be worse than a lost concurrent change).
    async fn drop_copy<T>(bucket: &hive_kv::TypedBucket<T>, copied: &Copied)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
    {
        if let Err(KvError::RevisionConflict { .. }) =
            bucket.delete(&copied.key, Some(copied.revision)).await
        {
            let _ = bucket.delete(&copied.key, None).await;
        }
    }

    /// `TagRole`: adds or replaces tags (keys compare case-insensitively).
    pub async fn tag_role(&self, account_id: &str, name: &str, tags: &[Tag]) -> Result<()> {
        let named = (account_id, EntityKind::Role, name);
        Self::change_tags(&self.roles, named, |r| &mut r.tags, TagChange::Set(tags)).await
    }

    /// `UntagRole`: removes the tags with these keys (case-insensitively); absent keys are
    /// ignored, as on AWS.
    pub async fn untag_role(&self, account_id: &str, name: &str, keys: &[String]) -> Result<()> {
        let named = (account_id, EntityKind::Role, name);
        Self::change_tags(&self.roles, named, |r| &mut r.tags, TagChange::Remove(keys)).await
    }

    /// When the account was bootstrapped (the closest thing to its creation date, which
    /// `GetUser` reports for the root identity); `None` before bootstrap.
    pub async fn account_created_at(&self, account_id: &str) -> Result<Option<OffsetDateTime>> {
        Ok(self
            .bootstrap_marker(account_id)
            .await?
            .map(|(_, marker)| marker.created_at))
    }
}

/// Checks the arguments of `UpdateUser`/`UpdateGroup` before anything is read.
fn validate_rename(
    account_id: &str,
    kind: EntityKind,
    new_name: Option<&str>,
    new_path: Option<&str>,
) -> Result<()> {
    validate_account_id(account_id)?;
    if let Some(n) = new_name {
        validate_name(kind, n)?;
    }
    if let Some(p) = new_path {
        validate_path(p)?;
    }
    Ok(())
}

/// A rename that lost every compare-and-set race it tried.
fn too_many_changes(kind: EntityKind, name: &str) -> IamError {
    IamError::ConcurrentModification(format!(
        "Too many concurrent changes to {} {name}; try again.",
        kind.arn_type()
    ))
}

/// The first failure of a series of steps that are all attempted.
#[derive(Default)]
struct FirstError(Option<IamError>);

impl FirstError {
    /// Keeps `r`'s error unless an earlier one is kept already.
    fn note(&mut self, r: Result<()>) {
        if let Err(e) = r {
            self.0.get_or_insert(e);
        }
    }

    /// `Ok` when every step succeeded, else the first failure.
    fn into_result(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A reference that no longer resolves has nothing to follow: not an error for a rename.
fn ignore_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(IamError::NoSuchEntity(_)) => Ok(()),
        other => other,
    }
}

/// Replaces `old` (case-insensitively) by `new` in a list of names, keeping one entry.
fn rename_in(names: &mut Vec<String>, old: &str, new: &str) {
    let had = names.iter().any(|n| n.eq_ignore_ascii_case(old));
    names.retain(|n| !n.eq_ignore_ascii_case(old) && !n.eq_ignore_ascii_case(new));
    if had {
        names.push(new.to_owned());
    }
}

/// Replaces the ARN `old` by `new` in an attachment list; `new` is listed even when `old` was
/// missing (the entity does hold the policy).
fn replace_arn(arns: &mut Vec<String>, old: &str, new: &str) {
    arns.retain(|a| a != old && a != new);
    arns.push(new.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;
    use crate::buckets::IamBucketNames;
    use hive_iam::identity::{KeyStatus, PolicyRecord};
    use hive_iam::seal::{Keyring, SealKey};
    use hive_kv::memory::MemoryStore;

    const ACCT: &str = "000000000000";
    const DOC: &str =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

    async fn repo() -> IamRepo {
        let store = MemoryStore::new();
        let (key, _) = SealKey::generate(&mut rand::rngs::OsRng);
        IamRepo::open(&store, &IamBucketNames::default(), Keyring::new(key))
            .await
            .expect("buckets open")
    }

    /// User `bob` in group `devs`, and a policy `p` attached to `target`; returns the policy.
    async fn bob_in_devs_with_policy(repo: &IamRepo, target: Target) -> PolicyRecord {
        repo.create_user(ACCT, "bob", None, vec![])
            .await
            .expect("user");
        repo.create_group(ACCT, "devs", None).await.expect("group");
        repo.add_user_to_group(ACCT, "devs", "bob")
            .await
            .expect("join");
        let policy = repo
            .create_policy(ACCT, "p", None, DOC, None, vec![])
            .await
            .expect("policy");
        repo.attach_policy(ACCT, &target, &policy.arn)
            .await
            .expect("attach");
        policy
    }

    #[test]
    fn rename_in_keeps_one_entry() {
        let mut v = vec!["a".to_owned(), "Bob".to_owned(), "carol".to_owned()];
        rename_in(&mut v, "bob", "robert");
        assert_eq!(v, ["a", "carol", "robert"]);
        rename_in(&mut v, "zed", "x");
        assert_eq!(v, ["a", "carol", "robert"]);
        let mut arns = vec!["x".to_owned()];
        replace_arn(&mut arns, "old", "new");
        assert_eq!(arns, ["x", "new"]);
    }

    #[tokio::test]
    async fn renamed_user_keeps_groups_keys_and_policies() {
        let repo = repo().await;
        let policy = bob_in_devs_with_policy(&repo, Target::User("bob".into())).await;
        let key = repo.create_access_key(ACCT, "bob").await.expect("key");
        let before = repo.get_user(ACCT, "bob").await.expect("bob");

        let renamed = repo
            .rename_user(ACCT, "BOB", Some("robert"), Some("/eng/"))
            .await
            .expect("rename");
        assert_eq!(renamed.arn, "arn:aws:iam::000000000000:user/eng/robert");
        assert_eq!(renamed.user_id, before.user_id);
        assert_eq!(
            repo.get_user(ACCT, "bob").await.expect_err("gone").code(),
            "NoSuchEntity"
        );
        let now = repo.get_user(ACCT, "robert").await.expect("robert");
        assert_eq!(now.groups, ["devs"]);
        assert_eq!(
            now.access_keys,
            std::slice::from_ref(&key.record.access_key_id)
        );
        assert_eq!(
            repo.get_group(ACCT, "devs").await.expect("g").members,
            ["robert"]
        );
        let p = repo.get_policy(&policy.arn).await.expect("p");
        assert_eq!(p.attachments, std::slice::from_ref(&renamed.arn));
        let cred = repo
            .lookup_credential(&key.record.access_key_id, OffsetDateTime::now_utc())
            .await
            .expect("lookup")
            .expect("the key still authenticates");
        assert_eq!(cred.principal.arn(), renamed.arn);
        assert_eq!(cred.status, KeyStatus::Active);
        // Taken names are refused, and nothing changes.
        repo.create_user(ACCT, "alice", None, vec![])
            .await
            .expect("alice");
        assert_eq!(
            repo.rename_user(ACCT, "robert", Some("ALICE"), None)
                .await
                .expect_err("taken")
                .code(),
            "EntityAlreadyExists"
        );
        assert!(repo.get_user(ACCT, "robert").await.is_ok());
        // A change of case only rewrites the record in place.
        let cased = repo
            .rename_user(ACCT, "robert", Some("Robert"), None)
            .await
            .expect("case");
        assert_eq!(cased.username, "Robert");
        assert_eq!(
            repo.get_group(ACCT, "devs").await.expect("g").members,
            ["Robert"]
        );
    }

    #[tokio::test]
    async fn renamed_group_keeps_members_and_policies() {
        let repo = repo().await;
        let policy = bob_in_devs_with_policy(&repo, Target::Group("devs".into())).await;
        let g = repo
            .rename_group(ACCT, "devs", Some("builders"), Some("/x/"))
            .await
            .expect("rename");
        assert_eq!(g.arn, "arn:aws:iam::000000000000:group/x/builders");
        assert_eq!(
            repo.get_user(ACCT, "bob").await.expect("bob").groups,
            ["builders"]
        );
        assert_eq!(
            repo.get_policy(&policy.arn).await.expect("p").attachments,
            std::slice::from_ref(&g.arn)
        );
        let bob = hive_iam::identity::Principal::User {
            account_id: ACCT.into(),
            username: "bob".into(),
            user_id: String::new(),
            arn: String::new(),
        };
        let eff = repo.effective_policies(&bob, None).await.expect("eff");
        assert_eq!(eff.identity.len(), 1, "the group's policy still applies");
        assert_eq!(
            repo.rename_group(ACCT, "devs", Some("x"), None)
                .await
                .expect_err("old name gone")
                .code(),
            "NoSuchEntity"
        );
    }

    /// A rename racing with membership changes never leaves a user holding a group that does
    /// not list it, nor two records for one user.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn renames_racing_membership_stay_consistent() {
        let repo = std::sync::Arc::new(repo().await);
        for i in 0..20 {
            let (old, new, group) = (format!("u{i}"), format!("v{i}"), format!("g{i}"));
            repo.create_user(ACCT, &old, None, vec![])
                .await
                .expect("user");
            repo.create_group(ACCT, &group, None).await.expect("group");
            let (r1, r2) = (repo.clone(), repo.clone());
            let (o1, n1, o2, g2) = (old.clone(), new.clone(), old.clone(), group.clone());
            let rename =
                tokio::spawn(async move { r1.rename_user(ACCT, &o1, Some(&n1), None).await });
            let join = tokio::spawn(async move { r2.add_user_to_group(ACCT, &g2, &o2).await });
            rename.await.expect("task").expect("rename wins or retries");
            let joined = join.await.expect("task").is_ok();
            assert!(repo.get_user(ACCT, &old).await.is_err(), "one record only");
            let user = repo.get_user(ACCT, &new).await.expect("renamed");
            let members = repo.get_group(ACCT, &group).await.expect("group").members;
            if user.groups.contains(&group) {
                assert_eq!(members, std::slice::from_ref(&new), "iteration {i}");
            }
            if joined {
                assert_eq!(user.groups, std::slice::from_ref(&group), "iteration {i}");
            }
        }
    }

    #[tokio::test]
    async fn boundary_at_creation_and_role_tags() {
        let repo = repo().await;
        assert_eq!(
            repo.create_user_with_boundary(
                ACCT,
                "u",
                None,
                vec![],
                Some("arn:aws:iam::000000000000:policy/none")
            )
            .await
            .expect_err("no policy")
            .code(),
            "NoSuchEntity"
        );
        assert!(repo.get_user(ACCT, "u").await.is_err(), "nothing written");
        let p = repo
            .create_policy(ACCT, "b", None, DOC, None, vec![])
            .await
            .expect("policy");
        let u = repo
            .create_user_with_boundary(ACCT, "u", None, vec![], Some(&p.arn))
            .await
            .expect("user");
        assert_eq!(u.permissions_boundary.as_deref(), Some(p.arn.as_str()));
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;
        repo.create_role(ACCT, "r", None, trust, None, None, vec![])
            .await
            .expect("role");
        let tag = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        repo.tag_role(ACCT, "R", &[tag("team", "a"), tag("env", "prod")])
            .await
            .expect("tag");
        repo.tag_role(ACCT, "r", &[tag("TEAM", "b")])
            .await
            .expect("retag");
        repo.untag_role(ACCT, "r", &["env".into(), "absent".into()])
            .await
            .expect("untag");
        assert_eq!(
            repo.get_role(ACCT, "r").await.expect("role").tags,
            [tag("TEAM", "b")]
        );
        assert_eq!(
            repo.tag_role(ACCT, "nope", &[])
                .await
                .expect_err("no role")
                .code(),
            "NoSuchEntity"
        );
        let key = repo.create_access_key(ACCT, "u").await.expect("key");
        let id = key.record.access_key_id;
        assert_eq!(
            repo.get_access_key(ACCT, &id).await.expect("k").username,
            "u"
        );
        assert!(repo.get_access_key("111111111111", &id).await.is_err());
        assert!(repo.account_created_at(ACCT).await.expect("read").is_none());
        repo.bootstrap(ACCT).await.expect("bootstrap");
        assert!(repo.account_created_at(ACCT).await.expect("read").is_some());
    }
}
