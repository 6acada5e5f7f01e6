//! The bootstrap of an account, crash-safe and resumable: policy `AdministratorAccess`, group
//! `administrators`, user `admin` in it, and exactly one access key, however many processes
//! run it at once and wherever one of them dies.
//!
//! ## The marker
//!
//! `<account>.bootstrap` in the users bucket goes through two states:
//!
//! - **claimed** by one owner (a name unique to one process), naming the access key id the
//!   administrator will get. The id is decided when the claim is made, so every holder of the
//!   claim makes (or finds) that one key: a key record is created exclusively, and a holder
//!   that finds it made opens its sealed secret.
//! - **done**, written by compare-and-swap at the claim's revision, only after the holder has
//!   stored the key where the operator finds it ([`IamRepo::bootstrap_complete`]). A marker
//!   written before claims existed (`{"created_at": ...}` alone) reads as done.
//!
//! A claim is only ever taken from its owner at a revision the taker names
//! ([`IamRepo::bootstrap_step`] with `take_over`); the caller judges when a claim is stale
//! (hive-api: its revision has not moved for a lease, on the caller's own clock). The holder
//! renews the claim (a write that moves its revision) after making the key and before handing
//! it out, so a holder that lost its claim learns it before anyone persists the key twice.

use crate::storage_error;
use hive_kv::KvError;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    ADMIN_GROUP, ADMIN_POLICY, ADMIN_POLICY_DOCUMENT, ADMIN_USER, CAS_RETRIES, IamRepo,
    NewAccessKey, Target,
};
use hive_iam::error::{IamError, Result};
use hive_iam::identity::{EntityKind, arn, generate_access_key_id, validate_account_id};

/// Where an account's bootstrap stands; what [`IamRepo::bootstrap_step`] found or made.
#[derive(Debug)]
pub enum BootstrapStep {
    /// Complete: nothing to do.
    Done,
    /// Another owner holds the claim. `revision` changes whenever the claim does (it is
    /// renewed, taken over or completed): a revision that stands still for long enough means
    /// its owner stopped, and is what `take_over` names.
    Busy {
        /// The owner holding the claim.
        owner: String,
        /// The marker's revision as seen.
        revision: u64,
    },
    /// The caller holds the claim and the administrator's key: store the key where the
    /// operator finds it, then call [`IamRepo::bootstrap_complete`].
    Claimed(Box<BootstrapClaim>),
}

/// A held bootstrap claim with the administrator's key (its secret is shown once).
pub struct BootstrapClaim {
    account_id: String,
    revision: u64,
    marker: BootstrapMarker,
    /// The administrator's access key, with its secret.
    pub key: NewAccessKey,
}

impl std::fmt::Debug for BootstrapClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapClaim")
            .field("account_id", &self.account_id)
            .field("revision", &self.revision)
            .field("access_key_id", &self.key.record.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What [`IamRepo::bootstrap`] did.
#[derive(Debug, Clone)]
pub enum BootstrapOutcome {
    /// This call completed the bootstrap and holds the administrator's access key.
    Created(Box<NewAccessKey>),
    /// The account was bootstrapped before, or another caller holds the claim right now.
    AlreadyDone,
}

/// The stored marker (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct BootstrapMarker {
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: OffsetDateTime,
    /// Absent in markers written before claims existed: those are done.
    #[serde(default)]
    state: MarkerState,
    /// The administrator's key, decided with the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    /// Who holds the claim (while claimed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// When the owner claimed or last renewed it (for operators; nothing decides by it).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    claimed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MarkerState {
    Claimed,
    #[default]
    Done,
}

fn marker_key(account_id: &str) -> String {
    format!("{account_id}.bootstrap")
}

fn encode(marker: &BootstrapMarker) -> Result<bytes::Bytes> {
    serde_json::to_vec(marker)
        .map(Into::into)
        .map_err(|e| super::storage_error(KvError::Codec(e.to_string())))
}

/// The claim as read: held by this caller, or what to answer instead.
enum Claim {
    Held(u64, BootstrapMarker),
    Answer(BootstrapStep),
}

impl IamRepo {
    /// The account's bootstrap marker and its revision, `None` before any bootstrap.
    pub(super) async fn bootstrap_marker(
        &self,
        account_id: &str,
    ) -> Result<Option<(u64, BootstrapMarker)>> {
        validate_account_id(account_id)?;
        let key = marker_key(account_id);
        let Some(entry) = self.users_raw.get(&key).await.map_err(storage_error)? else {
            return Ok(None);
        };
        let marker = serde_json::from_slice(&entry.value).map_err(|e| IamError::CorruptRecord {
            key,
            reason: e.to_string(),
        })?;
        Ok(Some((entry.revision, marker)))
    }

    /// One step of the bootstrap of `account_id` for `owner`, a name unique to the calling
    /// process (see the module docs):
    /// - complete: [`BootstrapStep::Done`];
    /// - not claimed: claim it (deciding the key id);
    /// - claimed by `owner` (an earlier attempt of this process): carry on;
    /// - claimed by another owner at revision `take_over` (the caller judged it stale): take
    ///   it over;
    /// - claimed by another owner otherwise: [`BootstrapStep::Busy`].
    ///
    /// Holding the claim, it creates whatever is missing (policy, group, attachment, user,
    /// membership, the key with the claimed id, or opens that key when an earlier holder made
    /// it), renews the claim and returns [`BootstrapStep::Claimed`]. Safe to repeat after any
    /// failure.
    pub async fn bootstrap_step(
        &self,
        account_id: &str,
        owner: &str,
        take_over: Option<u64>,
    ) -> Result<BootstrapStep> {
        for _ in 0..CAS_RETRIES {
            let (revision, mut marker) = match self.claim(account_id, owner, take_over).await? {
                Claim::Held(revision, marker) => (revision, marker),
                Claim::Answer(step) => return Ok(step),
            };
            let access_key_id = marker
                .access_key_id
                .clone()
                .ok_or_else(|| corrupt(account_id))?;
            self.ensure_admin_entities(account_id).await?;
            let key = self
                .ensure_access_key(account_id, ADMIN_USER, &access_key_id)
                .await?;
            marker.claimed_at = Some(OffsetDateTime::now_utc());
            match self
                .users_raw
                .update(&marker_key(account_id), encode(&marker)?, revision)
                .await
            {
                Ok(revision) => {
                    return Ok(BootstrapStep::Claimed(Box::new(BootstrapClaim {
                        account_id: account_id.to_owned(),
                        revision,
                        marker,
                        key,
                    })));
                }
                // Taken over (or completed) meanwhile: read again.
                Err(KvError::RevisionConflict { .. }) => continue,
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(busy(account_id))
    }

    /// Records the bootstrap as done, at the claim's revision. `false` when the claim was
    /// lost meanwhile (another process took it over): that one completes it with the same key.
    pub async fn bootstrap_complete(&self, claim: &BootstrapClaim) -> Result<bool> {
        let done = BootstrapMarker {
            state: MarkerState::Done,
            owner: None,
            claimed_at: None,
            ..claim.marker.clone()
        };
        match self
            .users_raw
            .update(
                &marker_key(&claim.account_id),
                encode(&done)?,
                claim.revision,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(KvError::RevisionConflict { .. }) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Bootstraps in one go for callers that keep the key in memory only (tests, tools that
    /// hand it out themselves): a fresh claim, completed at once. `AlreadyDone` also while
    /// another caller holds the claim.
    pub async fn bootstrap(&self, account_id: &str) -> Result<BootstrapOutcome> {
        let owner = format!("oneshot-{}", generate_access_key_id(&mut OsRng));
        match self.bootstrap_step(account_id, &owner, None).await? {
            BootstrapStep::Claimed(claim) => {
                if self.bootstrap_complete(&claim).await? {
                    Ok(BootstrapOutcome::Created(Box::new(claim.key)))
                } else {
                    Ok(BootstrapOutcome::AlreadyDone)
                }
            }
            BootstrapStep::Done | BootstrapStep::Busy { .. } => Ok(BootstrapOutcome::AlreadyDone),
        }
    }

    /// Whether the account's bootstrap is complete.
    pub async fn is_bootstrapped(&self, account_id: &str) -> Result<bool> {
        Ok(self
            .bootstrap_marker(account_id)
            .await?
            .is_some_and(|(_, m)| m.state == MarkerState::Done))
    }

    /// Reads the marker and claims it for `owner` where the rules allow (see
    /// [`IamRepo::bootstrap_step`]).
    async fn claim(&self, account_id: &str, owner: &str, take_over: Option<u64>) -> Result<Claim> {
        let key = marker_key(account_id);
        for _ in 0..CAS_RETRIES {
            let written = match self.bootstrap_marker(account_id).await? {
                None => {
                    let marker = BootstrapMarker {
                        created_at: OffsetDateTime::now_utc(),
                        state: MarkerState::Claimed,
                        access_key_id: Some(generate_access_key_id(&mut OsRng)),
                        owner: Some(owner.to_owned()),
                        claimed_at: Some(OffsetDateTime::now_utc()),
                    };
                    let written = self.users_raw.create(&key, encode(&marker)?).await;
                    written.map(|revision| (revision, marker))
                }
                Some((_, marker)) if marker.state == MarkerState::Done => {
                    return Ok(Claim::Answer(BootstrapStep::Done));
                }
                Some((revision, marker)) if marker.owner.as_deref() == Some(owner) => {
                    return Ok(Claim::Held(revision, marker));
                }
                Some((revision, mut marker)) if take_over == Some(revision) => {
                    marker.owner = Some(owner.to_owned());
                    marker.claimed_at = Some(OffsetDateTime::now_utc());
                    let written = self
                        .users_raw
                        .update(&key, encode(&marker)?, revision)
                        .await;
                    written.map(|revision| (revision, marker))
                }
                Some((revision, marker)) => {
                    let owner = marker.owner.ok_or_else(|| corrupt(account_id))?;
                    return Ok(Claim::Answer(BootstrapStep::Busy { owner, revision }));
                }
            };
            match written {
                Ok((revision, marker)) => return Ok(Claim::Held(revision, marker)),
                // Someone else claimed, renewed or completed it first: read again.
                Err(KvError::AlreadyExists { .. } | KvError::RevisionConflict { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        Err(busy(account_id))
    }

    /// Policy `AdministratorAccess`, group `administrators` with it attached, user `admin` in
    /// the group: each created or attached unless it already is.
    async fn ensure_admin_entities(&self, account_id: &str) -> Result<()> {
        let accept_existing = |r: Result<()>| match r {
            Ok(()) | Err(IamError::EntityAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        };
        accept_existing(
            self.create_policy(
                account_id,
                ADMIN_POLICY,
                None,
                ADMIN_POLICY_DOCUMENT,
                Some("Provides full access to all services and resources."),
                Vec::new(),
            )
            .await
            .map(drop),
        )?;
        accept_existing(
            self.create_group(account_id, ADMIN_GROUP, None)
                .await
                .map(drop),
        )?;
        let policy_arn = arn(account_id, EntityKind::Policy, "/", ADMIN_POLICY);
        self.attach_policy(account_id, &Target::Group(ADMIN_GROUP.into()), &policy_arn)
            .await?;
        accept_existing(
            self.create_user(account_id, ADMIN_USER, None, Vec::new())
                .await
                .map(drop),
        )?;
        self.add_user_to_group(account_id, ADMIN_GROUP, ADMIN_USER)
            .await
    }
}

fn corrupt(account_id: &str) -> IamError {
    IamError::CorruptRecord {
        key: marker_key(account_id),
        reason: "a claimed bootstrap marker without its owner or key id".into(),
    }
}

fn busy(account_id: &str) -> IamError {
    IamError::ConcurrentModification(format!(
        "Too many concurrent changes to {}; try again.",
        marker_key(account_id)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::IamBucketNames;
    use hive_iam::seal::{Keyring, SealKey};
    use hive_kv::KvStore as _;
    use hive_kv::memory::MemoryStore;

    const ACCT: &str = "000000000000";

    async fn repo(store: &MemoryStore) -> IamRepo {
        let keyring = Keyring::new(SealKey::from_hex(&"42".repeat(32)).expect("key"));
        IamRepo::open(store, &IamBucketNames::default(), keyring)
            .await
            .expect("open")
    }

    fn claimed(step: BootstrapStep) -> BootstrapClaim {
        match step {
            BootstrapStep::Claimed(c) => *c,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_claim_is_kept_from_others_until_taken_over_at_its_revision() {
        let store = MemoryStore::new();
        let repo = repo(&store).await;
        let first = claimed(repo.bootstrap_step(ACCT, "a", None).await.expect("a"));
        // Another owner is kept out, also when naming a revision the claim no longer has.
        let BootstrapStep::Busy { owner, revision } =
            repo.bootstrap_step(ACCT, "b", None).await.expect("b")
        else {
            panic!("b must wait");
        };
        assert_eq!((owner.as_str(), revision), ("a", first.revision));
        assert!(matches!(
            repo.bootstrap_step(ACCT, "b", Some(revision - 1)).await,
            Ok(BootstrapStep::Busy { .. })
        ));
        // Its owner carries on with the same key (an earlier attempt of the same process).
        let again = claimed(repo.bootstrap_step(ACCT, "a", None).await.expect("a again"));
        assert_eq!(
            again.key.record.access_key_id,
            first.key.record.access_key_id
        );
        assert_eq!(
            again.key.secret_access_key.expose(),
            first.key.secret_access_key.expose()
        );
        // Taken over at its revision: the taker gets that same key, and the old owner can
        // neither complete nor carry on.
        let taken = claimed(
            repo.bootstrap_step(ACCT, "b", Some(again.revision))
                .await
                .expect("take over"),
        );
        assert_eq!(
            taken.key.record.access_key_id,
            first.key.record.access_key_id
        );
        assert_eq!(
            taken.key.secret_access_key.expose(),
            first.key.secret_access_key.expose()
        );
        assert!(!repo.bootstrap_complete(&again).await.expect("complete a"));
        assert!(matches!(
            repo.bootstrap_step(ACCT, "a", None).await,
            Ok(BootstrapStep::Busy { .. })
        ));
        assert!(!repo.is_bootstrapped(ACCT).await.expect("read"));
        assert!(repo.bootstrap_complete(&taken).await.expect("complete b"));
        assert!(repo.is_bootstrapped(ACCT).await.expect("read"));
        for owner in ["a", "b", "c"] {
            assert!(matches!(
                repo.bootstrap_step(ACCT, owner, None).await,
                Ok(BootstrapStep::Done)
            ));
        }
        let admin = repo.get_user(ACCT, ADMIN_USER).await.expect("admin");
        assert_eq!(
            admin.access_keys,
            std::slice::from_ref(&first.key.record.access_key_id)
        );
        assert_eq!(admin.groups, [ADMIN_GROUP]);
    }

    /// A claim whose holder died before making the key: the id it decided is the one made.
    #[tokio::test]
    async fn the_claimed_key_id_is_the_key_made() {
        let store = MemoryStore::new();
        let repo = repo(&store).await;
        let marker = BootstrapMarker {
            created_at: OffsetDateTime::now_utc(),
            state: MarkerState::Claimed,
            access_key_id: Some("AKIACLAIMEDBYDEAD01".into()),
            owner: Some("dead".into()),
            claimed_at: None,
        };
        let users = store
            .open(crate::buckets::DEFAULT_USERS_BUCKET)
            .await
            .expect("users bucket");
        let revision = users
            .create(&marker_key(ACCT), encode(&marker).expect("encode"))
            .await
            .expect("claim");
        let claim = claimed(
            repo.bootstrap_step(ACCT, "b", Some(revision))
                .await
                .expect("take over"),
        );
        assert_eq!(claim.key.record.access_key_id, "AKIACLAIMEDBYDEAD01");
        assert!(repo.bootstrap_complete(&claim).await.expect("complete"));
        let keys = repo.list_access_keys(ACCT, ADMIN_USER).await.expect("keys");
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn a_marker_from_before_claims_reads_as_done() {
        let store = MemoryStore::new();
        let repo = repo(&store).await;
        let users = store
            .open(crate::buckets::DEFAULT_USERS_BUCKET)
            .await
            .expect("users bucket");
        users
            .create(
                &marker_key(ACCT),
                r#"{"created_at":"2024-05-01T10:00:00Z"}"#.into(),
            )
            .await
            .expect("old marker");
        assert!(repo.is_bootstrapped(ACCT).await.expect("read"));
        assert!(matches!(
            repo.bootstrap_step(ACCT, "a", None).await,
            Ok(BootstrapStep::Done)
        ));
        assert!(repo.account_created_at(ACCT).await.expect("read").is_some());
    }
}
