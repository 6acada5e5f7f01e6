//! First start: exactly one administrator however many processes start at once (on one SQLite
//! data directory, on one nats-server, and on a NATS cluster that has no JetStream leader yet),
//! its credentials written once with mode 0600 and never logged, the generated sealing key
//! shared through the data directory, and the one-time setup token as the alternative to
//! automatic bootstrap.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hive_api::app::ACCOUNT_ID;
use hive_api::bootstrap::{AdminBootstrap, BootstrapError};
use hive_api::config::Secret;
use hive_api::node;
use hive_iam_store::IamRepo;

fn credential_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("list data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("admin-credentials"))
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Sign GetCallerIdentity with the admin's key and send it to every address: all answer 200.
async fn admin_works_everywhere(addrs: &[SocketAddr], key: &str, secret: &str) {
    let specs: Vec<_> = addrs
        .iter()
        .map(|a| {
            query_spec(
                *a,
                "sts",
                key,
                secret,
                "Action=GetCallerIdentity&Version=2011-06-15",
            )
        })
        .collect();
    let signed = botocore_sign(&specs);
    for (addr, s) in addrs.iter().zip(&signed) {
        let r = send_signed(*addr, s, None).await;
        assert_eq!(r.status, 200, "{addr}: {}", r.body);
        assert!(r.body.contains("user/admin"), "{}", r.body);
    }
}

/// The admin's access keys, read straight from the store.
async fn admin_key_count(store: &dyn hive_kv::KvStore, keyring: hive_iam::seal::Keyring) -> usize {
    let repo = IamRepo::open(
        store,
        &hive_iam_store::buckets::IamBucketNames::default(),
        keyring,
    )
    .await
    .expect("open repo");
    repo.list_access_keys(ACCOUNT_ID, "admin")
        .await
        .expect("list admin keys")
        .len()
}

fn assert_logs_clean(logs: &[PathBuf], secret: &str) {
    for log in logs {
        let text = std::fs::read_to_string(log).expect("read log");
        assert!(
            !text.contains(secret),
            "{} contains the secret",
            log.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_binaries_on_one_data_dir_make_one_admin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let data_s = data.to_str().expect("utf-8 path").to_owned();
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    let mut logs = Vec::new();
    for i in 0..3 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = tmp.path().join(format!("node{i}.log"));
        procs.push(spawn_hive_api(
            &["--data-dir", &data_s, "--listen", &addr.to_string()],
            &[],
            &log,
        ));
        addrs.push(addr);
        logs.push(log);
    }
    for ((proc, addr), log) in procs.iter_mut().zip(&addrs).zip(&logs) {
        // Serving: the node has bootstrapped.
        wait_up(*addr, proc, log, true, Duration::from_secs(30)).await;
    }
    let files = credential_files(&data);
    assert_eq!(
        files,
        [data.join("admin-credentials")],
        "one credentials file"
    );
    assert_eq!(mode(&files[0]), 0o600);
    assert_eq!(mode(&data.join("encryption-key")), 0o600);
    let (key, secret) = read_admin_credentials(&files[0]);
    assert!(key.starts_with("AKIA") && secret.len() == 40);
    admin_works_everywhere(&addrs, &key, &secret).await;
    assert_logs_clean(&logs, &secret);

    let mut config = hive_api::config::Config::default();
    config.storage.data_dir = data.clone();
    let keyring = hive_api::bootstrap::load_keyring(&config).expect("keyring");
    let store = hive_kv::sqlite::SqliteStore::open(&data)
        .await
        .expect("store");
    assert_eq!(
        admin_key_count(&store, keyring).await,
        1,
        "exactly one admin key"
    );
}

/// The sealing key every process on one NATS store shares.
const SHARED_KEY_HEX: &str = "3c";

/// Three `hive-api` processes on the NATS store at `url`, each with its own data dir, all
/// with one configured sealing key.
struct ThreeOnNats {
    procs: Vec<Proc>,
    addrs: Vec<SocketAddr>,
    logs: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    url: String,
}

impl ThreeOnNats {
    fn spawn(tmp: &Path, url: String) -> Self {
        let key_file = tmp.join("sealing-key");
        std::fs::write(&key_file, SHARED_KEY_HEX.repeat(32)).expect("write key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let key_s = key_file.to_str().expect("utf-8").to_owned();
        let mut three = Self {
            procs: Vec::new(),
            addrs: Vec::new(),
            logs: Vec::new(),
            dirs: Vec::new(),
            url,
        };
        for i in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let dir = tmp.join(format!("data{i}"));
            let log = tmp.join(format!("node{i}.log"));
            three.procs.push(spawn_hive_api(
                &[
                    "--data-dir",
                    dir.to_str().expect("utf-8"),
                    "--listen",
                    &addr.to_string(),
                    "--nats-url",
                    &three.url,
                ],
                &[("HIVE_ENCRYPTION_KEY_FILE", &key_s)],
                &log,
            ));
            three.addrs.push(addr);
            three.logs.push(log);
            three.dirs.push(dir);
        }
        three
    }

    /// Serving: every node has bootstrapped.
    async fn wait_serving(&mut self, limit: Duration) {
        for ((proc, addr), log) in self.procs.iter_mut().zip(&self.addrs).zip(&self.logs) {
            wait_up(*addr, proc, log, true, limit).await;
        }
    }

    /// Exactly one process wrote credentials (0600, the configured key, not a generated
    /// one), the key works on every node and is in no log, and it is the admin's only key.
    async fn assert_one_admin(&self) {
        let files: Vec<PathBuf> = self.dirs.iter().flat_map(|d| credential_files(d)).collect();
        assert_eq!(
            files.len(),
            1,
            "exactly one process wrote credentials: {files:?}"
        );
        assert_eq!(mode(&files[0]), 0o600);
        for d in &self.dirs {
            assert!(
                !d.join("encryption-key").exists(),
                "the configured key is used"
            );
        }
        let (key, secret) = read_admin_credentials(&files[0]);
        admin_works_everywhere(&self.addrs, &key, &secret).await;
        assert_logs_clean(&self.logs, &secret);

        let store =
            hive_kv::nats::NatsStore::connect(&self.url, hive_kv::nats::NatsOptions::default())
                .await
                .expect("connect");
        let keyring = hive_iam::seal::Keyring::new(
            hive_iam::seal::SealKey::from_hex(&SHARED_KEY_HEX.repeat(32)).expect("key"),
        );
        assert_eq!(
            admin_key_count(&store, keyring).await,
            1,
            "exactly one admin key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_binaries_on_one_nats_server_make_one_admin() {
    let nats = hive_kv::testing::NatsServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut three = ThreeOnNats::spawn(tmp.path(), nats.url());
    three.wait_serving(Duration::from_secs(30)).await;
    three.assert_one_admin().await;
}

/// Started together while their NATS cluster has no JetStream leader (two of its three
/// servers down), three binaries wait for it, warning, instead of exiting; once the cluster is
/// whole they serve, and exactly one of them made the admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_binaries_wait_for_a_cluster_without_a_jetstream_leader() {
    let mut cluster = hive_kv::testing::NatsCluster::start(3);
    cluster.kill(1);
    cluster.kill(2);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut three = ThreeOnNats::spawn(tmp.path(), cluster.urls());
    for (proc, log) in three.procs.iter_mut().zip(&three.logs) {
        wait_for_log(proc, log, STORE_NOT_READY, Duration::from_secs(60)).await;
    }
    cluster.restart(1).expect("restart nats 1");
    cluster.restart(2).expect("restart nats 2");
    three.wait_serving(Duration::from_secs(120)).await;
    three.assert_one_admin().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_admin_and_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node::start(node_config(dir.path()))
        .await
        .expect("first start");
    let path = dir.path().join("admin-credentials");
    assert!(
        matches!(&n.bootstrap, Some(AdminBootstrap::Created { path: p, .. }) if *p == path),
        "{:?}",
        n.bootstrap
    );
    let before = std::fs::read(&path).expect("credentials");
    n.shutdown().await.expect("stop");
    let n = node::start(node_config(dir.path()))
        .await
        .expect("second start");
    assert_eq!(n.bootstrap, Some(AdminBootstrap::AlreadyDone));
    assert_eq!(std::fs::read(&path).expect("credentials"), before);
    assert_eq!(credential_files(dir.path()).len(), 1);
    let (key, secret) = read_admin_credentials(&path);
    admin_works_everywhere(&[n.addr], &key, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_token_bootstraps_once_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "setup-token-0123456789";
    let mut config = node_config(dir.path());
    config.server.setup_token = Some(Secret::new(token));
    let n = node::start(config.clone()).await.expect("start");
    assert_eq!(n.bootstrap, None);
    assert!(
        credential_files(dir.path()).is_empty(),
        "no automatic bootstrap"
    );
    assert!(
        !n.app.iam.is_bootstrapped(ACCOUNT_ID).await.expect("read"),
        "nothing created before the token is used"
    );

    let post = |hdr: String| async move {
        raw(
            n.addr,
            format!(
                "POST /bootstrap HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{hdr}\r\n"
            )
            .as_bytes(),
        )
        .await
    };
    let r = post(String::new()).await;
    assert_eq!(
        (r.status, error_code(&r.body)),
        (403, Some("AccessDenied")),
        "{}",
        r.body
    );
    let r = post("X-Hive-Setup-Token: setup-token-0123456788\r\n".into()).await;
    assert_eq!(
        (r.status, error_code(&r.body)),
        (403, Some("AccessDenied")),
        "{}",
        r.body
    );
    let r = get(n.addr, "/bootstrap").await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(!n.app.iam.is_bootstrapped(ACCOUNT_ID).await.expect("read"));

    let r = post(format!("X-Hive-Setup-Token: {token}\r\n")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let key = v["AccessKeyId"].as_str().expect("key id").to_owned();
    let secret = v["SecretAccessKey"].as_str().expect("secret").to_owned();
    assert_eq!(v["Arn"], "arn:aws:iam::000000000000:user/admin");
    admin_works_everywhere(&[n.addr], &key, &secret).await;
    assert!(
        credential_files(dir.path()).is_empty(),
        "the API answer is the only copy"
    );

    let r = post(format!("X-Hive-Setup-Token: {token}\r\n")).await;
    assert_eq!(
        (r.status, error_code(&r.body)),
        (409, Some("SetupTokenSpent")),
        "{}",
        r.body
    );
    // Spent across restarts too.
    n.shutdown().await.expect("stop");
    let n = node::start(config).await.expect("restart");
    let r = raw(
        n.addr,
        format!(
            "POST /bootstrap HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nX-Hive-Setup-Token: {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    let keys = n
        .app
        .iam
        .list_access_keys(ACCOUNT_ID, "admin")
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
}

// ----- crash-safe, resumable bootstrap -----------------------------------------------------

/// A lease short enough that a test need not wait long for a dead claimant's claim.
const SHORT_LEASE: Duration = Duration::from_millis(200);

fn keyring() -> hive_iam::seal::Keyring {
    hive_iam::seal::Keyring::new(hive_iam::seal::SealKey::from_hex(&"5e".repeat(32)).expect("key"))
}

async fn repo_on(store: &dyn hive_kv::KvStore) -> IamRepo {
    IamRepo::open(
        store,
        &hive_iam_store::buckets::IamBucketNames::default(),
        keyring(),
    )
    .await
    .expect("open repo")
}

/// Done, with one user (`admin`) holding one key, the one in the credentials file at `path`,
/// whose secret is the stored one.
async fn assert_one_admin_with_key_in(repo: &IamRepo, path: &Path) {
    assert!(repo.is_bootstrapped(ACCOUNT_ID).await.expect("read"));
    let users = repo.list_users(ACCOUNT_ID, None).await.expect("users");
    assert_eq!(
        users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["admin"]
    );
    let keys = repo
        .list_access_keys(ACCOUNT_ID, "admin")
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "exactly one admin key");
    let (key, secret) = read_admin_credentials(path);
    assert_eq!(keys[0].access_key_id, key);
    let stored = repo
        .lookup_credential(&key, time::OffsetDateTime::now_utc())
        .await
        .expect("lookup")
        .expect("the key authenticates");
    assert_eq!(stored.secret.expose(), secret);
    assert_eq!(mode(path), 0o600);
}

/// A first start that dies at each point of the bootstrap (claimed but no key yet; key made
/// but no file; file written but not recorded as done): the next start, elsewhere or in the
/// same data directory, takes the dead claim over, finishes it with the claimed key, and the
/// credentials end up written with exactly one admin and one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_that_died_is_finished_by_the_next_start() {
    use hive_api::bootstrap::{Claimant, bootstrap_account, bootstrap_admin, claim_bootstrap};

    // Died after claiming, before its key record existed.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("dir a");
    std::fs::create_dir_all(&b_dir).expect("dir b");
    let (store, faults) = FaultyStore::over(Arc::new(hive_kv::memory::MemoryStore::new()));
    let repo = repo_on(store.as_ref()).await;
    faults.set(Fault::WritesDownIn(
        hive_iam_store::buckets::DEFAULT_ACCESS_KEYS_BUCKET,
    ));
    bootstrap_admin(&repo, &a_dir, &Claimant::new("a"))
        .await
        .expect_err("the key record cannot be written");
    assert!(!repo.is_bootstrapped(ACCOUNT_ID).await.expect("read"));
    faults.set(Fault::None);
    let b = bootstrap_admin(&repo, &b_dir, &Claimant::new("b").with_lease(SHORT_LEASE))
        .await
        .expect("b finishes it");
    assert!(matches!(b, AdminBootstrap::Created { .. }), "{b:?}");
    assert!(credential_files(&a_dir).is_empty());
    assert_one_admin_with_key_in(&repo, &b_dir.join("admin-credentials")).await;

    // Died with its key made, before writing the file: the next start writes that very key.
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = repo_on(&hive_kv::memory::MemoryStore::new()).await;
    let dead = claim_bootstrap(&repo, ACCOUNT_ID, &Claimant::new("a"))
        .await
        .expect("claim")
        .expect("not done yet");
    let b = bootstrap_admin(
        &repo,
        tmp.path(),
        &Claimant::new("b").with_lease(SHORT_LEASE),
    )
    .await
    .expect("b finishes it");
    let AdminBootstrap::Created {
        path,
        access_key_id,
    } = b
    else {
        panic!("b wrote no credentials: {b:?}");
    };
    assert_eq!(access_key_id, dead.key.record.access_key_id);
    assert_eq!(
        read_admin_credentials(&path).1,
        dead.key.secret_access_key.expose()
    );
    assert_one_admin_with_key_in(&repo, &path).await;

    // Died after writing its file, before recording the bootstrap as done; started again
    // in the same data directory, it keeps that file rather than writing a second one.
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = repo_on(&hive_kv::memory::MemoryStore::new()).await;
    let died: Result<Option<()>, BootstrapError> =
        bootstrap_account(&repo, ACCOUNT_ID, &Claimant::new("a"), |key| {
            let text = format!(
                "[hive-admin]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                key.record.access_key_id,
                key.secret_access_key.expose()
            );
            hive_api::bootstrap::write_exclusive(
                &tmp.path().join("admin-credentials"),
                text.as_bytes(),
            )
            .expect("write");
            Err(BootstrapError::File {
                path: tmp.path().to_owned(),
                source: std::io::Error::other("died here"),
            })
        })
        .await;
    assert!(died.is_err());
    assert!(!repo.is_bootstrapped(ACCOUNT_ID).await.expect("read"));
    let again = bootstrap_admin(
        &repo,
        tmp.path(),
        &Claimant::new("a2").with_lease(SHORT_LEASE),
    )
    .await
    .expect("the restart finishes it");
    assert!(matches!(again, AdminBootstrap::Created { .. }), "{again:?}");
    assert_eq!(
        credential_files(tmp.path()).len(),
        1,
        "the file is kept, not doubled"
    );
    assert_one_admin_with_key_in(&repo, &tmp.path().join("admin-credentials")).await;
}

/// Ten bootstraps at once on one SQLite store, each with its own connection and data
/// directory: one creates the admin, one key, one credentials file; the others wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_bootstraps_make_one_admin_one_key_one_file() {
    use hive_api::bootstrap::{Claimant, bootstrap_admin};
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let dir = tmp.path().join(format!("node{i}"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let store = hive_kv::sqlite::SqliteStore::open(&store_dir)
            .await
            .expect("open store");
        tasks.push(tokio::spawn(async move {
            let repo = repo_on(&store).await;
            bootstrap_admin(&repo, &dir, &Claimant::new(&format!("node{i}"))).await
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.expect("task").expect("bootstrap") {
            AdminBootstrap::Created { .. } => created += 1,
            AdminBootstrap::AlreadyDone => {}
        }
    }
    assert_eq!(created, 1, "exactly one bootstrap made the admin");
    let files: Vec<PathBuf> = (0..10)
        .flat_map(|i| credential_files(&tmp.path().join(format!("node{i}"))))
        .collect();
    assert_eq!(files.len(), 1, "one credentials file: {files:?}");
    let store = hive_kv::sqlite::SqliteStore::open(&store_dir)
        .await
        .expect("open store");
    assert_one_admin_with_key_in(&repo_on(&store).await, &files[0]).await;
}

/// A setup-token request whose server died mid-way (claim and key made, nothing answered):
/// while the claim may still be alive a request gets 503 with Retry-After; once the claim
/// has stood still for the lease a request takes it over and gets that same key; afterwards
/// the token is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setup_token_request_that_died_is_finished_by_a_later_one() {
    use hive_api::bootstrap::{Claimant, SetupEndpoint, claim_bootstrap};
    use hive_api::server::{Endpoint, EndpointReply};
    let store: Arc<dyn hive_kv::KvStore> = Arc::new(hive_kv::memory::MemoryStore::new());
    let repo = Arc::new(repo_on(store.as_ref()).await);
    let dead = claim_bootstrap(&repo, ACCOUNT_ID, &Claimant::new("died"))
        .await
        .expect("claim")
        .expect("not done yet");
    let token = "setup-token-0123456789";
    let endpoint = SetupEndpoint::new(
        repo.clone(),
        store,
        Secret::new(token),
        Claimant::new("later").with_lease(SHORT_LEASE),
    );
    let mut headers = hyper::HeaderMap::new();
    headers.insert("x-hive-setup-token", token.parse().expect("header"));
    let post = || endpoint.call(&hyper::Method::POST, &headers, b"");
    match post().await {
        EndpointReply::Error(e) => {
            assert_eq!(
                (e.code(), e.status(), e.retry_after()),
                ("ServiceUnavailable", 503, Some(1))
            );
        }
        _ => panic!("the claim is not known to be dead yet"),
    }
    let body = loop {
        match post().await {
            EndpointReply::Ok { body, .. } => break body,
            EndpointReply::Error(e) if e.status() == 503 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            EndpointReply::Error(e) | EndpointReply::AuthFailure(e) => panic!("{e}"),
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["AccessKeyId"], dead.key.record.access_key_id.as_str());
    assert_eq!(v["SecretAccessKey"], dead.key.secret_access_key.expose());
    assert!(repo.is_bootstrapped(ACCOUNT_ID).await.expect("read"));
    match post().await {
        EndpointReply::Error(e) => assert_eq!((e.code(), e.status()), ("SetupTokenSpent", 409)),
        _ => panic!("the token is spent"),
    }
}
