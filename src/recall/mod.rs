//! Recall: the retrieval index an artifact carries (`index.sqlite-vec`), built from the user's
//! corpus and queried at compile time (grounding teacher prompts) and at run time.
//!
//! - [`document`]: a corpus file as text, or the reason it is skipped (binary, not UTF-8, too
//!   large, unreadable): a skip is counted, never fatal.
//! - [`chunk`]: deterministic, overlapping, word-respecting windows over a document.
//! - [`index`]: one SQLite file: the documents, their chunks, and an FTS5 (BM25) index over
//!   the chunks; byte-identical for the same corpus and settings. Querying it.
//!
//! Dense embeddings (sqlite-vec, a candle BERT embedder) and hybrid ranking come with the rest
//! of the recall issue; until then `recall.embedder` is refused as not available.

pub mod chunk;
pub mod document;
pub mod index;

pub use index::{search, Hit};
