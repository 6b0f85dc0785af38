//! Why a node reran: `--explain`.
//!
//! Every node's cache key is the hash of a *description* (stage, version, config slice, file
//! digests, input digests). After each build we keep the last description of every node; when
//! a key misses, the old and new descriptions are compared field by field, and the differences
//! are the reasons, in words: "file `data/evals.jsonl` changed", "config `rank`: 8 → 16".
//!
//! A record is two files: a small one (key and output digest) read on every build, and the
//! description, read only when the key missed and someone needs to know why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The last key and output digest recorded for a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub output: String,
}

/// Where a project's records live.
pub fn dir(cache: &Path, project_dir: &Path) -> PathBuf {
    let abs = std::path::absolute(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
    let id = blake3::hash(abs.to_string_lossy().as_bytes()).to_hex();
    cache.join("explain").join(&id[..24])
}

pub fn load(dir: &Path, node_id: &str) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{node_id}.json"))).ok()?).ok()
}

/// The description recorded with the last record.
pub fn load_description(dir: &Path, node_id: &str) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(dir.join(format!("{node_id}.why.json"))).ok()?).ok()
}

pub fn save(dir: &Path, node_id: &str, r: &Record, description: &Value) -> crate::Result<()> {
    let why = serde_json::to_vec(description).expect("serialises");
    crate::fsutil::write_cache_file(&dir.join(format!("{node_id}.why.json")), &why)?;
    crate::fsutil::write_cache_file(
        &dir.join(format!("{node_id}.json")),
        &serde_json::to_vec(r).expect("serialises"),
    )
}

/// Why a node whose key is not the recorded one must run.
pub fn reasons(dir: &Path, node_id: &str, description: &Value) -> Vec<String> {
    match load_description(dir, node_id) {
        None => vec!["never built here before".to_string()],
        Some(old) => diff(&old, description),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) => {
            format!("{}…", &s[..12])
        }
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        _ => out.push((prefix.to_string(), v.clone())),
    }
}

/// The differences between an old and a new description, as reasons.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut reasons = Vec::new();
    if old.get("version") != new.get("version") {
        reasons.push(format!(
            "the stage's implementation changed (version {} → {})",
            short(&old["version"]),
            short(&new["version"])
        ));
    }
    let files = |d: &Value| {
        d.get("files")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (of, nf) = (files(old), files(new));
    for (name, sha) in &nf {
        match of.get(name) {
            None => reasons.push(format!("file `{name}` is new")),
            Some(o) if o != sha => reasons.push(format!(
                "file `{name}` changed (sha256 {} → {})",
                short(o),
                short(sha)
            )),
            _ => {}
        }
    }
    for name in of.keys().filter(|k| !nf.contains_key(*k)) {
        reasons.push(format!("file `{name}` is no longer read"));
    }
    let inputs = |d: &Value| {
        d.get("inputs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (oi, ni) = (inputs(old), inputs(new));
    for (stage, digest) in &ni {
        if oi.get(stage) != Some(digest) {
            reasons.push(format!("the output of `{stage}` changed"));
        }
    }
    let (mut oc, mut nc) = (Vec::new(), Vec::new());
    flatten("", &old["config"], &mut oc);
    flatten("", &new["config"], &mut nc);
    for (k, v) in &nc {
        match oc.iter().find(|(ok, _)| ok == k) {
            Some((_, ov)) if ov != v => {
                reasons.push(format!("config `{k}`: {} → {}", short(ov), short(v)))
            }
            None => reasons.push(format!("config `{k}` is new: {}", short(v))),
            _ => {}
        }
    }
    for (k, _) in oc.iter().filter(|(k, _)| !nc.iter().any(|(nk, _)| nk == k)) {
        reasons.push(format!("config `{k}` was removed"));
    }
    reasons
}
