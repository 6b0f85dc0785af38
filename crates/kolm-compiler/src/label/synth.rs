//! Synthesis: new inputs the teacher proposes from the seeds (`teacher.synthesize = N`).
//!
//! The teacher is shown up to [`SHOWN`] seed inputs and asked for [`PER_REQUEST`] new ones per
//! request, in waves: what a wave returns is deduplicated (against the seeds and everything
//! kept so far, by whitespace- and case-folded text) and the next wave asks only for what is
//! still missing. After [`WAVES`] waves kolm keeps what it has and reports the shortfall, rather
//! than paying without end for a teacher that keeps repeating itself. Each request has its own
//! seed (`teacher.seed` + its number), so every request is its own cache entry.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{Asker, Seed};
use crate::kolmfile::TaskConfig;
use crate::teacher::{json_in, Request};
use crate::Result;

pub const PER_REQUEST: u32 = 10;
pub const SHOWN: usize = 20;
pub const WAVES: u32 = 3;

/// What synthesis produced.
pub struct Synthesized {
    pub inputs: Vec<Value>,
    /// Proposals left out: duplicates, or not of the seeds' form.
    pub rejected: u64,
}

fn fold(v: &Value) -> String {
    crate::runtime::prompt::input_text(v)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub fn request(
    task: &TaskConfig,
    model: &str,
    shown: &[&Value],
    want: u32,
    number: u32,
) -> Request {
    let examples: Vec<String> = shown.iter().map(|v| v.to_string()).collect();
    Request {
        model: model.to_string(),
        system: "You write new example inputs for a task, to train a model on. Reply with one JSON object {\"inputs\": [...]} and nothing else.".into(),
        user: format!(
            "Task: {}\n\nExample inputs, one JSON value per line:\n{}\n\nWrite {want} new inputs for this task: realistic, varied, different from the examples and from each other, each of the same form as the examples.",
            task.description.trim(),
            examples.join("\n")
        ),
        schema: Some(json!({
            "type": "object",
            "properties": {"inputs": {"type": "array", "items": {}}},
            "required": ["inputs"],
        })),
        n: 1,
        temperature: task.teacher.temperature,
        seed: task.teacher.seed.wrapping_add(number as i64),
        max_tokens: 4096,
    }
}

pub fn inputs(
    task: &TaskConfig,
    model: &str,
    seeds: &[Seed],
    asker: &Asker,
) -> Result<Synthesized> {
    let goal = task.teacher.synthesize as usize;
    let shown: Vec<&Value> = seeds.iter().take(SHOWN).map(|s| &s.input).collect();
    let strings = seeds.iter().all(|s| s.input.is_string());
    let mut seen: BTreeSet<String> = seeds.iter().map(|s| fold(&s.input)).collect();
    let mut out = Synthesized {
        inputs: Vec::new(),
        rejected: 0,
    };
    let mut number = 0u32;
    for _ in 0..WAVES {
        let missing = goal.saturating_sub(out.inputs.len()) as u32;
        if missing == 0 {
            break;
        }
        let requests: Vec<Request> = (0..missing.div_ceil(PER_REQUEST))
            .map(|i| {
                let want = PER_REQUEST.min(missing - i * PER_REQUEST);
                number += 1;
                request(task, model, &shown, want, number)
            })
            .collect();
        for answer in asker.ask(&requests)? {
            let proposed = answer
                .texts
                .first()
                .and_then(|t| json_in(t))
                .and_then(|v| v.get("inputs").and_then(Value::as_array).cloned())
                .unwrap_or_default();
            for v in proposed {
                let ok = (!strings || v.is_string()) && !fold(&v).is_empty();
                if ok && out.inputs.len() < goal && seen.insert(fold(&v)) {
                    out.inputs.push(v);
                } else {
                    out.rejected += 1;
                }
            }
        }
    }
    Ok(out)
}
