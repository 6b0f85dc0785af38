//! `kolm serve --http`: an OpenAI-compatible HTTP server, and MCP over Streamable HTTP
//! (kolmfile-spec/serve.md §3, §2.4).
//!
//! `GET /healthz`, `GET /metrics` (Prometheus text), `GET /v1/models`,
//! `POST /v1/chat/completions` (`super::openai`), `POST /v1/wrap/verified` (k samples through
//! the verifier, an `rs-1-verified` receipt; requests read by [`super::request`]) and `/mcp`
//! (`super::mcp_http`). Runs are CPU-bound, so one thread owns the artifacts (their models stay
//! loaded) and runs one request at a time; requests wait in a bounded queue, and past it get
//! 503 with `Retry-After`. Every request has a size limit (413) and a time limit (504), comes
//! from a loopback `Host` and `Origin` or an allowed one (403: DNS rebinding); with
//! `KOLM_SERVE_TOKEN` set every request but `/healthz` needs `Authorization: Bearer <token>`
//! (401), and a bind beyond loopback refuses to start without one. SIGTERM and Ctrl-C stop
//! accepting, finish what is running, and exit.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::state::{oai_error, start_runner, unix_now, AppState, Done, Metrics};
pub use super::state::{Model, Options};
use super::{request, Catalog};
use crate::{Error, Result};

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
        let (jobs, models, tools) = start_runner(load, opts.queue)?;
        ready(bound, &models);
        let state = Arc::new(AppState {
            models,
            tools,
            jobs,
            sessions: Default::default(),
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
            .route("/v1/chat/completions", post(super::openai::chat))
            .route("/v1/wrap/verified", post(wrap_verified))
            .route(
                "/mcp",
                post(super::mcp_http::post)
                    .get(super::mcp_http::get)
                    .delete(super::mcp_http::delete),
            )
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
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

async fn list_models(State(st): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = st
        .models
        .iter()
        .map(|(name, k)| json!({"id": name, "object": "model", "created": 0, "owned_by": "kolm", "k_score": k}))
        .collect();
    st.count("/v1/models", StatusCode::OK);
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
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

/// `POST /v1/wrap/verified`: 200 with the verifier's verdict whether it passed or not (the
/// receipt records both); `output` is null when it did not.
async fn wrap_verified(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let ep = "/v1/wrap/verified";
    let (model, out) = match st.run(ep, request::wrap(&body)).await {
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

/// Every request: from where it may come (403), then with the token when one is set (401;
/// `/healthz` needs none).
async fn guard(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let mcp = path == "/mcp";
    let refuse = |status: StatusCode, code: &str, message: String| {
        st.count(&path, status);
        if mcp {
            let body = super::mcp::transport_error(-32000, message);
            (status, axum::Json(body)).into_response()
        } else {
            oai_error(status, "invalid_request_error", code, message)
        }
    };
    if let Some(why) = st.foreign(req.headers()) {
        return refuse(StatusCode::FORBIDDEN, "forbidden", why);
    }
    if path != "/healthz" && st.unauthorized(req.headers()) {
        let mut r = refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "missing or wrong bearer token (Authorization: Bearer <KOLM_SERVE_TOKEN>)".into(),
        );
        r.headers_mut()
            .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}
