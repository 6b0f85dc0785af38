//! Labelling: the (input, output) pairs the student learns from (`pairs.jsonl`).
//!
//! Inputs come from the seeds and, with `teacher.synthesize = N`, from the teacher itself
//! ([`synth`]). A seed with a gold `output` is kept as it is; every other input is put to the
//! teacher k times (`teacher.samples`), grounded in the task's index exactly as the student
//! will be at run time, and [`verify`] decides which answer, if any, becomes the pair. With
//! `teacher.verify_seeds = true` the teacher is asked about gold seeds too, and where its
//! winning answer differs from the gold one the seed's line is reported (the gold stays).
//!
//! The prompt is the student's own ([`crate::runtime::prompt::system_prompt`] and the grounded
//! input), so the teacher answers the question the student will be asked.

pub mod synth;

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::evals::verify::{Verdict, Verifier};
use crate::kolmfile::TaskConfig;
use crate::recall::ground::{ground, Grounding};
use crate::runtime::prompt::{input_text, system_prompt};
use crate::teacher::{Answer, Request, Usage};
use crate::{Error, Result};

/// One line of the seeds file.
#[derive(Debug, Clone)]
pub struct Seed {
    pub line: usize,
    pub input: Value,
    pub output: Option<Value>,
}

/// Parses the seeds file: every line `{"input": …, "output"?: …}`.
pub fn seeds(name: &str, bytes: &[u8]) -> Result<Vec<Seed>> {
    let mut out = Vec::new();
    for (line, v) in crate::jsonl::parse(name, bytes)? {
        let input = v.get("input").cloned().ok_or_else(|| {
            Error::invalid(
                format!("{name}:{line}: the seed has no `input`"),
                "each seed is {\"input\": ...} with an optional gold \"output\"",
            )
        })?;
        out.push(Seed {
            line,
            input,
            output: v.get("output").cloned(),
        });
    }
    if out.is_empty() {
        return Err(Error::invalid(
            format!("{name}: no seeds"),
            "add one JSON object per line: {\"input\": ..., \"output\": ...}",
        ));
    }
    Ok(out)
}

/// The request for k labels of one grounded input.
pub fn request(
    task: &TaskConfig,
    model: &str,
    grounded: &str,
    n: u32,
    temperature: f64,
) -> Request {
    Request {
        model: model.to_string(),
        system: system_prompt(&task.description, Some(&task.output_schema)),
        user: grounded.to_string(),
        schema: Some(task.output_schema.clone()),
        n,
        temperature,
        seed: task.teacher.seed,
        max_tokens: 1024,
    }
}

/// Asks the teacher and keeps the running totals of what the answers cost (whether they came
/// from the network, the cache or a cassette: the totals describe the labels, not this build).
pub struct Asker<'a> {
    pub ask: &'a dyn Fn(&[Request]) -> Result<Vec<Answer>>,
    pub cost: &'a dyn Fn(&Answer) -> f64,
    totals: RefCell<(u64, Usage, f64)>,
}

impl<'a> Asker<'a> {
    pub fn new(
        ask: &'a dyn Fn(&[Request]) -> Result<Vec<Answer>>,
        cost: &'a dyn Fn(&Answer) -> f64,
    ) -> Self {
        Asker {
            ask,
            cost,
            totals: RefCell::new((0, Usage::default(), 0.0)),
        }
    }

    pub fn ask(&self, requests: &[Request]) -> Result<Vec<Answer>> {
        let answers = (self.ask)(requests)?;
        let mut t = self.totals.borrow_mut();
        for a in &answers {
            t.0 += 1;
            t.1.add(a.usage);
            t.2 += (self.cost)(a);
        }
        Ok(answers)
    }
}

/// What labelling produced.
pub struct Labelled {
    pub pairs: Vec<Value>,
    pub dropped: BTreeMap<String, u64>,
    pub requests: u64,
    pub usage: Usage,
    pub cost_usd: f64,
    pub synthesized: u64,
    /// Lines of gold seeds the teacher disagreed with (`verify_seeds`).
    pub disagreements: Vec<usize>,
}

enum Source {
    Seed(usize),
    Synthesized,
}

/// Labels the seeds. `asker` is `None` when the task has no teacher; then every seed must carry
/// a gold output.
pub fn label(
    task: &TaskConfig,
    seeds: &[Seed],
    grounding: Option<&Grounding>,
    teacher: Option<(&str, &Asker)>,
) -> Result<Labelled> {
    let mut out = Labelled {
        pairs: Vec::new(),
        dropped: BTreeMap::new(),
        requests: 0,
        usage: Usage::default(),
        cost_usd: 0.0,
        synthesized: 0,
        disagreements: Vec::new(),
    };
    let Some((model, asker)) = teacher else {
        for s in seeds {
            let output = s.output.clone().ok_or_else(|| {
                Error::invalid(
                    format!(
                        "{}:{}: the seed has no gold `output`, and there is no teacher to label it",
                        task.seeds, s.line
                    ),
                    "add `output`, or configure a teacher",
                )
            })?;
            let g = ground(grounding, &input_text(&s.input))?;
            out.pairs.push(json!({
                "input": s.input, "output": output, "source": "seed", "line": s.line,
                "chunk_ids": g.chunk_ids,
            }));
        }
        return Ok(out);
    };
    let synthesized = if task.teacher.synthesize > 0 {
        let s = synth::inputs(task, model, seeds, asker)?;
        if s.rejected > 0 {
            out.dropped
                .insert("synthesized duplicate or malformed".into(), s.rejected);
        }
        s.inputs
    } else {
        Vec::new()
    };
    out.synthesized = synthesized.len() as u64;
    // Everything the teacher is asked about, with where it came from.
    let mut asked: Vec<(Source, &Value)> = seeds
        .iter()
        .enumerate()
        .filter(|(_, s)| s.output.is_none() || task.teacher.verify_seeds)
        .map(|(i, s)| (Source::Seed(i), &s.input))
        .collect();
    asked.extend(synthesized.iter().map(|v| (Source::Synthesized, v)));
    let mut grounded = Vec::with_capacity(asked.len());
    for (_, input) in &asked {
        grounded.push(ground(grounding, &input_text(input))?);
    }
    let t = &task.teacher;
    let requests: Vec<Request> = grounded
        .iter()
        .map(|g| request(task, model, &g.text, t.samples, t.temperature))
        .collect();
    let answers = asker.ask(&requests)?;
    let verifier = Verifier::new(&task.output_schema, &task.assert)?;
    let mut by_seed: BTreeMap<usize, Value> = BTreeMap::new();
    let mut synth_pairs = Vec::new();
    for (((source, input), g), answer) in asked.iter().zip(&grounded).zip(&answers) {
        let verdict = verifier.judge(&answer.texts);
        let (output, winner, agreement) = match (&verdict, source) {
            (
                Verdict::Keep {
                    output,
                    winner,
                    agreement,
                },
                _,
            ) => (output.clone(), *winner, *agreement),
            (Verdict::Drop(_), Source::Seed(i)) if seeds[*i].output.is_some() => {
                // A gold seed the teacher could not answer: the gold stays; report the line.
                out.disagreements.push(seeds[*i].line);
                continue;
            }
            (Verdict::Drop(why), _) => {
                *out.dropped.entry(why.to_string()).or_default() += 1;
                continue;
            }
        };
        let pair = |source: &str, line: Option<usize>| {
            let mut p = json!({
                "input": input, "output": output, "source": source,
                "chunk_ids": g.chunk_ids, "winner": winner, "agreement": agreement,
                "samples": answer.texts.len(),
            });
            if let Some(l) = line {
                p["line"] = l.into();
            }
            p
        };
        match source {
            Source::Seed(i) => match &seeds[*i].output {
                Some(gold) => {
                    if crate::digest::canonical_json(gold) != crate::digest::canonical_json(&output)
                    {
                        out.disagreements.push(seeds[*i].line);
                    }
                }
                None => {
                    by_seed.insert(*i, pair("teacher", Some(seeds[*i].line)));
                }
            },
            Source::Synthesized => synth_pairs.push(pair("synthesized", None)),
        }
    }
    // Seeds in file order (gold ones as they are), then the synthesized inputs.
    for (i, s) in seeds.iter().enumerate() {
        match &s.output {
            Some(gold) => {
                let g = ground(grounding, &input_text(&s.input))?;
                out.pairs.push(json!({
                    "input": s.input, "output": gold, "source": "seed", "line": s.line,
                    "chunk_ids": g.chunk_ids,
                }));
            }
            None => out.pairs.extend(by_seed.remove(&i)),
        }
    }
    out.pairs.extend(synth_pairs);
    let totals = asker.totals.borrow();
    (out.requests, out.usage, out.cost_usd) = (totals.0, totals.1, totals.2);
    Ok(out)
}
