//! The `recall` stage: the retrieval index over the user's corpus (`index.sqlite-vec`).
//!
//! The corpus (the files the `recall.corpus` globs select) is read as text, chunked and indexed
//! with SQLite FTS5 (BM25) by [`crate::recall`]; files that are not text are skipped and
//! counted. With no corpus the index is a real, empty database with the same schema, so every
//! artifact has the same seven entries. Dense vectors (sqlite-vec) come with the rest of the
//! recall issue.

use std::path::Path;

use super::{unavailable, BuildOptions, Cx, Inputs, RecallOut, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::{Error, Result};

pub struct RecallStage;

pub use crate::recall::index::SCHEMA;

impl Stage for RecallStage {
    fn kind(&self) -> StageKind {
        StageKind::Recall
    }
    fn version(&self) -> u32 {
        2
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::to_value(&task.recall).expect("serialises")
    }
    fn files(&self, k: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        corpus_files(&k.dir, &task.recall.corpus)
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        let r = &cx.task.recall;
        if r.embedder.is_some() {
            return Err(unavailable(
                StageKind::Recall,
                cx.task,
                "dense embeddings (sqlite-vec, a BERT embedder) are not built yet",
                "remove `recall.embedder` to index with BM25 only",
            ));
        }
        if !r.corpus.is_empty() && cx.files.is_empty() {
            return Err(Error::invalid(
                format!(
                    "the corpus of task `{}` is empty: no file matches {:?}",
                    cx.task.name, r.corpus
                ),
                "check the globs (relative to the Kolmfile; `*` stays in one folder, `**` crosses folders) and your ignore files",
            ));
        }
        let crate::recall::Indexed {
            bytes,
            built,
            skipped,
        } = crate::recall::index_files(
            &cx.kolmfile.dir,
            cx.files,
            r.chunk_chars as usize,
            r.overlap_chars as usize,
        )?;
        if !cx.options.quiet && !r.corpus.is_empty() {
            cx.progress.println(&format!(
                "   recall {}: {} documents, {} chunks{}",
                cx.task.name,
                built.documents,
                built.chunks,
                crate::recall::describe_skips(&skipped)
                    .map(|s| format!(" (skipped: {s})"))
                    .unwrap_or_default()
            ));
        }
        let index = cx.store.put_blob(&bytes)?;
        Ok(StageOutput::Recall(RecallOut {
            index,
            embedder: None,
            embedder_sha256: None,
            dimensions: 0,
            documents: built.documents,
            chunks: built.chunks,
            skipped,
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
    Ok(crate::recall::index::build(&[], 1200, 200)?.0)
}
