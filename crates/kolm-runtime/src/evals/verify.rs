//! The verifier: which of k samples of an answer, if any, is the answer: a teacher's samples
//! of a training pair's label, or a student's samples of a `/v1/wrap/verified` call.
//!
//! Each sample must be JSON, match the task's output schema, and pass the task's own
//! assertions (`[[task]] assert`). Among the samples that do, the answer is the one most of
//! all k samples agree on, compared as canonical JSON (so key order and `1` vs `1.0` do not
//! split a vote). It wins only with a strict majority of the k: two samples out of three, not
//! one out of three. A teacher that cannot agree with itself on an input is not a teacher for
//! that input, and the input is dropped with the reason counted.

use std::collections::BTreeMap;

use serde_json::Value;

use super::assert::Outcome;
use super::{Assertion, Observed};
use crate::{Error, Result};

/// Why an input was dropped; the keys of `LabelOut::dropped`.
pub const NOT_JSON: &str = "not JSON";
pub const SCHEMA: &str = "schema mismatch";
pub const ASSERTION: &str = "assertion failed";
pub const NO_MAJORITY: &str = "no majority";

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Keep {
        output: Value,
        /// Index of the first sample that gave the winning answer.
        winner: usize,
        /// Samples that agree with the winner, over k.
        agreement: f64,
    },
    Drop(&'static str),
}

pub struct Verifier {
    schema: jsonschema::Validator,
    asserts: Vec<Assertion>,
}

impl Verifier {
    pub fn new(schema: &Value, asserts: &[Value]) -> Result<Verifier> {
        let schema = jsonschema::validator_for(schema).map_err(|e| {
            Error::invalid_because(
                "the task's output schema does not compile",
                e,
                "fix `output_schema`",
            )
        })?;
        let asserts = asserts
            .iter()
            .map(|a| {
                Assertion::parse(a).map_err(|e| {
                    Error::invalid_because("a task assertion is invalid", e, "fix `assert`")
                })
            })
            .collect::<Result<_>>()?;
        Ok(Verifier { schema, asserts })
    }

    /// What is wrong with a gold output, in words; `None` when the schema and every assertion
    /// accept it.
    pub fn problem(&self, v: &Value) -> Option<String> {
        if let Err(e) = self.schema.validate(v) {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() {
                String::new()
            } else {
                format!(" at `{at}`")
            };
            return Some(format!(
                "it does not match the task's output schema{at}: {e}"
            ));
        }
        let compact = v.to_string();
        let seen = Observed {
            output: &compact,
            latency_ms: 0.0,
            cost: 0.0,
        };
        self.asserts.iter().find_map(|a| match a.check(&seen) {
            Outcome::Checked {
                pass: false, why, ..
            } => Some(format!("it fails the task's assertion: {why}")),
            _ => None,
        })
    }

    /// Why one sample is unusable, or its value.
    fn check(&self, text: &str) -> std::result::Result<Value, &'static str> {
        let v = json_in(text).ok_or(NOT_JSON)?;
        if !self.schema.is_valid(&v) {
            return Err(SCHEMA);
        }
        let compact = v.to_string();
        let seen = Observed {
            output: &compact,
            latency_ms: 0.0,
            cost: 0.0,
        };
        for a in &self.asserts {
            if let Outcome::Checked { pass: false, .. } = a.check(&seen) {
                return Err(ASSERTION);
            }
        }
        Ok(v)
    }

    pub fn judge(&self, texts: &[String]) -> Verdict {
        let k = texts.len();
        // canonical JSON → (votes, first index, value)
        let mut votes: BTreeMap<Vec<u8>, (usize, usize, Value)> = BTreeMap::new();
        let mut failures: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (i, t) in texts.iter().enumerate() {
            match self.check(t) {
                Ok(v) => {
                    let e = votes
                        .entry(crate::digest::canonical_json(&v))
                        .or_insert((0, i, v));
                    e.0 += 1;
                }
                Err(why) => *failures.entry(why).or_default() += 1,
            }
        }
        let best = votes
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match best {
            Some((n, winner, output)) if 2 * n > k => Verdict::Keep {
                output,
                winner,
                agreement: n as f64 / k as f64,
            },
            Some(_) => Verdict::Drop(NO_MAJORITY),
            None => {
                // Every sample failed: the most common reason (ties: the earliest check).
                let order = [NOT_JSON, SCHEMA, ASSERTION];
                let why = order
                    .iter()
                    .max_by_key(|r| {
                        (
                            failures.get(*r).copied().unwrap_or(0),
                            std::cmp::Reverse(order.iter().position(|o| o == *r)),
                        )
                    })
                    .copied()
                    .unwrap_or(NOT_JSON);
                Verdict::Drop(why)
            }
        }
    }
}

/// The JSON value in an answer's text: the whole text, or the body of a fenced block, or the
/// first object or array in it (models wrap JSON in prose more often than they should).
pub fn json_in(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str(t) {
        return Some(v);
    }
    let fenced = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.trim_end().strip_suffix("```"));
    if let Some(v) = fenced.and_then(|f| serde_json::from_str(f.trim()).ok()) {
        return Some(v);
    }
    let start = t.find(['{', '['])?;
    serde_json::Deserializer::from_str(&t[start..])
        .into_iter::<Value>()
        .next()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v() -> Verifier {
        Verifier::new(
            &json!({"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}),
            &[json!({"type": "not-contains", "value": "forbidden"})],
        )
        .unwrap()
    }

    fn t(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn majority_over_canonical_json_wins() {
        let r = v().judge(&t(&[
            r#"{"label":"b"}"#,
            r#"{"label":"a", "x": 1.0}"#,
            r#"{ "x": 1, "label": "a" }"#,
        ]));
        assert_eq!(
            r,
            Verdict::Keep {
                output: json!({"label": "a", "x": 1.0}),
                winner: 1,
                agreement: 2.0 / 3.0
            }
        );
    }

    #[test]
    fn drops_with_the_reason() {
        assert_eq!(
            v().judge(&t(&[r#"{"label":"a"}"#, r#"{"label":"b"}"#, "nope"])),
            Verdict::Drop(NO_MAJORITY)
        );
        assert_eq!(
            v().judge(&t(&["nope", "still no", r#"{"label":"c"}"#])),
            Verdict::Drop(NOT_JSON)
        );
        assert_eq!(v().judge(&t(&[r#"{"label":"c"}"#])), Verdict::Drop(SCHEMA));
        assert_eq!(
            v().judge(&t(&[r#"{"label":"a","n":"forbidden"}"#])),
            Verdict::Drop(ASSERTION)
        );
        // Invalid samples still count in k: one valid answer out of three is no majority.
        assert_eq!(
            v().judge(&t(&[r#"{"label":"a"}"#, "x", "y"])),
            Verdict::Drop(NO_MAJORITY)
        );
    }

    #[test]
    fn finds_json_in_prose_and_fences() {
        assert_eq!(json_in(" {\"a\":1} "), Some(serde_json::json!({"a": 1})));
        assert_eq!(
            json_in("```json\n{\"a\":1}\n```"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            json_in("Sure! {\"a\":1} hope it helps"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(json_in("no json here"), None);
        assert_eq!(json_in("{\"a\":"), None);
    }
}
