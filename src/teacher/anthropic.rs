//! The Anthropic messages wire format (`POST {endpoint}/v1/messages`).
//!
//! The API has no `n` and no seed: k samples are k requests. It has no JSON-schema mode either:
//! kolm's system prompts state the schema in words, and the verifier checks what comes back.

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::http::{post_json, Policy};
use super::request::{Answer, Request, Usage};
use crate::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";

pub fn headers(key: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_str(key).map_err(|_| Error::Teacher {
        what: "the teacher's API key has characters an HTTP header cannot carry".into(),
        help: "check the variable named by `teacher.api_key_env`".into(),
    })?;
    v.set_sensitive(true);
    h.insert("x-api-key", v);
    h.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
    Ok(h)
}

pub fn url(endpoint: &str) -> String {
    format!("{}/v1/messages", endpoint.trim_end_matches('/'))
}

pub fn body(r: &Request) -> Value {
    json!({
        "model": r.model,
        "max_tokens": r.max_tokens,
        "system": r.system,
        "messages": [{"role": "user", "content": r.user}],
        "temperature": r.temperature.min(1.0),
    })
}

/// The text of one response (its text blocks, joined) and its usage.
pub fn parse(v: &Value) -> std::result::Result<(String, Usage), String> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("the response has no `content`")?;
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Ok((
        text,
        Usage {
            input_tokens: n("/usage/input_tokens"),
            output_tokens: n("/usage/output_tokens"),
        },
    ))
}

pub async fn complete(
    client: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    policy: &Policy,
    r: &Request,
) -> Result<(Answer, u32)> {
    let mut answer = Answer::default();
    let body = body(r);
    let mut retries = 0;
    for _ in 0..r.n {
        let reply = post_json(client, url, headers, &body, policy).await?;
        let (text, usage) = parse(&reply.body).map_err(|why| Error::Teacher {
            what: format!("the teacher at {url} answered in a shape kolm does not know: {why}"),
            help: "is `teacher.endpoint` the Anthropic API? For OpenAI-compatible servers use `provider = \"openai\"`".into(),
        })?;
        retries += reply.retries;
        answer.gather([text], usage, reply.millis);
    }
    Ok((answer, r.n + retries))
}
