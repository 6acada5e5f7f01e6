//! The five IAM buckets of the operators' setup guide, and the `hive.toml` `[iam]` keys that
//! rename them.
//!
//! | bucket | default name | history | TTL |
//! |---|---|---|---|
//! | users | `hive-iam-users` | 10 | none |
//! | roles | `hive-iam-roles` | 10 | none |
//! | policies | `hive-iam-policies` | 10 | none |
//! | access keys | `hive-iam-access-keys` | 10 | none |
//! | sessions | `hive-iam-sessions` | 5 | 3600 s |

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hive_kv::{Bucket, BucketConfig, KvStore, Result};

/// History kept by the users, roles, policies and access-keys buckets.
pub const IAM_HISTORY: u8 = 10;
/// History kept by the sessions bucket.
pub const SESSIONS_HISTORY: u8 = 5;
/// How long a session record lives.
pub const SESSIONS_TTL: Duration = Duration::from_secs(3600);

/// Default name of the users bucket.
pub const DEFAULT_USERS_BUCKET: &str = "hive-iam-users";
/// Default name of the roles bucket.
pub const DEFAULT_ROLES_BUCKET: &str = "hive-iam-roles";
/// Default name of the policies bucket.
pub const DEFAULT_POLICIES_BUCKET: &str = "hive-iam-policies";
/// Default name of the access-keys bucket.
pub const DEFAULT_ACCESS_KEYS_BUCKET: &str = "hive-iam-access-keys";
/// Default name of the sessions bucket.
pub const DEFAULT_SESSIONS_BUCKET: &str = "hive-iam-sessions";

/// The bucket names from `hive.toml` `[iam]`. Unknown keys of that table are ignored, so this
/// deserializes from the whole `[iam]` table (or can be `#[serde(flatten)]`ed into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IamBucketNames {
    /// `kv_bucket_users`.
    pub kv_bucket_users: String,
    /// `kv_bucket_roles`.
    pub kv_bucket_roles: String,
    /// `kv_bucket_policies`.
    pub kv_bucket_policies: String,
    /// `kv_bucket_access_keys`.
    pub kv_bucket_access_keys: String,
    /// `kv_bucket_sessions`.
    pub kv_bucket_sessions: String,
}

impl Default for IamBucketNames {
    fn default() -> Self {
        Self {
            kv_bucket_users: DEFAULT_USERS_BUCKET.to_owned(),
            kv_bucket_roles: DEFAULT_ROLES_BUCKET.to_owned(),
            kv_bucket_policies: DEFAULT_POLICIES_BUCKET.to_owned(),
            kv_bucket_access_keys: DEFAULT_ACCESS_KEYS_BUCKET.to_owned(),
            kv_bucket_sessions: DEFAULT_SESSIONS_BUCKET.to_owned(),
        }
    }
}

impl IamBucketNames {
    /// The five bucket configurations (users, roles, policies, access keys, sessions), each
    /// with `replicas` copies (1 unless running on a JetStream cluster).
    pub fn configs(&self, replicas: usize) -> [BucketConfig; 5] {
        let standard = |name: &str| {
            BucketConfig::new(name)
                .with_history(IAM_HISTORY)
                .with_replicas(replicas)
        };
        [
            standard(&self.kv_bucket_users),
            standard(&self.kv_bucket_roles),
            standard(&self.kv_bucket_policies),
            standard(&self.kv_bucket_access_keys),
            BucketConfig::new(&self.kv_bucket_sessions)
                .with_history(SESSIONS_HISTORY)
                .with_ttl(SESSIONS_TTL)
                .with_replicas(replicas),
        ]
    }

    /// Creates (or opens) all five buckets.
    pub async fn open_all(&self, store: &dyn KvStore, replicas: usize) -> Result<IamBuckets> {
        let [users, roles, policies, access_keys, sessions] = self.configs(replicas);
        Ok(IamBuckets {
            users: store.create_or_open(&users).await?,
            roles: store.create_or_open(&roles).await?,
            policies: store.create_or_open(&policies).await?,
            access_keys: store.create_or_open(&access_keys).await?,
            sessions: store.create_or_open(&sessions).await?,
        })
    }
}

/// The five opened IAM buckets.
#[derive(Clone)]
pub struct IamBuckets {
    /// Users (history 10).
    pub users: Arc<dyn Bucket>,
    /// Roles (history 10).
    pub roles: Arc<dyn Bucket>,
    /// Managed policies (history 10).
    pub policies: Arc<dyn Bucket>,
    /// Access keys (history 10).
    pub access_keys: Arc<dyn Bucket>,
    /// Sessions (history 5, TTL one hour).
    pub sessions: Arc<dyn Bucket>,
}

impl std::fmt::Debug for IamBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamBuckets")
            .field("users", &self.users.name())
            .field("roles", &self.roles.name())
            .field("policies", &self.policies.name())
            .field("access_keys", &self.access_keys.name())
            .field("sessions", &self.sessions.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_kv::memory::MemoryStore;

    #[test]
    fn defaults_match_the_setup_guide() {
        let names = IamBucketNames::default();
        let [users, roles, policies, keys, sessions] = names.configs(1);
        for (c, name) in [
            (&users, "hive-iam-users"),
            (&roles, "hive-iam-roles"),
            (&policies, "hive-iam-policies"),
            (&keys, "hive-iam-access-keys"),
        ] {
            assert_eq!((c.name.as_str(), c.history, c.ttl), (name, 10, None));
        }
        assert_eq!(sessions.name, "hive-iam-sessions");
        assert_eq!(sessions.history, 5);
        assert_eq!(sessions.ttl, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn reads_the_iam_table_of_hive_toml() {
        let names: IamBucketNames = serde_json::from_value(serde_json::json!({
            "enabled": true,
            "kv_bucket_users": "u",
            "kv_bucket_sessions": "s",
        }))
        .unwrap();
        assert_eq!(names.kv_bucket_users, "u");
        assert_eq!(names.kv_bucket_sessions, "s");
        assert_eq!(names.kv_bucket_roles, DEFAULT_ROLES_BUCKET);
    }

    #[tokio::test]
    async fn opens_all_five() {
        let store = MemoryStore::new();
        let buckets = IamBucketNames::default().open_all(&store, 1).await.unwrap();
        assert_eq!(buckets.access_keys.name(), "hive-iam-access-keys");
        assert!(store.open("hive-iam-sessions").await.is_ok());
    }
}
