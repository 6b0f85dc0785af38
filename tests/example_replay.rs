//! The `replay-triage` example: its committed cassette is exactly what kolm records from the
//! example's oracle teacher, and the example builds with no network at all (in a network
//! namespace, under `--airgap`).
//!
//! The oracle is a loopback teacher that answers with the support-triage example's gold
//! labels, and misbehaves on purpose on a few inputs (disagreeing samples, prose around the
//! JSON, a refusal, an answer outside the schema) so the example shows every way an answer is
//! dropped. To regenerate the cassette after changing the oracle, the data or the request
//! format: `KOLM_REGENERATE_EXAMPLE=1 cargo test --test example_replay`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::teacher_server::{input_of, user_text, Server};
use support::*;

const CASSETTE: &str = "data/teacher.cassette.jsonl";
const NOTE: &str = "EXAMPLE DATA, not a recording of a real model: answers made by kolm's test oracle (tests/example_replay.rs) from the support-triage example's gold labels, with disagreements, prose, a refusal and an answer outside the schema mixed in on purpose; latencies are made up.";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/replay-triage")
}

/// A copy of the example (Kolmfile and data, not its outputs) in a temporary directory.
fn copy_example() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    for f in [
        "Kolmfile.toml",
        "data/seeds.jsonl",
        "data/evals.jsonl",
        CASSETTE,
    ] {
        if example().join(f).exists() {
            std::fs::copy(example().join(f), dir.path().join(f)).unwrap();
        }
    }
    for f in walk(dir.path()) {
        set_old(&f);
    }
    // The base (`make base` links it into the example), linked rather than copied.
    let base = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    let from = example().join(base);
    assert!(from.is_file(), "no {} (run `make base`)", from.display());
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::hard_link(&from, dir.path().join(base))
        .or_else(|_| std::fs::copy(&from, dir.path().join(base)).map(|_| ()))
        .unwrap();
    dir
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The oracle: gold answers from support-triage, with the example's planned misbehaviour.
fn oracle() -> Box<support::teacher_server::Answerer> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/support-triage/data");
    let mut seeds: HashMap<String, (usize, Value)> = HashMap::new();
    let ours: Vec<String> = jsonl(&example().join("data/seeds.jsonl"))
        .iter()
        .map(|s| s["input"].as_str().unwrap().to_string())
        .collect();
    for s in jsonl(&src.join("seeds.jsonl")) {
        let input = s["input"].as_str().unwrap().to_string();
        if let Some(j) = ours.iter().position(|o| *o == input) {
            seeds.insert(input, (j, s["output"].clone()));
        }
    }
    let mut evals: HashMap<String, (usize, Value)> = HashMap::new();
    for (j, e) in jsonl(&src.join("evals.jsonl")).into_iter().enumerate() {
        let gold = e["assert"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "equals")
            .unwrap()["value"]
            .clone();
        evals.insert(e["vars"]["input"].as_str().unwrap().to_string(), (j, gold));
    }
    // The gold answer with `field` switched to `b` (or to `a`, where it already is `b`).
    let swap = |g: &Value, field: &str, a: &str, b: &str| {
        let mut v = g.clone();
        v[field] = json!(if g[field] == b { a } else { b });
        v
    };
    let other_label = move |g: &Value| swap(g, "label", "bug", "other");
    let other_severity = move |g: &Value| swap(g, "severity", "high", "low");
    Box::new(move |body, i| {
        let user = user_text(body);
        let input = input_of(&user);
        if let Some((j, gold)) = evals.get(input) {
            // The frontier gets the severity wrong now and then.
            let a = if j % 7 == 5 {
                other_severity(gold)
            } else {
                gold.clone()
            };
            return a.to_string();
        }
        let (j, gold) = seeds
            .get(input)
            .expect("the oracle knows every example input");
        match (j, i) {
            (17, _) => "I'm sorry, I can't classify this email.".into(),
            (29, _) => json!({"label": "refund", "severity": "high"}).to_string(),
            (j, 1) if j % 10 == 3 => other_severity(gold).to_string(),
            (j, 2) if j % 10 == 3 => other_label(gold).to_string(),
            (j, 1) if j % 10 == 6 => format!("Here is the triage:\n\n{gold}\n\nLet me know!"),
            (j, 2) if j % 10 == 6 => other_label(gold).to_string(),
            _ => gold.to_string(),
        }
    })
}

/// The cassette as committed: the example note, and latencies that do not depend on the
/// machine the recording ran on (600 to 1,499 ms, a function of the request key).
fn normalise(recorded: &Path) -> String {
    let mut lines = jsonl(recorded).into_iter();
    let mut header = lines.next().unwrap();
    header["note"] = json!(NOTE);
    let mut out = format!("{header}\n");
    for mut e in lines {
        let key = e["key"].as_str().unwrap();
        let ms = 600 + u64::from_str_radix(&key[..4], 16).unwrap() % 900;
        e["answer"]["latency_ms"] = json!(ms as f64);
        out.push_str(&format!("{e}\n"));
    }
    out
}

fn kolmbuild(dir: &Path, home: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("kolmbuild"));
    c.current_dir(dir)
        .env("KOLM_HOME", home)
        .env("KOLM_SIGNING_KEY", KEY)
        .env("NO_COLOR", "1");
    c
}

#[test]
fn the_committed_cassette_is_what_kolm_records_from_the_oracle() {
    init_env();
    let server = Server::start(oracle());
    let dir = copy_example();
    let home = tempfile::tempdir().unwrap();
    let k = dir.path().join("Kolmfile.toml");
    // What the teacher is asked does not depend on training, which the other test covers.
    let text = std::fs::read_to_string(&k)
        .unwrap()
        .replace(
            "provider = \"replay\"",
            &format!(
                "provider = \"openai\"\nendpoint = \"{}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"",
                server.endpoint()
            ),
        )
        .replace("train = true", "train = false");
    std::fs::write(&k, text).unwrap();
    let _ = std::fs::remove_file(dir.path().join(CASSETTE));
    let out = kolmbuild(dir.path(), home.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 40 seeds with k = 3 in one request each, and 20 evals.
    assert_eq!(server.requests(), 60);
    let fresh = normalise(&dir.path().join(CASSETTE));
    let committed = example().join(CASSETTE);
    if std::env::var_os("KOLM_REGENERATE_EXAMPLE").is_some() {
        std::fs::write(&committed, &fresh).unwrap();
    }
    let now = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        now == fresh,
        "{} is not what the oracle records; regenerate it with \
         `KOLM_REGENERATE_EXAMPLE=1 cargo test --test example_replay` and commit it",
        committed.display()
    );
}

#[test]
fn the_example_builds_offline_in_a_network_namespace() {
    let dir = copy_example();
    let home = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("kolmbuild");
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(&bin)
        .args(["--airgap", "--json"])
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .output()
        .expect("`unshare` (util-linux) runs; the test needs root or user namespaces");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("unshare failed"),
        "could not enter a network namespace: {err}"
    );
    assert!(out.status.success(), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], true);
    assert_eq!(r["teacher"]["requests_sent"], 0);
    assert_eq!(r["teacher"]["replayed"], 60);

    // What the teacher said, as the example's README describes it.
    let v = ok_json(
        &Command::new(assert_cmd::cargo::cargo_bin("kolm"))
            .env("KOLM_HOME", home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .args(["inspect", "--json"])
            .arg(dir.path().join("dist/replay-triage.kolm"))
            .output()
            .unwrap(),
    );
    let m = &v["manifest"];
    assert_eq!(m["baseline"]["source"], "teacher", "{m}");
    let acc = m["baseline"]["accuracy"].as_f64().unwrap();
    assert!(
        acc > 0.8 && acc < 1.0,
        "the oracle errs on 3 of 20 evals: {acc}"
    );
}
