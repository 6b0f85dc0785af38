//! The index file: documents, chunks and an FTS5 (BM25) index in one SQLite database.
//!
//! Words are matched by their Porter stems (`refund` finds "Refunds"), case and diacritics
//! folded. Built in a fixed order with journaling off and the FTS index optimised into one segment at
//! the end, so the same documents and settings always give the same bytes (SQLite stores no
//! timestamps). Queries go through [`search`], which turns free text into an FTS5 query of
//! its words, so no user input can be an FTS5 syntax error.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::{Error, Result};

/// The schema every `.kolm` index carries; changing it changes every recall key.
pub const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, document INTEGER NOT NULL REFERENCES documents(id), start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2');
";

/// One document to index: its project-relative path, sha256, and text.
pub struct Doc<'a> {
    pub path: &'a str,
    pub sha256: &'a str,
    pub text: &'a str,
}

/// What went into an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    pub documents: u64,
    pub chunks: u64,
}

fn sql(e: rusqlite::Error) -> Error {
    Error::Other(format!("SQLite: {e}"))
}

/// Builds the index of `docs` (in path order) chunked with `window`/`overlap` characters.
pub fn build(docs: &[Doc], window: usize, overlap: usize) -> Result<(Vec<u8>, Built)> {
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("cannot create a temp folder: {e}")))?;
    let path = dir.path().join("index.sqlite");
    let mut built = Built {
        documents: 0,
        chunks: 0,
    };
    {
        let mut db = Connection::open(&path).map_err(sql)?;
        db.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;",
        )
        .map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        let tx = db.transaction().map_err(sql)?;
        for (k, v) in [
            ("schema", "kolm-recall-1".to_string()),
            ("embedder", String::new()),
            ("dimensions", "0".to_string()),
            ("chunk_chars", window.to_string()),
            ("overlap_chars", overlap.to_string()),
        ] {
            tx.execute("INSERT INTO meta VALUES (?1, ?2)", params![k, v])
                .map_err(sql)?;
        }
        let mut order: Vec<&Doc> = docs.iter().collect();
        order.sort_by(|a, b| a.path.cmp(b.path));
        {
            let mut doc_stmt = tx
                .prepare("INSERT INTO documents VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            let mut chunk_stmt = tx
                .prepare("INSERT INTO chunks VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(sql)?;
            for (i, d) in order.iter().enumerate() {
                crate::interrupt::check()?;
                let doc_id = i as i64 + 1;
                doc_stmt
                    .execute(params![doc_id, d.path, d.sha256])
                    .map_err(sql)?;
                for (s, e) in super::chunk::chunks(d.text, window, overlap) {
                    built.chunks += 1;
                    chunk_stmt
                        .execute(params![
                            built.chunks as i64,
                            doc_id,
                            s as i64,
                            e as i64,
                            &d.text[s..e]
                        ])
                        .map_err(sql)?;
                }
                built.documents += 1;
            }
        }
        tx.execute_batch(
            "INSERT INTO chunks_fts(rowid, text) SELECT id, text FROM chunks ORDER BY id;
             INSERT INTO chunks_fts(chunks_fts) VALUES('optimize');",
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "read", e))?;
    Ok((bytes, built))
}

/// A retrieved chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// `<path>#<start>`: stable while the document does not change before that point.
    pub id: String,
    pub path: String,
    pub start: i64,
    pub end: i64,
    pub text: String,
    /// BM25 (lower is better, as SQLite reports it).
    pub score: f64,
}

/// Opens an index file read-only.
pub fn open(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| {
        Error::invalid(
            format!("`{}` is not a readable kolm index: {e}", path.display()),
            "rebuild it",
        )
    })
}

/// The FTS5 query for free text: its words, quoted, any of them.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.to_lowercase()))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

/// The `k` best chunks for `query` by BM25 (ties by chunk order).
pub fn search(db: &Connection, query: &str, k: usize) -> Result<Vec<Hit>> {
    let Some(q) = fts_query(query) else {
        return Ok(Vec::new());
    };
    let mut stmt = db
        .prepare(
            "SELECT d.path, c.start, c.end, c.text, bm25(chunks_fts) AS s
             FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document
             WHERE chunks_fts MATCH ?1 ORDER BY s, c.id LIMIT ?2",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![q, k as i64], |r| {
            let path: String = r.get(0)?;
            let start: i64 = r.get(1)?;
            Ok(Hit {
                id: format!("{path}#{start}"),
                path,
                start,
                end: r.get(2)?,
                text: r.get(3)?,
                score: r.get(4)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<std::result::Result<_, _>>().map_err(sql)
}
