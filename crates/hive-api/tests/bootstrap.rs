//! First start: exactly one administrator however many processes start at once (on one SQLite
//! data directory, on one nats-server, and on a NATS cluster that has no JetStream leader yet),
//! its credentials written once with mode 0600 and never logged, the generated sealing key
//! shared through the data directory, and the one-time setup token as the alternative to
//! automatic bootstrap.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use hive_api::app::ACCOUNT_ID;
use hive_api::bootstrap::AdminBootstrap;
use hive_api::config::Secret;
use hive_api::node;
use hive_iam::repo::IamRepo;

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
    let repo = IamRepo::open(store, &hive_kv::iam::IamBucketNames::default(), keyring)
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
