//! `kolm serve --http`: an OpenAI-compatible HTTP server (kolmfile-spec/serve.md §3).
//!
//! `GET /healthz`, `GET /metrics` (Prometheus text), `GET /v1/models`,
//! `POST /v1/chat/completions` and `POST /v1/wrap/verified` (k samples through the verifier,
//! an `rs-1-verified` receipt; requests read by [`super::request`]). Runs are CPU-bound, so one thread owns the artifacts (their
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

use super::request::{self, Request};
use super::Catalog;
use crate::runtime::verified::VerifiedOutput;
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

/// One request for the runner thread.
struct Job {
    req: Request,
    reply: tokio::sync::oneshot::Sender<Result<Done>>,
}

/// What the runner thread answers.
enum Done {
    Run(RunOutput),
    Verified(VerifiedOutput),
}

impl Done {
    fn receipt(&self) -> &crate::receipts::Receipt {
        match self {
            Done::Run(o) => &o.receipt,
            Done::Verified(o) => &o.receipt,
        }
    }
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
        for Job { req, reply } in rx {
            let ask = Ask {
                schema: req.schema.as_ref(),
                max_tokens: req.max_tokens,
            };
            let out = match &req.verify {
                None => catalog
                    .call_with(&req.model, &req.input, &ask)
                    .map(Done::Run),
                Some(v) => catalog
                    .call_verified(&req.model, &req.input, &ask, v)
                    .map(Done::Verified),
            };
            let _ = reply.send(out);
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
            .route("/v1/wrap/verified", post(wrap_verified))
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
    crate::interrupt::terminated().await;
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
        "no such endpoint: kolm serves /v1/models, /v1/chat/completions, /v1/wrap/verified, /healthz and /metrics",
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
    let (model, out) = match st.run(ep, &headers, request::chat(&body)).await {
        Ok((model, Done::Run(out))) => (model, out),
        Ok((_, Done::Verified(_))) => unreachable!("a chat request is a plain run"),
        Err(r) => return r,
    };
    let g = &out.generation;
    let finish = match g.stop {
        crate::runtime::Stop::MaxTokens => "length",
        _ => "stop",
    };
    axum::Json(json!({
        "id": format!("chatcmpl-{}", &out.receipt.facts.output_sha256[..24.min(out.receipt.facts.output_sha256.len())]),
        "object": "chat.completion",
        "created": unix_now(),
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

/// `POST /v1/wrap/verified`: 200 with the verifier's verdict whether it passed or not (the
/// receipt records both); `output` is null when it did not.
async fn wrap_verified(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ep = "/v1/wrap/verified";
    let (model, out) = match st.run(ep, &headers, request::wrap(&body)).await {
        Ok((model, Done::Verified(out))) => (model, out),
        Ok((_, Done::Run(_))) => unreachable!("a wrap request is verified"),
        Err(r) => return r,
    };
    let f = out.facts();
    let recipe = out.receipt.facts.path.strip_prefix("recipe:");
    axum::Json(json!({
        "object": "kolm.verified",
        "created": unix_now(),
        "model": model,
        "output": out.output,
        "verifier": {
            "k": f.k,
            "pass": f.pass,
            "winner": f.winner,
            "agreement": f.agreement,
            "reason": f.reason,
        },
        "samples": out.samples,
        "recipe_id": recipe,
        "receipt": out.receipt,
    }))
    .into_response()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    /// Checks, queues and awaits one request: every refusal (401, 400, 404, 503, 504, a failed
    /// run) is the response to send, counted under `ep`; an answer comes back with the model
    /// it was asked of.
    async fn run(
        &self,
        ep: &str,
        headers: &HeaderMap,
        parsed: std::result::Result<Request, String>,
    ) -> std::result::Result<(String, Done), Response> {
        let refuse = |status: StatusCode, kind: &str, code: &str, msg: String| {
            self.count(ep, status);
            oai_error(status, kind, code, msg)
        };
        if let Some(r) = self.unauthorized(headers) {
            self.count(ep, StatusCode::UNAUTHORIZED);
            return Err(r);
        }
        let started = Instant::now();
        let req = parsed.map_err(|msg| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                msg,
            )
        })?;
        if !self.models.iter().any(|(n, _)| *n == req.model) {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("no model `{}`: GET /v1/models lists them", req.model),
            ));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let model = req.model.clone();
        // A bounded queue: past it, come back later.
        if self.jobs.try_send(Job { req, reply }).is_err() {
            let mut r = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "overloaded",
                format!(
                    "{} requests are already waiting; retry shortly",
                    self.opts.queue
                ),
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Err(r);
        }
        let left = self.opts.timeout.saturating_sub(started.elapsed());
        let out = match tokio::time::timeout(left, answer).await {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => {
                return Err(refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "internal",
                    "the runner stopped".into(),
                ))
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    "timeout",
                    format!(
                        "no answer within the time limit of {} s",
                        self.opts.timeout.as_secs()
                    ),
                ))
            }
        };
        self.metrics
            .run_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match out {
            Ok(done) => {
                self.metrics.runs.fetch_add(1, Ordering::Relaxed);
                if done.receipt().facts.path.starts_with("recipe:") {
                    self.metrics.recipe_answers.fetch_add(1, Ordering::Relaxed);
                }
                self.count(ep, StatusCode::OK);
                Ok((model, done))
            }
            Err(e) => {
                let bad = matches!(e, Error::Invalid { .. });
                let (status, kind) = if bad {
                    (StatusCode::BAD_REQUEST, "invalid_request_error")
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
                };
                Err(refuse(
                    status,
                    kind,
                    "run_failed",
                    crate::untrusted::shown(&e.to_string()),
                ))
            }
        }
    }
}
