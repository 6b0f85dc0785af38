//! An artifact checking itself: `kolm verify --rescore` recomputes K from the artifact alone,
//! and `kolm verify --bench` times it on this machine.
//!
//! Rescoring uses [`super::measure::measure`], the very function the build scored with,
//! fed only from the artifact: its tests, its manifest's sizes, parameters, device profile,
//! weights and baseline. Because K is made of deterministic quantities only, the rescored K
//! equals the sealed one on the machine that built it; elsewhere a difference means the
//! student decodes differently there, which is worth knowing before shipping to it.

use std::path::Path;

use serde::Serialize;

use super::measure::{self, Subject};
use super::open::Opened;
use super::{GenOptions, Student};
use crate::home::Home;
use crate::kscore::{self, Components, Measured};
use crate::recall::ground::{ground, Grounding};
use crate::{evals, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Rescored {
    pub sealed_k: f64,
    pub rescored_k: f64,
    pub equal: bool,
    pub sealed: Measured,
    pub measured: Measured,
    pub components: Components,
    /// Wall-clock of this rescoring run, for information.
    pub wall_p50_ms: f64,
    pub wall_p95_ms: f64,
}

fn subject<'a>(
    a: &'a Opened,
    grounding: Option<&'a Grounding>,
    recipes: &'a super::recipes::Recipes,
) -> Subject<'a> {
    let m = &a.manifest;
    Subject {
        description: &m.task.description,
        schema: &m.task.output_schema,
        size_bytes: m.entries.iter().map(|e| e.size).sum(),
        parameters: m.base_model.parameters,
        model_bytes: m.base_model.size,
        device: &m.device,
        grounding,
        recipes,
    }
}

/// What [`rescore`] and [`bench`] run: the artifact's student, tests and grounding, loaded once.
pub struct Loaded {
    pub student: Student,
    pub tests: Vec<evals::Test>,
    pub grounding: Option<Grounding>,
    pub recipes: super::recipes::Recipes,
}

/// Loads the artifact's student, tests and grounding (`embedder`: the folder of the index's
/// embedder, when the copy a build keeps is not on this machine).
pub fn load(a: &Opened, home: &Home, embedder: Option<&Path>) -> Result<Loaded> {
    let tests = evals::parse("tests.jsonl", &a.tests)?;
    Ok(Loaded {
        student: a.student()?,
        tests,
        grounding: a.grounding(home, embedder)?,
        recipes: super::recipes::of_artifact(a)?,
    })
}

/// Recomputes K from the artifact's own tests.
pub fn rescore(a: &Opened, l: &mut Loaded, opts: &GenOptions, tick: &dyn Fn()) -> Result<Rescored> {
    let subject = subject(a, l.grounding.as_ref(), &l.recipes);
    let scored = measure::measure(&mut l.student, &l.tests, &subject, opts, tick)?;
    let m = &a.manifest;
    let components = kscore::components(&scored.measured, &m.baseline.values);
    let k = kscore::k_score(&components, &m.k_weights);
    Ok(Rescored {
        sealed_k: m.k_score,
        rescored_k: k,
        equal: k.to_bits() == m.k_score.to_bits() && scored.measured == m.k_measured,
        sealed: m.k_measured,
        measured: scored.measured,
        components,
        wall_p50_ms: scored.wall_p50_ms,
        wall_p95_ms: scored.wall_p95_ms,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub runs: u64,
    pub threads: u32,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Prompt tokens per second over all runs (prefill).
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second over all runs (decode).
    pub decode_tokens_per_s: f64,
    /// The sealed estimate on the reference device, for comparison.
    pub estimated_ms: f64,
    pub device: String,
}

/// Times `runs` runs over the artifact's test inputs (cycling through them) on this machine.
pub fn bench(
    a: &Opened,
    l: &mut Loaded,
    opts: &GenOptions,
    runs: u64,
    tick: &dyn Fn(),
) -> Result<Bench> {
    let tests = &l.tests;
    if tests.is_empty() {
        return Err(crate::Error::invalid(
            "the artifact has no tests to time",
            "build it with a non-empty eval suite",
        ));
    }
    let system = super::prompt::system_prompt(
        &a.manifest.task.description,
        Some(&a.manifest.task.output_schema),
    );
    let mut session = l.student.session(opts)?;
    let (mut walls, mut prefill_us, mut decode_us, mut prompt_toks, mut out_toks) =
        (Vec::new(), 0u64, 0u64, 0u64, 0u64);
    for i in 0..runs.max(1) {
        crate::interrupt::check()?;
        let t = &tests[(i as usize) % tests.len()];
        let grounded = ground(l.grounding.as_ref(), &t.input())?;
        let g = session.generate(&system, &grounded.text)?;
        walls.push(g.micros as f64 / 1e3);
        prefill_us += g.prefill_micros;
        decode_us += g.micros - g.prefill_micros;
        prompt_toks += g.prompt_tokens;
        out_toks += g.output_tokens;
        tick();
    }
    let rate = |n: u64, us: u64| {
        if us == 0 {
            0.0
        } else {
            n as f64 * 1e6 / us as f64
        }
    };
    Ok(Bench {
        runs: walls.len() as u64,
        threads: opts.threads,
        p50_ms: kscore::percentile(&walls, 0.50),
        p95_ms: kscore::percentile(&walls, 0.95),
        prefill_tokens_per_s: rate(prompt_toks, prefill_us),
        decode_tokens_per_s: rate(out_toks, decode_us),
        estimated_ms: a.manifest.k_measured.latency_ms,
        device: a.manifest.device.name.clone(),
    })
}
