//! What enters each stage's key, measured from the code: every setting of a task's checked
//! configuration is changed in turn, and the stages whose key description (`Stage::config`)
//! changes with it are the ones that key on it. kolmfile.md §16 carries the table this makes
//! (between `<!-- stage-keys -->` markers); the test fails when the two disagree. Rewrite the
//! section with `KOLM_BLESS=1 cargo test --test stage_keys`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kolm::kolmfile::TaskConfig;
use kolm::stages::{BuildOptions, StageKind, Stages};
use serde_json::Value;
use support::*;

/// Each stage's key description of `task`.
fn configs(task: &TaskConfig) -> Vec<Value> {
    let stages = Stages::default();
    StageKind::ALL
        .iter()
        .map(|k| stages.get(*k).config(task, &BuildOptions::default()))
        .collect()
}

/// Every leaf of a JSON value, as a dotted path (arrays and free-form values whole).
fn leaves(v: &Value, path: String, whole: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !whole.contains(&path.as_str()) => {
            for (k, v) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, p, whole, out);
            }
        }
        _ => out.push(path),
    }
}

/// Another value of the same kind: what a person changing the setting could write.
fn changed(v: &Value, alternatives: &BTreeMap<&str, Vec<Value>>, path: &str) -> Option<Value> {
    if let Some(a) = alternatives.get(path) {
        return a.iter().find(|a| *a != v).cloned();
    }
    Some(match v {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) if n.is_u64() => (n.as_u64()? + 1).into(),
        Value::Number(n) if n.is_i64() => (n.as_i64()? + 1).into(),
        Value::Number(n) => (n.as_f64()? * 0.5 + 0.125).into(),
        Value::String(s) => format!("{s}x").into(),
        Value::Array(a) if a.is_empty() => Value::Array(vec!["x".into()]),
        Value::Array(a) => Value::Array(a[..a.len() - 1].to_vec()),
        Value::Object(_) => serde_json::json!({"type": "string"}),
        Value::Null => return None,
    })
}

fn set(root: &mut Value, path: &str, to: Value) {
    let mut at = root;
    for part in path.split('.') {
        at = &mut at[part];
    }
    *at = to;
}

/// Which stages key on each setting of `task`.
fn reads(task: &TaskConfig, into: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    let whole = ["output_schema", "assert", "base.source"];
    // Settings with a closed set of values, or that must look like something: two candidates
    // each, so one differs from the value set.
    let alternatives: BTreeMap<&str, Vec<Value>> = [
        ("teacher.provider", vec!["replay".into(), "openai".into()]),
        ("score.device", vec!["laptop".into(), "phone".into()]),
        ("base.quantize", vec!["q8_0".into(), "q4_0".into()]),
        (
            "base.source",
            vec![
                serde_json::json!({"kind": "path", "path": "models/m.gguf"}),
                serde_json::json!({"kind": "tiny", "arch": "qwen2", "seed": 9}),
            ],
        ),
        ("teacher.model", vec!["m".into(), "n".into()]),
        (
            "teacher.endpoint",
            vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:8".into()],
        ),
        ("teacher.api_key_env", vec!["K".into(), "L".into()]),
        ("teacher.cassette", vec!["c.jsonl".into(), "d.jsonl".into()]),
        ("recall.embedder", vec!["e".into(), "f".into()]),
        ("decompose.recipes_dir", vec!["r".into(), "s".into()]),
        ("sign.key_file", vec!["k".into(), "l".into()]),
        (
            "base.sha256",
            vec!["0".repeat(64).into(), "1".repeat(64).into()],
        ),
    ]
    .into_iter()
    .collect();
    let json = serde_json::to_value(task).unwrap();
    let before = configs(task);
    let mut paths = Vec::new();
    leaves(&json, String::new(), &whole, &mut paths);
    for path in paths {
        let mut value = json.clone();
        let mut at = &value;
        for part in path.split('.') {
            at = &at[part];
        }
        let Some(to) = changed(at, &alternatives, &path) else {
            // Unset here: another configuration below sets it.
            into.entry(path).or_default();
            continue;
        };
        set(&mut value, &path, to);
        let other: TaskConfig = serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("`{path}`: no other value to try ({e}): add one"));
        let after = configs(&other);
        let stages = into.entry(path).or_default();
        for (i, k) in StageKind::ALL.iter().enumerate() {
            if before[i] != after[i] {
                stages.insert(k.name());
            }
        }
    }
}

/// Which stages key on each setting, over three configurations: with no teacher, with a
/// replayed one asked for recipes, and with a quantised base and an embedder (settings some
/// stages read only in one of them are found in that one).
fn all_reads() -> BTreeMap<String, BTreeSet<&'static str>> {
    let mut all = BTreeMap::new();
    for extra in [
        "",
        "[task.teacher]\nprovider = \"replay\"\ncassette = \"data/seeds.jsonl\"\nmodel = \"m\"\n[task.decompose]\nenabled = true\n",
        "[task.base]\ntiny = { arch = \"llama\", seed = 3 }\nquantize = \"q8_0\"\n[task.recall]\ncorpus = [\"docs/*.md\"]\nembedder = \"docs\"\n",
    ] {
        let p = Project::new(&kolmfile_text(extra));
        let k = p.kolmfile();
        reads(&k.tasks[0], &mut all);
    }
    all
}

/// The table, as kolmfile.md §16 carries it.
fn table(all: &BTreeMap<String, BTreeSet<&'static str>>) -> String {
    let mut out = String::from("| setting | enters the key of |\n| --- | --- |\n");
    for (path, stages) in all {
        let stages: Vec<&str> = StageKind::ALL
            .iter()
            .map(|k| k.name())
            .filter(|n| stages.contains(n))
            .collect();
        let said = if stages.is_empty() {
            "— (a file it names is read, or nothing)".to_string()
        } else {
            stages
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!("| `{path}` | {said} |\n"));
    }
    out
}

#[test]
fn kolmfile_md_says_what_enters_each_stage_key() {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kolmfile-spec/kolmfile.md");
    let text = std::fs::read_to_string(&spec).unwrap();
    let (open, close) = ("<!-- stage-keys -->\n", "<!-- /stage-keys -->");
    let start = text
        .find(open)
        .expect("kolmfile.md §16 has the stage-keys section")
        + open.len();
    let end = text[start..].find(close).expect("the section is closed") + start;
    let made = table(&all_reads());
    if std::env::var("KOLM_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&spec, format!("{}{made}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert_eq!(
        text[start..end],
        made,
        "kolmfile.md §16 disagrees with the code; rewrite it with KOLM_BLESS=1 cargo test --test stage_keys"
    );
}

/// §7's "read by" column names, for each task key that enters a stage's key, those stages.
#[test]
fn the_task_tables_read_by_column_is_what_the_code_reads() {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kolmfile-spec/kolmfile.md");
    let text = std::fs::read_to_string(&spec).unwrap();
    let section = text
        .split("## 7. `[[task]]`")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("kolmfile.md has §7");
    let all = all_reads();
    let mut checked = 0;
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let Some(stages) = all.get(key).filter(|s| !s.is_empty()) else {
            continue;
        };
        let said: BTreeSet<&str> = cells
            .last()
            .unwrap()
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        let names: BTreeSet<&str> = stages.iter().copied().collect();
        assert_eq!(said, names, "§7's read-by column for `{key}`");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} rows checked");
}
