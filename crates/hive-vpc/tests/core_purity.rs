//! ARCHITECTURE.md's first invariant, checked: the pure cores (`hive-vpc`, `hive-iam`) pull in
//! no async runtime, no NATS client and no database, so an embedder (or a fuzz target) gets
//! the decisions without the world. Storage lives in `hive-vpc-store` / `hive-iam-store`.

use std::process::Command;

/// The cores and what their normal dependency tree must never hold.
const CORES: &[&str] = &["hive-vpc", "hive-iam"];
const FORBIDDEN: &[&str] = &["tokio", "async-nats", "rusqlite", "hive-kv"];

#[test]
fn the_cores_depend_on_no_runtime_client_or_database() {
    for core in CORES {
        let out = Command::new(env!("CARGO"))
            .args([
                "tree",
                "-q",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                core,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree -p {core}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let found: Vec<&str> = tree
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| FORBIDDEN.contains(name))
            .collect();
        assert!(found.is_empty(), "{core} depends on {found:?}:\n{tree}");
    }
}
