//! The OpenAI chat-completions wire format (`POST {endpoint}/v1/chat/completions`), spoken by
//! OpenAI and by the servers that copy it: vLLM, llama.cpp's server, Ollama.
//!
//! k samples go out as one request with `n = k`. Servers that ignore `n` (several do) answer
//! with one choice; the rest are asked for with further requests, each with the next seed,
//! until k texts are in hand.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Value};

use super::http::{post_json, Policy};
use super::request::{Answer, Request, Usage};
use crate::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://api.openai.com";

pub fn headers(key: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| Error::Teacher {
        what: "the teacher's API key has characters an HTTP header cannot carry".into(),
        help: "check the variable named by `teacher.api_key_env`".into(),
    })?;
    v.set_sensitive(true);
    h.insert(AUTHORIZATION, v);
    Ok(h)
}

pub fn url(endpoint: &str) -> String {
    format!("{}/v1/chat/completions", endpoint.trim_end_matches('/'))
}

/// The request body for `n` samples drawn with `seed`.
pub fn body(r: &Request, n: u32, seed: i64) -> Value {
    let mut b = json!({
        "model": r.model,
        "messages": [
            {"role": "system", "content": r.system},
            {"role": "user", "content": r.user},
        ],
        "n": n,
        "temperature": r.temperature,
        "seed": seed,
        "max_tokens": r.max_tokens,
    });
    if let Some(schema) = &r.schema {
        b["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": false},
        });
    }
    b
}

/// The choices' texts and the usage of one response.
pub fn parse(v: &Value) -> std::result::Result<(Vec<String>, Usage), String> {
    let choices = v
        .get("choices")
        .and_then(Value::as_array)
        .ok_or("the response has no `choices`")?;
    let mut texts = Vec::with_capacity(choices.len());
    for c in choices {
        let text = c
            .pointer("/message/content")
            .and_then(Value::as_str)
            .ok_or("a choice has no `message.content` text")?;
        texts.push(text.to_string());
    }
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Ok((
        texts,
        Usage {
            input_tokens: n("/usage/prompt_tokens"),
            output_tokens: n("/usage/completion_tokens"),
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
    let (mut sent, mut retries) = (0u32, 0u32);
    while (answer.texts.len() as u32) < r.n {
        let want = r.n - answer.texts.len() as u32;
        let reply = post_json(
            client,
            url,
            headers,
            &body(r, want, r.seed + sent as i64),
            policy,
        )
        .await?;
        let (texts, usage) = parse(&reply.body).map_err(|why| Error::Teacher {
            what: format!("the teacher at {url} answered in a shape kolm does not know: {why}"),
            help: "is `teacher.endpoint` an OpenAI-compatible server? For Anthropic use `provider = \"anthropic\"`".into(),
        })?;
        if texts.is_empty() {
            return Err(Error::Teacher {
                what: format!("the teacher at {url} answered with no choices"),
                help: "check `teacher.model`".into(),
            });
        }
        sent += 1;
        retries += reply.retries;
        answer.gather(texts.into_iter().take(want as usize), usage, reply.millis);
    }
    Ok((answer, sent + retries))
}
