//! `kolm init`: a starter project that builds as it is.
//!
//! The starter uses the built-in tiny base model, no teacher and gold seeds, so the very first
//! `kolmbuild` needs no download and no API key. It never overwrites: if any file it would
//! write exists, nothing is written.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const KOLMFILE: &str = r#"# Kolmfile.toml: what kolm builds. Reference: kolmfile-spec/kolmfile.md
[project]
name = "{name}"

# The student. A local GGUF (`path`), a pinned download (`url` + `sha256`), or the tiny model
# kolm writes itself, which is enough to try the pipeline.
[base]
tiny = { arch = "llama", seed = 1 }

# No teacher: the seeds carry gold outputs. Set provider = "openai" | "anthropic" | "replay".
[teacher]
provider = "none"

[distill]
train = false   # a zero-init adapter: the student behaves exactly like the base

[gate]
min_k = {init_min_k}     # raise towards {min_k} once the student learns the task

[[task]]
name = "{name}"
description = "Classify a message as question, bug or praise."
output_schema = { type = "object", properties = { label = { type = "string", enum = ["question", "bug", "praise"] } }, required = ["label"] }
seeds = "data/seeds.jsonl"
evals = "data/evals.jsonl"
"#;

const SEEDS: &str = r#"{"input": "How do I reset my password?", "output": {"label": "question"}}
{"input": "The app crashes when I open settings.", "output": {"label": "bug"}}
{"input": "Love the new dark mode, thank you!", "output": {"label": "praise"}}
"#;

const EVALS: &str = r#"{"description": "a question", "vars": {"input": "Where can I download my invoices?"}, "assert": [{"type": "is-json"}, {"type": "contains-json", "value": {"required": ["label"]}}]}
{"description": "a bug", "vars": {"input": "Export to PDF produces an empty file."}, "assert": [{"type": "is-json"}]}
"#;

/// Writes the starter project into `dir` (created if missing). Returns the files written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>> {
    let name = dir
        .canonicalize()
        .ok()
        .or_else(|| std::env::current_dir().ok().map(|c| c.join(dir)))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()))
        .map(|n| {
            n.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| "my-task".to_string());
    let files = [
        (
            dir.join(super::FILE_NAME),
            KOLMFILE
                .replace("{name}", &name)
                .replace(
                    "{init_min_k}",
                    &format!("{:.1}", super::defaults::INIT_MIN_K),
                )
                .replace("{min_k}", &format!("{:.2}", super::defaults::MIN_K)),
        ),
        (dir.join("data/seeds.jsonl"), SEEDS.to_string()),
        (dir.join("data/evals.jsonl"), EVALS.to_string()),
    ];
    if let Some((existing, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(Error::Refused {
            what: format!("`{}` already exists", existing.display()),
            help: "kolm init never overwrites; run it in an empty folder or remove the file".into(),
        });
    }
    let mut written = Vec::new();
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create a folder", e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io(path, "create a file", e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(path, "write a file", e))?;
        written.push(path.clone());
    }
    Ok(written)
}
