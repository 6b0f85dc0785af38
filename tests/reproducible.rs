//! Same inputs, same bytes; the gate; the lock.

mod support;

use kolm::executor::ExecOptions;
use kolm::stages::{BuildOptions, Stage, StageKind, StageOutput};
use support::*;

fn sha(p: &std::path::Path) -> String {
    kolm::digest::sha256(&std::fs::read(p).unwrap())
}

#[test]
fn two_builds_in_fresh_homes_and_folders_are_byte_identical() {
    let a = Project::new(&kolmfile_text(""));
    let b = Project::new(&kolmfile_text(""));
    a.build();
    b.build();
    assert_eq!(sha(&a.artifact()), sha(&b.artifact()));
    // and a rebuild after wiping the cache gives the same bytes again
    std::fs::remove_dir_all(a.home.path()).unwrap();
    std::fs::remove_file(a.artifact()).unwrap();
    a.build();
    assert_eq!(sha(&a.artifact()), sha(&b.artifact()));
}

#[test]
fn source_date_epoch_is_the_only_clock() {
    let a = Project::new(&kolmfile_text(""));
    let opts = BuildOptions {
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    };
    a.build_with(opts.clone(), ExecOptions::default())
        .map_err(|f| f.error)
        .unwrap();
    let first = sha(&a.artifact());
    let b = Project::new(&kolmfile_text(""));
    b.build_with(opts, ExecOptions::default())
        .map_err(|f| f.error)
        .unwrap();
    assert_eq!(first, sha(&b.artifact()));
    let o = kolm::artifact::verify::open(&a.artifact()).unwrap();
    assert_eq!(
        o.manifest.created_at.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
}

#[test]
fn below_the_gate_nothing_is_written_and_the_error_is_k_gate() {
    let p = Project::new(&kolmfile_text(""));
    let opts = BuildOptions {
        gate: Some(0.99),
        ..Default::default()
    };
    let failed = p.build_with(opts, ExecOptions::default()).unwrap_err();
    assert_eq!(failed.error.exit_code(), 2);
    let json = failed.error.to_json();
    assert_eq!(json["code"], "K_GATE");
    assert!(json["k_components"]["accuracy"].as_f64().unwrap() > 0.99);
    assert!(json["k_score"].as_f64().unwrap() < 0.99);
    assert!(!p.artifact().exists(), "no artifact below the gate");
    let in_dist: Vec<String> = std::fs::read_dir(p.path("dist"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        in_dist,
        ["demo.report.json"],
        "only the report, to show why"
    );
    // Lowering the gate reuses everything but the seal.
    let r = p.build();
    assert_eq!(ran(&r), ["seal"]);
    // Raising it again removes the now-stale artifact rather than leave it for a deploy step.
    assert!(p.artifact().exists());
    let high = BuildOptions {
        gate: Some(0.99),
        ..Default::default()
    };
    p.build_with(high, ExecOptions::default()).unwrap_err();
    assert!(!p.artifact().exists());
}

/// A label stage whose answers differ every time it runs, like a teacher's.
struct Flaky;
impl Stage for Flaky {
    fn kind(&self) -> StageKind {
        StageKind::Label
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, t: &kolm::kolmfile::TaskConfig, o: &BuildOptions) -> serde_json::Value {
        kolm::stages::label::LabelStage.config(t, o)
    }
    fn deterministic(&self, _: &kolm::kolmfile::TaskConfig) -> bool {
        false
    }
    fn run(&self, cx: &kolm::stages::Cx, _: &kolm::stages::Inputs) -> kolm::Result<StageOutput> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let pairs = cx
            .store
            .put_blob(format!("{{\"input\":\"{nanos}\",\"output\":{{}}}}\n").as_bytes())?;
        Ok(StageOutput::Label(kolm::stages::LabelOut {
            pairs,
            kept: 1,
            dropped: Default::default(),
            teacher_requests: 1,
            teacher_usage: Default::default(),
            teacher_cost_usd: 0.0,
            synthesized: 0,
            disagreements: vec![],
        }))
    }
}

#[test]
fn locked_refuses_to_redo_pinned_nondeterministic_work() {
    let p = Project::new(&kolmfile_text(""));
    init_env();
    let stages = || test_stages().with(Box::new(Flaky));
    let build = |home: &std::path::Path, locked: bool| {
        kolm::executor::build(
            p.kolmfile(),
            kolm::home::Home::at(home),
            stages(),
            BuildOptions::default(),
            ExecOptions {
                locked,
                ..Default::default()
            },
            kolm::progress::Progress::hidden(),
        )
    };
    build(p.home.path(), false).map_err(|f| f.error).unwrap();
    let lock = std::fs::read_to_string(p.path("Kolmfile.lock")).unwrap();
    assert!(lock.contains("stage = \"label\""), "{lock}");
    // Same cache: --locked is happy.
    build(p.home.path(), true).map_err(|f| f.error).unwrap();
    // Fresh cache: the pinned answer is gone, and --locked will not ask again.
    let fresh = tempfile::tempdir().unwrap();
    let err = build(fresh.path(), true).unwrap_err().error;
    assert!(err.to_string().contains("pinned in Kolmfile.lock"), "{err}");
    assert_eq!(
        std::fs::read_to_string(p.path("Kolmfile.lock")).unwrap(),
        lock,
        "the lock is untouched"
    );
}

#[test]
fn locked_refuses_a_changed_base() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let text = std::fs::read_to_string(p.path("Kolmfile.toml"))
        .unwrap()
        .replace("seed = 3", "seed = 4");
    p.edit("Kolmfile.toml", &text);
    let err = p
        .build_with(
            BuildOptions::default(),
            ExecOptions {
                locked: true,
                ..Default::default()
            },
        )
        .unwrap_err()
        .error;
    assert!(err.to_string().contains("the base of task `demo`"), "{err}");
    assert_eq!(err.code(), "LOCKED");
}

#[test]
fn a_damaged_cache_entry_is_a_miss_never_a_wrong_hit() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let good = sha(&p.artifact());
    // Damage every file in the content store.
    let mut damaged = 0;
    let mut stack = vec![p.home.path().join("cache/content-v2")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mut b = std::fs::read(&path).unwrap();
                b[0] ^= 0xff;
                std::fs::write(&path, b).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0);
    std::fs::remove_file(p.artifact()).unwrap();
    let r = p.build();
    assert!(ran(&r).contains(&"seal".to_string()));
    assert_eq!(sha(&p.artifact()), good, "rebuilt from scratch, same bytes");
}
