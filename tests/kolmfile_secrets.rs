//! No secret in any output (kolmfile.md §5.2): a value kolm does not recognise may be a pasted
//! credential. Put one in every place a Kolmfile can hold a value kolm does not know, run every
//! command that reads the Kolmfile, and look for it (as is, in hex, in base64) in everything
//! kolm wrote: stdout, stderr, the project folder, KOLM_HOME.

mod support;

use std::path::Path;

use support::{assert_no_secret, walk};

const SECRET: &str = "kolm-test-PASTED-9d2f41c7e8";

const HEAD: &str = r#"[project]
name = "demo"

[base]
tiny = { arch = "llama", seed = 1 }
"#;

const TASK: &str = r#"
[[task]]
name = "demo"
description = "d"
output_schema = { type = "object" }
seeds = "seeds.jsonl"
evals = "evals.jsonl"
"#;

/// Each place, as a Kolmfile (`@` is the secret), and the table the error must name.
fn cases() -> Vec<(&'static str, String, &'static str)> {
    let head_task = |extra: &str| format!("{HEAD}{TASK}{extra}");
    vec![
        (
            "an unknown key in a known table",
            format!("{HEAD}\n[teacher]\nprovider = \"none\"\nnote = \"@\"\n{TASK}"),
            "unknown key `note` in [teacher]",
        ),
        (
            "an unknown key at the top level",
            format!("note = \"@\"\n{HEAD}{TASK}"),
            "unknown key `note` in the top level",
        ),
        (
            "an unknown sub-table",
            format!("{HEAD}\n[teacher.secret]\nvalue = \"@\"\n{TASK}"),
            "unknown key `secret` in [teacher]",
        ),
        (
            "an unknown table",
            head_task("\n[vault]\nopenai = '@'\n"),
            "unknown key `vault` in the top level",
        ),
        (
            "an unknown sub-table of a task",
            head_task("\n[task.creds]\nv = \"@\"\n"),
            "unknown key `creds` in [[task]]",
        ),
        (
            "an unknown array of tables",
            head_task("\n[[vault]]\nv = \"@\"\n"),
            "unknown key `vault` in the top level",
        ),
        (
            "an inline table",
            format!("{HEAD}\n[teacher]\ncreds = {{ user = \"me\", pass = \"@\" }}\n{TASK}"),
            "unknown key `creds` in [teacher]",
        ),
        (
            "an unknown key inside a known inline table",
            format!("teacher = {{ provider = \"none\", token = \"@\" }}\n{HEAD}{TASK}"),
            "unknown key `token` in [teacher]",
        ),
        (
            "an array element",
            format!("{HEAD}\n[teacher]\nkeys = [\"public\", \"@\"]\n{TASK}"),
            "unknown key `keys` in [teacher]",
        ),
        (
            "a multi-line basic string",
            format!("{HEAD}\n[teacher]\nblob = \"\"\"\nfirst line\n@\n\"\"\"\n{TASK}"),
            "unknown key `blob` in [teacher]",
        ),
        (
            "a multi-line literal string",
            format!("{HEAD}\n[teacher]\nblob = '''\n@\n'''\n{TASK}"),
            "unknown key `blob` in [teacher]",
        ),
        (
            "a dotted key",
            format!("teacher.api.token = \"@\"\n{HEAD}{TASK}"),
            "unknown key `api` in [teacher]",
        ),
        (
            "a value after a comment",
            format!(
                "{HEAD}\n[teacher] # the teacher\n# the key, for now:\nv = \"@\" # remove\n{TASK}"
            ),
            "unknown key `v` in [teacher]",
        ),
        (
            "the line after a different mistake",
            format!("{HEAD}\n[teacher]\nsamples = \"three\"\nnote = \"@\"\n{TASK}"),
            "wrong type for `samples`",
        ),
        (
            "the line before a syntax error",
            format!("{HEAD}\n[teacher]\nnote = \"@\"\nprovider = = \"none\"\n{TASK}"),
            "invalid TOML",
        ),
        (
            "a known key given the wrong type",
            format!("{HEAD}\n[teacher]\nsamples = \"@\"\n{TASK}"),
            "wrong type for `samples`: expected an integer, found a string",
        ),
    ]
}

/// Every command that reads the Kolmfile, in both output forms.
const COMMANDS: &[&[&str]] = &[
    &["build"],
    &["build", "--explain"],
    &["--json", "build"],
    &["status"],
    &["explain"],
    &["--json", "explain"],
    &["graph"],
    &["graph", "--format", "json"],
    &["clean"],
];

fn run(bin: &str, args: &[&str], dir: &Path, home: &Path) -> std::process::Output {
    assert_cmd::Command::cargo_bin(bin)
        .unwrap()
        .args(args)
        .current_dir(dir)
        .env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", "not-the-secret")
        .output()
        .unwrap()
}

#[test]
fn a_value_kolm_does_not_recognise_is_never_written_anywhere() {
    for (place, text, message) in cases() {
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seeds.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("evals.jsonl"), "").unwrap();
        let kolmfile = dir.path().join("Kolmfile.toml");
        std::fs::write(&kolmfile, text.replace('@', SECRET)).unwrap();
        let runs = COMMANDS
            .iter()
            .map(|a| ("kolmbuild", *a))
            .chain([("kolm", &["build"][..])]);
        for (bin, args) in runs {
            let out = run(bin, args, dir.path(), home.path());
            let what = format!("{place}: `{bin} {}`", args.join(" "));
            assert_eq!(out.status.code(), Some(1), "{what} must refuse the file");
            assert_no_secret(SECRET, &format!("the stdout of {what}"), &out.stdout);
            assert_no_secret(SECRET, &format!("the stderr of {what}"), &out.stderr);
            let said = [out.stdout, out.stderr].concat();
            let said = String::from_utf8_lossy(&said);
            assert!(said.contains(message), "{what} says:\n{said}");
        }
        for root in [dir.path(), home.path()] {
            for f in walk(root).into_iter().filter(|f| *f != kolmfile) {
                let bytes = std::fs::read(&f).unwrap_or_default();
                assert_no_secret(SECRET, &format!("{place}: {}", f.display()), &bytes);
            }
        }
    }
}

#[test]
fn the_error_still_points_at_the_users_text() {
    // Masking keeps offsets: the line and column are those of the stray key in the real file.
    let text = format!("{HEAD}\n[teacher.secret]\nvalue = \"{SECRET}\"\n{TASK}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Kolmfile.toml"), &text).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = run("kolmbuild", &["--json", "build"], dir.path(), home.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = text.lines().position(|l| l == "[teacher.secret]").unwrap() + 1;
    assert_eq!(
        (v["line"].as_u64(), v["col"].as_u64()),
        (Some(line as u64), Some(10))
    );
    let err =
        String::from_utf8_lossy(&run("kolmbuild", &["build"], dir.path(), home.path()).stderr)
            .into_owned();
    assert!(
        err.contains("[teacher.secret]"),
        "the header is shown: {err}"
    );
    assert!(err.contains("value = ***"), "the value is starred: {err}");
}
