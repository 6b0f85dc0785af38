//! The prompt a student sees: one function, shared by the runtime, the score stage and (later)
//! training, so that what the adapter is trained on and what it is run on agree token for
//! token.
//!
//! The system message is the task's description and its output schema; the user message is
//! the input. They are laid out with the base model's own chat template when its GGUF carries
//! one llama.cpp can apply, else with kolm's default (kolmfile-spec/runtime.md §2).

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::{Error, Result};

/// The system message for a task.
pub fn system_prompt(description: &str, schema: Option<&serde_json::Value>) -> String {
    match schema {
        Some(s) => format!(
            "{}\nReply with one JSON value that matches this JSON schema:\n{}",
            description.trim(),
            String::from_utf8_lossy(&crate::digest::canonical_json(s))
        ),
        None => description.trim().to_string(),
    }
}

/// A pair's or seed's input as the text a prompt carries: a string as it is, any other JSON
/// value as its JSON text.
pub fn input_text(input: &serde_json::Value) -> String {
    match input {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How (system, input) becomes prompt text.
pub enum Template {
    /// The base model's chat template (`tokenizer.chat_template`), applied by llama.cpp.
    Model(LlamaChatTemplate),
    /// kolm's default, for models without a usable template.
    Default,
}

impl Template {
    /// The model's template if llama.cpp can apply it, else the default.
    pub fn of(model: &LlamaModel) -> Template {
        match model.chat_template(None) {
            Ok(t) => match LlamaChatMessage::new("user".into(), "x".into()) {
                Ok(m)
                    if model
                        .apply_chat_template(&t, std::slice::from_ref(&m), true)
                        .is_ok() =>
                {
                    Template::Model(t)
                }
                _ => Template::Default,
            },
            Err(_) => Template::Default,
        }
    }

    /// A short name for reports: `model` or `default`.
    pub fn name(&self) -> &'static str {
        match self {
            Template::Model(_) => "model",
            Template::Default => "default",
        }
    }

    /// Renders the prompt, ending where the model's answer begins.
    pub fn render(&self, model: &LlamaModel, system: &str, input: &str) -> Result<String> {
        if input.contains('\0') || system.contains('\0') {
            return Err(Error::invalid(
                "the input contains a NUL character",
                "remove NUL bytes from the input",
            ));
        }
        match self {
            Template::Default => Ok(default_prompt(system, input)),
            Template::Model(t) => {
                let msg = |role: &str, content: &str| {
                    LlamaChatMessage::new(role.into(), content.into())
                        .map_err(|e| Error::failed("llama.cpp could not take a chat message", e))
                };
                let mut chat = Vec::new();
                if !system.is_empty() {
                    chat.push(msg("system", system)?);
                }
                chat.push(msg("user", input)?);
                model.apply_chat_template(t, &chat, true).map_err(|e| {
                    Error::failed("llama.cpp could not apply the model's chat template", e)
                })
            }
        }
    }
}

/// kolm's default layout (normative: kolmfile-spec/runtime.md §2).
pub fn default_prompt(system: &str, input: &str) -> String {
    format!("{system}\n\n### Input\n{input}\n\n### Output\n")
}
