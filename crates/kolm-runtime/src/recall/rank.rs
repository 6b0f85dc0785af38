//! Hybrid ranking: BM25 and vector search fused by reciprocal rank (RRF).
//!
//! The two scores live on unrelated scales (BM25 is unbounded, cosine is in [-1, 1]), so they
//! are not added; each list contributes `1 / (RRF_K + rank)` for every chunk it ranks, and
//! chunks are ordered by the sum. A chunk both lists like wins; one list alone can still place
//! a chunk the other missed (a paraphrase BM25 cannot match, an exact code BM25 finds).

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::embed::Embedder;
use super::index::{self, Hit};
use crate::Result;

/// The RRF constant of Cormack et al. (2009): damps the lead of the very first ranks.
pub const RRF_K: f64 = 60.0;

/// How deep each list is read before fusing, for `k` results.
fn depth(k: usize) -> usize {
    (k * 4).max(20)
}

/// Fuses ranked id lists: ids by descending RRF score, ties by id (chunk order).
pub fn fuse(lists: &[Vec<i64>], k: usize) -> Vec<(i64, f64)> {
    let mut scores: BTreeMap<i64, f64> = BTreeMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(k);
    fused
}

/// The `k` best chunks for `query`: hybrid when the index has vectors and `embedder` is its
/// embedder, BM25 alone when the index has no vectors.
pub fn query(
    db: &Connection,
    embedder: Option<&Embedder>,
    query: &str,
    k: usize,
) -> Result<Vec<Hit>> {
    let Some(e) = embedder else {
        return index::search(db, query, k);
    };
    let lexical: Vec<i64> = index::bm25_ids(db, query, depth(k))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let v = e.embed(&[query])?.remove(0);
    let dense: Vec<i64> = index::nearest_ids(db, &v, depth(k))?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    fuse(&[lexical, dense], k)
        .into_iter()
        .map(|(id, score)| index::chunk(db, id, score))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_wins_and_ties_break_by_chunk_order() {
        let fused = fuse(&[vec![3, 1, 2], vec![1, 4]], 4);
        let ids: Vec<i64> = fused.iter().map(|f| f.0).collect();
        // 1 is ranked by both lists; then 3 (first of one), 4 (second of one), 2 (third of one).
        assert_eq!(ids, vec![1, 3, 4, 2]);
        assert!(fused[0].1 > fused[1].1);
        // Equal scores: the lower chunk id first.
        let tie = fuse(&[vec![7], vec![5]], 2);
        assert_eq!(tie.iter().map(|f| f.0).collect::<Vec<_>>(), vec![5, 7]);
    }
}
