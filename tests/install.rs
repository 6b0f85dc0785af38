//! `kolm install`, `kolm list`, `kolm uninstall`: what `kolm serve` serves.

mod support;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::*;

fn kolm(home: &Path) -> Command {
    let mut c = Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

fn listed(home: &Path) -> Vec<Value> {
    let v = ok_json(&kolm(home).args(["list", "--json"]).output().unwrap());
    v["artifacts"].as_array().unwrap().clone()
}

fn install(home: &Path, art: &Path) -> Value {
    ok_json(
        &kolm(home)
            .args(["install", "--json"])
            .arg(art)
            .output()
            .unwrap(),
    )
}

fn files(home: &Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(home.join("artifacts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    f.sort();
    f
}

#[test]
fn install_list_replace_and_uninstall() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let home = tempfile::tempdir().unwrap();
    assert!(listed(home.path()).is_empty());

    let out = install(home.path(), &p.artifact());
    assert_eq!(out["installed"]["name"], "demo");
    assert!(out["replaced"].is_null());
    let first = out["installed"]["manifest_sha256"].clone();
    let l = listed(home.path());
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["name"], "demo");
    assert!(l[0]["k_score"].as_f64().unwrap() > 0.0);
    assert_eq!(
        l[0]["size"].as_u64().unwrap(),
        std::fs::metadata(p.artifact()).unwrap().len()
    );

    // A tampered artifact is refused, and the installed one stays as it was.
    let bad = p.path("bad.kolm");
    let mut bytes = std::fs::read(p.artifact()).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let out = kolm(home.path()).arg("install").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed verification"));
    assert_eq!(files(home.path()), ["demo.kolm"]);
    assert_eq!(listed(home.path())[0]["manifest_sha256"], first);

    // A newer build of the same task replaces it.
    p.edit(
        "data/evals.jsonl",
        "{\"description\": \"b\", \"vars\": {\"input\": \"app crashes\"}, \"assert\": [{\"type\": \"is-json\"}]}\n",
    );
    p.build();
    let out = install(home.path(), &p.artifact());
    assert_eq!(out["replaced"], first);
    assert_ne!(out["installed"]["manifest_sha256"], first);
    assert_eq!(files(home.path()), ["demo.kolm"]);

    let out = kolm(home.path())
        .args(["uninstall", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("installed: demo"));
    let out = kolm(home.path())
        .args(["uninstall", "demo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(listed(home.path()).is_empty());
}
