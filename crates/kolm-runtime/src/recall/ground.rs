//! Grounding: the input a model sees, with the chunks of the task's index that match it.
//!
//! One template serves every prompt that is grounded: the teacher's at compile time, the
//! student's when scoring, training and running. So a student is trained and scored on
//! exactly what it will be run on, and the chunk ids a pair or a receipt names are the chunks
//! its prompt carried. The layout is normative (kolmfile-spec/runtime.md §3).

use std::path::Path;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::embed::Embedder;
use super::index::{self, Hit};
use crate::home::Home;
use crate::{Error, Result};

/// The version of [`render`]'s layout: part of every key whose output depends on prompts.
pub const TEMPLATE_VERSION: u32 = 1;

/// An index opened for grounding, with its embedder when it has vectors.
pub struct Grounding {
    db: Connection,
    embedder: Option<Embedder>,
    top_k: usize,
}

/// An input with its context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grounded {
    /// What the model is given in place of the bare input.
    pub text: String,
    /// The chunks it carries, best first (`<path>#<start>`).
    pub chunk_ids: Vec<String>,
}

impl Grounding {
    /// Opens the index at `path` for grounding with its `top_k` best chunks. `None` when the
    /// index has no chunks (no corpus): prompts are then the bare input.
    ///
    /// An index with vectors needs its embedder ([`super::embedders::load`]); `explicit` is a
    /// folder the user named for it.
    pub fn open(
        path: &Path,
        home: &Home,
        top_k: usize,
        explicit: Option<&Path>,
    ) -> Result<Option<Grounding>> {
        let db = index::open(path)?;
        let chunks: i64 = db
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))
            .map_err(|e| {
                Error::invalid_because(
                    format!("`{}` is not a kolm index", path.display()),
                    e,
                    "rebuild it",
                )
            })?;
        if chunks == 0 {
            return Ok(None);
        }
        let dims: usize = index::meta(&db, "dimensions")?
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        let embedder = if dims > 0 {
            let id = index::meta(&db, "embedder_sha256")?.unwrap_or_default();
            let e = super::embedders::load(home, &id, explicit)?;
            if e.dimensions != dims {
                return Err(Error::invalid(
                    format!(
                        "the index has {dims}-dimensional vectors but its embedder makes {}",
                        e.dimensions
                    ),
                    "rebuild the index with this embedder",
                ));
            }
            Some(e)
        } else {
            None
        };
        Ok(Some(Grounding {
            db,
            embedder,
            top_k: top_k.max(1),
        }))
    }

    /// The `k` best chunks for `query` (hybrid when the index has vectors).
    pub fn query(&self, query: &str, k: usize) -> Result<Vec<Hit>> {
        super::rank::query(&self.db, self.embedder.as_ref(), query, k)
    }

    /// `input` with its best chunks.
    pub fn ground(&self, input: &str) -> Result<Grounded> {
        let hits = self.query(input, self.top_k)?;
        Ok(Grounded {
            text: render(input, &hits),
            chunk_ids: hits.into_iter().map(|h| h.id).collect(),
        })
    }
}

/// Grounds `input` when there is a grounding, else passes it through.
pub fn ground(g: Option<&Grounding>, input: &str) -> Result<Grounded> {
    match g {
        Some(g) => g.ground(input),
        None => Ok(Grounded {
            text: input.to_string(),
            chunk_ids: Vec::new(),
        }),
    }
}

/// The grounded input (normative: kolmfile-spec/runtime.md §3). No hits: the input as it is.
pub fn render(input: &str, hits: &[Hit]) -> String {
    if hits.is_empty() {
        return input.to_string();
    }
    let mut s = String::from("Context:\n");
    for h in hits {
        s.push_str(&format!("[{}] {}\n", h.id, h.text.trim()));
    }
    s.push_str("\nInput:\n");
    s.push_str(input);
    s
}
