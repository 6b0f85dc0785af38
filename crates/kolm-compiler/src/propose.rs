//! Recipes the teacher writes (kolmfile-spec/recipes.md §6): the request, and reading the
//! programs out of its answer. What becomes of them (verification on the pairs the teacher was
//! not shown) is the decompose stage's.

use serde_json::{json, Value};

use crate::evals::verify::json_in;
use crate::kolmfile::TaskConfig;
use crate::teacher::{Answer, Request};

/// Labelled pairs shown to the teacher; the rest are held out to verify its recipes on.
pub const SHOWN: usize = 20;
/// Most recipes taken from one answer.
pub const MOST: usize = 5;

const SYSTEM: &str = "You write recipes: small deterministic JavaScript functions that answer part of a task exactly, so that a model need not. Reply with one JSON object {\"recipes\": [{\"name\": ..., \"source\": ...}]} and nothing else.";

/// The request for recipes, showing the first [`SHOWN`] pairs.
pub fn request(task: &TaskConfig, model: &str, shown: &[(Value, Value)]) -> Request {
    let examples: Vec<String> = shown
        .iter()
        .map(|(i, o)| json!({"input": i, "output": o}).to_string())
        .collect();
    Request {
        model: model.to_string(),
        system: SYSTEM.into(),
        user: format!(
            "Task: {}\n\nOutput JSON schema: {}\n\nLabelled examples, one per line:\n{}\n\nWrite up to {MOST} recipes. Each is JavaScript source defining `function recipe(input, lib)` that returns the output for inputs it is certain about and `null` for every other input: a guarded subset answered exactly beats a guess. `input` is the example's input value. No I/O, no Date, no Math.random, no modules. Name each recipe with a short kebab-case name.",
            task.description.trim(),
            task.output_schema,
            examples.join("\n"),
        ),
        schema: Some(json!({
            "type": "object",
            "properties": {"recipes": {"type": "array", "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "source": {"type": "string"}},
                "required": ["name", "source"],
            }}},
            "required": ["recipes"],
        })),
        n: 1,
        temperature: task.teacher.temperature,
        seed: task.teacher.seed,
        max_tokens: 4096,
    }
}

/// One program from the teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    pub name: String,
    pub source: String,
}

/// The recipes in the teacher's answer (at most [`MOST`]), or why there are none.
pub fn parse(answer: &Answer) -> Result<Vec<Proposed>, String> {
    let text = answer.texts.first().ok_or("the teacher sent no answer")?;
    let v = json_in(text).ok_or_else(|| {
        format!(
            "the teacher's answer is not JSON: {}",
            crate::untrusted::shown(text)
        )
    })?;
    let list = v
        .get("recipes")
        .and_then(Value::as_array)
        .ok_or("the teacher's answer has no `recipes` array")?;
    let mut out = Vec::new();
    for (i, r) in list.iter().take(MOST).enumerate() {
        let source = r.get("source").and_then(Value::as_str).unwrap_or_default();
        if source.trim().is_empty() {
            continue;
        }
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        out.push(Proposed {
            name: slug(name).unwrap_or_else(|| format!("teacher-{}", i + 1)),
            source: source.to_string(),
        });
    }
    Ok(out)
}

/// A safe recipe name: lowercase ASCII letters, digits and dashes, at most 40 characters.
fn slug(name: &str) -> Option<String> {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').chars().take(40).collect::<String>();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Answer {
        Answer {
            texts: vec![text.into()],
            ..Answer::default()
        }
    }

    #[test]
    fn programs_are_read_out_of_the_answer() {
        let got = parse(&answer(
            r#"```json
{"recipes": [{"name": "Password Reset!", "source": "function recipe(i) { return null; }"},
             {"name": "", "source": "function recipe(i) { return 1; }"},
             {"name": "empty", "source": "  "}]}
```"#,
        ))
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "password-reset");
        assert_eq!(got[1].name, "teacher-2");
        assert!(parse(&answer("no")).unwrap_err().contains("not JSON"));
        assert!(parse(&answer("{}")).unwrap_err().contains("no `recipes`"));
    }
}
