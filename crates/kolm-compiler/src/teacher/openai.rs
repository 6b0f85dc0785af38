//! The OpenAI chat-completions wire format (`POST {endpoint}/v1/chat/completions`), spoken by
//! OpenAI and by the servers that copy it: vLLM, llama.cpp's server, Ollama.
//!
//! k samples go out as one request with `n = k`. Servers that ignore `n` (several do) answer
//! with one choice; the rest are asked for with further requests, each with the next seed,
//! until k texts are in hand.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Endpoint, Policy};
use super::request::{Answer, Request, Usage, WireUsage};
use crate::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://api.openai.com";

pub fn headers(key: &str) -> Result<HeaderMap> {
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        Error::from(crate::teacher::TeacherFailed {
            what: "the teacher's API key has characters an HTTP header cannot carry".into(),
            help: "check the variable named by `teacher.api_key_env`".into(),
        })
    })?;
    v.set_sensitive(true);
    h.insert(AUTHORIZATION, v);
    Ok(h)
}

pub fn url(endpoint: &str) -> String {
    format!("{}/v1/chat/completions", endpoint.trim_end_matches('/'))
}

/// The request body for `n` samples drawn with `seed`: typed, and borrowing the request,
/// since it is built for every request sent.
pub fn body(r: &Request, n: u32, seed: i64) -> Body<'_> {
    Body {
        model: &r.model,
        messages: [
            ChatMessage {
                role: "system",
                content: &r.system,
            },
            ChatMessage {
                role: "user",
                content: &r.user,
            },
        ],
        n,
        temperature: r.temperature,
        seed,
        max_tokens: r.max_tokens,
        response_format: r.schema.as_ref().map(|schema| ResponseFormat {
            kind: "json_schema",
            json_schema: JsonSchema {
                name: "answer",
                schema,
                strict: false,
            },
        }),
    }
}

#[derive(Serialize)]
pub struct Body<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    n: u32,
    temperature: f64,
    seed: i64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchema<'a>,
}

#[derive(Serialize)]
struct JsonSchema<'a> {
    name: &'static str,
    schema: &'a Value,
    strict: bool,
}

/// The parts of a chat completion kolm reads.
#[derive(Deserialize)]
pub struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

/// What to check when a response is not a chat completion.
const SHAPE_HELP: &str = "is `teacher.endpoint` an OpenAI-compatible server? For Anthropic use `provider = \"anthropic\"`";

pub fn endpoint(base: &str, key: &str, policy: Policy) -> Result<Endpoint> {
    Endpoint::new(&url(base), headers(key)?, policy, SHAPE_HELP)
}

/// The choices' texts and the usage of one response.
pub fn parse(c: Completion) -> std::result::Result<(Vec<String>, Usage), &'static str> {
    let texts = c
        .choices
        .into_iter()
        .map(|c| {
            c.message
                .content
                .ok_or("a choice has no `message.content` text")
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((texts, c.usage.into()))
}

pub async fn complete(ep: &Endpoint, r: &Request) -> Result<(Answer, u32)> {
    let mut answer = Answer::default();
    let (mut sent, mut retries) = (0u32, 0u32);
    while (answer.texts.len() as u32) < r.n {
        let want = r.n - answer.texts.len() as u32;
        let reply = ep
            .post::<Completion>(&body(r, want, r.seed + sent as i64))
            .await?;
        let (texts, usage) = parse(reply.body).map_err(|why| ep.shape_error(why))?;
        if texts.is_empty() {
            return Err(ep.shape_error("no choices (check `teacher.model`)"));
        }
        sent += 1;
        retries += reply.retries;
        answer.gather(texts.into_iter().take(want as usize), usage, reply.millis);
    }
    Ok((answer, sent + retries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_is_a_chat_completion_request() {
        let mut r = Request {
            model: "m".into(),
            system: "sys".into(),
            user: "in".into(),
            schema: None,
            n: 3,
            temperature: 0.7,
            seed: 5,
            max_tokens: 64,
        };
        let plain = json!({
            "model": "m",
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "in"}],
            "n": 2, "temperature": 0.7, "seed": 6, "max_tokens": 64,
        });
        assert_eq!(serde_json::to_value(body(&r, 2, 6)).unwrap(), plain);
        r.schema = Some(json!({"type": "object"}));
        let mut with_schema = plain;
        with_schema["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": false},
        });
        assert_eq!(serde_json::to_value(body(&r, 2, 6)).unwrap(), with_schema);
    }
}
