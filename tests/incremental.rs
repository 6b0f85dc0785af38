//! Incremental builds: exactly what changed reruns, and nothing else.

mod support;

use kolm::executor::{ExecOptions, NodeStatus};
use kolm::stages::BuildOptions;
use support::*;

#[test]
fn first_build_runs_everything_and_seals() {
    let p = Project::new(&kolmfile_text(""));
    let r = p.build();
    assert_eq!(ran(&r), STAGES);
    assert_eq!(r.artifacts.len(), 1);
    assert!(p.artifact().is_file());
    assert!(p.path("dist/demo.report.json").is_file());
    assert!(p.path("Kolmfile.lock").is_file(), "the lock is written");
}

/// The report is an output of seal: deleted, the next build writes it again, the same bytes,
/// and the artifact with it (kolmfile.md §21, closed).
#[test]
fn a_deleted_report_is_restored_by_the_next_build() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let report = p.path("dist/demo.report.json");
    let (before, artifact) = (
        std::fs::read(&report).unwrap(),
        std::fs::read(p.artifact()).unwrap(),
    );
    std::fs::remove_file(&report).unwrap();
    let r = p.build();
    assert_eq!(ran(&r), ["seal"]);
    assert_eq!(std::fs::read(&report).unwrap(), before);
    assert_eq!(std::fs::read(p.artifact()).unwrap(), artifact);
}

#[test]
fn noop_rebuild_runs_nothing_and_hashes_nothing() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let r = p.build();
    assert!(ran(&r).is_empty(), "{:?}", statuses(&r));
    assert!(r.nodes.iter().all(|n| n.status == NodeStatus::Fresh));
    assert_eq!(r.hashed_bytes, 0, "unchanged files are not rehashed");
    assert!(!r.lock_changed);
}

#[test]
fn touch_without_content_change_reruns_nothing() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    for f in [
        "data/seeds.jsonl",
        "data/evals.jsonl",
        "docs/doc1.md",
        "Kolmfile.toml",
    ] {
        let file = std::fs::File::options()
            .write(true)
            .open(p.path(f))
            .unwrap();
        file.set_modified(std::time::SystemTime::now()).unwrap();
    }
    let r = p.build();
    assert!(ran(&r).is_empty(), "{:?}", statuses(&r));
    assert!(
        r.hashed_bytes > 0,
        "touched files are rehashed; their digests decide"
    );
}

#[test]
fn editing_a_kolmfile_comment_reruns_nothing() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let text = std::fs::read_to_string(p.path("Kolmfile.toml"))
        .unwrap()
        .replace(
            "# a test project",
            "# a test project, now with a longer comment",
        );
    p.edit("Kolmfile.toml", &text);
    let r = p.build();
    assert!(ran(&r).is_empty(), "{:?}", statuses(&r));
}

#[test]
fn editing_only_the_evals_reruns_only_score_and_seal() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    p.edit("data/evals.jsonl", "{\"description\": \"b\", \"vars\": {\"input\": \"card declined\"}, \"assert\": [{\"type\": \"is-json\"}]}\n");
    let r = p
        .build_with(
            BuildOptions::default(),
            ExecOptions {
                jobs: 2,
                ..Default::default()
            },
        )
        .map_err(|f| f.error)
        .unwrap();
    assert_eq!(ran(&r), ["score", "seal"]);
    let score = r.nodes.iter().find(|n| n.stage.name() == "score").unwrap();
    assert!(
        score
            .reasons
            .iter()
            .any(|x| x.contains("file `data/evals.jsonl` changed")),
        "{:?}",
        score.reasons
    );
}

#[test]
fn editing_one_corpus_file_reruns_recall_and_its_dependents() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    p.edit(
        "docs/doc1.md",
        "# Doc 1\nThe refund window is now 60 days.\n",
    );
    let r = p.build();
    let s = statuses(&r);
    let get = |name: &str| s.iter().find(|(n, _, _)| n == name).cloned().unwrap();
    assert_eq!(get("base").1, NodeStatus::Fresh);
    assert_eq!(get("recall").1, NodeStatus::Ran);
    // label reads recall, reruns, and yields the same pairs. train reads recall too (its
    // prompts are grounded in the index): it reruns, and with training off yields the same
    // adapter. So does decompose (recipes query the index): with decompose off, the same pack.
    assert_eq!(get("label"), ("label".into(), NodeStatus::Ran, true));
    assert_eq!(get("train"), ("train".into(), NodeStatus::Ran, true));
    assert_eq!(
        get("decompose"),
        ("decompose".into(), NodeStatus::Ran, true)
    );
    assert_eq!(get("score").1, NodeStatus::Ran);
    assert_eq!(get("seal").1, NodeStatus::Ran);
}

#[test]
fn explain_names_the_changed_config_value() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let text = std::fs::read_to_string(p.path("Kolmfile.toml"))
        .unwrap()
        .replace("train = false", "train = false\nrank = 16");
    p.edit("Kolmfile.toml", &text);
    let r = p.build();
    let train = r.nodes.iter().find(|n| n.stage.name() == "train").unwrap();
    assert_eq!(train.status, NodeStatus::Ran);
    assert!(
        train
            .reasons
            .iter()
            .any(|x| x == "config `distill.rank`: 8 → 16"),
        "{:?}",
        train.reasons
    );
    assert_eq!(ran(&r), ["train", "score", "seal"]);
}

#[test]
fn deleting_the_artifact_reseals_only() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    std::fs::remove_file(p.artifact()).unwrap();
    let r = p.build();
    assert_eq!(ran(&r), ["seal"]);
    assert!(p.artifact().is_file());
}

#[test]
fn two_tasks_sharing_a_base_share_one_node() {
    let second = "\n[[task]]\nname = \"demo2\"\ndescription = \"Classify a message, differently.\"\noutput_schema = { type = \"object\" }\nseeds = \"data/seeds.jsonl\"\nevals = \"data/evals.jsonl\"\n";
    let p = Project::new(&kolmfile_text(second));
    let r = p.build();
    let count = |stage: &str| r.nodes.iter().filter(|n| n.stage.name() == stage).count();
    assert_eq!(count("base"), 1, "one base node for both tasks");
    assert_eq!(
        count("recall"),
        1,
        "same corpus and settings: one recall node"
    );
    assert_eq!(count("seal"), 2);
    let base = r.nodes.iter().find(|n| n.stage.name() == "base").unwrap();
    assert_eq!(base.tasks, ["demo", "demo2"]);
    assert!(p.path("dist/demo2.kolm").is_file());
}

#[test]
fn status_runs_nothing_and_reports_what_would_run() {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    p.edit(
        "data/evals.jsonl",
        "{\"description\": \"c\", \"vars\": {\"input\": \"x\"}, \"assert\": []}\n",
    );
    let before = std::fs::read(p.artifact()).unwrap();
    let r = p
        .build_with(
            BuildOptions::default(),
            ExecOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .map_err(|f| f.error)
        .unwrap();
    let would: Vec<_> = r
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::WouldRun)
        .map(|n| n.stage.name())
        .collect();
    assert_eq!(would, ["score", "seal"]);
    assert_eq!(
        std::fs::read(p.artifact()).unwrap(),
        before,
        "status writes nothing"
    );
}
