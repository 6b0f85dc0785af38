//! `kolm rag`: named indexes, queries, and attaching by sidecar without touching the artifact.

mod support;

use assert_cmd::Command;
use support::*;

fn kolm(home: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

fn docs(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/refunds.md"),
        "# Refunds\nRefunds are issued within 30 days of purchase, to the original card.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("shipping.txt"),
        "Parcels ship from Leeds in two business days.\n",
    )
    .unwrap();
    std::fs::write(dir.join("logo.png"), b"\x89PNG\r\n\x1a\n\0\0").unwrap();
}

#[test]
fn index_query_attach_detach() {
    let home = tempfile::tempdir().unwrap();
    let corpus = tempfile::tempdir().unwrap();
    docs(corpus.path());
    let index = || {
        ok_json(
            &kolm(home.path())
                .args(["--json", "rag", "index"])
                .arg(corpus.path())
                .args(["--name", "internal-docs"])
                .output()
                .unwrap(),
        )
    };
    let m = index();
    assert_eq!(m["documents"], 2);
    assert_eq!(m["skipped"]["binary"], 1);
    assert!(home.path().join("rag/internal-docs/index.sqlite").is_file());
    // Deterministic: the same folder indexed again gives the same bytes.
    assert_eq!(index()["sha256"], m["sha256"]);

    let q = ok_json(
        &kolm(home.path())
            .args([
                "--json",
                "rag",
                "query",
                "internal-docs",
                "when do I get my refund",
                "-k",
                "1",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(q["matches"][0]["path"], "policies/refunds.md");

    // Attach to a real artifact: a sidecar appears, the artifact's bytes do not change.
    let p = Project::new(&kolmfile_text(""));
    p.build();
    let art = p.artifact();
    let before = std::fs::read(&art).unwrap();
    kolm(home.path())
        .args(["rag", "attach"])
        .arg(&art)
        .args(["--index", "internal-docs"])
        .assert()
        .success();
    let side = art.with_file_name("demo.kolm.rag.json");
    assert!(side.is_file());
    assert_eq!(std::fs::read(&art).unwrap(), before);
    kolm(home.path()).arg("verify").arg(&art).assert().success();
    // The runner reads it.
    init_env();
    let r = kolm::runtime::Runner::open(
        &art,
        &kolm::home::Home::at(home.path()),
        &Default::default(),
        Default::default(),
        None,
    )
    .unwrap();
    let hits = r.rag_query("parcels", 3).unwrap().unwrap();
    assert_eq!(hits[0].path, "shipping.txt");
    drop(r);

    // Rebuilding the index with other content makes the sidecar stale: runs refuse it.
    std::fs::write(
        corpus.path().join("shipping.txt"),
        "Parcels ship from York.\n",
    )
    .unwrap();
    kolm(home.path())
        .args(["rag", "index"])
        .arg(corpus.path())
        .args(["--name", "internal-docs"])
        .assert()
        .success();
    let out = kolm(home.path())
        .arg("run")
        .arg(&art)
        .arg("hello")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("was rebuilt after it was attached"));

    kolm(home.path())
        .args(["rag", "detach"])
        .arg(&art)
        .assert()
        .success();
    assert!(!side.exists());
    let out = kolm(home.path())
        .args(["rag", "detach"])
        .arg(&art)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no index attached"));
}

#[test]
fn bad_names_missing_indexes_and_empty_folders_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let err = |args: &[&str]| {
        let out = kolm(home.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = empty.path().to_str().unwrap();
    assert!(err(&["rag", "index", dir, "--name", "../escape"]).contains("not a valid index name"));
    assert!(err(&["rag", "index", dir, "--name", "ok"]).contains("has no files to index"));
    assert!(err(&["rag", "query", "nope", "x"]).contains("there is no index named `nope`"));
}
