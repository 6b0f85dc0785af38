//! What HTTP requests ask (kolmfile-spec/serve.md §3): an OpenAI chat completion, or a
//! `/v1/wrap/verified` call. Reading is kept apart from serving so each refusal names the field
//! at fault before anything is queued or decoded.
//!
//! A field kolm does not honour is refused, never dropped: a client that sends `tools`, `n: 2`
//! or `logprobs: true` would otherwise take an answer for what it did not ask. Fields that only
//! describe the caller (`user`, `metadata`…) are taken and ignored, and so is `seed`: every
//! answer is already a function of the artifact and the input. Sampling fields are taken only
//! at the values that mean greedy decoding, which is what kolm does.

use serde_json::{Map, Value};

use crate::runtime::verified::Verify;

/// What a request asks: a run, or with `verify`, k samples through the verifier.
pub struct Request {
    pub model: String,
    pub input: String,
    pub schema: Option<Value>,
    pub max_tokens: Option<u32>,
    pub verify: Option<Verify>,
    /// `stream: true`: the answer as server-sent events.
    pub stream: Option<Streaming>,
}

impl Request {
    /// A run of tool `model` on `input`, nothing else asked (an MCP tool call).
    pub fn plain(model: &str, input: &str) -> Request {
        Request {
            model: model.to_string(),
            input: input.to_string(),
            schema: None,
            max_tokens: None,
            verify: None,
            stream: None,
        }
    }
}

/// How a streamed answer ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streaming {
    /// `stream_options.include_usage`: a last chunk with the token counts and no choices.
    pub include_usage: bool,
}

/// Why a request is refused: the message, and the field at fault (OpenAI's `param`).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub param: Option<String>,
}

fn refuse(param: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        message: message.into(),
        param: Some(param.to_string()),
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal {
            message,
            param: None,
        }
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Refusal {
        Refusal::from(message.to_string())
    }
}

/// Reads a chat request: the input is the last user message's text. `response_format` of type
/// `json_schema` is taken with its schema where OpenAI puts it (`json_schema.schema`) and one
/// level up (`schema`), as some clients send it.
pub fn chat(body: &[u8]) -> Result<Request, Refusal> {
    let v = json_body(body)?;
    for (field, value) in &v {
        chat_field(field, value)?;
    }
    let messages = match v.get("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => {
            return Err(refuse(
                "messages",
                "`messages` must be an array of messages",
            ))
        }
        None => return Err(refuse("messages", "`messages` (an array) is required")),
    };
    let input = last_user_text(messages)?;
    let stream = match v.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(Streaming {
            include_usage: stream_options(&v)?,
        }),
        Some(_) => {
            return Err(refuse(
                "stream",
                "`stream` must be a boolean (true or false)",
            ))
        }
    };
    if stream.is_none() && !matches!(v.get("stream_options"), None | Some(Value::Null)) {
        return Err(refuse(
            "stream_options",
            "`stream_options` is only allowed with `stream: true`",
        ));
    }
    let mut r = common(&v, input, None)?;
    r.stream = stream;
    Ok(r)
}

/// Checks one top-level field of a chat request: known and honoured, or refused by name.
fn chat_field(field: &str, value: &Value) -> Result<(), Refusal> {
    let null = value.is_null();
    let ok = match field {
        // Read by `chat` and `common`.
        "model" | "messages" | "response_format" | "max_tokens" | "max_completion_tokens"
        | "stream" | "stream_options" => true,
        // The caller's own bookkeeping; `seed` changes nothing (every answer is reproducible).
        "user" | "metadata" | "store" | "service_tier" | "safety_identifier"
        | "prompt_cache_key" => true,
        "seed" => null || value.is_i64() || value.is_u64(),
        "temperature" => null || value.as_f64() == Some(0.0),
        "top_p" => null || value.as_f64() == Some(1.0),
        "frequency_penalty" | "presence_penalty" => null || value.as_f64() == Some(0.0),
        "n" => null || value.as_u64() == Some(1),
        "logprobs" => null || value == &Value::Bool(false),
        "logit_bias" => null || value.as_object().is_some_and(Map::is_empty),
        "stop" => null || value.as_array().is_some_and(Vec::is_empty),
        "tools" | "functions" => null || value.as_array().is_some_and(Vec::is_empty),
        "tool_choice" => null || value.as_str() == Some("none"),
        "parallel_tool_calls" => null || value.is_boolean(),
        "modalities" => null || value == &serde_json::json!(["text"]),
        "top_logprobs" | "function_call" | "audio" | "prediction" | "reasoning_effort"
        | "web_search_options" | "verbosity" => null,
        other => {
            return Err(refuse(
                other,
                format!("unrecognized request field `{other}`: kolm does not know it, so it cannot honour it; remove it"),
            ))
        }
    };
    if ok {
        return Ok(());
    }
    let why = match field {
        "tools" | "tool_choice" | "functions" | "function_call" | "parallel_tool_calls" => {
            "a kolm artifact answers its task's JSON; it does not call tools or functions"
        }
        "n" => "each request gets one answer (and the same one every time): send n = 1 or leave it out",
        "temperature" | "top_p" | "frequency_penalty" | "presence_penalty" | "logit_bias" => {
            "kolm decodes greedily, so an artifact answers the same input the same way: leave sampling fields out (temperature 0, top_p 1, no penalties or bias); /v1/wrap/verified samples through the verifier"
        }
        "logprobs" | "top_logprobs" => "kolm does not return log probabilities",
        "stop" => "answers are whole JSON values, which a stop string would cut: leave `stop` out",
        "seed" => "`seed` must be an integer (any: answers do not depend on it)",
        _ => "kolm answers text only",
    };
    Err(refuse(
        field,
        format!(
            "`{field}` = {} is not supported: {why}",
            crate::untrusted::shown(&value.to_string())
        ),
    ))
}

/// `stream_options.include_usage`, checked.
fn stream_options(v: &Map<String, Value>) -> Result<bool, Refusal> {
    match v.get("stream_options") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Object(o)) => {
            for (k, val) in o {
                match (k.as_str(), val) {
                    ("include_usage", Value::Bool(_) | Value::Null) => {}
                    ("include_obfuscation", Value::Bool(false) | Value::Null) => {}
                    ("include_usage", _) => {
                        return Err(refuse(
                            "stream_options.include_usage",
                            "`stream_options.include_usage` must be a boolean",
                        ))
                    }
                    (other, _) => {
                        return Err(refuse(
                            &format!("stream_options.{other}"),
                            format!("`stream_options.{other}` is not supported"),
                        ))
                    }
                }
            }
            Ok(o.get("include_usage") == Some(&Value::Bool(true)))
        }
        Some(_) => Err(refuse(
            "stream_options",
            "`stream_options` must be an object",
        )),
    }
}

/// Reads a `/v1/wrap/verified` request: a chat request, or `input` (a string) instead of
/// `messages`, plus `k`, `seed`, `temperature` and `top_k` (serve.md §3).
pub fn wrap(body: &[u8]) -> Result<Request, Refusal> {
    let v = json_body(body)?;
    if v.get("stream")
        .is_some_and(|s| !s.is_null() && s != &Value::Bool(false))
    {
        return Err(refuse(
            "stream",
            "`stream` is not supported on /v1/wrap/verified: the verifier answers once it has every sample",
        ));
    }
    let input = match (v.get("input"), v.get("messages")) {
        (Some(Value::String(s)), None) => s.clone(),
        (None, Some(Value::Array(m))) => last_user_text(m)?,
        (Some(_), Some(_)) => return Err("send `input` or `messages`, not both".into()),
        (Some(_), None) => return Err(refuse("input", "`input` must be a string")),
        (None, _) => return Err("`input` (a string) or `messages` (an array) is required".into()),
    };
    let d = Verify::default();
    let k = match v.get("k") {
        None | Some(Value::Null) => d.k,
        Some(k) => k
            .as_u64()
            .and_then(|k| u32::try_from(k).ok())
            .ok_or_else(|| refuse("k", "`k` must be a whole number"))?,
    };
    let seed = match v.get("seed") {
        None | Some(Value::Null) => d.seed,
        Some(s) => s
            .as_u64()
            .ok_or_else(|| refuse("seed", "`seed` must be a whole number ≥ 0"))?,
    };
    let temperature = match v.get("temperature") {
        None | Some(Value::Null) => d.temperature,
        Some(t) => t
            .as_f64()
            .ok_or_else(|| refuse("temperature", "`temperature` must be a number"))?
            as f32,
    };
    let top_k = match v.get("top_k") {
        None | Some(Value::Null) => d.top_k,
        Some(t) => t
            .as_u64()
            .map(|t| t.min(u64::from(u32::MAX)) as u32)
            .ok_or_else(|| refuse("top_k", "`top_k` must be a whole number"))?,
    };
    let verify = Verify {
        k,
        seed,
        temperature,
        top_k,
    };
    if let Some(why) = verify.problem() {
        return Err(why.into());
    }
    common(&v, input, Some(verify))
}

fn json_body(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match v {
        Value::Object(o) => Ok(o),
        _ => Err("the body must be a JSON object".into()),
    }
}

/// The text of the last message with role `user`.
fn last_user_text(messages: &[Value]) -> Result<String, Refusal> {
    for (i, m) in messages.iter().enumerate() {
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(refuse(
                &format!("messages[{i}].role"),
                format!("message {i} needs a `role` (a string)"),
            ));
        }
    }
    let (i, last_user) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or_else(|| {
            refuse(
                "messages",
                "`messages` needs a message with role `user`: its text is the input",
            )
        })?;
    let input = match last_user.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => texts.push(t.as_str()),
                    (kind, _) => {
                        return Err(refuse(
                            &format!("messages[{i}].content[{j}]"),
                            format!(
                                "content part {j} is {}: kolm takes text parts only",
                                kind.map_or("not a text part".to_string(), |k| format!(
                                    "of type `{k}`"
                                ))
                            ),
                        ))
                    }
                }
            }
            texts.join("\n")
        }
        _ => {
            return Err(refuse(
                &format!("messages[{i}].content"),
                "the user message's `content` must be a string or text parts",
            ))
        }
    };
    Ok(input)
}

/// What chat and wrap requests share: `model`, `response_format`, `max_tokens`.
fn common(
    v: &Map<String, Value>,
    input: String,
    verify: Option<Verify>,
) -> Result<Request, Refusal> {
    let model = match v.get("model") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(refuse("model", "`model` must be a string")),
        None => return Err(refuse("model", "`model` (a string) is required")),
    };
    let schema = match v.get("response_format") {
        None | Some(Value::Null) => None,
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("json_schema") => {
                let schema = rf
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .or_else(|| rf.get("schema"))
                    .cloned()
                    .ok_or_else(|| {
                        refuse(
                            "response_format.json_schema.schema",
                            "`response_format` of type `json_schema` needs a `json_schema.schema`",
                        )
                    })?;
                if let Some(why) = crate::runtime::grammar::unenforceable(&schema) {
                    return Err(refuse("response_format.json_schema.schema", why));
                }
                Some(schema)
            }
            Some("json_object") | Some("text") => None,
            other => {
                return Err(refuse(
                    "response_format.type",
                    format!(
                    "`response_format.type` {other:?} is not one of json_schema, json_object, text"
                ),
                ))
            }
        },
    };
    let mut max_tokens = None;
    for field in ["max_tokens", "max_completion_tokens"] {
        match v.get(field) {
            None | Some(Value::Null) => {}
            Some(n) => match n.as_u64().filter(|n| *n >= 1) {
                Some(n) => {
                    let n = n.min(u64::from(u32::MAX)) as u32;
                    // Both given: the smaller bounds the answer.
                    max_tokens = Some(max_tokens.map_or(n, |m: u32| m.min(n)));
                }
                None => {
                    return Err(refuse(
                        field,
                        format!("`{field}` must be a whole number ≥ 1"),
                    ))
                }
            },
        }
    }
    Ok(Request {
        model,
        input,
        schema,
        max_tokens,
        verify,
        stream: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat_of(v: Value) -> Result<Request, Refusal> {
        chat(&serde_json::to_vec(&v).unwrap())
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn what_kolm_does_not_honour_is_refused_by_name() {
        for (field, value) in [
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f"}}]),
            ),
            ("tool_choice", json!("required")),
            ("functions", json!([{"name": "f"}])),
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("audio", json!({"voice": "alloy"})),
            ("temperature", json!(0.7)),
            ("stop", json!(["\n"])),
            ("stream", json!("true")),
            ("max_tokens", json!("12")),
            ("max_tokens", json!(0)),
            ("no_such_field", json!(1)),
        ] {
            let mut body = base();
            body[field] = value.clone();
            let r = chat_of(body)
                .err()
                .unwrap_or_else(|| panic!("{field} = {value} was taken"));
            assert_eq!(r.param.as_deref(), Some(field), "{r:?}");
            assert!(r.message.contains(field), "{r:?}");
        }
    }

    #[test]
    fn neutral_values_and_bookkeeping_are_taken() {
        let mut body = base();
        for (field, value) in [
            ("temperature", json!(0)),
            ("top_p", json!(1)),
            ("n", json!(1)),
            ("logprobs", json!(false)),
            ("tools", json!([])),
            ("tool_choice", json!("none")),
            ("seed", json!(7)),
            ("user", json!("u-1")),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("max_completion_tokens", json!(9)),
            ("max_tokens", json!(5)),
        ] {
            body[field] = value;
        }
        let r = chat_of(body).unwrap();
        assert!(r.stream.unwrap().include_usage);
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.input, "hi");
    }

    #[test]
    fn a_schema_the_grammar_cannot_enforce_is_refused_before_decoding() {
        let mut body = base();
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 3}}}}});
        let r = chat_of(body).err().unwrap();
        assert!(r.message.contains("multipleOf"), "{r:?}");
    }
}
