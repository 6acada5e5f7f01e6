//! Where managed policies are used: the users, groups and roles a policy is attached to, and the
//! users and roles that use it as their permissions boundary.
//!
//! A policy's `attachments` list guards deletion and serves listings, but the entity's own
//! `policies` list is authoritative (see the parent module): an attachment whose entity is gone
//! or no longer lists the policy (an interrupted attach or detach) is not reported. Boundaries
//! are recorded only on the users and roles, so finding them scans the account's users and
//! roles.

use crate::storage_error;
use std::collections::BTreeMap;

use hive_kv::TypedBucket;

use super::IamRepo;
use hive_iam::error::Result;
use hive_iam::identity::{EntityKind, ParsedArn, RoleRecord, UserRecord, parse_arn};

/// How an entity uses a managed policy (AWS's `PolicyUsageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyUsage {
    /// Attached as a permissions policy (`PermissionsPolicy`).
    Permissions,
    /// Set as the entity's permissions boundary (`PermissionsBoundary`).
    Boundary,
}

impl PolicyUsage {
    /// AWS's name (`PermissionsPolicy`, `PermissionsBoundary`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permissions => "PermissionsPolicy",
            Self::Boundary => "PermissionsBoundary",
        }
    }

    /// The usage AWS names `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PermissionsPolicy" => Some(Self::Permissions),
            "PermissionsBoundary" => Some(Self::Boundary),
            _ => None,
        }
    }
}

/// A user, group or role that uses a managed policy, as `ListEntitiesForPolicy` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntity {
    /// User, group or role.
    pub kind: EntityKind,
    /// The entity's name.
    pub name: String,
    /// The entity's unique id (`AIDA...`, `AGPA...`, `AROA...`).
    pub id: String,
    /// The entity's ARN.
    pub arn: String,
    /// The entity's path.
    pub path: String,
    /// How it uses the policy.
    pub usage: PolicyUsage,
}

fn user_entity(u: &UserRecord, usage: PolicyUsage) -> PolicyEntity {
    PolicyEntity {
        kind: EntityKind::User,
        name: u.username.clone(),
        id: u.user_id.clone(),
        arn: u.arn.clone(),
        path: u.path.clone(),
        usage,
    }
}

/// The group or role an attachment's ARN names, if it still exists.
async fn find_named<T>(bucket: &TypedBucket<T>, parsed: &ParsedArn) -> Result<Option<T>>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync,
{
    let key = super::entity_key(&parsed.account_id, parsed.kind, &parsed.name);
    Ok(bucket
        .get(&key)
        .await
        .map_err(storage_error)?
        .map(|v| v.value))
}

fn role_entity(r: &RoleRecord, usage: PolicyUsage) -> PolicyEntity {
    PolicyEntity {
        kind: EntityKind::Role,
        name: r.role_name.clone(),
        id: r.role_id.clone(),
        arn: r.arn.clone(),
        path: r.path.clone(),
        usage,
    }
}

impl IamRepo {
    /// `ListEntitiesForPolicy`: every user, group and role that has `policy_arn` attached, then
    /// every user and role that uses it as permissions boundary; `NoSuchEntity` when the policy
    /// does not exist. An entity that both attaches the policy and uses it as its boundary is
    /// reported once per usage.
    pub async fn entities_for_policy(&self, policy_arn: &str) -> Result<Vec<PolicyEntity>> {
        let policy = self.get_policy(policy_arn).await?;
        let mut out = Vec::new();
        for attached in &policy.attachments {
            let Some(parsed) = parse_arn(attached) else {
                continue;
            };
            if parsed.account_id != policy.account_id {
                continue;
            }
            let usage = PolicyUsage::Permissions;
            // A missing entity or one that no longer lists the policy is a stale attachment.
            match parsed.kind {
                EntityKind::User => {
                    if let Some(u) = self.find_user(&parsed.account_id, &parsed.name).await?
                        && u.policies.iter().any(|p| p == &policy.arn)
                    {
                        out.push(user_entity(&u, usage));
                    }
                }
                EntityKind::Group => {
                    if let Some(g) = find_named(&self.groups, &parsed).await?
                        && g.policies.iter().any(|p| p == &policy.arn)
                    {
                        out.push(PolicyEntity {
                            kind: EntityKind::Group,
                            name: g.group_name.clone(),
                            id: g.group_id.clone(),
                            arn: g.arn.clone(),
                            path: g.path.clone(),
                            usage,
                        });
                    }
                }
                EntityKind::Role => {
                    if let Some(r) = find_named(&self.roles, &parsed).await?
                        && r.policies.iter().any(|p| p == &policy.arn)
                    {
                        out.push(role_entity(&r, usage));
                    }
                }
                EntityKind::Policy => {}
            }
        }
        out.extend(
            self.boundary_holders(&policy.account_id, &policy.arn)
                .await?,
        );
        Ok(out)
    }

    /// The users and roles of `account_id` whose permissions boundary is `policy_arn`.
    pub async fn boundary_holders(
        &self,
        account_id: &str,
        policy_arn: &str,
    ) -> Result<Vec<PolicyEntity>> {
        let usage = PolicyUsage::Boundary;
        let mut out: Vec<PolicyEntity> = self
            .list_users(account_id, None)
            .await?
            .iter()
            .filter(|u| u.permissions_boundary.as_deref() == Some(policy_arn))
            .map(|u| user_entity(u, usage))
            .collect();
        out.extend(
            self.list_roles(account_id, None)
                .await?
                .iter()
                .filter(|r| r.permissions_boundary.as_deref() == Some(policy_arn))
                .map(|r| role_entity(r, usage)),
        );
        Ok(out)
    }

    /// How many users and roles of `account_id` use each policy as permissions boundary (one
    /// scan, for `ListPolicies` and `GetAccountAuthorizationDetails`); policies used by none
    /// are absent.
    pub async fn boundary_usage_counts(&self, account_id: &str) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for u in self.list_users(account_id, None).await? {
            if let Some(b) = u.permissions_boundary {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
        for r in self.list_roles(account_id, None).await? {
            if let Some(b) = r.permissions_boundary {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Whether any user or role of the policy's account uses `policy_arn` as its permissions
    /// boundary (`DeletePolicy` refuses such a policy, as AWS does).
    pub async fn is_permissions_boundary(&self, policy_arn: &str) -> Result<bool> {
        let Some(parsed) = parse_arn(policy_arn).filter(|p| p.kind == EntityKind::Policy) else {
            return Ok(false);
        };
        Ok(!self
            .boundary_holders(&parsed.account_id, policy_arn)
            .await?
            .is_empty())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::buckets::IamBucketNames;
    use hive_kv::memory::MemoryStore;

    use super::*;
    use crate::Target;
    use hive_iam::error::IamError;
    use hive_iam::seal::{Keyring, SealKey};

    const ACCOUNT: &str = "123456789012";
    const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

    async fn repo() -> IamRepo {
        let store = Arc::new(MemoryStore::new());
        IamRepo::open(
            store.as_ref(),
            &IamBucketNames::default(),
            Keyring::new(SealKey::generate(&mut rand::rngs::OsRng).0),
        )
        .await
        .expect("open repo")
    }

    #[tokio::test]
    async fn entities_report_attachments_and_boundaries_and_guard_deletion() {
        let repo = repo().await;
        let p = repo
            .create_policy(ACCOUNT, "S3", Some("/team/"), DOC, None, Vec::new())
            .await
            .expect("policy");
        repo.create_user(ACCOUNT, "alice", None, Vec::new())
            .await
            .expect("user");
        repo.create_group(ACCOUNT, "devs", None)
            .await
            .expect("group");
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#;
        repo.create_role(ACCOUNT, "ops", None, trust, None, None, Vec::new())
            .await
            .expect("role");
        repo.attach_policy(ACCOUNT, &Target::User("alice".into()), &p.arn)
            .await
            .expect("attach user");
        repo.attach_policy(ACCOUNT, &Target::Group("devs".into()), &p.arn)
            .await
            .expect("attach group");
        repo.set_permissions_boundary(ACCOUNT, &Target::Role("ops".into()), Some(&p.arn))
            .await
            .expect("boundary");

        let found = repo.entities_for_policy(&p.arn).await.expect("entities");
        let summary: Vec<(EntityKind, &str, PolicyUsage)> = found
            .iter()
            .map(|e| (e.kind, e.name.as_str(), e.usage))
            .collect();
        assert_eq!(
            summary,
            vec![
                (EntityKind::User, "alice", PolicyUsage::Permissions),
                (EntityKind::Group, "devs", PolicyUsage::Permissions),
                (EntityKind::Role, "ops", PolicyUsage::Boundary),
            ]
        );
        assert!(found[0].id.starts_with("AIDA") && found[1].id.starts_with("AGPA"));
        assert_eq!(
            repo.boundary_usage_counts(ACCOUNT)
                .await
                .expect("counts")
                .get(&p.arn),
            Some(&1)
        );
        assert!(repo.is_permissions_boundary(&p.arn).await.expect("check"));

        // Detached everywhere, it is still a boundary: deletion is refused.
        repo.detach_policy(ACCOUNT, &Target::User("alice".into()), &p.arn)
            .await
            .expect("detach");
        repo.detach_policy(ACCOUNT, &Target::Group("devs".into()), &p.arn)
            .await
            .expect("detach");
        let err = repo.delete_policy(&p.arn).await.expect_err("boundary");
        assert!(matches!(err, IamError::DeleteConflict(_)), "{err:?}");
        repo.set_permissions_boundary(ACCOUNT, &Target::Role("ops".into()), None)
            .await
            .expect("clear boundary");
        assert!(!repo.is_permissions_boundary(&p.arn).await.expect("check"));
        repo.delete_policy(&p.arn).await.expect("deleted");
        assert!(matches!(
            repo.entities_for_policy(&p.arn).await,
            Err(IamError::NoSuchEntity(_))
        ));
    }

    #[test]
    fn usage_names_round_trip() {
        for u in [PolicyUsage::Permissions, PolicyUsage::Boundary] {
            assert_eq!(PolicyUsage::parse(u.as_str()), Some(u));
        }
        assert_eq!(PolicyUsage::parse("permissionspolicy"), None);
    }
}
