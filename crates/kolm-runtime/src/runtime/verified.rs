//! k samples through the verifier (`/v1/wrap/verified`, runtime.md §6): the answer a caller
//! can act on only when the student agrees with itself.
//!
//! Sample 0 is the greedy answer, the one `kolm run` gives; samples 1..k are drawn at the
//! caller's temperature, each from its own seed, with the same drafts verified along the way
//! (a draw per token either way, so drafts change no sample). The verifier is the one labels
//! pass at build time ([`crate::evals::verify`]): JSON, the schema, then a strict majority of
//! the k over canonical JSON. An exact recipe is deterministic, so it is one sample, k = 1.
//! Every call, passed or failed, appends an `rs-1-verified` receipt to the chain.

use serde_json::Value;

use super::engine::Sampling;
use super::{parse_output, Ask, Runner};
use crate::evals::verify::{Verdict, Verifier};
use crate::receipts::{Receipt, RunFacts, VerifiedFacts};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Most samples one call may ask for.
pub const MAX_K: u32 = 16;

/// How a verified call samples.
#[derive(Debug, Clone, Copy)]
pub struct Verify {
    /// Samples, 1..=[`MAX_K`].
    pub k: u32,
    pub seed: u64,
    /// For samples 1..k; in (0, 2].
    pub temperature: f32,
    /// A sampled token is drawn from the tokens the grammar allows among this many likeliest
    /// (llama.cpp's `top_k`; what lies beyond has next to no mass in a trained model).
    pub top_k: u32,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            k: 3,
            seed: 0,
            temperature: 0.8,
            top_k: 40,
        }
    }
}

impl Verify {
    /// What is wrong with the request, in words.
    pub fn problem(&self) -> Option<String> {
        if !(1..=MAX_K).contains(&self.k) {
            return Some(format!("`k` must be 1 to {MAX_K}, not {}", self.k));
        }
        if !(self.temperature > 0.0 && self.temperature <= 2.0) {
            return Some(format!(
                "`temperature` must be in (0, 2], not {}",
                self.temperature
            ));
        }
        if self.top_k == 0 {
            return Some("`top_k` must be at least 1".into());
        }
        None
    }

    /// Sample `i`'s draw: none for sample 0 (greedy), else its own seed.
    fn sampling(&self, i: u32) -> Option<Sampling> {
        (i > 0).then(|| Sampling {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            seed: SplitMix64::new(self.seed ^ u64::from(i).wrapping_mul(0x9e37_79b9)).next_u64(),
        })
    }
}

/// One sample as the verifier saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub text: String,
    /// The text as JSON, when it is.
    pub output: Option<Value>,
    pub output_tokens: u64,
}

/// The answer to a verified call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedOutput {
    /// The winner's output; `None` when the verifier failed the call.
    pub output: Option<Value>,
    pub samples: Vec<Sample>,
    pub receipt: Receipt,
}

impl VerifiedOutput {
    pub fn facts(&self) -> &VerifiedFacts {
        self.receipt
            .facts
            .verified
            .as_ref()
            .expect("a verified receipt")
    }
}

impl Runner {
    /// Runs `input` k times through the verifier (module doc) and appends the receipt.
    pub fn run_verified(&mut self, input: &str, ask: &Ask, v: &Verify) -> Result<VerifiedOutput> {
        if let Some(why) = v.problem() {
            return Err(Error::invalid(why, "see kolmfile-spec/runtime.md §6"));
        }
        let started = std::time::Instant::now();
        let plan = self.plan(input, ask)?;
        let schema = plan
            .custom
            .unwrap_or(&self.artifact.manifest.task.output_schema);
        let verifier = Verifier::new(schema, &[])?;
        let (samples, mut facts) = match &plan.consulted.exact {
            Some((id, output)) => {
                let g = self.exact_generation(output, plan.max_tokens, started);
                let facts = RunFacts {
                    tokens_out: g.output_tokens,
                    draft_tokens_accepted: g.draft_tokens,
                    ..self.facts(input, output, format!("recipe:{id}"), Vec::new())
                };
                let sample = Sample {
                    text: g.text,
                    output: Some(output.clone()),
                    output_tokens: g.output_tokens,
                };
                (vec![sample], facts)
            }
            None => {
                let (prompt, chunk_ids) = self.prompt(input)?;
                let mut facts = self.facts(input, &Value::Null, "model".into(), chunk_ids);
                let mut samples = Vec::with_capacity(v.k as usize);
                for i in 0..v.k {
                    let g = self.decode(&plan, &prompt, v.sampling(i), None)?;
                    facts.tokens_in = facts.tokens_in.max(g.prompt_tokens);
                    facts.tokens_out += g.output_tokens;
                    facts.draft_tokens_accepted += g.draft_tokens;
                    samples.push(Sample {
                        output: parse_output(&g, plan.max_tokens).ok(),
                        output_tokens: g.output_tokens,
                        text: g.text,
                    });
                }
                (samples, facts)
            }
        };
        let texts: Vec<String> = samples.iter().map(|s| s.text.clone()).collect();
        let (output, verdict) = match verifier.judge(&texts) {
            Verdict::Keep {
                output,
                winner,
                agreement,
            } => (
                Some(output),
                VerifiedFacts {
                    k: samples.len() as u32,
                    pass: true,
                    winner: Some(winner as u32),
                    agreement,
                    reason: None,
                    seed: v.seed,
                    temperature: f64::from(v.temperature),
                },
            ),
            Verdict::Drop(why) => (
                None,
                VerifiedFacts {
                    k: samples.len() as u32,
                    pass: false,
                    winner: None,
                    agreement: 0.0,
                    reason: Some(why.to_string()),
                    seed: v.seed,
                    temperature: f64::from(v.temperature),
                },
            ),
        };
        let winner = output.as_ref().unwrap_or(&Value::Null);
        facts.output_sha256 = crate::digest::sha256(&crate::digest::canonical_json(winner));
        facts.latency_us = started.elapsed().as_micros() as u64;
        facts.verified = Some(verdict);
        let receipt = self.receipt(facts)?;
        if let Some(out) = &output {
            self.capture(input, out, &receipt);
        }
        Ok(VerifiedOutput {
            output,
            samples,
            receipt,
        })
    }
}
