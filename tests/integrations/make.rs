//! GNU Make through `rules/make/kolm.mk` and `kolmbuild --depfile`, on `examples/tiny-triage`:
//! Make knows every input, so it builds, answers `make -q` correctly, and rebuilds after an
//! edit, an added file in a corpus subfolder, and a deleted input.

use std::process::{Command, Output};

use crate::support::example::Checkout;

fn make(c: &Checkout, args: &[&str]) -> Output {
    crate::support::init_env();
    Command::new("make")
        .args(args)
        .arg(format!("KOLMBUILD={}", env!("CARGO_BIN_EXE_kolmbuild")))
        .current_dir(c.project())
        .env("KOLM_HOME", c.home.path())
        .env_remove("MAKEFLAGS")
        .output()
        .expect("GNU make is installed")
}

/// `make -q`: exit 0 when everything is up to date, 1 when something would be rebuilt.
fn up_to_date(c: &Checkout) -> bool {
    match make(c, &["-q"]).status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("make -q exited {other:?}"),
    }
}

fn built(c: &Checkout) -> String {
    let out = make(c, &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

#[test]
fn make_builds_knows_every_input_and_rebuilds_after_an_edit() {
    let c = Checkout::tiny_triage();
    assert!(!up_to_date(&c), "nothing is built yet");
    let err = built(&c);
    assert!(err.contains("sealed dist/tiny-triage.kolm"), "{err}");
    assert!(c.artifact().is_file());
    let dep = std::fs::read_to_string(c.path("dist/.kolm.d")).unwrap();
    for input in [
        "dist/tiny-triage.kolm:",
        "Kolmfile.toml",
        "schema.json",
        "data/seeds.jsonl",
        "data/evals.jsonl",
        "docs/refunds.md",
        "docs/policies/passwords.md",
        "recipes/password.js",
        "docs/policies \\",
        "\nrecipes/password.js:\n",
    ] {
        assert!(
            dep.contains(input),
            "`{input}` missing from the depfile:\n{dep}"
        );
    }
    assert!(up_to_date(&c), "a fresh build is up to date");
    // The default goal is the Makefile's `all`, not the depfile's first rule.
    let out = make(&c, &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Nothing to be done for 'all'"), "{said}");

    // An eval edited: stale, and only score and seal run.
    let evals = std::fs::read_to_string(c.path("data/evals.jsonl")).unwrap();
    c.edit(
        "data/evals.jsonl",
        &format!("{evals}{{\"vars\": {{\"input\": \"refund please\"}}, \"assert\": [{{\"type\": \"is-json\"}}]}}\n")
    );
    assert!(!up_to_date(&c));
    let err = built(&c);
    assert!(
        err.contains("built score") && err.contains("built seal"),
        "{err}"
    );
    assert!(!err.contains("built recall"), "{err}");
    assert!(up_to_date(&c));

    // A file added in a corpus subfolder: Make sees it through the folder.
    c.edit("docs/policies/refunds-2.md", "# Refunds\nWithin a week.\n");
    assert!(!up_to_date(&c));
    let err = built(&c);
    assert!(err.contains("built recall"), "{err}");
    assert!(up_to_date(&c));

    // A deleted input: stale, not "No rule to make target".
    std::fs::remove_file(c.path("docs/refunds.md")).unwrap();
    c.age_artifact();
    assert!(!up_to_date(&c));
    let err = built(&c);
    assert!(err.contains("built recall"), "{err}");
    assert!(up_to_date(&c));

    // A touched but unchanged input: kolmbuild finds it fresh, and Make is satisfied after.
    c.edit(
        "schema.json",
        &std::fs::read_to_string(c.path("schema.json")).unwrap(),
    );
    assert!(!up_to_date(&c));
    let err = built(&c);
    assert!(err.contains("everything is up to date"), "{err}");
    assert!(
        up_to_date(&c),
        "the artifact was touched after the no-op build"
    );
}

#[test]
fn a_second_build_of_a_project_waits_for_the_first() {
    let c = Checkout::tiny_triage();
    let lock = kolm::explain::dir(&kolm::home::Home::at(c.home.path()).cache(), &c.project())
        .join("build.lock");
    let held = kolm::fsutil::lock_exclusive(&lock, || panic!("nobody holds it yet")).unwrap();
    crate::support::init_env();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kolmbuild"))
        .current_dir(c.project())
        .env("KOLM_HOME", c.home.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains("waiting for another build of this project") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // It says why it waits, and builds nothing meanwhile.
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("kolmbuild says it waits for the lock");
    assert!(
        !c.artifact().exists(),
        "built while another build held the lock"
    );
    drop(held);
    let status = child.wait().unwrap();
    let err = reader.join().unwrap();
    assert!(status.success(), "{err}");
    assert!(c.artifact().is_file(), "{err}");
}

#[test]
fn task_and_dist_choose_what_is_built_and_where() {
    let c = Checkout::tiny_triage();
    crate::support::init_env();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kolmbuild"))
            .args(args)
            .current_dir(c.project())
            .env("KOLM_HOME", c.home.path())
            .output()
            .unwrap()
    };
    let out = run(&["--task", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no such task") && err.contains("tiny-triage"),
        "{err}"
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run(&[
        "--task",
        "tiny-triage",
        "--dist",
        elsewhere.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(elsewhere.path().join("tiny-triage.kolm").is_file());
    assert!(elsewhere.path().join("tiny-triage.report.json").is_file());
    assert!(!c.path("dist").exists(), "--dist wrote into the project");
}
