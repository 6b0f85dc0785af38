//! MCP over Streamable HTTP: `/mcp` on `kolm serve --http` (kolmfile-spec/serve.md §2.4).
//!
//! The same [`Protocol`] as stdio, so the tools, eras, errors and `_kolm` block are the same.
//! The transport is the 2025-03-26 one and its later revisions:
//! - `POST /mcp` takes one JSON-RPC message (or a 2025-03-26 batch). Requests are answered as
//!   `application/json`, or as a one-event `text/event-stream` to a client that accepts only
//!   that; notifications and responses alone get `202 Accepted` with no body.
//! - An `initialize` opens a session: its answer carries `Mcp-Session-Id`, and every later
//!   handshake-era request must send it (400 without, 404 for one the server does not know,
//!   after which a client initializes again). `DELETE /mcp` ends one. A stateless (2026-07-28)
//!   request carries its version in `_meta` and needs no session.
//! - `MCP-Protocol-Version`, when sent, must be a version kolm speaks (400 otherwise).
//! - `GET /mcp` is 405: kolm sends nothing unasked, so it offers no server-to-client stream.
//!
//! Host, Origin and the bearer token are checked for every route by the server
//! ([`super::http`]). Tool calls run on the server's runner thread, in turn with the
//! OpenAI-compatible requests; everything else is answered at once.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::mcp::{Protocol, Tools, HANDSHAKE, STATELESS};
use super::request::Request;
use super::state::{AppState, Done, Job};
use super::ToolInfo;
use crate::runtime::RunOutput;
use crate::{Error, Result};

/// A JSON-RPC error as an HTTP answer (no request id: the transport refused the message).
fn refuse(st: &AppState, status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    st.count("/mcp", status);
    (
        status,
        axum::Json(super::mcp::transport_error(code, message)),
    )
        .into_response()
}

/// The tools as the HTTP server has them: the catalog's descriptions, and calls sent to the
/// runner thread (in turn with every other run), waited for until `deadline`.
struct Remote {
    tools: Vec<ToolInfo>,
    state: Arc<AppState>,
    deadline: Instant,
}

impl Tools for Remote {
    fn tools(&self) -> Vec<ToolInfo> {
        self.tools.clone()
    }

    fn call(&mut self, name: &str, input: &str) -> Result<RunOutput> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job = Job::new(
            Request::plain(name, input),
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        if self.state.jobs.try_send(job).is_err() {
            return Err(Error::failed(
                "the server is busy",
                format!(
                    "{} runs are already waiting; call again shortly",
                    self.state.opts.queue
                ),
            ));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(Done::Run(out))) => Ok(out),
            Ok(Ok(_)) => Err(Error::Internal("a tool call is a plain run".into())),
            Ok(Err(e)) => Err(e),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::failed(
                "no answer within the server's time limit",
                format!(
                    "{} s (kolm serve --timeout-secs)",
                    self.state.opts.timeout.as_secs()
                ),
            )),
            Err(_) => Err(Error::Internal("the runner stopped".into())),
        }
    }
}

/// What the session headers and the body say about which protocol state answers.
enum Who {
    /// An `initialize`: a new session once it succeeds.
    Opening,
    /// An open session.
    Session(String, Protocol),
    /// A stateless request (or `server/discover`): no session.
    Stateless,
}

/// Whether the message (or any in a batch) is one method, or carries a stateless `_meta`.
fn any_message(msg: &Value, f: &dyn Fn(&Value) -> bool) -> bool {
    match msg {
        Value::Array(batch) => batch.iter().any(f),
        one => f(one),
    }
}

fn is_initialize(m: &Value) -> bool {
    m.get("method").and_then(Value::as_str) == Some("initialize")
}

fn is_stateless(m: &Value) -> bool {
    m.get("method").and_then(Value::as_str) == Some("server/discover")
        || m.pointer("/params/_meta")
            .and_then(Value::as_object)
            .is_some_and(|meta| meta.contains_key("io.modelcontextprotocol/protocolVersion"))
}

/// `POST /mcp`.
pub(super) async fn post(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if let Some(v) = headers.get("mcp-protocol-version") {
        let v = v.to_str().unwrap_or("");
        if !HANDSHAKE.contains(&v) && !STATELESS.contains(&v) {
            return refuse(
                &st,
                StatusCode::BAD_REQUEST,
                -32600,
                format!(
                    "unsupported MCP-Protocol-Version {v:?}: kolm speaks {}",
                    STATELESS
                        .iter()
                        .chain(HANDSHAKE.iter().rev())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    // A body that is not JSON is answered by the protocol itself (-32700).
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let session = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    let who = if any_message(&msg, &is_initialize) {
        Who::Opening
    } else if let Some(id) = session {
        match st.sessions.get(id) {
            Some(p) => Who::Session(id.to_string(), p),
            None => {
                return refuse(
                    &st,
                    StatusCode::NOT_FOUND,
                    -32001,
                    "no such session (it ended, or the server restarted): send initialize again",
                )
            }
        }
    } else if any_message(&msg, &is_stateless) || msg.is_null() {
        Who::Stateless
    } else {
        return refuse(
            &st,
            StatusCode::BAD_REQUEST,
            -32600,
            "no Mcp-Session-Id header: send initialize first and then the session id it returns, or a stateless request (2026-07-28) with its version in params._meta",
        );
    };
    let mut protocol = match &who {
        Who::Session(_, p) => *p,
        _ => Protocol::default(),
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut remote = Remote {
        tools: st.tools.clone(),
        state: st.clone(),
        deadline: started + st.opts.timeout,
    };
    let answered = tokio::task::spawn_blocking(move || {
        let reply = protocol.handle_text(&mut remote, &text);
        (protocol, reply)
    })
    .await;
    let Ok((protocol, reply)) = answered else {
        return refuse(
            &st,
            StatusCode::INTERNAL_SERVER_ERROR,
            -32603,
            "the request failed",
        );
    };
    let mut extra = HeaderMap::new();
    match who {
        Who::Opening if protocol.negotiated().is_some() => {
            // 128 random bits, hex: visible ASCII, as the transport requires.
            let id = match super::random_hex(16) {
                Ok(id) => id,
                Err(e) => {
                    return refuse(
                        &st,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        -32603,
                        e.to_string(),
                    )
                }
            };
            extra.insert("mcp-session-id", HeaderValue::from_str(&id).expect("hex"));
            st.sessions.put(id, protocol);
        }
        Who::Session(id, _) => st.sessions.put(id, protocol),
        _ => {}
    }
    let Some(reply) = reply else {
        st.count("/mcp", StatusCode::ACCEPTED);
        return (StatusCode::ACCEPTED, extra).into_response();
    };
    st.count("/mcp", StatusCode::OK);
    let text = serde_json::to_string(&reply).expect("serialises");
    let mut r = if wants_only_sse(&headers) {
        (
            [
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
            ],
            format!("event: message\ndata: {text}\n\n"),
        )
            .into_response()
    } else {
        ([("content-type", "application/json")], text).into_response()
    };
    r.headers_mut().extend(extra);
    r
}

/// Whether the client accepts an event stream and not JSON (then it gets the answer as one
/// event; a client that accepts both, as the transport asks, gets JSON).
fn wants_only_sse(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.contains("text/event-stream")
        && !accept.contains("application/json")
        && !accept.contains("*/*")
}

/// `GET /mcp`: kolm sends nothing unasked, so there is no stream to open.
pub(super) async fn get(State(st): State<Arc<AppState>>) -> Response {
    let mut r = refuse(
        &st,
        StatusCode::METHOD_NOT_ALLOWED,
        -32600,
        "kolm offers no server-to-client stream: POST requests to /mcp",
    );
    r.headers_mut()
        .insert("allow", HeaderValue::from_static("POST, DELETE"));
    r
}

/// `DELETE /mcp`: ends the session the header names.
pub(super) async fn delete(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(id) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return refuse(
            &st,
            StatusCode::BAD_REQUEST,
            -32600,
            "DELETE /mcp needs the Mcp-Session-Id header of the session to end",
        );
    };
    if !st.sessions.remove(id) {
        return refuse(&st, StatusCode::NOT_FOUND, -32001, "no such session");
    }
    st.count("/mcp", StatusCode::OK);
    StatusCode::OK.into_response()
}
