//! The eval suite: `tests.jsonl`, promptfoo-compatible, and how a test passes.
//!
//! We keep promptfoo's field names (`description`, `vars`, `assert`, `threshold`, and per
//! assertion `type`, `value`, `threshold`, `weight`) so a suite written for promptfoo reads
//! here unchanged. The whole suite is parsed and checked before the first test runs: a typo in
//! an assertion type on line 97 must not cost a hundred model runs first. Grading lives in
//! [`assert`]; the normative text is `kolmfile-spec/evals.md`.

pub mod assert;
pub mod verify;

use serde_json::{Map, Value};

use crate::{Error, Result};

pub use assert::{Assertion, Kind};

/// One test case.
#[derive(Debug, Clone)]
pub struct Test {
    /// 1-based line in the evals file.
    pub line: usize,
    pub description: String,
    pub vars: Map<String, Value>,
    pub asserts: Vec<Assertion>,
    /// When set, the test passes if its weighted score reaches it (promptfoo's rule);
    /// otherwise every assertion must pass.
    pub threshold: Option<f64>,
    /// Weight of this test in the accuracy (default 1).
    pub weight: f64,
}

impl Test {
    /// The text given to the artifact: `vars.input` when it is a string, else the vars as JSON.
    pub fn input(&self) -> String {
        match self.vars.get("input") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if self.vars.len() == 1 => other.to_string(),
            _ => Value::Object(self.vars.clone()).to_string(),
        }
    }
}

/// Parses and checks a whole evals file. `name` is how the file is named in errors.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Test>> {
    let mut tests = Vec::new();
    for (line, v) in crate::jsonl::parse(name, bytes)? {
        let at = |what: String| {
            Error::invalid(
                format!("{name}:{line}: {what}"),
                "each line is a promptfoo-style test: {\"description\", \"vars\": {\"input\": ..}, \"assert\": [{\"type\", \"value\"}]} (see kolmfile-spec/evals.md)",
            )
        };
        let Value::Object(obj) = v else {
            return Err(at("a test must be a JSON object".into()));
        };
        for key in obj.keys() {
            if ![
                "description",
                "vars",
                "assert",
                "threshold",
                "weight",
                "options",
                "metadata",
            ]
            .contains(&key.as_str())
            {
                return Err(at(format!("unknown field `{key}`")));
            }
        }
        let vars = match obj.get("vars") {
            Some(Value::Object(m)) => m.clone(),
            None => return Err(at("missing `vars` (the test's input)".into())),
            Some(_) => return Err(at("`vars` must be an object".into())),
        };
        let asserts = match obj.get("assert") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, a)| Assertion::parse(a).map_err(|e| at(format!("assert[{i}]: {e}"))))
                .collect::<Result<_>>()?,
            Some(_) => return Err(at("`assert` must be an array".into())),
        };
        let number = |key: &str| -> Result<Option<f64>> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(_) => Err(at(format!("`{key}` must be a number"))),
            }
        };
        let weight = number("weight")?.unwrap_or(1.0);
        if !(weight >= 0.0 && weight.is_finite()) {
            return Err(at("`weight` must be a finite number ≥ 0".into()));
        }
        tests.push(Test {
            line,
            description: match obj.get("description") {
                Some(Value::String(s)) => s.clone(),
                _ => format!("line {line}"),
            },
            vars,
            asserts,
            threshold: number("threshold")?,
            weight,
        });
    }
    Ok(tests)
}

/// What one run of the artifact produced, as the assertions see it.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub output: &'a str,
    /// Latency of the run in ms. The score stage passes the deterministic estimate, so that a
    /// `latency` assertion gives the same verdict on every machine.
    pub latency_ms: f64,
    /// Dollars for this one run.
    pub cost: f64,
}

/// The verdict on one test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Graded {
    pub pass: bool,
    /// Weighted mean of the assertion scores, in [0, 1].
    pub score: f64,
    /// One line per failed or skipped assertion.
    pub reasons: Vec<String>,
    /// Assertions that could not be graded here (model-graded types without a teacher).
    pub skipped: usize,
}

/// Grades a test against what the run produced. A test with no (unskipped) assertions passes.
pub fn grade(test: &Test, seen: &Observed) -> Graded {
    let mut total_w = 0.0;
    let mut got = 0.0;
    let mut all = true;
    let mut reasons = Vec::new();
    let mut skipped = 0;
    for a in &test.asserts {
        match a.check_in(seen, &test.vars) {
            assert::Outcome::Skipped(why) => {
                skipped += 1;
                reasons.push(format!("skipped {}: {why}", a.label()));
            }
            assert::Outcome::Checked { pass, score, why } => {
                total_w += a.weight;
                got += a.weight * score;
                if !pass {
                    all = false;
                    reasons.push(format!("{}: {why}", a.label()));
                }
            }
        }
    }
    let score = if total_w > 0.0 { got / total_w } else { 1.0 };
    let pass = match test.threshold {
        Some(t) => score >= t,
        None => all,
    };
    Graded {
        pass,
        score,
        reasons,
        skipped,
    }
}

/// Weighted pass rate: Σ weight·pass / Σ weight (1 for an empty suite is never reached: the
/// score stage refuses an empty suite).
pub fn accuracy(results: &[(f64, bool)]) -> f64 {
    let total: f64 = results.iter().map(|(w, _)| w).sum();
    if total <= 0.0 {
        return 0.0;
    }
    // A fold from +0, not `sum()`: an empty f64 sum is -0, which prints as "-0.000".
    results
        .iter()
        .filter(|(_, p)| *p)
        .fold(0.0, |a, (w, _)| a + w)
        / total
}
