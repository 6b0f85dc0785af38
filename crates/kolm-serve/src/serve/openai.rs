//! `POST /v1/chat/completions` (kolmfile-spec/serve.md §3): one JSON completion, or with
//! `stream: true` server-sent events in OpenAI's chunk format.
//!
//! A streamed answer is sent as it is decoded: a first chunk with the role, a chunk per piece
//! of text (whole UTF-8 characters; a recipe's answer is one piece), a last chunk with
//! `finish_reason` and the `_kolm` block, a usage chunk when `stream_options.include_usage`
//! asks, and `data: [DONE]`. The pieces put together are the text a plain request gets. A run
//! that fails before its first piece is an ordinary error response (400, 500…), since no
//! status has been sent yet; one that fails after is an `error` event, and the stream ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::request::{self, Streaming};
use super::state::{oai_error_body, unix_now, AppState, Done, Event};
use crate::runtime::{RunOutput, Stop};

const ENDPOINT: &str = "/v1/chat/completions";

pub(super) async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let parsed = request::chat(&body);
    let Some(streaming) = parsed.as_ref().ok().and_then(|r| r.stream) else {
        return match st.run(ENDPOINT, parsed).await {
            Ok((model, Done::Run(out))) => {
                let id = format!("chatcmpl-{}", &out.receipt.facts.output_sha256[..24]);
                axum::Json(completion(&id, &model, &out)).into_response()
            }
            Ok((_, Done::Verified(_))) => unreachable!("a chat request is a plain run"),
            Err(r) => r,
        };
    };
    let started = Instant::now();
    let (model, mut events) = match st.submit(ENDPOINT, parsed, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let first = match st.next_event(ENDPOINT, started, &mut events).await {
        Ok(Event::Done(out)) if out.is_err() => {
            return match st.finished(ENDPOINT, started, *out) {
                Err(r) => r,
                Ok(_) => unreachable!("a failure stays one"),
            }
        }
        Ok(e) => e,
        Err(r) => return r,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let stream = Stream {
        id: format!("chatcmpl-{}", super::random_hex(12).unwrap_or_default()),
        model,
        created: unix_now(),
        usage: streaming,
        tx,
    };
    tokio::spawn(async move {
        stream.send(stream.chunk(json!({"role": "assistant", "content": ""}), None));
        let mut event = first;
        loop {
            match event {
                Event::Delta(text) => stream.send(stream.chunk(json!({"content": text}), None)),
                Event::Done(out) => {
                    match st.finished(ENDPOINT, started, *out) {
                        Ok(Done::Run(out)) => stream.end(&out),
                        Ok(Done::Verified(_)) => {}
                        Err(_) => stream.error("the run failed after its answer began"),
                    }
                    return;
                }
            }
            event = match st.next_event(ENDPOINT, started, &mut events).await {
                Ok(e) => e,
                Err(_) => return stream.error("no answer within the server's time limit"),
            };
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The whole completion for a plain request.
fn completion(id: &str, model: &str, out: &RunOutput) -> Value {
    let g = &out.generation;
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": g.text},
            "finish_reason": finish_reason(out),
            "logprobs": null,
        }],
        "usage": usage(out),
        "_kolm": super::kolm_block(out),
    })
}

fn finish_reason(out: &RunOutput) -> &'static str {
    match out.generation.stop {
        Stop::MaxTokens => "length",
        _ => "stop",
    }
}

fn usage(out: &RunOutput) -> Value {
    let g = &out.generation;
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.output_tokens,
        "total_tokens": g.prompt_tokens + g.output_tokens,
    })
}

/// One streamed answer's events, written to its response body.
struct Stream {
    id: String,
    model: String,
    created: u64,
    usage: Streaming,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
}

impl Stream {
    fn send(&self, data: Value) {
        let _ = self.tx.send(Bytes::from(format!("data: {data}\n\n")));
    }

    /// A chunk with one choice's `delta` (and `finish_reason` on the last).
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let mut c = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.usage.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The last chunks: `finish_reason` with the `_kolm` block, usage when asked, `[DONE]`.
    fn end(&self, out: &RunOutput) {
        let mut last = self.chunk(json!({}), Some(finish_reason(out)));
        last["_kolm"] = super::kolm_block(out);
        self.send(last);
        if self.usage.include_usage {
            let mut u = self.chunk(json!({}), None);
            u["choices"] = json!([]);
            u["usage"] = usage(out);
            self.send(u);
        }
        let _ = self.tx.send(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    /// An error after the answer began: OpenAI's error object as the last event.
    fn error(&self, message: &str) {
        self.send(oai_error_body("server_error", "run_failed", message, None));
    }
}
