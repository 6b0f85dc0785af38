//! What HTTP requests ask (kolmfile-spec/serve.md §3): an OpenAI chat completion, or a
//! `/v1/wrap/verified` call. Reading is kept apart from serving so each refusal names the field
//! at fault before anything is queued.

use serde_json::Value;

use crate::runtime::verified::Verify;

/// What a request asks: a run, or with `verify`, k samples through the verifier.
pub struct Request {
    pub model: String,
    pub input: String,
    pub schema: Option<Value>,
    pub max_tokens: Option<u32>,
    pub verify: Option<Verify>,
}

/// Reads a chat request: the input is the last user message's text. `response_format` of type
/// `json_schema` is taken with its schema where OpenAI puts it (`json_schema.schema`) and one
/// level up (`schema`), as some clients send it.
pub fn chat(body: &[u8]) -> Result<Request, String> {
    let v = json_body(body)?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` (an array) is required")?;
    let input = last_user_text(messages)?;
    common(&v, input, None)
}

/// Reads a `/v1/wrap/verified` request: a chat request, or `input` (a string) instead of
/// `messages`, plus `k`, `seed`, `temperature` and `top_k` (serve.md §3).
pub fn wrap(body: &[u8]) -> Result<Request, String> {
    let v = json_body(body)?;
    let input = match (v.get("input"), v.get("messages")) {
        (Some(Value::String(s)), None) => s.clone(),
        (None, Some(Value::Array(m))) => last_user_text(m)?,
        (Some(_), Some(_)) => return Err("send `input` or `messages`, not both".into()),
        (Some(_), None) => return Err("`input` must be a string".into()),
        (None, _) => return Err("`input` (a string) or `messages` (an array) is required".into()),
    };
    let d = Verify::default();
    let k = match v.get("k") {
        None | Some(Value::Null) => d.k,
        Some(k) => k
            .as_u64()
            .and_then(|k| u32::try_from(k).ok())
            .ok_or("`k` must be a whole number")?,
    };
    let seed = match v.get("seed") {
        None | Some(Value::Null) => d.seed,
        Some(s) => s.as_u64().ok_or("`seed` must be a whole number ≥ 0")?,
    };
    let temperature = match v.get("temperature") {
        None | Some(Value::Null) => d.temperature,
        Some(t) => t.as_f64().ok_or("`temperature` must be a number")? as f32,
    };
    let top_k = match v.get("top_k") {
        None | Some(Value::Null) => d.top_k,
        Some(t) => t
            .as_u64()
            .map(|t| t.min(u64::from(u32::MAX)) as u32)
            .ok_or("`top_k` must be a whole number")?,
    };
    let verify = Verify {
        k,
        seed,
        temperature,
        top_k,
    };
    if let Some(why) = verify.problem() {
        return Err(why);
    }
    common(&v, input, Some(verify))
}

fn json_body(body: &[u8]) -> Result<Value, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("the body must be a JSON object".into());
    }
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err("`stream: true` is not supported: kolm answers with one JSON object".into());
    }
    Ok(v)
}

/// The text of the last message with role `user`.
fn last_user_text(messages: &[Value]) -> Result<String, String> {
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .ok_or("`messages` needs a message with role `user`: its text is the input")?;
    let input = match last_user.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return Err("the user message's `content` must be a string or text parts".into()),
    };
    Ok(input)
}

/// What chat and wrap requests share: `model`, `response_format`, `max_tokens`.
fn common(v: &Value, input: String, verify: Option<Verify>) -> Result<Request, String> {
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or("`model` (a string) is required")?
        .to_string();
    let schema = match v.get("response_format") {
        None | Some(Value::Null) => None,
        Some(rf) => match rf.get("type").and_then(Value::as_str) {
            Some("json_schema") => Some(
                rf.get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .or_else(|| rf.get("schema"))
                    .cloned()
                    .ok_or(
                        "`response_format` of type `json_schema` needs a `json_schema.schema`",
                    )?,
            ),
            Some("json_object") | Some("text") => None,
            other => {
                return Err(format!(
                    "`response_format.type` {other:?} is not one of json_schema, json_object, text"
                ))
            }
        },
    };
    let max_tokens = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, u32::MAX as u64) as u32);
    Ok(Request {
        model,
        input,
        schema,
        max_tokens,
        verify,
    })
}
