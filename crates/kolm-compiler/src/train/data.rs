//! Training examples: labelled pairs as the token sequences the student will see and produce.
//!
//! The prompt is rendered exactly as the runtime renders it (the task's system prompt, the
//! input grounded in the task's index, the base's chat template) and tokenised by llama.cpp's
//! own tokenizer (a vocabulary-only load of the base), so the adapter is trained on the very
//! tokens it is run on. The target is the output as compact JSON, then the end-of-generation
//! token; the loss covers only those target tokens.

use std::path::Path;

use crate::recall::ground::{ground, Grounding};
use crate::runtime::{prompt, Student};
use crate::{Error, Result};

/// One training sequence: prompt then target tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// How many leading tokens are prompt (no loss on them).
    pub prompt_len: usize,
}

impl Example {
    /// Tokens the loss is taken on.
    pub fn target_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
}

/// The task facts a prompt is made of.
pub struct Task<'a> {
    pub description: &'a str,
    pub schema: &'a serde_json::Value,
    pub grounding: Option<&'a Grounding>,
}

/// Turns `pairs` (`{"input", "output", ...}` objects) into examples with the base's tokenizer.
/// `max_tokens` bounds a sequence: longer pairs are an error naming the pair.
pub fn examples(
    base: &Path,
    task: &Task,
    pairs: &[serde_json::Value],
    max_tokens: usize,
) -> Result<Vec<Example>> {
    let vocab = Student::load_vocab(base)?;
    let system = prompt::system_prompt(task.description, Some(task.schema));
    let eos = vocab.eos();
    let mut out = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.iter().enumerate() {
        let (Some(input), Some(output)) = (pair.get("input"), pair.get("output")) else {
            return Err(Error::invalid(
                format!("pair {} has no `input` or no `output`", i + 1),
                "the label stage writes {\"input\", \"output\"} pairs",
            ));
        };
        let grounded = ground(task.grounding, &prompt::input_text(input))?;
        let rendered = vocab.render(&system, &grounded.text)?;
        let prompt: Vec<u32> = vocab
            .tokenize(&rendered)
            .iter()
            .map(|t| t.0 as u32)
            .collect();
        // In the order the runtime's grammar asks for (sorted fields, runtime.md §3).
        let target_text =
            serde_json::to_string(&crate::digest::sorted_keys(output)).expect("serialises");
        let mut tokens = prompt.clone();
        tokens.extend(
            vocab
                .tokenize_plain(&target_text)
                .iter()
                .map(|t| t.0 as u32),
        );
        tokens.push(eos.0 as u32);
        if tokens.len() > max_tokens {
            return Err(Error::invalid(
                format!(
                    "pair {} is {} tokens long, more than the {max_tokens} training allows",
                    i + 1,
                    tokens.len()
                ),
                "shorten the input, or raise `distill.max_seq_len`",
            ));
        }
        out.push(Example {
            tokens,
            prompt_len: prompt.len(),
        });
    }
    Ok(out)
}
