//! The Anthropic messages wire format (`POST {endpoint}/v1/messages`).
//!
//! The API has no `n` and no seed: k samples are k requests. It has no JSON-schema mode either:
//! kolm's system prompts state the schema in words, and the verifier checks what comes back.

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{Endpoint, Policy};
use super::request::{Answer, Request, Usage, WireUsage};
use crate::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";

pub fn headers(key: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_str(key).map_err(|_| {
        Error::from(crate::teacher::TeacherFailed {
            what: "the teacher's API key has characters an HTTP header cannot carry".into(),
            help: "check the variable named by `teacher.api_key_env`".into(),
        })
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

/// The parts of a message kolm reads.
#[derive(Deserialize)]
pub struct Message {
    content: Vec<Block>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// What to check when a response is not a message.
const SHAPE_HELP: &str = "is `teacher.endpoint` the Anthropic API? For OpenAI-compatible servers use `provider = \"openai\"`";

pub fn endpoint(base: &str, key: &str, policy: Policy) -> Result<Endpoint> {
    Endpoint::new(&url(base), headers(key)?, policy, SHAPE_HELP)
}

/// The text of one response (its text blocks, joined) and its usage.
pub fn parse(m: Message) -> (String, Usage) {
    let text: String = m
        .content
        .into_iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text)
        .collect();
    (text, m.usage.into())
}

pub async fn complete(ep: &Endpoint, r: &Request) -> Result<(Answer, u32)> {
    let mut answer = Answer::default();
    let body = body(r);
    let mut retries = 0;
    for _ in 0..r.n {
        let reply = ep.post::<Message>(&body).await?;
        let (text, usage) = parse(reply.body);
        retries += reply.retries;
        answer.gather([text], usage, reply.millis);
    }
    Ok((answer, r.n + retries))
}
