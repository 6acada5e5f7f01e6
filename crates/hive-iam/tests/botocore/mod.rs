//! The botocore fixture both SigV4 test binaries use: the requests that
//! `tests/data/sigv4_botocore.py` has botocore sign (time frozen), with their inputs.

#![allow(dead_code)] // each test binary reads a different subset of the fields

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body_hex: String,
    pub access_key_id: String,
    pub secret: String,
    pub token: Option<String>,
    pub presigned: bool,
    pub service: String,
    pub region: String,
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HIVE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with botocore: set HIVE_PYTHON to a python that has botocore \
         (e.g. `python3 -m venv .venv && .venv/bin/pip install botocore` at the workspace root)"
    );
    venv
}

pub fn botocore_cases() -> Vec<Case> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4_botocore.py");
    let py = python();
    let out = Command::new(&py)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; set HIVE_PYTHON", py.display()));
    assert!(
        out.status.success(),
        "{} failed (is botocore installed? `pip install botocore`): {}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Case> = serde_json::from_slice(&out.stdout).expect("script prints JSON");
    assert!(cases.len() >= 15, "expected the full set of cases");
    cases
}
