//! Verifying a candidate recipe on the labelled pairs: what it answers, how often it is right,
//! and so whether it may answer runs (exact), may only draft, or is dropped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pack::{Measured, Recipe};
use super::sandbox::{RagQuery, Sandbox};

/// Fewest held-out answers an exact recipe must have given, all right: one lucky answer is
/// not evidence.
pub const MIN_EXACT_ANSWERS: u64 = 5;
/// Lowest precision at which a recipe's answers are still worth drafting.
pub const MIN_DRAFT_PRECISION: f64 = 0.5;

/// What became of a candidate, for the build report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub name: String,
    pub origin: String,
    /// `exact`, `draft` or `dropped`.
    pub kept: String,
    pub why: String,
    pub measured: Measured,
}

/// Runs `recipe` on every held-out pair `(input, output)` and records what it did.
pub fn measure(
    sandbox: &Sandbox,
    recipe: &Recipe,
    pairs: &[(Value, Value)],
    rag: Option<&RagQuery>,
    schema: &jsonschema::Validator,
) -> Measured {
    let mut m = Measured {
        pairs: pairs.len() as u64,
        ..Measured::default()
    };
    for (input, want) in pairs {
        match recipe.run(sandbox, input, rag, schema) {
            Ok(None) => {}
            Ok(Some(got)) => {
                m.answered += 1;
                if crate::digest::canonical_json(&got) == crate::digest::canonical_json(want) {
                    m.correct += 1;
                }
            }
            Err(f) => *m.faults.entry(f.kind().to_string()).or_default() += 1,
        }
    }
    m.precision = ratio(m.correct, m.answered);
    m.coverage = ratio(m.answered, m.pairs);
    m
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Decides a measured recipe's fate: exact only when every held-out answer was right, there
/// were enough of them, and nothing faulted; a draft source when most answers were right.
pub fn judge(recipe: &mut Recipe, m: Measured) -> Verdict {
    let faults: u64 = m.faults.values().sum();
    let (kept, why) = if m.answered == 0 && faults == m.pairs && m.pairs > 0 {
        let kinds: Vec<&str> = m.faults.keys().map(String::as_str).collect();
        (
            "dropped",
            format!("faulted on every pair ({})", kinds.join(", ")),
        )
    } else if m.answered == 0 {
        ("dropped", "declined every pair".to_string())
    } else if m.precision < MIN_DRAFT_PRECISION {
        (
            "dropped",
            format!(
                "right on {} of {} answers (precision {:.3} < {MIN_DRAFT_PRECISION})",
                m.correct, m.answered, m.precision
            ),
        )
    } else if m.correct < m.answered {
        (
            "draft",
            format!(
                "right on {} of {} answers: its outputs are drafts the model verifies",
                m.correct, m.answered
            ),
        )
    } else if faults > 0 {
        (
            "draft",
            format!(
                "all {} answers right, but it faulted on {faults} pair(s)",
                m.answered
            ),
        )
    } else if m.answered < MIN_EXACT_ANSWERS {
        (
            "draft",
            format!(
                "all {} answers right, but fewer than {MIN_EXACT_ANSWERS} to trust it exact",
                m.answered
            ),
        )
    } else {
        (
            "exact",
            format!(
                "right on all {} answers ({} of {} pairs)",
                m.answered, m.answered, m.pairs
            ),
        )
    };
    recipe.exact = kept == "exact";
    recipe.measured = m.clone();
    Verdict {
        name: recipe.name.clone(),
        origin: recipe.origin.clone(),
        kept: kept.into(),
        why,
        measured: m,
    }
}
