//! BM25 ranking from precomputed impacts.
//!
//! FTS5 can rank (`bm25()`), but only by scoring every chunk a query matches: with common
//! words that is most of the corpus, and a query over 20,000 chunks took 10 ms. BM25 is a sum
//! over the query's terms of a weight that depends only on the term and the chunk, so the
//! index stores that weight (the *impact*) with each posting, and a query adds up the
//! postings of its few terms and keeps the best `k`: a pass over postings, no per-row scoring.
//!
//! FTS5 stays the tokenizer of record: the postings are built from its own token stream
//! (`fts5vocab` of type `instance`), and a query is split by the same FTS5 tokenizer called
//! directly ([`super::tokenize`]), so a word means the same thing when indexed and when asked
//! for.
//!
//! Scoring is Lucene's BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N − n + 0.5)/(n + 0.5))),
//! normative in rs-1.md §2.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Result};

pub const K1: f64 = 1.2;
pub const B: f64 = 0.75;

/// The postings: per term, `(chunk id u32, impact f32)` little-endian pairs by chunk id, cut
/// into blocks of at most [`BLOCK`] pairs stored in consecutive rows, so each block fits in
/// one database page and is read in place (a long blob would spill into overflow pages that
/// SQLite must copy out on every read).
pub const SCHEMA: &str = "CREATE TABLE bm25_terms (term TEXT PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE bm25_blocks (id INTEGER PRIMARY KEY, postings BLOB NOT NULL);";

/// Postings per block: 4,000 bytes, within a 4 KiB page.
pub const BLOCK: usize = 500;

fn sql(e: rusqlite::Error) -> Error {
    Error::failed("the BM25 index (SQLite) failed", e)
}

/// Fills `bm25_postings` from the built `chunks_fts`.
pub fn build(db: &Connection) -> Result<()> {
    db.execute_batch(
        "CREATE VIRTUAL TABLE temp.kolm_instances USING fts5vocab(main, chunks_fts, instance);",
    )
    .map_err(sql)?;
    // (term, chunk) -> term frequency, and each chunk's length in tokens.
    let mut tf: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    let mut len: BTreeMap<u32, u32> = BTreeMap::new();
    {
        let mut stmt = db
            .prepare("SELECT term, doc FROM temp.kolm_instances")
            .map_err(sql)?;
        let mut rows = stmt.query([]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let term: String = r.get(0).map_err(sql)?;
            let doc: i64 = r.get(1).map_err(sql)?;
            let doc = doc as u32;
            *len.entry(doc).or_default() += 1;
            let list = tf.entry(term).or_default();
            match list.last_mut() {
                Some((d, n)) if *d == doc => *n += 1,
                _ => list.push((doc, 1)),
            }
        }
    }
    db.execute_batch("DROP TABLE temp.kolm_instances;")
        .map_err(sql)?;
    let docs = len.len() as f64;
    let avg = len.values().map(|&l| l as f64).sum::<f64>() / docs.max(1.0);
    let mut put_term = db
        .prepare("INSERT INTO bm25_terms VALUES (?1, ?2, ?3)")
        .map_err(sql)?;
    let mut put_block = db
        .prepare("INSERT INTO bm25_blocks VALUES (?1, ?2)")
        .map_err(sql)?;
    let mut next_block = 1i64;
    for (term, mut list) in tf {
        crate::interrupt::check()?;
        list.sort_unstable();
        let n = list.len() as f64;
        let idf = (1.0 + (docs - n + 0.5) / (n + 0.5)).ln();
        let first = next_block;
        for block in list.chunks(BLOCK) {
            let mut blob = Vec::with_capacity(block.len() * 8);
            for &(doc, f) in block {
                let (f, dl) = (f as f64, len[&doc] as f64);
                let impact = idf * f * (K1 + 1.0) / (f + K1 * (1.0 - B + B * dl / avg));
                blob.extend_from_slice(&doc.to_le_bytes());
                blob.extend_from_slice(&(impact as f32).to_le_bytes());
            }
            put_block.execute(params![next_block, blob]).map_err(sql)?;
            next_block += 1;
        }
        put_term
            .execute(params![term, first, next_block - 1])
            .map_err(sql)?;
    }
    Ok(())
}

thread_local! {
    /// Per-chunk score accumulators, reused across queries (all zero between them), and the
    /// chunks a query touched.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<u32>)> = Default::default();
}

/// The `k` best chunk ids for `query` with their BM25 scores (ties by chunk id).
///
/// The inner loop has no branch that depends on the data: a chunk seen for the first time is
/// recorded by writing its id at the end of the touched list and advancing the end only if
/// its score was zero (a test-and-push was a branch the CPU could not predict, and cost more
/// than the addition), and the accumulators grow once per block rather than being checked per
/// posting (a block's postings are in chunk order, so its last is its largest).
pub fn top_k(db: &Connection, query: &str, k: usize) -> Result<Vec<(i64, f64)>> {
    let terms = super::tokenize::terms(db, query)?;
    let mut find = db
        .prepare_cached("SELECT first, last FROM bm25_terms WHERE term = ?1")
        .map_err(sql)?;
    let mut blocks = db
        .prepare_cached("SELECT postings FROM bm25_blocks WHERE id BETWEEN ?1 AND ?2")
        .map_err(sql)?;
    SCRATCH.with(|scratch| {
        let (acc, touched) = &mut *scratch.borrow_mut();
        let mut add = || -> Result<()> {
            for (term, n) in &terms {
                let Some((first, last)) = find
                    .query_row(params![term], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                    .map_err(sql)?
                else {
                    continue;
                };
                let n = *n as f32;
                let mut rows = blocks.query(params![first, last]).map_err(sql)?;
                while let Some(r) = rows.next().map_err(sql)? {
                    // Read in place from the mapped page.
                    let blob = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(sql)?;
                    let id = |p: &[u8]| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    let Some(top) = blob.chunks_exact(8).next_back().map(id) else {
                        continue;
                    };
                    if acc.len() <= top {
                        acc.resize(top + 1, 0.0);
                    }
                    let mut end = touched.len();
                    touched.resize(end + blob.len() / 8, 0);
                    for p in blob.chunks_exact(8) {
                        let id = id(p);
                        let slot = acc.get_mut(id).ok_or_else(|| {
                            Error::invalid(
                                format!("the BM25 postings of `{term}` are out of order"),
                                "the index is damaged: rebuild it",
                            )
                        })?;
                        touched[end] = id as u32;
                        end += (*slot == 0.0) as usize;
                        *slot += f32::from_le_bytes([p[4], p[5], p[6], p[7]]) * n;
                    }
                    touched.truncate(end);
                }
            }
            Ok(())
        };
        let added = add();
        let mut best = TopK::new(k);
        for &id in touched.iter() {
            best.offer(id, acc[id as usize]);
            acc[id as usize] = 0.0;
        }
        touched.clear();
        added.map(|()| best.into_sorted())
    })
}

/// The `k` best (chunk, score) pairs seen: higher score first, then lower chunk id.
struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<Entry>,
}

/// Ordered so the heap's top is the worst kept entry.
#[derive(PartialEq)]
struct Entry(f32, u32);

impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// "Greater" is worse: a lower score, or the same score and a higher id.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }
    fn offer(&mut self, id: u32, score: f32) {
        let e = Entry(score, id);
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if self.heap.peek().is_some_and(|worst| e < *worst) {
            self.heap.pop();
            self.heap.push(e);
        }
    }
    fn into_sorted(self) -> Vec<(i64, f64)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Entry(s, id)| (id as i64, s as f64))
            .collect()
    }
}
