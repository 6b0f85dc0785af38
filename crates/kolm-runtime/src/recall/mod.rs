//! Recall: the retrieval index an artifact carries (`index.sqlite-vec`), built from the user's
//! corpus and queried at compile time (grounding teacher prompts) and at run time.
//!
//! - [`corpus`]: which files the globs select (ignore files honoured).
//! - [`document`]: a corpus file as text, or the reason it is skipped (binary, not UTF-8, too
//!   large, unreadable): a skip is counted, never fatal.
//! - [`chunk`]: deterministic, overlapping, word-respecting windows over a document.
//! - [`index`]: one SQLite file: the documents, their chunks, and an FTS5 (BM25) index over
//!   the chunks; byte-identical for the same corpus and settings. Querying it.
//!
//! - [`embed`]: dense vectors from a sentence-transformers BERT folder, with candle
//!   ([`bert`]: the encoder).
//! - [`embedders`]: where embedders are kept for the runtime, and the cache of their vectors.
//! - [`rank`]: BM25 and vector search fused by reciprocal rank.
//! - [`ground`]: an input with its best chunks: the one template every grounded prompt uses.

#[cfg(feature = "embed")]
pub mod bert;
pub mod bm25;
pub mod chunk;
pub mod corpus;
pub mod document;
pub mod embed;
pub mod embedders;
pub mod folder;
pub mod ground;
pub mod index;
pub mod rank;
#[cfg(feature = "embed")]
mod sentence;
pub mod tokenize;

pub use index::{search, Hit};

use std::collections::BTreeMap;
use std::path::Path;

/// An index built from files on disk, and what was left out.
pub struct Indexed {
    pub bytes: Vec<u8>,
    pub built: index::Built,
    /// Files left out, by reason ([`document::Skip::name`]).
    pub skipped: BTreeMap<String, u64>,
}

/// Reads `files` (paths relative to `root`, with their sha256) and indexes the text ones.
pub fn index_files(
    root: &Path,
    files: &BTreeMap<String, String>,
    window: usize,
    overlap: usize,
    dense: Option<index::Dense>,
) -> crate::Result<Indexed> {
    let mut texts = Vec::new();
    let mut skipped = BTreeMap::new();
    for (rel, sha) in files {
        crate::interrupt::check()?;
        match document::load(&root.join(rel)) {
            Ok(text) => texts.push((rel, sha, text)),
            Err(why) => *skipped.entry(why.name().to_string()).or_default() += 1,
        }
    }
    let docs: Vec<index::Doc> = texts
        .iter()
        .map(|(path, sha256, text)| index::Doc { path, sha256, text })
        .collect();
    let (bytes, built) = index::build(&docs, window, overlap, dense)?;
    Ok(Indexed {
        bytes,
        built,
        skipped,
    })
}

/// "2 binary, 1 not UTF-8", or `None` when nothing was skipped.
pub fn describe_skips(skipped: &BTreeMap<String, u64>) -> Option<String> {
    (!skipped.is_empty()).then(|| {
        skipped
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}
