//! The "default" column of every section table in kolmfile.md (§8–§15) is what the code
//! resolves when the key is not set: a Kolmfile that sets nothing optional is read, and each
//! documented default is compared with the checked configuration's value. A default changed in
//! one place and not the other (as `kolm tune step`'s once drifted from `[distill]`'s) fails.

use serde_json::Value;

const MINIMAL: &str = r#"[project]
name = "demo"

[base]
tiny = { arch = "llama", seed = 1 }

[[task]]
name = "demo"
description = "d"
output_schema = { type = "object" }
seeds = "seeds.jsonl"
evals = "evals.jsonl"
"#;

/// A documented default as a value, when it is one (`3`, `0.7`, `80e9`, `true`, `"none"`,
/// `["attn_q", "attn_v"]`); `None` for prose (`min(200, ⌊chunk_chars / 2⌋)`, `—`).
fn documented(cell: &str) -> Option<Value> {
    let c = cell
        .trim()
        .trim_matches('`')
        .replace(',', ", ")
        .replace(",  ", ", ");
    if c == "none" {
        return Some(Value::Null);
    }
    if let Ok(v) = serde_json::from_str::<Value>(&c) {
        return Some(v);
    }
    c.replace('_', "").parse::<f64>().ok().map(Value::from)
}

fn same(doc: &Value, code: &Value) -> bool {
    match (doc, code) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (a - b).abs() <= 1e-9 * a.abs().max(1.0)
        }
        // A device profile is documented by its name.
        (Value::String(s), Value::Object(m)) => m.get("name") == Some(&Value::String(s.clone())),
        _ => doc == code,
    }
}

#[test]
fn every_documented_default_is_the_resolved_one() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["seeds.jsonl", "evals.jsonl"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    let path = dir.path().join("Kolmfile.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let k = kolm::Kolmfile::parse(&path, MINIMAL).unwrap();
    let task = serde_json::to_value(&k.tasks[0]).unwrap();

    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kolmfile-spec/kolmfile.md");
    let text = std::fs::read_to_string(spec).unwrap();
    let (mut checked, mut wrong) = (0, Vec::new());
    let mut table: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') {
            // `## 11. `[distill]`: the LoRA adapter` → `distill`; other headings end a table.
            table = line
                .split("`[")
                .nth(1)
                .and_then(|r| r.split("]`").next())
                .filter(|t| !t.contains('[') && *t != "project" && *t != "cache")
                .map(str::to_string);
            continue;
        }
        let Some(prefix) = &table else { continue };
        let cells: Vec<&str> = line.split(" | ").collect();
        if !line.starts_with("| `") || cells.len() < 4 {
            continue;
        }
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let Some(doc) = documented(cells[2]) else {
            continue;
        };
        let mut at = &task;
        for part in prefix.split('.').chain([key]) {
            at = &at[part];
        }
        if doc.is_null() && at.is_null() || same(&doc, at) {
            checked += 1;
        } else {
            wrong.push(format!(
                "{prefix}.{key}: kolmfile.md says {doc}, the code {at}"
            ));
        }
    }
    assert!(wrong.is_empty(), "defaults disagree:\n{}", wrong.join("\n"));
    assert!(checked >= 30, "only {checked} defaults checked");
}
