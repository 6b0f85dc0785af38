//! Bazel (Debian's bazel-bootstrap 4.2) builds `examples/tiny-triage` through
//! `rules/bazel` (`kolm_artifact`): a build in the sandbox sees every input it needs (the
//! corpus through the sandbox's symlinks), a no-op rebuild runs nothing, an edited eval runs
//! the action again, an undeclared input fails (in the sandbox and outside it), and a second
//! clean workspace gets the artifact from Bazel's own remote cache on a real nginx.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::example::Checkout;
use crate::support::nginx::Nginx;

/// One Bazel command in `c`'s workspace, in batch mode (no server left behind), its output
/// folder under `base`, with the execution log (every spawn run) in `base/exec.json`.
fn bazel(c: &Checkout, base: &Path, args: &[&str]) -> Output {
    let log = base.join("exec.json");
    let _ = std::fs::remove_file(&log);
    Command::new("bazel")
        .arg("--batch")
        .arg(format!("--output_base={}", base.join("ob").display()))
        .args(args)
        .arg(format!("--execution_log_json_file={}", log.display()))
        .current_dir(c.project())
        .env("KOLMBUILD", kolmbuild())
        .env_remove("KOLM_SIGNING_KEY")
        .output()
        .expect("bazel is installed (scripts/deps.sh installs bazel-bootstrap)")
}

/// kolmbuild as this test first found it, copied once. Bazel keys the action on the tool's
/// bytes, and the Cargo integration test, running beside this one, may relink the target
/// folder's copy (its nested `cargo build`): then the second workspace would miss the remote
/// cache for a reason that is not the one under test (seen once in a full run).
fn kolmbuild() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kolm-bazel-tool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("kolmbuild");
        std::fs::copy(env!("CARGO_BIN_EXE_kolmbuild"), &to).unwrap();
        to
    })
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// The kolm actions the last command ran, with whether each was a remote cache hit.
fn kolm_spawns(base: &Path) -> Vec<bool> {
    let text = std::fs::read_to_string(base.join("exec.json")).unwrap_or_default();
    // The log is a stream of JSON objects, one per spawn.
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap())
        .filter(|v| v["mnemonic"] == "Kolm")
        .map(|v| v["remoteCacheHit"] == true)
        .collect()
}

fn artifact(c: &Checkout) -> PathBuf {
    c.path("bazel-bin/tiny-triage.kolm")
}

fn manifest(path: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args(["inspect", "--json"])
        .arg(path)
        .output()
        .unwrap();
    crate::support::ok_json(&out)
}

#[test]
fn bazel_builds_the_artifact_hermetically_and_shares_it_through_a_remote_cache() {
    /// Removes the tool's copy however the test ends.
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(kolmbuild().parent().unwrap());
        }
    }
    let _cleanup = Cleanup;
    let nginx = Nginx::start();
    let remote = format!("--remote_cache=http://127.0.0.1:{}/bazel", nginx.port);
    let c = Checkout::tiny_triage();
    let base = tempfile::tempdir().unwrap();
    ok(&bazel(
        &c,
        base.path(),
        &["build", &remote, "//:tiny-triage"],
    ));
    assert_eq!(kolm_spawns(base.path()), [false], "one kolm action ran");
    let first = std::fs::read(artifact(&c)).unwrap();
    // The sandbox held every input: the corpus (symlinks there) was indexed whole.
    let m = manifest(&artifact(&c));
    assert_eq!(m["manifest"]["recall"]["documents"], 2, "{m}");

    // Nothing changed: nothing runs.
    ok(&bazel(
        &c,
        base.path(),
        &["build", &remote, "//:tiny-triage"],
    ));
    assert!(kolm_spawns(base.path()).is_empty());

    // Another clean workspace (its own output base): the artifact comes from the remote
    // cache, byte for byte.
    let c2 = Checkout::tiny_triage();
    let base2 = tempfile::tempdir().unwrap();
    ok(&bazel(
        &c2,
        base2.path(),
        &["build", &remote, "//:tiny-triage"],
    ));
    assert_eq!(kolm_spawns(base2.path()), [true], "a remote cache hit");
    assert_eq!(std::fs::read(artifact(&c2)).unwrap(), first);

    // An edited eval: the action runs again.
    let evals = std::fs::read_to_string(c.path("data/evals.jsonl")).unwrap();
    c.edit(
        "data/evals.jsonl",
        &format!("{evals}{{\"vars\": {{\"input\": \"refund please\"}}, \"assert\": [{{\"type\": \"is-json\"}}]}}\n"),
    );
    ok(&bazel(
        &c,
        base.path(),
        &["build", &remote, "//:tiny-triage"],
    ));
    assert_eq!(kolm_spawns(base.path()), [false]);
    assert_ne!(std::fs::read(artifact(&c)).unwrap(), first);

    // An input left out of srcs: the sandbox does not have it, and outside the sandbox
    // kolmbuild refuses it by name.
    let build = std::fs::read_to_string(c.path("BUILD.bazel")).unwrap();
    c.edit("BUILD.bazel", &build.replace("\"schema.json\",", ""));
    let out = bazel(&c, base.path(), &["build", "//:tiny-triage"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema.json"), "{err}");
    let out = bazel(
        &c,
        base.path(),
        &["build", "--spawn_strategy=local", "//:tiny-triage"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("did not declare") && err.contains("schema.json"),
        "{err}"
    );
    // Bazel's entries sit beside kolm's under their own prefix.
    assert!(nginx.dir.path().join("data/bazel/ac").is_dir());
}
