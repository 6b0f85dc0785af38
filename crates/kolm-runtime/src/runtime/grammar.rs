//! Choosing tokens under a grammar: the task's JSON schema as llama.cpp GBNF that admits only
//! compact JSON, and the greedy or sampled choice among the tokens it allows.

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use crate::rng::SplitMix64;
use crate::{Error, Result};

/// How many of the likeliest tokens are checked against the grammar before the whole vocabulary.
pub(super) const FEW: usize = 64;

/// Of the tokens `ids`, the one the grammar allows with the largest logit (the lowest id on a
/// tie).
pub(super) fn best_allowed(
    sampler: &mut LlamaSampler,
    logits: &[f32],
    ids: &[usize],
) -> Option<LlamaToken> {
    let mut some = LlamaTokenDataArray::from_iter(
        ids.iter()
            .map(|&i| LlamaTokenData::new(LlamaToken(i as i32), logits[i], 0.0)),
        false,
    );
    some.apply_sampler(sampler);
    some.data
        .iter()
        .filter(|d| d.logit().is_finite())
        .max_by(|a, b| {
            a.logit()
                .total_cmp(&b.logit())
                .then(b.id().0.cmp(&a.id().0))
        })
        .map(|d| d.id())
}

/// Sampling instead of the greedy choice: the k samples `/v1/wrap/verified` puts through the
/// verifier. A pure function of the seed: the same seed gives the same output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature over the allowed candidates (> 0).
    pub temperature: f32,
    /// Candidates drawn from: the likeliest tokens the grammar allows among this many.
    pub top_k: usize,
    pub seed: u64,
}

/// A draw from the softmax (at `s.temperature`) of the tokens the grammar allows among the
/// `s.top_k` likeliest; one uniform per call, so the sequence of draws, and the output, does
/// not depend on how many tokens a pass decodes. `None` when the grammar allows none of them
/// (the caller falls back to the greedy choice over the whole vocabulary).
pub(super) fn sample_allowed(
    sampler: Option<&mut LlamaSampler>,
    logits: &[f32],
    s: &Sampling,
    rng: &mut SplitMix64,
) -> Option<LlamaToken> {
    let u = rng.uniform();
    let order = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    let top = s.top_k.clamp(1, ids.len());
    if top < ids.len() {
        ids.select_nth_unstable_by(top - 1, order);
        ids.truncate(top);
    }
    ids.sort_by(order);
    let mut some = LlamaTokenDataArray::from_iter(
        ids.iter()
            .map(|&i| LlamaTokenData::new(LlamaToken(i as i32), logits[i], 0.0)),
        false,
    );
    if let Some(g) = sampler {
        some.apply_sampler(g);
    }
    let allowed: Vec<(LlamaToken, f32)> = some
        .data
        .iter()
        .filter(|d| d.logit().is_finite())
        .map(|d| (d.id(), d.logit()))
        .collect();
    let max = allowed
        .iter()
        .map(|a| a.1)
        .fold(f32::NEG_INFINITY, f32::max);
    let t = s.temperature.max(1e-3);
    let weights: Vec<f32> = allowed.iter().map(|a| ((a.1 - max) / t).exp()).collect();
    let mut left = u * weights.iter().sum::<f32>();
    for (a, w) in allowed.iter().zip(&weights) {
        if left < *w {
            return Some(a.0);
        }
        left -= w;
    }
    allowed.last().map(|a| a.0)
}

/// Index of the largest logit; the lowest index wins a tie, so the choice is deterministic.
pub(super) fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best
}

/// The llama.cpp grammar for a JSON schema, for compact JSON (runtime.md §3).
///
/// llama.cpp's converter lets up to 22 whitespace characters stand between any two JSON tokens
/// (its `space` rule). The student was trained on compact JSON (`train::data`), and a greedy
/// decoder that once picks a newline there keeps finding whitespace the likeliest allowed
/// token: hundreds of tokens of it before the answer, for a ten-token answer. So `space`
/// allows nothing, and the grammar admits exactly the form the student learned.
pub fn schema_grammar(schema: &serde_json::Value) -> Result<String> {
    // llama.cpp orders an object's fields as its schema lists them: one order, sorted, wherever
    // the schema came from (the Kolmfile at build time, the canonical manifest at run time).
    let sorted = crate::digest::sorted_keys(schema);
    let grammar = llama_cpp_2::json_schema_to_grammar(&sorted.to_string()).map_err(|e| {
        Error::invalid_because(
            "llama.cpp cannot turn the task's output schema into a grammar",
            e,
            "simplify output_schema (see llama.cpp's json-schema-to-grammar for what it supports)",
        )
    })?;
    Ok(compact(&grammar))
}

/// `grammar` with its `space` rule allowing no whitespace.
fn compact(grammar: &str) -> String {
    grammar
        .lines()
        .map(|l| {
            if l.starts_with("space ::=") {
                "space ::= \"\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why a caller's JSON schema cannot be enforced by the grammar llama.cpp makes of it, if it
/// cannot: a keyword its converter ignores (the output could break it, and would be refused only
/// after the model ran), named with where it is. `None`: every keyword is enforced.
pub fn unenforceable(schema: &serde_json::Value) -> Option<String> {
    unenforceable_at(schema, "#")
}

/// Keywords llama.cpp's json-schema-to-grammar turns into grammar, and those that only annotate.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "minLength",
    "maxLength",
    "format",
];
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "name",
    "strict",
];
/// Bounds llama.cpp enforces on integers only.
const INTEGER_BOUNDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
/// String formats llama.cpp has grammar for.
const FORMATS: &[&str] = &["date", "time", "date-time", "uuid"];

fn unenforceable_at(schema: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let Value::Object(o) = schema else {
        return match schema {
            Value::Bool(_) => None,
            _ => Some(format!("`{at}` is not a schema (an object or a boolean)")),
        };
    };
    let integer = o.get("type").and_then(Value::as_str) == Some("integer");
    for (k, v) in o {
        let here = format!("{at}/{k}");
        if INTEGER_BOUNDS.contains(&k.as_str()) {
            if !integer {
                return Some(format!(
                    "`{k}` at `{here}` is enforced on integers only: use \"type\": \"integer\", or leave the bound out"
                ));
            }
            continue;
        }
        if k == "format" && !v.as_str().is_some_and(|f| FORMATS.contains(&f)) {
            return Some(format!(
                "format {v} at `{here}` cannot be enforced: kolm's grammar knows {}",
                FORMATS.join(", ")
            ));
        }
        if ANNOTATIONS.contains(&k.as_str()) {
            continue;
        }
        if !ENFORCED.contains(&k.as_str()) {
            return Some(format!(
                "the keyword `{k}` at `{here}` cannot be enforced while decoding (llama.cpp's grammar ignores it), so the answer could break it; leave it out"
            ));
        }
        let sub = match (k.as_str(), v) {
            ("properties" | "$defs" | "definitions", Value::Object(m)) => m
                .iter()
                .find_map(|(name, s)| unenforceable_at(s, &format!("{here}/{name}"))),
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(a)) => a
                .iter()
                .enumerate()
                .find_map(|(i, s)| unenforceable_at(s, &format!("{here}/{i}"))),
            ("items" | "additionalProperties", s @ (Value::Object(_) | Value::Bool(_))) => {
                unenforceable_at(s, &here)
            }
            _ => None,
        };
        if sub.is_some() {
            return sub;
        }
    }
    None
}
