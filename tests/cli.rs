//! The command line as a person and a pipeline use it: real processes, real exit codes.

mod support;

use assert_cmd::Command;
use support::*;

fn kolm(home: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("KOLM_SIGNING_KEY");
    c
}

/// `kolmbuild` in `dir` with `home` as KOLM_HOME and no signing key.
fn kolmbuild(dir: &std::path::Path, home: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("kolmbuild").unwrap();
    c.current_dir(dir)
        .env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("KOLM_SIGNING_KEY");
    c
}

#[test]
fn init_writes_a_starter_project_and_never_overwrites() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("my-triage");
    kolm(home.path()).arg("init").arg(&proj).assert().success();
    for f in ["Kolmfile.toml", "data/seeds.jsonl", "data/evals.jsonl"] {
        assert!(proj.join(f).is_file(), "{f}");
    }
    let k = kolm::Kolmfile::load(&proj.join("Kolmfile.toml")).unwrap();
    assert_eq!(k.project.name, "my-triage");
    std::fs::write(proj.join("data/seeds.jsonl"), "mine").unwrap();
    let out = kolm(home.path()).arg("init").arg(&proj).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(proj.join("data/seeds.jsonl")).unwrap(),
        "mine",
        "nothing overwritten"
    );
}

#[test]
fn the_starter_builds_end_to_end_and_runs() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    kolm(home.path())
        .arg("init")
        .arg(dir.path())
        .assert()
        .success();
    // Without a key the build stops at the seal, with everything before it built and cached.
    let out = kolmbuild(dir.path(), home.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no signing key"), "{err}");
    for stage in &STAGES[..7] {
        assert!(
            err.contains(&format!("built {stage}")),
            "{stage} built:\n{err}"
        );
    }
    assert!(err.contains("tests passed"), "the score summary:\n{err}");
    // The second run resumes: everything before the seal is fresh.
    let out = Command::cargo_bin("kolmbuild")
        .unwrap()
        .args(["status", "--json"])
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env_remove("KOLM_SIGNING_KEY")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fresh: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "fresh")
        .map(|n| n["stage"].as_str().unwrap())
        .collect();
    assert_eq!(fresh, STAGES[..7]);
    // With a key it seals, and the artifact answers within its schema.
    Command::cargo_bin("kolmbuild")
        .unwrap()
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .assert()
        .success();
    let art = std::fs::read_dir(dir.path().join("dist"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "kolm"))
        .expect("an artifact in dist/");
    let out = kolm(home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .arg("run")
        .arg(&art)
        .arg("The export button does nothing")
        .output()
        .unwrap();
    let v: serde_json::Value = ok_json(&out);
    assert!(
        ["question", "bug", "praise"].contains(&v["label"].as_str().unwrap()),
        "{v}"
    );
}

#[test]
fn graph_as_dot_and_json() {
    let p = Project::new(&kolmfile_text(""));
    let home = tempfile::tempdir().unwrap();
    let dot = Command::cargo_bin("kolmbuild")
        .unwrap()
        .arg("graph")
        .current_dir(p.dir.path())
        .env("KOLM_HOME", home.path())
        .output()
        .unwrap();
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph kolm {"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 18, "{dot}");
    let json = kolm(home.path())
        .args(["graph", "--format", "json"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let stages: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, STAGES);
    let seal = &v["nodes"][7];
    assert_eq!(seal["deps"].as_array().unwrap().len(), 6);
}

#[test]
fn verify_and_inspect_exit_codes_and_json() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let home = tempfile::tempdir().unwrap();
    let art = p.artifact();
    kolm(home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .arg("verify")
        .arg(&art)
        .assert()
        .success();
    let wrong = kolm(home.path())
        .env("KOLM_SIGNING_KEY", "another key")
        .arg("verify")
        .arg(&art)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("bad signature"));
    let nokey = kolm(home.path())
        .args(["verify", "--json"])
        .arg(&art)
        .output()
        .unwrap();
    assert_eq!(nokey.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&nokey.stdout).unwrap();
    assert_eq!(v["code"], "VERIFY");
    assert!(v["message"].as_str().unwrap().contains("no key here"));
    // A key file works too.
    let keyfile = home.path().join("key");
    std::fs::write(&keyfile, format!("{KEY}\n")).unwrap();
    kolm(home.path())
        .arg("verify")
        .arg(&art)
        .arg("--key-file")
        .arg(&keyfile)
        .assert()
        .success();
    let ins = kolm(home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .args(["inspect", "--json"])
        .arg(&art)
        .output()
        .unwrap();
    assert!(ins.status.success());
    let v: serde_json::Value = serde_json::from_slice(&ins.stdout).unwrap();
    assert_eq!(v["signature"], "verified");
    assert_eq!(v["entries"].as_array().unwrap().len(), 7);
    assert_eq!(v["manifest"]["gate"], 0.5);
}

#[test]
fn unsigned_artifacts_need_allow_unsigned() {
    let p = Project::new(&kolmfile_text(""));
    p.build_with(
        kolm::stages::BuildOptions {
            unsigned: true,
            ..Default::default()
        },
        Default::default(),
    )
    .map_err(|f| f.error)
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = kolm(home.path())
        .arg("verify")
        .arg(p.artifact())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsigned"));
    kolm(home.path())
        .arg("verify")
        .arg("--allow-unsigned")
        .arg(p.artifact())
        .assert()
        .success();
}

#[test]
fn tiny_models_are_deterministic_and_readable() {
    let home = tempfile::tempdir().unwrap();
    let a = home.path().join("a.gguf");
    let b = home.path().join("b.gguf");
    for out in [&a, &b] {
        kolm(home.path())
            .args([
                "dev",
                "tiny-model",
                "--arch",
                "qwen2",
                "--seed",
                "5",
                "--quant",
                "q8_0",
                "--out",
            ])
            .arg(out)
            .assert()
            .success();
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let h = kolm::gguf::read_header(&a).unwrap();
    let s = h.summary();
    assert_eq!(s.architecture, "qwen2");
    assert_eq!(s.quantization, "Q8_0");
    assert_eq!(s.context_length, Some(2048));
    assert!(h.tensor("blk.0.attn_q.bias").is_some());
}

#[test]
fn tiny_k_quant_models_name_their_mix_and_need_the_256_wide_shape() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("k.gguf");
    for (quant, name) in [("q4_k_m", "Q4_K_M"), ("q5_k_m", "Q5_K_M"), ("q6_k", "Q6_K")] {
        kolm(home.path())
            .args([
                "dev",
                "tiny-model",
                "--shape",
                "tiny-256",
                "--quant",
                quant,
                "--out",
            ])
            .arg(&out)
            .assert()
            .success();
        let h = kolm::gguf::read_header(&out).unwrap();
        assert_eq!(h.summary().quantization, name);
        let ty = |t: &str| h.tensor(t).unwrap().ty.name();
        let (main, precise) = (ty("blk.0.attn_q.weight"), ty("blk.0.ffn_down.weight"));
        assert_eq!(precise, "Q6_K", "{quant}");
        assert_eq!(main, &name[..4], "{quant}");
    }
    let refused = kolm(home.path())
        .args(["dev", "tiny-model", "--quant", "q4_k_m", "--out"])
        .arg(home.path().join("no.gguf"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("multiples of 256") && err.contains("tiny-256"),
        "{err}"
    );
    assert!(!home.path().join("no.gguf").exists());
}

#[test]
fn cache_commands() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let ls = kolm(p.home.path())
        .args(["cache", "ls", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 8);
    let stats = kolm(p.home.path())
        .args(["cache", "stats", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(s["actions"], 8);
    let verify = kolm(p.home.path())
        .args(["cache", "verify", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(r["removed"].as_array().unwrap().len(), 0);
    let gc = kolm(p.home.path())
        .args(["cache", "gc", "--json"])
        .output()
        .unwrap();
    let g: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(g["blobs_removed"], 0, "everything is referenced");
    // After a gc that drops every entry, a build reruns everything and gives the same bytes.
    let before = std::fs::read(p.artifact()).unwrap();
    kolm(p.home.path())
        .args(["cache", "gc", "--max-age-days", "0"])
        .assert()
        .success();
    std::fs::remove_file(p.artifact()).unwrap();
    let r = p.build();
    assert_eq!(
        r.nodes
            .iter()
            .filter(|n| n.status == kolm::executor::NodeStatus::Ran)
            .count(),
        8
    );
    assert_eq!(std::fs::read(p.artifact()).unwrap(), before);
}

#[test]
fn clean_removes_outputs_only() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    Command::cargo_bin("kolmbuild")
        .unwrap()
        .arg("clean")
        .current_dir(p.dir.path())
        .env("KOLM_HOME", p.home.path())
        .assert()
        .success();
    assert!(!p.artifact().exists());
    assert!(p.path("data/seeds.jsonl").exists());
    // The cache survives: the rebuild only reseals.
    let r = p.build();
    let ran: Vec<_> = r
        .nodes
        .iter()
        .filter(|n| n.status == kolm::executor::NodeStatus::Ran)
        .map(|n| n.stage.name())
        .collect();
    assert_eq!(ran, ["seal"]);
}

/// A `SOURCE_DATE_EPOCH` that is not text is refused like any other bad value (kolmfile.md
/// §21: it used to be taken for unset), before any stage runs.
#[test]
fn a_source_date_epoch_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    kolm(home.path())
        .arg("init")
        .arg(dir.path())
        .assert()
        .success();
    let out = kolmbuild(dir.path(), home.path())
        .env(
            "SOURCE_DATE_EPOCH",
            std::ffi::OsStr::from_bytes(b"17\xff00"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SOURCE_DATE_EPOCH is not valid UTF-8"),
        "{err}"
    );
    assert!(!home.path().join("cache").exists(), "no stage ran");
}

/// `--key-file` wins over KOLM_SIGNING_KEY, and every command's help says so (kolmfile.md §19).
#[test]
fn key_file_help_says_the_file_wins() {
    for cmd in [
        &["verify", "--help"][..],
        &["inspect", "--help"],
        &["run", "--help"],
    ] {
        let out = Command::cargo_bin("kolm")
            .unwrap()
            .args(cmd)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("wins over KOLM_SIGNING_KEY"),
            "{cmd:?}: {help}"
        );
        assert!(
            !help.contains("when KOLM_SIGNING_KEY is not set"),
            "{cmd:?}: {help}"
        );
    }
}

/// A seal that reruns and does not seal (no key here, then the gate) leaves no earlier build's
/// artifact where a deploy step could take it for this build's, and says it removed it
/// (kolmfile.md §21, closed).
#[test]
fn a_seal_that_does_not_seal_removes_the_earlier_artifact_and_says_so() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let earlier = std::fs::read(p.artifact()).unwrap();
    let note = "note: removed `dist/demo.kolm`: it was an earlier build's";
    // No key now: the signed artifact no longer checks out under the key in use, so seal reruns.
    let out = kolmbuild(p.dir.path(), p.home.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no signing key") && err.contains(note),
        "{err}"
    );
    assert!(!p.artifact().exists(), "the earlier artifact is gone");
    assert!(
        p.path("dist/demo.report.json").is_file(),
        "this build's report"
    );

    // Back as it was, then a gate the build cannot pass.
    std::fs::write(p.artifact(), &earlier).unwrap();
    let out = kolmbuild(p.dir.path(), p.home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .args(["build", "--gate", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "below the gate: {err}");
    assert!(
        err.contains("below the gate") && err.contains(note),
        "{err}"
    );
    assert!(!p.artifact().exists());

    // A build that seals says nothing of the kind.
    let out = kolmbuild(p.dir.path(), p.home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("note: removed"));
    assert_eq!(std::fs::read(p.artifact()).unwrap(), earlier);
}
