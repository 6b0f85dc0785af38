//! What the HTTP server's routes share (kolmfile-spec/serve.md §3): the state, the runner
//! thread that owns the artifacts and the jobs it runs, the checks every request passes (origin,
//! token), and OpenAI-shaped errors. The routes are `super::http` (the server, the OpenAI
//! endpoints but chat), `super::openai` (chat completions, streamed or not) and
//! `super::mcp_http` (MCP at `/mcp`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::mcp::Protocol;
use super::request::{Refusal, Request};
use super::{Catalog, ToolInfo};
use crate::runtime::verified::VerifiedOutput;
use crate::runtime::{Ask, RunOutput};
use crate::{Error, Result};

/// How the server is run.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Browser origins allowed beside loopback ones (`--allow-origin`), e.g.
    /// `https://app.example`; any other `Origin` gets 403 (DNS rebinding, serve.md §3.2).
    pub allow_origins: Vec<String>,
    /// Bearer token every request but `/healthz` must carry (`KOLM_SERVE_TOKEN`).
    pub token: Option<String>,
    /// Requests waiting for the runner before new ones get 503.
    pub queue: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Longest a request may take, waiting included.
    pub timeout: Duration,
}

pub(super) struct AppState {
    pub(super) models: Vec<Model>,
    /// What MCP clients are told of the tools (the same artifacts as `models`).
    pub(super) tools: Vec<ToolInfo>,
    /// The runner thread's queue.
    pub(super) jobs: std::sync::mpsc::SyncSender<Job>,
    pub(super) token_digest: Option<String>,
    pub(super) opts: Options,
    pub(super) metrics: Metrics,
    /// MCP sessions (`/mcp`).
    pub(super) sessions: Sessions,
}

/// A served model: its name and K.
pub type Model = (String, f64);

/// Where a streamed answer's pieces go, on the runner thread.
type Delta = Box<dyn FnMut(&str) + Send>;
/// Where a job's answer goes, on the runner thread.
pub(super) type Reply = Box<dyn FnOnce(Result<Done>) + Send>;

/// One request for the runner thread, and where its answer goes: its text as it is made
/// (streamed requests), then the whole answer.
pub(super) struct Job {
    req: Request,
    delta: Option<Delta>,
    reply: Reply,
    /// Whether nobody waits for the answer any more (the HTTP client went away while the job
    /// queued): such a job is not run.
    gone: Option<Box<dyn Fn() -> bool + Send>>,
}

impl Job {
    pub(super) fn new(req: Request, reply: Reply) -> Job {
        Job {
            req,
            delta: None,
            reply,
            gone: None,
        }
    }
}

/// What the runner thread answers.
pub(super) enum Done {
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

/// What a queued request sends back: pieces of a streamed answer, then the answer.
pub(super) enum Event {
    Delta(String),
    Done(Box<Result<Done>>),
}

/// The runner thread: loads the catalog (its artifacts' engines are not `Send`, so they live
/// and die here) and runs jobs in order until the server drops the queue.
#[allow(clippy::type_complexity)]
pub(super) fn start_runner(
    load: Box<dyn FnOnce() -> Result<Catalog> + Send>,
    queue: usize,
) -> Result<(std::sync::mpsc::SyncSender<Job>, Vec<Model>, Vec<ToolInfo>)> {
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
        let infos = super::mcp::Tools::tools(&catalog);
        let _ = ready_tx.send(Ok((models, infos)));
        for Job {
            req,
            delta,
            reply,
            gone,
        } in rx
        {
            if gone.is_some_and(|g| g()) {
                continue;
            }
            let ask = Ask {
                schema: req.schema.as_ref(),
                max_tokens: req.max_tokens,
                // OpenAI's clients take an answer cut at max_tokens, as finish_reason "length".
                partial: req.max_tokens.is_some(),
            };
            let out = match (&req.verify, delta) {
                (Some(v), _) => catalog
                    .call_verified(&req.model, &req.input, &ask, v)
                    .map(Done::Verified),
                (None, Some(mut sink)) => catalog
                    .call_streaming(&req.model, &req.input, &ask, &mut *sink)
                    .map(Done::Run),
                (None, None) => catalog
                    .call_with(&req.model, &req.input, &ask)
                    .map(Done::Run),
            };
            reply(out);
        }
    });
    let (models, infos) = ready_rx
        .recv()
        .map_err(|_| Error::Internal("the runner thread stopped".into()))??;
    Ok((tx, models, infos))
}

#[derive(Default)]
pub(super) struct Metrics {
    pub(super) requests: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
    pub(super) run_micros: AtomicU64,
    pub(super) runs: AtomicU64,
    pub(super) recipe_answers: AtomicU64,
}

/// An OpenAI-shaped error.
pub(super) fn oai_error(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: impl Into<String>,
) -> Response {
    oai_error_param(status, kind, code, message, None)
}

/// An OpenAI-shaped error naming the request field at fault.
pub(super) fn oai_error_param(
    status: StatusCode,
    kind: &str,
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Response {
    (
        status,
        axum::Json(oai_error_body(kind, code, &message.into(), param)),
    )
        .into_response()
}

/// OpenAI's error object (also the last event of a stream that fails after it began).
pub(super) fn oai_error_body(kind: &str, code: &str, message: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

impl AppState {
    pub(super) fn count(&self, endpoint: &str, status: StatusCode) {
        *self
            .metrics
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint.to_string(), status.as_u16()))
            .or_default() += 1;
    }

    /// Whether a token is required and the request lacks it.
    pub(super) fn unauthorized(&self, headers: &HeaderMap) -> bool {
        let Some(want) = self.token_digest.as_ref() else {
            return false;
        };
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| crate::digest::sha256(t.trim().as_bytes()));
        given.as_ref() != Some(want)
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    /// Checks, queues and awaits one request: every refusal (400, 404, 503, 504, a failed
    /// run) is the response to send, counted under `ep`; an answer comes back with the model
    /// it was asked of.
    pub(super) async fn run(
        &self,
        ep: &str,
        parsed: std::result::Result<Request, Refusal>,
    ) -> std::result::Result<(String, Done), Response> {
        let started = Instant::now();
        let (model, mut events) = self.submit(ep, parsed, false)?;
        loop {
            match self.next_event(ep, started, &mut events).await? {
                Event::Delta(_) => continue,
                Event::Done(out) => return self.finished(ep, started, *out).map(|d| (model, d)),
            }
        }
    }

    // The error is the HTTP response to send, built once per refused request: boxing it would
    // only move it.
    #[allow(clippy::result_large_err)]
    /// Checks and queues one request; its events come on the receiver (pieces of the answer
    /// as it is made when `stream`, then the answer). Refusals as in [`AppState::run`].
    pub(super) fn submit(
        &self,
        ep: &str,
        parsed: std::result::Result<Request, Refusal>,
        stream: bool,
    ) -> std::result::Result<(String, tokio::sync::mpsc::UnboundedReceiver<Event>), Response> {
        let req = parsed.map_err(|r| {
            self.count(ep, StatusCode::BAD_REQUEST);
            oai_error_param(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                r.message,
                r.param.as_deref(),
            )
        })?;
        if !self.models.iter().any(|(n, _)| *n == req.model) {
            self.count(ep, StatusCode::NOT_FOUND);
            return Err(oai_error_param(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!("no model `{}`: GET /v1/models lists them", req.model),
                Some("model"),
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let model = req.model.clone();
        let delta = stream.then(|| {
            let tx = tx.clone();
            Box::new(move |piece: &str| {
                let _ = tx.send(Event::Delta(piece.to_string()));
            }) as Delta
        });
        let watch = tx.clone();
        let job = Job {
            req,
            delta,
            reply: Box::new(move |out| {
                let _ = tx.send(Event::Done(Box::new(out)));
            }),
            gone: Some(Box::new(move || watch.is_closed())),
        };
        // A bounded queue: past it, come back later.
        if self.jobs.try_send(job).is_err() {
            self.count(ep, StatusCode::SERVICE_UNAVAILABLE);
            let mut r = oai_error(
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
        Ok((model, rx))
    }

    /// The next event of a queued request, within the time limit counted from `started`.
    pub(super) async fn next_event(
        &self,
        ep: &str,
        started: Instant,
        events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) -> std::result::Result<Event, Response> {
        let left = self.opts.timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => {
                self.count(ep, StatusCode::INTERNAL_SERVER_ERROR);
                Err(oai_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "internal",
                    "the runner stopped",
                ))
            }
            Err(_) => {
                self.count(ep, StatusCode::GATEWAY_TIMEOUT);
                Err(oai_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "server_error",
                    "timeout",
                    format!(
                        "no answer within the time limit of {} s",
                        self.opts.timeout.as_secs()
                    ),
                ))
            }
        }
    }

    #[allow(clippy::result_large_err)] // as for `submit`
    /// A finished run: counted, or its failure as the response to send.
    pub(super) fn finished(
        &self,
        ep: &str,
        started: Instant,
        out: Result<Done>,
    ) -> std::result::Result<Done, Response> {
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
                Ok(done)
            }
            Err(e) => {
                let bad = matches!(e, Error::Invalid { .. });
                let (status, kind) = if bad {
                    (StatusCode::BAD_REQUEST, "invalid_request_error")
                } else {
                    (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
                };
                self.count(ep, status);
                Err(oai_error(
                    status,
                    kind,
                    "run_failed",
                    crate::untrusted::shown(&e.to_string()),
                ))
            }
        }
    }

    /// Why a request comes from where it must not (DNS rebinding, serve.md §3.2): a `Host` that
    /// is not a loopback name on a loopback-bound server, or a browser `Origin` that is neither
    /// loopback nor allowed with `--allow-origin`.
    pub(super) fn foreign(&self, headers: &HeaderMap) -> Option<String> {
        if self.opts.addr.ip().is_loopback() {
            if let Some(host) = headers.get("host") {
                let host = host.to_str().unwrap_or("");
                if !loopback_name(authority_host(host)) {
                    return Some(format!(
                        "Host {host:?} is not this loopback server's name (localhost, 127.0.0.1 or [::1])"
                    ));
                }
            }
        }
        let origin = headers.get("origin")?.to_str().unwrap_or("");
        if self.opts.allow_origins.iter().any(|o| o == origin) {
            return None;
        }
        let host = origin
            .split_once("://")
            .map(|(_, rest)| authority_host(rest.trim_end_matches('/')))
            .unwrap_or("");
        if loopback_name(host) {
            return None;
        }
        Some(format!(
            "Origin {origin:?} is not allowed: kolm serve takes browser requests from loopback origins and those named with --allow-origin"
        ))
    }
}

/// The host of an `authority` (`host`, `host:port`, `[v6]:port`).
fn authority_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Most sessions kept at once; past it the least recently used is dropped (its client gets
/// 404 and initializes again, as the transport allows).
const MAX_SESSIONS: usize = 4096;

/// The open sessions: id → protocol state and when it was last used.
#[derive(Default)]
pub(super) struct Sessions {
    open: Mutex<HashMap<String, (Protocol, u64)>>,
    clock: AtomicU64,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Protocol, u64)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, id: &str) -> Option<Protocol> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        let entry = open.get_mut(id)?;
        entry.1 = now;
        Some(entry.0)
    }

    pub(super) fn put(&self, id: String, p: Protocol) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut open = self.lock();
        if open.len() >= MAX_SESSIONS && !open.contains_key(&id) {
            if let Some(oldest) = open
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                open.remove(&oldest);
            }
        }
        open.insert(id, (p, now));
    }

    pub(super) fn remove(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }
}
