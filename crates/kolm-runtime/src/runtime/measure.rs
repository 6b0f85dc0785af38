//! Measuring an artifact on an eval suite: the deterministic components of K and the report.
//!
//! One ruler for every caller: the score stage that gates a build, `kolm verify --rescore` that
//! recomputes a sealed K, and later `kolm tune eval`. It lives in the runtime, below them all,
//! because it measures exactly what `kolm run` does: the same student, prompt and grounding.

use serde_json::{json, Value};

use super::recipes::Recipes;
use super::{prompt, GenOptions, Student};
use crate::evals::{self, Observed, Test};
use crate::kscore::{self, percentile, DeviceProfile, Measured, Work};
use crate::recall::ground::{ground, Grounding};
use crate::{Error, Result};

/// What is being scored: the task and the facts about the artifact K needs.
pub struct Subject<'a> {
    pub description: &'a str,
    pub schema: &'a Value,
    /// The five payload entries, uncompressed.
    pub size_bytes: u64,
    pub parameters: u64,
    pub model_bytes: u64,
    pub device: &'a DeviceProfile,
    /// The artifact's index, when it has chunks: every input is grounded in it, as at run time.
    pub grounding: Option<&'a Grounding>,
    /// The recipe pack, as at run time.
    pub recipes: &'a Recipes,
}

/// The outcome of running a suite.
pub struct Scored {
    pub measured: Measured,
    /// Per test: pass or fail and why, the output, the counted work; and the wall clock.
    pub report: Value,
    pub wall_p50_ms: f64,
    pub wall_p95_ms: f64,
    /// Assertions skipped because nothing here can grade them (model-graded types).
    pub skipped: usize,
}

impl Scored {
    /// The summary printed after scoring (and a warning for skipped assertions).
    pub fn summary(&self, task: &str, device: &DeviceProfile) -> String {
        let m = &self.measured;
        let mut s = format!(
            "    score {task}: {}/{} tests passed (accuracy {:.3}); coverage {:.3}; latency {:.1} ms estimated on `{}` (measured here: p50 {:.1} ms, p95 {:.1} ms)",
            m.tests_passed, m.tests_total, m.accuracy, m.coverage, m.latency_ms, device.name, self.wall_p50_ms, self.wall_p95_ms
        );
        if self.skipped > 0 {
            s.push_str(&format!(
                "\n  warning: {} model-graded assertion(s) (similar, llm-rubric) were skipped: they need a teacher to grade them; see the report",
                self.skipped
            ));
        }
        s
    }
}

/// Runs every test through `student` and measures the deterministic components of K.
pub fn measure(
    student: &mut Student,
    tests: &[Test],
    subject: &Subject,
    opts: &GenOptions,
    tick: &dyn Fn(),
) -> Result<Scored> {
    let system = prompt::system_prompt(subject.description, Some(subject.schema));
    let mut session = student.session(opts)?;
    let mut verdicts = Vec::with_capacity(tests.len());
    let mut estimates = Vec::with_capacity(tests.len());
    let mut walls = Vec::with_capacity(tests.len());
    let mut rows = Vec::with_capacity(tests.len());
    let mut skipped = 0;
    // Output tokens over the suite, and those a recipe or an accepted draft produced.
    let (mut produced, mut covered) = (0u64, 0u64);
    for t in tests {
        crate::interrupt::check()?;
        let input = t.input();
        let consulted = subject.recipes.consult(&input);
        if let Some((id, output)) = &consulted.exact {
            // An exact recipe answers: no prompt, no pass; every output token is covered.
            let text = serde_json::to_string(output).expect("serialises");
            let n = session.count_tokens(&text);
            covered += n;
            produced += n;
            estimates.push(0.0);
            let graded = evals::grade(
                t,
                &Observed {
                    output: &text,
                    latency_ms: 0.0,
                    cost: 0.0,
                },
            );
            verdicts.push((t.weight, graded.pass));
            skipped += graded.skipped;
            rows.push(json!({
                "line": t.line, "description": t.description, "pass": graded.pass,
                "score": graded.score, "reasons": graded.reasons, "output": text,
                "path": format!("recipe:{id}"), "prompt_tokens": 0, "output_tokens": n,
                "draft_tokens": n, "decode_passes": 0, "latency_ms_estimated": 0.0,
            }));
            tick();
            continue;
        }
        let grounded = ground(subject.grounding, &input)?;
        let drafts = subject.recipes.drafts(&consulted);
        let drafts = drafts.as_ref().map(|f| f as &super::engine::DraftFn<'_>);
        let row = match session.generate_with(&system, &grounded.text, drafts) {
            Ok(g) => {
                covered += g.draft_tokens;
                produced += g.output_tokens;
                let work = Work {
                    prompt_tokens: g.prompt_tokens,
                    decode_passes: g.decode_passes,
                    verify_rows: g.verify_rows.clone(),
                };
                let est = kscore::estimate_latency_ms(
                    &work,
                    subject.parameters,
                    subject.model_bytes,
                    subject.device,
                );
                estimates.push(est);
                walls.push(g.micros as f64 / 1e3);
                let graded = evals::grade(
                    t,
                    &Observed {
                        output: &g.text,
                        latency_ms: est,
                        cost: 0.0,
                    },
                );
                verdicts.push((t.weight, graded.pass));
                skipped += graded.skipped;
                json!({
                    "line": t.line, "description": t.description, "pass": graded.pass,
                    "score": graded.score, "reasons": graded.reasons, "output": g.text,
                    "path": "model", "stop": g.stop, "prompt_tokens": g.prompt_tokens,
                    "output_tokens": g.output_tokens, "draft_tokens": g.draft_tokens,
                    "decode_passes": g.decode_passes,
                    "latency_ms_estimated": est, "chunk_ids": grounded.chunk_ids,
                })
            }
            // An input the student cannot take (too long for its context) fails its test;
            // anything else is a broken runtime and stops the stage.
            Err(Error::Invalid { what, .. }) => {
                verdicts.push((t.weight, false));
                json!({
                    "line": t.line, "description": t.description, "pass": false,
                    "score": 0.0, "reasons": [what],
                })
            }
            Err(e) => return Err(e),
        };
        rows.push(row);
        tick();
    }
    let passed = verdicts.iter().filter(|(_, p)| *p).count() as u64;
    let measured = Measured {
        accuracy: evals::accuracy(&verdicts),
        tests_passed: passed,
        tests_total: tests.len() as u64,
        size_bytes: subject.size_bytes,
        latency_ms: kscore::median(&estimates),
        cost_per_1k: 0.0,
        coverage: if produced == 0 {
            0.0
        } else {
            covered as f64 / produced as f64
        },
    };
    let wall_p50_ms = percentile(&walls, 0.50);
    let wall_p95_ms = percentile(&walls, 0.95);
    let report = json!({
        "measured": measured,
        "device": subject.device,
        "wallclock": {
            "note": "measured on the building machine; reported, never sealed",
            "p50_ms": wall_p50_ms, "p95_ms": wall_p95_ms,
        },
        "skipped_assertions": skipped,
        "tests": rows,
    });
    Ok(Scored {
        measured,
        report,
        wall_p50_ms,
        wall_p95_ms,
        skipped,
    })
}
