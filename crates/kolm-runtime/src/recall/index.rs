//! The index file: documents, chunks, an FTS5 index with BM25 impacts ([`super::bm25`]) and,
//! with an embedder, a sqlite-vec `vec0` table of chunk vectors, in one SQLite database.
//!
//! Words are matched by their Porter stems (`refund` finds "Refunds"), case and diacritics
//! folded. Built in a fixed order with journaling off and the FTS index optimised into one
//! segment at the end, so the same documents and settings always give the same bytes (SQLite
//! stores no timestamps). A query is free text: its words are tokenised like the documents',
//! so no input is a syntax error.

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

/// The `vec0` table of a dense index (created only when there is an embedder): one unit vector
/// per chunk, its rowid the chunk's id.
fn vec_schema(dimensions: usize) -> String {
    format!("CREATE VIRTUAL TABLE chunks_vec USING vec0(embedding float[{dimensions}] distance_metric=cosine);")
}

/// Makes sqlite-vec's functions and `vec0` available to every connection this process opens.
pub fn register_sqlite_vec() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_vec_init` has the signature SQLite expects of an extension's entry
        // point; registering it before any connection opens is what sqlite-vec documents.
        unsafe {
            rusqlite::ffi::sqlite3_auto_extension(Some(std::mem::transmute::<
                *const (),
                unsafe extern "C" fn(
                    *mut rusqlite::ffi::sqlite3,
                    *mut *mut std::os::raw::c_char,
                    *const rusqlite::ffi::sqlite3_api_routines,
                ) -> std::os::raw::c_int,
            >(
                sqlite_vec::sqlite3_vec_init as *const (),
            )));
        }
    });
}

/// How a dense index gets its vectors: the embedder's identity and a function that embeds a
/// batch of chunk texts (through the embedding cache, so unchanged chunks are not re-embedded).
pub struct Dense<'a> {
    /// The embedder's name, for the `meta` table and the manifest.
    pub embedder: &'a str,
    /// Its identity ([`super::embed::identity`]): what the runtime loads it by.
    pub sha256: &'a str,
    pub dimensions: usize,
    pub embed: &'a mut EmbedFn<'a>,
}

/// Embeds a batch of texts: one vector each, in order.
pub type EmbedFn<'a> = dyn FnMut(&[&str]) -> Result<Vec<Vec<f32>>> + 'a;

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
    Error::failed("the recall index (SQLite) failed", e)
}

/// What an index says about itself: what [`crate::artifact::payload`] checks against the
/// manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The embedder's width (0 for a BM25-only index).
    pub dimensions: u64,
    /// The embedder's identity ("" for none).
    pub embedder_sha256: String,
    /// Vectors stored, and the widest one.
    pub vectors: u64,
    pub width: u64,
}

/// The facts of an index given as bytes (an artifact's entry).
pub fn facts(bytes: &[u8]) -> Result<Facts> {
    let dir =
        tempfile::tempdir().map_err(|e| Error::io(&std::env::temp_dir(), "make a folder in", e))?;
    let p = dir.path().join("index.sqlite");
    std::fs::write(&p, bytes).map_err(|e| Error::io(&p, "write", e))?;
    let db = open(&p)?;
    let get = |k: &str| meta(&db, k).map(Option::unwrap_or_default);
    let dims = get("dimensions")?;
    let dimensions: u64 = dims.parse().map_err(|_| {
        Error::invalid(
            format!("the index's `dimensions` is `{dims}`, not a number"),
            "rebuild the index",
        )
    })?;
    let embedder_sha256 = get("embedder_sha256")?;
    if dimensions == 0 {
        return Ok(Facts {
            dimensions,
            embedder_sha256,
            vectors: 0,
            width: 0,
        });
    }
    let (vectors, width): (u64, Option<u64>) = db
        .query_row(
            "SELECT count(*), max(vec_length(embedding)) FROM chunks_vec",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql)?;
    Ok(Facts {
        dimensions,
        embedder_sha256,
        vectors,
        width: width.unwrap_or(dimensions),
    })
}

/// Builds the index of `docs` (in path order) chunked with `window`/`overlap` characters, with
/// chunk vectors when `dense` is given.
pub fn build(
    docs: &[Doc],
    window: usize,
    overlap: usize,
    dense: Option<Dense>,
) -> Result<(Vec<u8>, Built)> {
    register_sqlite_vec();
    let dir =
        tempfile::tempdir().map_err(|e| Error::io(&std::env::temp_dir(), "make a folder in", e))?;
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
        db.execute_batch(super::bm25::SCHEMA).map_err(sql)?;
        if let Some(d) = &dense {
            db.execute_batch(&vec_schema(d.dimensions)).map_err(sql)?;
        }
        let tx = db.transaction().map_err(sql)?;
        for (k, v) in [
            ("schema", "kolm-recall-1".to_string()),
            (
                "embedder",
                dense
                    .as_ref()
                    .map(|d| d.embedder.to_string())
                    .unwrap_or_default(),
            ),
            (
                "embedder_sha256",
                dense
                    .as_ref()
                    .map(|d| d.sha256.to_string())
                    .unwrap_or_default(),
            ),
            (
                "dimensions",
                dense.as_ref().map_or(0, |d| d.dimensions).to_string(),
            ),
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
        if let Some(d) = dense {
            insert_vectors(&tx, d)?;
        }
        tx.execute_batch(
            "INSERT INTO chunks_fts(rowid, text) SELECT id, text FROM chunks ORDER BY id;
             INSERT INTO chunks_fts(chunks_fts) VALUES('optimize');",
        )
        .map_err(sql)?;
        super::bm25::build(&tx)?;
        tx.commit().map_err(sql)?;
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, "read", e))?;
    Ok((bytes, built))
}

/// Embeds every chunk (in id order) into `chunks_vec`.
fn insert_vectors(tx: &rusqlite::Transaction, d: Dense) -> Result<()> {
    let texts: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT text FROM chunks ORDER BY id")
            .map_err(sql)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)?
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = (d.embed)(&refs)?;
    let mut stmt = tx
        .prepare("INSERT INTO chunks_vec(rowid, embedding) VALUES (?1, ?2)")
        .map_err(sql)?;
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != d.dimensions {
            return Err(Error::Internal(format!(
                "the embedder gave {} dimensions, not {}",
                v.len(),
                d.dimensions
            )));
        }
        stmt.execute(params![i as i64 + 1, super::embed::to_blob(v)])
            .map_err(sql)?;
    }
    Ok(())
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
    /// How well it matches; higher is better. BM25 alone: SQLite's `bm25()` negated;
    /// hybrid: the reciprocal-rank-fusion score ([`super::rank`]).
    pub score: f64,
}

/// Opens an index file read-only.
pub fn open(path: &Path) -> Result<Connection> {
    register_sqlite_vec();
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| {
            Error::invalid_because(
                format!("`{}` is not a readable kolm index", path.display()),
                e,
                "rebuild it",
            )
        })?;
    // Postings are read straight from the mapped file rather than copied in by `read`; and
    // the (read-only, immutable) file's shared lock is taken once, not per statement.
    db.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA locking_mode = EXCLUSIVE;")
        .map_err(sql)?;
    Ok(db)
}

/// The chunk with `id`, as a hit scored `score`.
pub fn chunk(db: &Connection, id: i64, score: f64) -> Result<Hit> {
    db.prepare_cached(
        "SELECT d.path, c.start, c.end, c.text FROM chunks c JOIN documents d ON d.id = c.document WHERE c.id = ?1",
    )
    .and_then(|mut s| s.query_row(
        params![id],
        |r| {
            let path: String = r.get(0)?;
            let start: i64 = r.get(1)?;
            Ok(Hit {
                id: format!("{path}#{start}"),
                path,
                start,
                end: r.get(2)?,
                text: r.get(3)?,
                score,
            })
        },
    ))
    .map_err(sql)
}

/// The ids of the `k` best chunks for `query` by BM25, with their scores (higher is better;
/// ties by chunk order). See [`super::bm25`].
pub fn bm25_ids(db: &Connection, query: &str, k: usize) -> Result<Vec<(i64, f64)>> {
    super::bm25::top_k(db, query, k)
}

/// The ids of the `k` chunks nearest to `vector` (cosine), with `1 - distance` (higher is
/// better; ties by chunk order).
pub fn nearest_ids(db: &Connection, vector: &[f32], k: usize) -> Result<Vec<(i64, f64)>> {
    let mut stmt = db
        .prepare(
            "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ?1 AND k = ?2 ORDER BY distance",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![super::embed::to_blob(vector), k as i64], |r| {
            Ok((r.get(0)?, 1.0 - r.get::<_, f64>(1)?))
        })
        .map_err(sql)?;
    let mut hits: Vec<(i64, f64)> = rows.collect::<std::result::Result<_, _>>().map_err(sql)?;
    // vec0 allows one ORDER BY term; ties are put in chunk order here.
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(hits)
}

/// A `meta` value of an index (`schema`, `embedder`, `dimensions`, ...).
pub fn meta(db: &Connection, key: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    db.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql)
}

/// The `k` best chunks for `query` by BM25 (ties by chunk order).
pub fn search(db: &Connection, query: &str, k: usize) -> Result<Vec<Hit>> {
    bm25_ids(db, query, k)?
        .into_iter()
        .map(|(id, score)| chunk(db, id, score))
        .collect()
}
