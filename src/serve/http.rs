//! `kolm serve --http`: an OpenAI-compatible HTTP server (kolmfile-spec/serve.md §3).
//!
//! `GET /healthz`, `GET /metrics` (Prometheus text), `GET /v1/models`, and
//! `POST /v1/chat/completions`. Runs are CPU-bound, so one thread owns the artifacts (their
//! models stay loaded) and runs one request at a time; requests wait in a bounded queue, and
//! past it get 503 with `Retry-After`. Every request
//! has a size limit (413) and a time limit (504); with `KOLM_SERVE_TOKEN` set every request but
//! `/healthz` needs `Authorization: Bearer <token>` (401), and a bind beyond loopback refuses to
//! start without one. SIGTERM and Ctrl-C stop accepting, finish what is running, and exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::Catalog;
use crate::runtime::{Ask, RunOutput};
use crate::{Error, Result};

/// How the server is run.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Bearer token every request but `/healthz` must carry (`KOLM_SERVE_TOKEN`).
    pub token: Option<String>,
    /// Requests waiting for the runner before new ones get 503.
    pub queue: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Longest a request may take, waiting included.
    pub timeout: Duration,
}

struct AppState {
    models: Vec<Model>,
    /// The runner thread's queue.
    jobs: std::sync::mpsc::SyncSender<Job>,
    token_digest: Option<String>,
    opts: Options,
    metrics: Metrics,
}

/// A served model: its name and K.
pub type Model = (String, f64);

/// One run for the runner thread.
struct Job {
    model: String,
    input: String,
    schema: Option<Value>,
    max_tokens: Option<u32>,
    reply: tokio::sync::oneshot::Sender<Result<RunOutput>>,
}

/// The runner thread: loads the catalog (its artifacts' engines are not `Send`, so they live
/// and die here) and runs jobs in order until the server drops the queue.
fn start_runner(
    load: Box<dyn FnOnce() -> Result<Catalog> + Send>,
    queue: usize,
) -> Result<(std::sync::mpsc::SyncSender<Job>, Vec<Model>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut catalog = match load() {
            Ok(c) => c,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let models = catalog
            .tools
            .values()
            .map(|s| (s.name.clone(), s.k_score))
            .collect();
        let _ = ready_tx.send(Ok(models));
        for job in rx {
            let ask = Ask {
                schema: job.schema.as_ref(),
                max_tokens: job.max_tokens,
            };
            let out = catalog.call_with(&job.model, &job.input, &ask);
            let _ = job.reply.send(out);
        }
    });
    let models = ready_rx
        .recv()
        .map_err(|_| Error::Internal("the runner thread stopped".into()))??;
    Ok((tx, models))
}

#[derive(Default)]
struct Metrics {
    requests: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    run_micros: AtomicU64,
    runs: AtomicU64,
    recipe_answers: AtomicU64,
}

/// Starts the server; `load` makes the catalog (on the runner thread), `ready` receives the
/// bound address (the port when 0 was asked).
pub fn serve(
    load: Box<dyn FnOnce() -> Result<Catalog> + Send>,
    opts: Options,
    ready: &dyn Fn(SocketAddr, &[Model]),
) -> Result<()> {
    if opts.token.is_none() && !opts.addr.ip().is_loopback() {
        return Err(Error::invalid(
            format!(
                "refusing to serve on {} without a token: anyone who can reach it could run the artifacts",
                opts.addr
            ),
            "set KOLM_SERVE_TOKEN (clients send `Authorization: Bearer <token>`), or bind 127.0.0.1",
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::failed("could not start the HTTP runtime", e.to_string()))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| {
                Error::failed_with(
                    format!("could not listen on {}", opts.addr),
                    e.to_string(),
                    "pick a free port with --port (0: any free port)",
                )
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::failed("the listener has no address", e.to_string()))?;
        let (jobs, models) = start_runner(load, opts.queue)?;
        ready(bound, &models);
        let state = Arc::new(AppState {
            models,
            jobs,
            token_digest: opts
                .token
                .as_deref()
                .map(|t| crate::digest::sha256(t.as_bytes())),
            metrics: Metrics::default(),
            opts: opts.clone(),
        });
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/v1/models", get(list_models))
            .route("/v1/chat/completions", post(chat))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(opts.max_body))
            .with_state(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| Error::failed("the HTTP server failed", e.to_string()))
    })
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    eprintln!("kolm serve: stopping: finishing the requests in flight");
}

/// An OpenAI-shaped error.
fn oai_error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

impl AppState {
    fn count(&self, endpoint: &str, status: StatusCode) {
        *self
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint.to_string(), status.as_u16()))
            .or_default() += 1;
    }

    /// `Some(401 response)` when a token is required and the request lacks it.
    fn unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        let want = self.token_digest.as_ref()?;
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| crate::digest::sha256(t.trim().as_bytes()));
        if given.as_ref() == Some(want) {
            return None;
        }
        let mut r = oai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or wrong bearer token (Authorization: Bearer <KOLM_SERVE_TOKEN>)",
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        Some(r)
    }
}

async fn not_found(State(st): State<Arc<AppState>>) -> Response {
    st.count("other", StatusCode::NOT_FOUND);
    oai_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such endpoint: kolm serves /v1/models, /v1/chat/completions, /healthz and /metrics",
    )
}

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    st.count("/healthz", StatusCode::OK);
    axum::Json(json!({"status": "ok", "models": st.models.len()})).into_response()
}

async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = st.unauthorized(&headers) {
        st.count("/v1/models", StatusCode::UNAUTHORIZED);
        return r;
    }
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|(name, k)| json!({"id": name, "object": "model", "created": 0, "owned_by": "kolm", "k_score": k}))
        .collect();
    st.count("/v1/models", StatusCode::OK);
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(r) = st.unauthorized(&headers) {
        st.count("/metrics", StatusCode::UNAUTHORIZED);
        return r;
    }
    let mut out = String::from(
        "# HELP kolm_http_requests_total HTTP requests by endpoint and status.\n# TYPE kolm_http_requests_total counter\n",
    );
    for ((endpoint, status), n) in st
        .metrics
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        out.push_str(&format!(
            "kolm_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}\n"
        ));
    }
    let m = &st.metrics;
    out.push_str(&format!(
        "# HELP kolm_runs_total Artifact runs completed.\n# TYPE kolm_runs_total counter\nkolm_runs_total {}\n# HELP kolm_recipe_answers_total Runs an exact recipe answered.\n# TYPE kolm_recipe_answers_total counter\nkolm_recipe_answers_total {}\n# HELP kolm_run_seconds_total Time spent in runs.\n# TYPE kolm_run_seconds_total counter\nkolm_run_seconds_total {}\n",
        m.runs.load(Ordering::Relaxed),
        m.recipe_answers.load(Ordering::Relaxed),
        m.run_micros.load(Ordering::Relaxed) as f64 / 1e6,
    ));
    st.count("/metrics", StatusCode::OK);
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let ep = "/v1/chat/completions";
    if let Some(r) = st.unauthorized(&headers) {
        st.count(ep, StatusCode::UNAUTHORIZED);
        return r;
    }
    let started = Instant::now();
    let req = match parse_chat(&body) {
        Ok(r) => r,
        Err(msg) => {
            st.count(ep, StatusCode::BAD_REQUEST);
            return oai_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                msg,
            );
        }
    };
    if !st.models.iter().any(|(n, _)| *n == req.model) {
        st.count(ep, StatusCode::NOT_FOUND);
        return oai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("no model `{}`: GET /v1/models lists them", req.model),
        );
    }
    let (reply, answer) = tokio::sync::oneshot::channel();
    let model = req.model.clone();
    let job = Job {
        model: req.model,
        input: req.input,
        schema: req.schema,
        max_tokens: req.max_tokens,
        reply,
    };
    // A bounded queue: past it, come back later.
    if st.jobs.try_send(job).is_err() {
        st.count(ep, StatusCode::SERVICE_UNAVAILABLE);
        let mut r = oai_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "overloaded",
            format!(
                "{} requests are already waiting; retry shortly",
                st.opts.queue
            ),
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return r;
    }
    let left = st.opts.timeout.saturating_sub(started.elapsed());
    let out = match tokio::time::timeout(left, answer).await {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => {
            st.count(ep, StatusCode::INTERNAL_SERVER_ERROR);
            return oai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal",
                "the runner stopped",
            );
        }
        Err(_) => {
            st.count(ep, StatusCode::GATEWAY_TIMEOUT);
            return oai_error(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "timeout",
                format!(
                    "no answer within the time limit of {} s",
                    st.opts.timeout.as_secs()
                ),
            );
        }
    };
    st.metrics
        .run_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    match out {
        Ok(out) => {
            st.metrics.runs.fetch_add(1, Ordering::Relaxed);
            if out.receipt.facts.path.starts_with("recipe:") {
                st.metrics.recipe_answers.fetch_add(1, Ordering::Relaxed);
            }
            st.count(ep, StatusCode::OK);
            let g = &out.generation;
            let finish = match g.stop {
                crate::runtime::Stop::MaxTokens => "length",
                _ => "stop",
            };
            axum::Json(json!({
                "id": format!("chatcmpl-{}", &out.receipt.facts.output_sha256[..24.min(out.receipt.facts.output_sha256.len())]),
                "object": "chat.completion",
                "created": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": serde_json::to_string(&out.output).expect("serialises")},
                    "finish_reason": finish,
                    "logprobs": null,
                }],
                "usage": {
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.output_tokens,
                    "total_tokens": g.prompt_tokens + g.output_tokens,
                },
                "_kolm": super::kolm_block(&out),
            }))
            .into_response()
        }
        Err(e) => {
            let status = match e {
                Error::Invalid { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            st.count(ep, status);
            oai_error(
                status,
                if status == StatusCode::BAD_REQUEST {
                    "invalid_request_error"
                } else {
                    "server_error"
                },
                "run_failed",
                crate::untrusted::shown(&e.to_string()),
            )
        }
    }
}

/// What a chat request asks.
struct ChatRequest {
    model: String,
    input: String,
    schema: Option<Value>,
    max_tokens: Option<u32>,
}

/// Reads a chat request: the input is the last user message's text. `response_format` of type
/// `json_schema` is taken with its schema where OpenAI puts it (`json_schema.schema`) and one
/// level up (`schema`), as some clients send it.
fn parse_chat(body: &[u8]) -> std::result::Result<ChatRequest, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .ok_or("`model` (a string) is required")?
        .to_string();
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err("`stream: true` is not supported: kolm answers with one JSON object".into());
    }
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` (an array) is required")?;
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
    Ok(ChatRequest {
        model,
        input,
        schema,
        max_tokens,
    })
}
