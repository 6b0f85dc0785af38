//! Neighbour drafts (the seed's "embedding-shape" drafts): for one input, the labelled outputs
//! of the pairs whose inputs look most like it, nearest first.
//!
//! The skeleton and the table (see [`super::drafts`]) know the output's form but not its
//! values, so a draft stops where a value begins and every value costs the model a pass of its
//! own. A neighbour's output guesses the values too: when the guess is right the whole output
//! is verified in one pass; when it is wrong the model's own token replaces it and the next
//! neighbour whose output agrees with what was chosen drafts on.
//!
//! Likeness is the cosine of TF-IDF vectors over the input's words and adjacent word pairs
//! (lowercased, each counted once), not an embedding model: it needs nothing at run time but
//! the pack, ranks thousands of pairs in microseconds through an inverted index, and on the
//! support-triage example its nearest output is the student's own answer two times in three.
//! Terms are stored as the CRC-32 of their UTF-8, so the pack carries no input text.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most labelled pairs kept (the first ones): ranking is linear in the postings it reads.
pub const MAX_PAIRS: usize = 4096;

/// Most distinct outputs drafted for one input.
pub const RANKED: usize = 8;

/// One labelled pair: its input's terms (sorted, distinct) and its output's index in the
/// draft table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub terms: Vec<u32>,
    pub output: u32,
}

/// The text of a pair's input as a run receives it: a string is itself; any other value is its
/// compact JSON (whose words are the same as those of any other spelling of it).
pub fn input_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => s.into(),
        other => serde_json::to_string(other).expect("serialises").into(),
    }
}

/// The terms of a text: its lowercased words (runs of letters and digits) and each pair of
/// adjacent words, hashed, sorted, each once.
pub fn terms(text: &str) -> Vec<u32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<u32> = words
        .iter()
        .map(|w| crc32fast::hash(w.as_bytes()))
        .collect();
    out.extend(words.windows(2).map(|p| {
        let mut h = crc32fast::Hasher::new();
        h.update(p[0].as_bytes());
        h.update(b" ");
        h.update(p[1].as_bytes());
        h.finalize()
    }));
    out.sort_unstable();
    out.dedup();
    out
}

/// The pairs, ready to rank: for each term its idf and the pairs that have it, with its weight
/// in each (the idf over the pair's norm).
pub struct Nearest {
    postings: HashMap<u32, (f64, Vec<(u32, f64)>)>,
    outputs: Vec<u32>,
}

impl Nearest {
    pub fn new(pairs: &[Neighbour]) -> Nearest {
        let mut df: HashMap<u32, u32> = HashMap::new();
        for p in pairs {
            for t in &p.terms {
                *df.entry(*t).or_default() += 1;
            }
        }
        let n = pairs.len() as f64;
        let idf = |t: &u32| (n / df[t] as f64).ln();
        let mut postings: HashMap<u32, (f64, Vec<(u32, f64)>)> = HashMap::new();
        for (i, p) in pairs.iter().enumerate() {
            let norm = p.terms.iter().map(|t| idf(t).powi(2)).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            for t in &p.terms {
                let w = idf(t);
                if w > 0.0 {
                    let (idf, list) = postings.entry(*t).or_insert((w, Vec::new()));
                    debug_assert_eq!(*idf, w);
                    list.push((i as u32, w / norm));
                }
            }
        }
        Nearest {
            postings,
            outputs: pairs.iter().map(|p| p.output).collect(),
        }
    }

    /// The table indices of the outputs of the pairs nearest `input`, nearest first (a tie
    /// goes to the earlier pair), each output once, at most `k`; none when no pair shares a
    /// term of weight with it.
    pub fn ranked(&self, input: &str, k: usize) -> Vec<u32> {
        let mut score = vec![0.0f64; self.outputs.len()];
        for t in terms(input) {
            // The input's weight for a term is its idf (its norm is the same for every pair,
            // so it is left out: the order is the cosine's).
            if let Some((idf, list)) = self.postings.get(&t) {
                for (pair, w) in list {
                    score[*pair as usize] += idf * w;
                }
            }
        }
        let mut order: Vec<usize> = (0..score.len()).filter(|i| score[*i] > 0.0).collect();
        order.sort_by(|a, b| score[*b].total_cmp(&score[*a]).then(a.cmp(b)));
        let mut out: Vec<u32> = Vec::new();
        for i in order {
            let o = self.outputs[i];
            if !out.contains(&o) {
                out.push(o);
                if out.len() == k {
                    break;
                }
            }
        }
        out
    }
}
