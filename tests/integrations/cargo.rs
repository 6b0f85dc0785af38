//! `examples/cargo-buildrs` built with Cargo: its build.rs compiles a copy of
//! `examples/tiny-triage` through `kolm-build` (rules/cargo) and its `main` runs the artifact.
//! Cargo knows every input: a second `cargo build` does not run the build script, an edited
//! eval does (and only score and seal rerun), a broken Kolmfile fails the build with kolm's
//! message and a fix reruns it.
//!
//! The example is a member of this workspace, and the nested `cargo build` builds the `kolm`
//! package beside it (`-p kolm`), so Cargo unifies the features of the crates they share as
//! this test binary's build did: it links the libraries already built and compiles little
//! more than the example. That the example as written (`kolm-runtime` alone) leaves the build
//! out is checked on its dependency tree, and `make test` compiles `kolm-runtime` without its
//! features (`cargo clippy -p kolm-runtime`).

use std::process::{Command, Output};

use crate::support::example::Checkout;

const PACKAGE: &str = "kolm-example-cargo-buildrs";

fn cargo(c: &Checkout, args: &[&str]) -> Output {
    crate::support::init_env();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // As a person's shell would run it: without what `cargo test` sets for this test. Build
    // scripts of dependencies watch some of these (LD_LIBRARY_PATH), and a difference would
    // rebuild them and everything above, here and again in the next `cargo test`.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "LD_LIBRARY_PATH"
            || (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
        {
            cmd.env_remove(&*k);
        }
    }
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KOLMBUILD", env!("CARGO_BIN_EXE_kolmbuild"))
        .env("KOLM_HOME", c.home.path())
        .env("TINY_TRIAGE_KOLMFILE", c.path("Kolmfile.toml"))
        .output()
        .unwrap()
}

/// `cargo build -vv` of the example: whether its build script ran, and everything Cargo said.
fn build(c: &Checkout) -> (bool, String) {
    let out = cargo(c, &["build", "-vv", "-p", PACKAGE, "-p", "kolm"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let ran = err.lines().any(|l| {
        l.contains("Running")
            && l.contains("kolm-example-cargo-buildrs")
            && l.contains("build-script-build")
    });
    (ran, err)
}

#[test]
fn build_rs_builds_the_artifact_and_reruns_only_when_an_input_changed() {
    let c = Checkout::tiny_triage();
    let (ran, err) = build(&c);
    assert!(ran, "the first build runs the build script:\n{err}");
    assert!(err.contains("sealed"), "{err}");

    // The application runs the artifact build.rs made.
    let bin = std::path::Path::new(&target_dir())
        .join("debug")
        .join(PACKAGE);
    let out = Command::new(&bin)
        .args(["I forgot my password", "The export button does nothing"])
        .env("KOLM_HOME", c.home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{stdout}");
    // The recipe answers any password question exactly.
    assert_eq!(answers[0], serde_json::json!({"label": "account"}));
    assert!(answers[1]["label"].is_string(), "{stdout}");

    let (ran, err) = build(&c);
    assert!(!ran, "nothing changed, yet the build script ran:\n{err}");

    let evals = std::fs::read_to_string(c.path("data/evals.jsonl")).unwrap();
    c.edit(
        "data/evals.jsonl",
        &format!("{evals}{{\"vars\": {{\"input\": \"refund please\"}}, \"assert\": [{{\"type\": \"is-json\"}}]}}\n"),
    );
    let (ran, err) = build(&c);
    assert!(
        ran,
        "an eval was edited, yet the build script did not run:\n{err}"
    );
    assert!(
        err.contains("built score") && !err.contains("built recall"),
        "{err}"
    );

    // A new corpus file in a subfolder reruns it too.
    c.edit("docs/policies/more.md", "# More\nText.\n");
    assert!(build(&c).0, "a corpus file was added");

    // A broken Kolmfile fails the build with kolm's own message; the fix reruns it.
    let good = std::fs::read_to_string(c.path("Kolmfile.toml")).unwrap();
    c.edit("Kolmfile.toml", &good.replace("min_k = 0.0", "min_k = 7"));
    let out = cargo(&c, &["build", "-p", PACKAGE, "-p", "kolm"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("min_k") && err.contains("kolmbuild failed"),
        "{err}"
    );
    c.edit("Kolmfile.toml", &good);
    let (ran, err) = build(&c);
    assert!(ran, "the fixed Kolmfile reruns the build script:\n{err}");
}

fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| format!("{}/target", env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn an_app_that_runs_artifacts_compiles_no_build_machinery() {
    let c = Checkout::tiny_triage();
    let out = cargo(
        &c,
        &[
            "tree",
            "-p",
            PACKAGE,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ],
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree.contains("kolm-runtime v") && tree.contains("llama-cpp-2"),
        "{tree}"
    );
    // No crate of the build, serving or the CLI; no candle (dense retrieval is a feature the
    // example does not ask for), no HTTP client, no graph library, no async runtime.
    for crate_name in [
        "kolm",
        "kolm-compiler",
        "kolm-serve",
        "kolm-kernels",
        "candle-core",
        "candle-nn",
        "tokenizers",
        "petgraph",
        "reqwest",
        "cacache",
        "axum",
        "clap",
        "notify",
        "toml_edit",
        "tokio",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{crate_name} v"))),
            "the example app compiles {crate_name}:\n{tree}"
        );
    }
}
