//! The `recall` stage: the retrieval index over the user's corpus (`index.sqlite-vec`).
//!
//! The corpus (the files the `recall.corpus` globs select) is read as text, chunked and indexed
//! with SQLite FTS5 (BM25) by [`crate::recall`]; files that are not text are skipped and
//! counted. With no corpus the index is a real, empty database with the same schema, so every
//! artifact has the same seven entries.
//!
//! With `recall.embedder` (a sentence-transformers BERT folder) every chunk is also embedded
//! into a sqlite-vec table of the same file, through the embedding cache, so only new or
//! changed chunks are embedded again. The embedder's files are inputs of the stage (their
//! digests are in its key), and a copy is kept in `KOLM_HOME/embedders/` for the runtime.

use super::{BuildOptions, Cx, Inputs, RecallOut, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::{Error, Result};

pub struct RecallStage;

impl Stage for RecallStage {
    fn kind(&self) -> StageKind {
        StageKind::Recall
    }
    fn version(&self) -> u32 {
        3
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::to_value(&task.recall).expect("serialises")
    }
    fn files(&self, k: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        let mut files = crate::recall::corpus::files(&k.dir, &task.recall.corpus)?;
        if let Some(dir) = &task.recall.embedder {
            // A missing file is named here, before anything tries to hash it.
            crate::recall::embed::files(&k.abs(dir))?;
        }
        files.extend(embedder_files(task));
        Ok(files)
    }
    fn dirs(&self, _: &Kolmfile, task: &TaskConfig) -> Vec<String> {
        crate::recall::corpus::roots(&task.recall.corpus)
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        let r = &cx.task.recall;
        // The embedder's files are inputs too; the rest is the corpus.
        let embedder_files = embedder_files(cx.task);
        let mut corpus = cx.files.clone();
        let mut digests: [String; 3] = Default::default();
        for (f, d) in embedder_files.iter().zip(digests.iter_mut()) {
            *d = corpus.remove(f).unwrap_or_default();
        }
        if !r.corpus.is_empty() && corpus.is_empty() {
            return Err(Error::invalid(
                format!(
                    "the corpus of task `{}` is empty: no file matches {:?}",
                    cx.task.name, r.corpus
                ),
                "check the globs (relative to the Kolmfile; `*` stays in one folder, `**` crosses folders) and your ignore files",
            ));
        }
        let embedder = match &r.embedder {
            None => None,
            Some(rel) => {
                let dir = cx.project_path(rel);
                let identity = crate::recall::embed::identity(&digests);
                let e = crate::recall::embed::Embedder::load(&dir, identity.clone())?;
                crate::recall::embedders::install(cx.home, &dir, &identity)?;
                Some((rel.as_str(), e))
            }
        };
        let cache = match embedder {
            Some(_) => Some(crate::recall::embedders::Cache::open(cx.home)?),
            None => None,
        };
        let reused = std::cell::Cell::new(0usize);
        let mut embed = |texts: &[&str]| -> Result<Vec<Vec<f32>>> {
            let (Some((_, e)), Some(cache)) = (&embedder, &cache) else {
                unreachable!("only called for a dense index")
            };
            let bar = cx
                .progress
                .count(texts.len() as u64, &format!("embedding {}", cx.task.name));
            let (v, n) = cache.embed(e, texts, &|k| bar.inc(k))?;
            bar.finish_and_clear();
            reused.set(n);
            Ok(v)
        };
        let dense = embedder
            .as_ref()
            .map(|(name, e)| crate::recall::index::Dense {
                embedder: name,
                sha256: &e.sha256,
                dimensions: e.dimensions,
                embed: &mut embed,
            });
        let crate::recall::Indexed {
            bytes,
            built,
            skipped,
        } = crate::recall::index_files(
            &cx.kolmfile.dir,
            &corpus,
            r.chunk_chars as usize,
            r.overlap_chars as usize,
            dense,
        )?;
        if !cx.options.quiet && !r.corpus.is_empty() {
            let vectors = match &embedder {
                Some((name, _)) => format!(
                    ", embedded by {name} ({} new, {} cached)",
                    built.chunks as usize - reused.get(),
                    reused.get()
                ),
                None => String::new(),
            };
            cx.progress.println(&format!(
                "   recall {}: {} documents, {} chunks{vectors}{}",
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
            embedder: embedder.as_ref().map(|(n, _)| n.to_string()),
            embedder_sha256: embedder.as_ref().map(|(_, e)| e.sha256.clone()),
            dimensions: embedder.as_ref().map_or(0, |(_, e)| e.dimensions as u32),
            top_k: r.top_k,
            documents: built.documents,
            chunks: built.chunks,
            skipped,
        }))
    }
}

/// The embedder's files as project-relative paths (none without an embedder).
fn embedder_files(task: &TaskConfig) -> Vec<String> {
    match &task.recall.embedder {
        None => Vec::new(),
        Some(dir) => crate::recall::embed::FILES
            .iter()
            .map(|f| format!("{}/{f}", dir.trim_end_matches('/')))
            .collect(),
    }
}
