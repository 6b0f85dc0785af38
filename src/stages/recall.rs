//! The `recall` stage: the retrieval index over the user's corpus (`index.sqlite-vec`).
//!
//! The corpus (the files the `recall.corpus` globs select) is read as text, chunked and indexed
//! with SQLite FTS5 (BM25) by [`crate::recall`]; files that are not text are skipped and
//! counted. With no corpus the index is a real, empty database with the same schema, so every
//! artifact has the same seven entries. Dense vectors (sqlite-vec) come with the rest of the
//! recall issue.

use super::{unavailable, BuildOptions, Cx, Inputs, RecallOut, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::{Error, Result};

pub struct RecallStage;

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
        crate::recall::corpus::files(&k.dir, &task.recall.corpus)
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
