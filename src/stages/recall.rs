//! The `recall` stage: the retrieval index over the user's corpus (`index.sqlite-vec`).
//!
//! With no corpus configured the index is a real, empty SQLite database with the schema the
//! runtime expects, so every artifact has the same seven entries. Indexing a corpus (BM25 with
//! FTS5, dense vectors with sqlite-vec) comes with the recall issue.

use std::path::Path;

use super::{unavailable, BuildOptions, Cx, Inputs, RecallOut, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::{Error, Result};

pub struct RecallStage;

/// The index schema every `.kolm` carries; bumping it changes every recall key.
pub const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, document INTEGER NOT NULL REFERENCES documents(id), start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id');
";

impl Stage for RecallStage {
    fn kind(&self) -> StageKind {
        StageKind::Recall
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::to_value(&task.recall).expect("serialises")
    }
    fn files(&self, k: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        corpus_files(&k.dir, &task.recall.corpus)
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        if !cx.task.recall.corpus.is_empty() {
            return Err(unavailable(
                StageKind::Recall,
                cx.task,
                "indexing a corpus (BM25 and dense vectors) is not built yet",
                "remove `recall.corpus` to build without retrieval",
            ));
        }
        let bytes = empty_index()?;
        let index = cx.store.put_blob(&bytes)?;
        Ok(StageOutput::Recall(RecallOut {
            index,
            embedder: None,
            embedder_sha256: None,
            dimensions: 0,
            documents: 0,
            chunks: 0,
        }))
    }
}

/// The corpus: project-relative paths (forward slashes, sorted, deduplicated) of the files the
/// globs match, honouring `.gitignore`, `.ignore` and `.kolmignore` files and skipping hidden
/// files (the `ignore` crate's rules, as ripgrep applies them; a `.gitignore` counts outside a
/// git checkout too). In a glob, `*` stays within one folder and `**` crosses folders. Each glob is walked from its literal base folder
/// (`docs/**/*.md` walks `docs/`), never the whole project, which keeps a no-op build's
/// listing proportional to the corpus.
pub fn corpus_files(dir: &Path, globs: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for g in globs {
        let matcher = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::invalid(format!("corpus glob `{g}`: {e}"), "fix the glob"))?
            .compile_matcher();
        let base: Vec<&str> = g
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[', '{']))
            .collect();
        // A glob with no wildcard names one file; its base is its folder.
        let base = if base.len() == g.split('/').count() {
            base[..base.len() - 1].join("/")
        } else {
            base.join("/")
        };
        let root = dir.join(&base);
        if !root.is_dir() {
            continue;
        }
        let walker = ignore::WalkBuilder::new(&root)
            .git_global(false)
            .require_git(false)
            .add_custom_ignore_filename(".kolmignore")
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| {
                Error::invalid(
                    format!("cannot list the corpus under `{}`: {e}", root.display()),
                    "check the folder's permissions",
                )
            })?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if matcher.is_match(&rel) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A real SQLite file with the index schema and no rows. Deterministic: same bytes every time.
pub fn empty_index() -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("cannot create a temp folder: {e}")))?;
    let path = dir.path().join("index.sqlite");
    let sql = |e: rusqlite::Error| Error::Other(format!("SQLite: {e}"));
    {
        let db = rusqlite::Connection::open(&path).map_err(sql)?;
        db.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = OFF;")
            .map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        db.execute_batch("INSERT INTO meta VALUES ('schema', 'kolm-recall-1'), ('embedder', ''), ('dimensions', '0');").map_err(sql)?;
    }
    std::fs::read(&path).map_err(|e| Error::io(&path, "read", e))
}
