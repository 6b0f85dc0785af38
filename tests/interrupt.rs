//! Ctrl-C in the middle of a build: exit 130, no partial file, no damaged cache entry, and the
//! next run resumes.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::ctrl_c;

fn files_named(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains(needle) {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn ctrl_c_while_hashing_a_large_base_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // A valid GGUF header followed by 3 GB of (sparse) padding: hashing it takes a while.
    let mut model = kolm::gguf::tiny::tiny_model("llama", 1, kolm::gguf::tiny::Quant::F32);
    let model_path = dir.path().join("big.gguf");
    std::fs::write(&model_path, &model).unwrap();
    model.clear();
    std::fs::File::options()
        .write(true)
        .open(&model_path)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/seeds.jsonl"),
        "{\"input\": \"a\", \"output\": {\"label\": \"x\"}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("data/evals.jsonl"),
        "{\"vars\": {\"input\": \"a\"}, \"assert\": []}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Kolmfile.toml"),
        "[project]\nname = \"big\"\n[base]\npath = \"big.gguf\"\n[distill]\ntrain = false\n[[task]]\nname = \"big\"\ndescription = \"d\"\noutput_schema = { type = \"object\" }\nseeds = \"data/seeds.jsonl\"\nevals = \"data/evals.jsonl\"\n",
    )
    .unwrap();
    let bin = assert_cmd::cargo::cargo_bin("kolmbuild");
    let child = Command::new(&bin)
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    ctrl_c(child);
    assert!(
        files_named(dir.path(), ".kolm-tmp").is_empty(),
        "no partial files in the project"
    );
    assert!(
        files_named(home.path(), ".kolm-tmp").is_empty(),
        "no partial files in KOLM_HOME"
    );
    let verify = Command::new(assert_cmd::cargo::cargo_bin("kolm"))
        .args(["cache", "verify", "--json"])
        .env("KOLM_HOME", home.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(
        v["removed"].as_array().unwrap().len(),
        0,
        "no damaged entry"
    );
    // The next run finishes the base and goes on through scoring (and stops at the seal:
    // this test sets no signing key).
    let again = Command::new(&bin)
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("built base"), "{err}");
    assert!(err.contains("built score"), "{err}");
}
