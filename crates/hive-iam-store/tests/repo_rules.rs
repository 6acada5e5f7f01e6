//! The identity repository's AWS rules, against the in-memory and the SQLite adapters.

use std::sync::Arc;

use bytes::Bytes;
use hive_iam::error::IamError;
use hive_iam::identity::{KeyStatus, Principal, Tag};
use hive_iam::seal::{Keyring, SealKey};
use hive_iam_store::buckets::IamBucketNames;
use hive_iam_store::{BootstrapOutcome, IamRepo, Target};
use hive_kv::KvStore;
use hive_kv::memory::MemoryStore;
use hive_kv::sqlite::SqliteStore;
use time::OffsetDateTime;

const ACCT: &str = "000000000000";
const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "1f0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e00";
const DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"sts:AssumeRole"}]}"#;

fn keyring() -> Keyring {
    Keyring::new(SealKey::from_hex(K1).expect("valid key"))
}

async fn repo_on(store: &dyn KvStore) -> IamRepo {
    IamRepo::open(store, &IamBucketNames::default(), keyring())
        .await
        .expect("buckets open")
}

fn code<T: std::fmt::Debug>(r: Result<T, IamError>) -> &'static str {
    r.expect_err("expected an error").code()
}

fn policy_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCT}:policy/{name}")
}

async fn users_and_names(repo: &IamRepo) {
    let u = repo
        .create_user(ACCT, "Alice", Some("/team/"), vec![])
        .await
        .expect("create");
    assert_eq!(u.arn, "arn:aws:iam::000000000000:user/team/Alice");
    assert!(u.user_id.starts_with("AIDA") && u.user_id.len() == 21);
    assert_eq!(
        code(repo.create_user(ACCT, "alice", None, vec![]).await),
        "EntityAlreadyExists"
    );
    assert_eq!(
        code(repo.create_user(ACCT, "ALICE", None, vec![]).await),
        "EntityAlreadyExists"
    );
    assert_eq!(
        repo.get_user(ACCT, "aLiCe")
            .await
            .expect("case-insensitive")
            .username,
        "Alice"
    );
    assert_eq!(
        code(repo.create_user(ACCT, "bad name", None, vec![]).await),
        "ValidationError"
    );
    assert_eq!(
        code(repo.create_user(ACCT, "x", Some("nope"), vec![]).await),
        "ValidationError"
    );
    assert_eq!(
        code(repo.create_user("12", "x", None, vec![]).await),
        "ValidationError"
    );
    assert_eq!(code(repo.get_user(ACCT, "nobody").await), "NoSuchEntity");
    // Another account has its own namespace.
    repo.create_user("123456789012", "alice", None, vec![])
        .await
        .expect("other account");
    assert_eq!(repo.list_users(ACCT, None).await.expect("list").len(), 1);
    assert_eq!(
        repo.list_users(ACCT, Some("/other/"))
            .await
            .expect("list")
            .len(),
        0
    );
    let tags = vec![Tag {
        key: "env".into(),
        value: "prod".into(),
    }];
    repo.tag_user(ACCT, "alice", &tags).await.expect("tag");
    assert_eq!(repo.get_user(ACCT, "alice").await.expect("get").tags, tags);
    repo.untag_user(ACCT, "alice", &["ENV".into()])
        .await
        .expect("untag");
    assert!(
        repo.get_user(ACCT, "alice")
            .await
            .expect("get")
            .tags
            .is_empty()
    );
    repo.delete_user(ACCT, "ALICE").await.expect("delete");
    assert_eq!(code(repo.delete_user(ACCT, "alice").await), "NoSuchEntity");
    // A deleted name can be used again.
    repo.create_user(ACCT, "alice", None, vec![])
        .await
        .expect("recreate");
}

async fn delete_conflicts(repo: &IamRepo) {
    repo.create_user(ACCT, "bob", None, vec![])
        .await
        .expect("user");
    repo.create_group(ACCT, "devs", None).await.expect("group");
    repo.create_policy(ACCT, "Read", None, DOC, None, vec![])
        .await
        .expect("policy");
    let read = policy_arn("Read");

    let key = repo.create_access_key(ACCT, "bob").await.expect("key");
    assert_eq!(code(repo.delete_user(ACCT, "bob").await), "DeleteConflict");
    repo.delete_access_key(ACCT, "bob", &key.record.access_key_id)
        .await
        .expect("delete key");

    repo.add_user_to_group(ACCT, "devs", "bob")
        .await
        .expect("add");
    repo.add_user_to_group(ACCT, "DEVS", "bob")
        .await
        .expect("idempotent");
    assert_eq!(
        repo.get_group(ACCT, "devs").await.expect("group").members,
        vec!["bob"]
    );
    assert_eq!(code(repo.delete_user(ACCT, "bob").await), "DeleteConflict");
    assert_eq!(
        code(repo.delete_group(ACCT, "devs").await),
        "DeleteConflict"
    );
    repo.remove_user_from_group(ACCT, "devs", "bob")
        .await
        .expect("remove");
    assert_eq!(
        code(repo.remove_user_from_group(ACCT, "devs", "bob").await),
        "NoSuchEntity"
    );

    let user = Target::User("bob".into());
    repo.attach_policy(ACCT, &user, &read)
        .await
        .expect("attach");
    repo.attach_policy(ACCT, &user, &read)
        .await
        .expect("idempotent");
    assert_eq!(
        repo.attached_policies(ACCT, &user)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(code(repo.delete_user(ACCT, "bob").await), "DeleteConflict");
    assert_eq!(code(repo.delete_policy(&read).await), "DeleteConflict");
    repo.detach_policy(ACCT, &user, &read)
        .await
        .expect("detach");
    assert_eq!(
        code(repo.detach_policy(ACCT, &user, &read).await),
        "NoSuchEntity"
    );

    repo.put_inline_policy(ACCT, &user, "inline1", DOC)
        .await
        .expect("inline");
    assert_eq!(
        repo.get_inline_policy(ACCT, &user, "inline1")
            .await
            .expect("get"),
        DOC
    );
    assert_eq!(
        code(repo.put_inline_policy(ACCT, &user, "bad", "{}").await),
        "MalformedPolicyDocument"
    );
    assert_eq!(code(repo.delete_user(ACCT, "bob").await), "DeleteConflict");
    repo.delete_inline_policy(ACCT, &user, "inline1")
        .await
        .expect("delete inline");
    assert_eq!(
        code(repo.delete_inline_policy(ACCT, &user, "inline1").await),
        "NoSuchEntity"
    );

    let group = Target::Group("devs".into());
    repo.attach_policy(ACCT, &group, &read)
        .await
        .expect("attach group");
    assert_eq!(
        code(repo.delete_group(ACCT, "devs").await),
        "DeleteConflict"
    );
    repo.detach_policy(ACCT, &group, &read)
        .await
        .expect("detach group");

    repo.delete_user(ACCT, "bob").await.expect("now deletable");
    repo.delete_group(ACCT, "devs")
        .await
        .expect("now deletable");
    repo.delete_policy(&read).await.expect("now deletable");
    assert_eq!(code(repo.get_policy(&read).await), "NoSuchEntity");
}

async fn roles_and_versions(repo: &IamRepo) {
    let role = repo
        .create_role(
            ACCT,
            "Deployer",
            None,
            TRUST,
            Some("deploys"),
            Some(7200),
            vec![],
        )
        .await
        .expect("role");
    assert!(role.role_id.starts_with("AROA"));
    assert_eq!(
        code(
            repo.create_role(ACCT, "deployer", None, TRUST, None, None, vec![])
                .await
        ),
        "EntityAlreadyExists"
    );
    assert_eq!(
        code(
            repo.create_role(ACCT, "r2", None, TRUST, None, Some(60), vec![])
                .await
        ),
        "ValidationError"
    );
    assert_eq!(
        code(
            repo.create_role(ACCT, "r3", None, DOC, None, None, vec![])
                .await
        ),
        "MalformedPolicyDocument"
    );

    let p = repo
        .create_policy(ACCT, "Deploy", Some("/ops/"), DOC, None, vec![])
        .await
        .expect("policy");
    assert_eq!(p.arn, "arn:aws:iam::000000000000:policy/ops/Deploy");
    assert!(p.policy_id.starts_with("ANPA"));
    assert_eq!(p.default_version_id(), "v1");
    for n in 2..=5 {
        let v = repo
            .create_policy_version(&p.arn, DOC, n == 3)
            .await
            .expect("version");
        assert_eq!(v.version_id, format!("v{n}"));
    }
    assert_eq!(
        code(repo.create_policy_version(&p.arn, DOC, false).await),
        "LimitExceeded"
    );
    let rec = repo.get_policy(&p.arn).await.expect("get");
    assert_eq!(rec.default_version_id(), "v3");
    rec.check_versions().expect("invariants");
    assert_eq!(
        code(repo.delete_policy_version(&p.arn, "v3").await),
        "DeleteConflict"
    );
    repo.delete_policy_version(&p.arn, "v2")
        .await
        .expect("delete v2");
    let v6 = repo
        .create_policy_version(&p.arn, DOC, false)
        .await
        .expect("v6");
    assert_eq!(v6.version_id, "v6", "version ids are not reused");
    repo.set_default_policy_version(&p.arn, "v6")
        .await
        .expect("set default");
    assert_eq!(
        code(repo.set_default_policy_version(&p.arn, "v2").await),
        "NoSuchEntity"
    );
    assert_eq!(code(repo.delete_policy(&p.arn).await), "DeleteConflict");
    assert_eq!(
        code(
            repo.get_policy("arn:aws:iam::000000000000:policy/Deploy")
                .await
        ),
        "NoSuchEntity"
    );

    let target = Target::Role("deployer".into());
    repo.attach_policy(ACCT, &target, &p.arn)
        .await
        .expect("attach");
    assert_eq!(
        code(repo.delete_role(ACCT, "Deployer").await),
        "DeleteConflict"
    );
    repo.detach_policy(ACCT, &target, &p.arn)
        .await
        .expect("detach");
    repo.set_permissions_boundary(ACCT, &target, Some(&p.arn))
        .await
        .expect("boundary");
    assert_eq!(
        repo.get_role(ACCT, "deployer")
            .await
            .expect("role")
            .permissions_boundary
            .as_deref(),
        Some(p.arn.as_str())
    );
    assert_eq!(
        code(
            repo.set_permissions_boundary(ACCT, &Target::Group("x".into()), Some(&p.arn))
                .await
        ),
        "NoSuchEntity"
    );

    // Attachment quota: ten managed policies per identity.
    for i in 0..10 {
        let q = repo
            .create_policy(ACCT, &format!("Q{i}"), None, DOC, None, vec![])
            .await
            .expect("q");
        repo.attach_policy(ACCT, &target, &q.arn)
            .await
            .expect("attach q");
    }
    let extra = repo
        .create_policy(ACCT, "Q10", None, DOC, None, vec![])
        .await
        .expect("q10");
    assert_eq!(
        code(repo.attach_policy(ACCT, &target, &extra.arn).await),
        "LimitExceeded"
    );
    assert!(
        repo.get_policy(&extra.arn)
            .await
            .expect("q10")
            .attachments
            .is_empty(),
        "rolled back"
    );

    // Sessions of the role.
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        code(
            repo.assume_role_session(ACCT, "Deployer", "s1", Some(8000), None, now)
                .await
        ),
        "ValidationError"
    );
    let creds = repo
        .assume_role_session(ACCT, "Deployer", "ci-run", None, None, now)
        .await
        .expect("session");
    assert!(creds.access_key_id.starts_with("ASIA"));
    let found = repo
        .lookup_credential(&creds.access_key_id, now)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.secret, creds.secret_access_key);
    assert!(found.check_session_token(Some(creds.session_token.expose())));
    assert!(!found.check_session_token(None));
    assert_eq!(
        found.principal.arn(),
        "arn:aws:sts::000000000000:assumed-role/Deployer/ci-run"
    );
    assert!(matches!(found.principal, Principal::AssumedRole { .. }));
    let later = now + time::Duration::seconds(3601);
    assert_eq!(
        code(repo.lookup_credential(&creds.access_key_id, later).await),
        "ExpiredToken"
    );
    let eff = repo
        .effective_policies(&found.principal, None)
        .await
        .expect("effective");
    assert_eq!(eff.identity.len(), 10);
    assert_eq!(eff.boundary.map(|b| b.source), Some(p.arn.clone()));
}

async fn access_keys(repo: &IamRepo) {
    repo.create_user(ACCT, "carol", None, vec![])
        .await
        .expect("user");
    let k1 = repo.create_access_key(ACCT, "carol").await.expect("k1");
    let _k2 = repo.create_access_key(ACCT, "carol").await.expect("k2");
    assert_eq!(
        code(repo.create_access_key(ACCT, "carol").await),
        "LimitExceeded"
    );
    assert_eq!(
        code(repo.create_access_key(ACCT, "nobody").await),
        "NoSuchEntity"
    );
    let id = &k1.record.access_key_id;
    assert!(id.starts_with("AKIA") && id.len() == 20);
    assert_eq!(k1.secret_access_key.len(), 40);
    let now = OffsetDateTime::now_utc();
    let cred = repo
        .lookup_credential(id, now)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(cred.secret, k1.secret_access_key);
    assert_eq!(cred.status, KeyStatus::Active);
    assert!(!cred.needs_reseal);
    assert_eq!(cred.principal.arn(), "arn:aws:iam::000000000000:user/carol");
    repo.update_access_key(ACCT, "carol", id, KeyStatus::Inactive)
        .await
        .expect("deactivate");
    let cred = repo
        .lookup_credential(id, now)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(cred.status, KeyStatus::Inactive);
    assert_eq!(
        code(
            repo.update_access_key(ACCT, "someone", id, KeyStatus::Active)
                .await
        ),
        "NoSuchEntity"
    );
    repo.record_key_use(id, "iam", "us-east-1", now)
        .await
        .expect("last used");
    let keys = repo.list_access_keys(ACCT, "carol").await.expect("list");
    let used = keys
        .iter()
        .find(|k| &k.access_key_id == id)
        .and_then(|k| k.last_used.clone());
    assert_eq!(used.map(|u| u.service), Some("iam".into()));
    // The secret is sealed at rest.
    let raw = serde_json::to_string(&keys).expect("json");
    assert!(!raw.contains(k1.secret_access_key.expose()));
    assert!(
        repo.lookup_credential("AKIAAAAAAAAAAAAAAAAA", now)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        repo.lookup_credential("..*>", now)
            .await
            .expect("hostile id")
            .is_none()
    );
}

async fn guide_records(store: &dyn KvStore, repo: &IamRepo) {
    // Records written by hand exactly as the setup guide shows, clear-text secret included.
    let users = store.open("hive-iam-users").await.expect("users bucket");
    users
        .put(
            "dave",
            Bytes::from_static(br#"{"username":"dave","arn":"arn:aws:iam::000000000000:user/dave","created_at":"2024-01-01T00:00:00Z","groups":[],"policies":[],"access_keys":["AKIAGUIDEEXAMPLE0001"]}"#),
        )
        .await
        .expect("put user");
    let keys = store
        .open("hive-iam-access-keys")
        .await
        .expect("keys bucket");
    keys.put(
        "AKIAGUIDEEXAMPLE0001",
        Bytes::from_static(br#"{"access_key_id":"AKIAGUIDEEXAMPLE0001","username":"dave","secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY","status":"Active","created_at":"2024-01-01T00:00:00Z"}"#),
    )
    .await
    .expect("put key");
    let now = OffsetDateTime::now_utc();
    let cred = repo
        .lookup_credential("AKIAGUIDEEXAMPLE0001", now)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        cred.secret.expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert!(cred.needs_reseal);
    assert!(cred.principal.user_id().starts_with("AIDA"));
    assert_eq!(
        repo.keys_needing_reseal().await.expect("list"),
        vec!["AKIAGUIDEEXAMPLE0001"]
    );
    assert_eq!(repo.reseal_keys().await.expect("reseal"), 1);
    assert!(repo.keys_needing_reseal().await.expect("list").is_empty());
    let raw = keys
        .get("AKIAGUIDEEXAMPLE0001")
        .await
        .expect("get")
        .expect("present");
    let text = std::str::from_utf8(&raw.value).expect("utf8");
    assert!(!text.contains("wJalr"), "clear text gone: {text}");
    assert!(text.contains("secret_access_key_sealed"));
    let cred = repo
        .lookup_credential("AKIAGUIDEEXAMPLE0001", now)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        cred.secret.expose(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    );
    assert!(!cred.needs_reseal);

    // Key rotation: a repository with a new active key still opens old values and re-seals them.
    let rotated = Keyring::new(SealKey::from_hex(K2).expect("k2"))
        .with_old_key(SealKey::from_hex(K1).expect("k1"));
    let repo2 = IamRepo::open(store, &IamBucketNames::default(), rotated)
        .await
        .expect("open");
    let cred = repo2
        .lookup_credential("AKIAGUIDEEXAMPLE0001", now)
        .await
        .expect("lookup")
        .expect("found");
    assert!(cred.needs_reseal);
    assert!(repo2.reseal_keys().await.expect("reseal") >= 1);
    assert!(
        !repo2
            .lookup_credential("AKIAGUIDEEXAMPLE0001", now)
            .await
            .expect("l")
            .expect("f")
            .needs_reseal
    );
    // The old keyring alone can no longer open it.
    assert_eq!(
        code(repo.lookup_credential("AKIAGUIDEEXAMPLE0001", now).await),
        "ServiceFailure"
    );
}

async fn bootstrap(repo: &IamRepo) {
    let (a, b) = tokio::join!(repo.bootstrap(ACCT), repo.bootstrap(ACCT));
    let outcomes = [a.expect("bootstrap a"), b.expect("bootstrap b")];
    let created: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            BootstrapOutcome::Created(k) => Some((**k).clone()),
            BootstrapOutcome::AlreadyDone => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "exactly one bootstrap issues the key");
    assert!(matches!(
        repo.bootstrap(ACCT).await.expect("again"),
        BootstrapOutcome::AlreadyDone
    ));
    assert!(repo.is_bootstrapped(ACCT).await.expect("marker"));
    let admin = repo.get_user(ACCT, "admin").await.expect("admin");
    assert_eq!(admin.arn, "arn:aws:iam::000000000000:user/admin");
    assert_eq!(admin.groups, vec!["administrators"]);
    assert_eq!(admin.access_keys.len(), 1);
    let group = repo.get_group(ACCT, "administrators").await.expect("group");
    assert_eq!(group.policies, vec![policy_arn("AdministratorAccess")]);
    assert_eq!(group.members, vec!["admin"]);
    let cred = repo
        .lookup_credential(&created[0].record.access_key_id, OffsetDateTime::now_utc())
        .await
        .expect("lookup")
        .expect("admin key");
    let eff = repo
        .effective_policies(&cred.principal, None)
        .await
        .expect("effective");
    assert_eq!(eff.identity.len(), 1);
    assert!(eff.identity[0].document.contains(r#""Action":"*""#));
}

async fn concurrency(repo: &Arc<IamRepo>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let repo = repo.clone();
        let name = if i % 2 == 0 { "Erin" } else { "erin" };
        tasks.push(tokio::spawn(async move {
            repo.create_user(ACCT, name, None, vec![]).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), "EntityAlreadyExists"),
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent create wins");

    let mut arns = Vec::new();
    for i in 0..8 {
        arns.push(
            repo.create_policy(ACCT, &format!("C{i}"), None, DOC, None, vec![])
                .await
                .expect("p")
                .arn,
        );
    }
    let mut tasks = Vec::new();
    for a in arns.clone() {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.attach_policy(ACCT, &Target::User("erin".into()), &a)
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("attach");
    }
    let attached = repo
        .attached_policies(ACCT, &Target::User("erin".into()))
        .await
        .expect("list");
    assert_eq!(attached.len(), 8, "every concurrent attachment is kept");
    // Whichever spelling won the create race is the user's canonical ARN.
    let erin = repo.get_user(ACCT, "erin").await.expect("user");
    for a in &arns {
        let p = repo.get_policy(a).await.expect("policy");
        assert_eq!(p.attachments, vec![erin.arn.clone()]);
    }

    // Concurrent group joins all land on both sides.
    repo.create_group(ACCT, "crowd", None).await.expect("group");
    for i in 0..6 {
        repo.create_user(ACCT, &format!("m{i}"), None, vec![])
            .await
            .expect("member");
    }
    let mut tasks = Vec::new();
    for i in 0..6 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.add_user_to_group(ACCT, "crowd", &format!("m{i}"))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("join");
    }
    assert_eq!(
        repo.get_group(ACCT, "crowd")
            .await
            .expect("group")
            .members
            .len(),
        6
    );
}

async fn all_rules(store: &dyn KvStore) {
    let repo = repo_on(store).await;
    users_and_names(&repo).await;
    delete_conflicts(&repo).await;
    roles_and_versions(&repo).await;
    access_keys(&repo).await;
    guide_records(store, &repo).await;
    bootstrap(&repo).await;
    concurrency(&Arc::new(repo)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_memory_store() {
    let store = MemoryStore::new();
    all_rules(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_sqlite_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path()).await.expect("sqlite");
    all_rules(&store).await;
}

/// Needs `nats-server` (`apt-get install -y nats-server`); fails, never skips, without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_nats_jetstream() {
    let server = hive_kv::testing::NatsServer::start();
    let store = hive_kv::nats::NatsStore::connect(&server.url(), Default::default())
        .await
        .expect("connect to the test nats-server");
    all_rules(&store).await;
}
