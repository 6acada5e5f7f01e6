//! Keys by id: importing an existing key pair (migration from another IAM) and reading a
//! key's record by its id alone.

use super::{IamRepo, NewAccessKey, Result};
use crate::storage_error;
use hive_iam::error::IamError;
use hive_iam::identity::{AccessKeyRecord, SECRET_KEY_LEN, is_valid_access_key_id};
use hive_iam::seal::SecretString;

impl IamRepo {
    /// Stores an existing key pair for `user`, sealed like any other key. The id must look
    /// like an AWS long-term key id (`AKIA` + 16 upper-case letters or digits) and the secret
    /// like an AWS secret (40 characters of base64 alphabet); the per-user limit of two keys
    /// applies, and an id already in use is `EntityAlreadyExists`.
    pub async fn import_access_key(
        &self,
        account_id: &str,
        user: &str,
        access_key_id: &str,
        secret: SecretString,
    ) -> Result<NewAccessKey> {
        if !access_key_id.starts_with("AKIA") || !is_valid_access_key_id(access_key_id) {
            return Err(IamError::Validation(format!(
                "The access key id {access_key_id} is not valid: it must be AKIA followed by 16 upper-case letters or digits."
            )));
        }
        let plausible = secret.len() == SECRET_KEY_LEN
            && secret
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
        if !plausible {
            // Never echo the secret, not even in part.
            return Err(IamError::Validation(format!(
                "The secret access key must be {SECRET_KEY_LEN} characters of letters, digits, '+' and '/'."
            )));
        }
        if self
            .keys
            .get(access_key_id)
            .await
            .map_err(storage_error)?
            .is_some()
        {
            return Err(IamError::EntityAlreadyExists(format!(
                "Access key {access_key_id} already exists."
            )));
        }
        self.add_access_key(account_id, user, access_key_id.to_owned(), secret)
            .await
    }

    /// The record of a long-term access key of `account_id`, by id alone (`GetAccessKeyLastUsed`,
    /// operators' tools), or `NoSuchEntity`. Keys of other accounts are reported as absent.
    pub async fn get_access_key(
        &self,
        account_id: &str,
        access_key_id: &str,
    ) -> Result<AccessKeyRecord> {
        hive_iam::identity::validate_account_id(account_id)?;
        let missing = || {
            IamError::NoSuchEntity(format!(
                "The Access Key with id {access_key_id} cannot be found."
            ))
        };
        if hive_kv::validate_key(access_key_id).is_err() {
            return Err(missing());
        }
        let key = self
            .keys
            .get(access_key_id)
            .await
            .map_err(storage_error)?
            .ok_or_else(missing)?
            .value;
        if key.account_id != account_id {
            return Err(missing());
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::buckets::IamBucketNames;
    use hive_kv::memory::MemoryStore;
    use time::OffsetDateTime;

    use super::*;
    use hive_iam::seal::{Keyring, SealKey};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    async fn repo() -> IamRepo {
        let store = Arc::new(MemoryStore::new());
        let (key, _) = SealKey::generate(&mut rand::rngs::OsRng);
        let repo = IamRepo::open(
            store.as_ref(),
            &IamBucketNames::default(),
            Keyring::new(key),
        )
        .await
        .expect("open");
        repo.create_user("000000000000", "migrated", None, Vec::new())
            .await
            .expect("user");
        repo
    }

    /// Imports the documentation's example key for `migrated`.
    async fn import_example(repo: &IamRepo) -> Result<NewAccessKey> {
        repo.import_access_key(
            "000000000000",
            "migrated",
            "AKIAIOSFODNN7EXAMPLE",
            SECRET.into(),
        )
        .await
    }

    #[tokio::test]
    async fn imported_key_authenticates_with_its_secret() {
        let repo = repo().await;
        let new = import_example(&repo).await.expect("import");
        assert!(new.record.secret_access_key_sealed.is_some());
        assert!(new.record.secret_access_key.is_none(), "sealed at rest");
        let cred = repo
            .lookup_credential("AKIAIOSFODNN7EXAMPLE", OffsetDateTime::now_utc())
            .await
            .expect("lookup")
            .expect("known");
        assert_eq!(cred.secret.expose(), SECRET);
        assert_eq!(
            repo.get_access_key("000000000000", "AKIAIOSFODNN7EXAMPLE")
                .await
                .expect("get")
                .username,
            "migrated"
        );
    }

    #[tokio::test]
    async fn bad_ids_secrets_and_duplicates_change_nothing() {
        let repo = repo().await;
        for (id, secret) in [
            ("ASIAIOSFODNN7EXAMPLE", SECRET),
            ("AKIAshort", SECRET),
            ("AKIAIOSFODNN7EXAMPLE", "too-short"),
            (
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE!",
            ),
        ] {
            let e = repo
                .import_access_key("000000000000", "migrated", id, secret.into())
                .await
                .expect_err("refused");
            assert!(!e.to_string().contains(secret), "secret echoed: {e}");
        }
        assert!(
            repo.list_access_keys("000000000000", "migrated")
                .await
                .expect("list")
                .is_empty()
        );
        import_example(&repo).await.expect("first");
        let e = import_example(&repo).await.expect_err("duplicate");
        assert!(matches!(e, IamError::EntityAlreadyExists(_)), "{e:?}");
        assert_eq!(
            repo.list_access_keys("000000000000", "migrated")
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(matches!(
            repo.get_access_key("000000000000", "AKIAZZZZZZZZZZZZZZZZ")
                .await,
            Err(IamError::NoSuchEntity(_))
        ));
    }
}
