//! The Model Context Protocol (kolmfile-spec/serve.md §2): its messages ([`Protocol`]), and the
//! stdio transport of `kolm serve --mcp` ([`Server`]: newline-delimited JSON-RPC 2.0 on stdin
//! and stdout; logs only on stderr). The Streamable HTTP transport of `kolm serve --http` is
//! [`super::mcp_http`]; both answer through the same [`Protocol`]. Both eras of the protocol
//! are served, chosen per request:
//! - **handshake** (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): `initialize` answers with
//!   the client's version when kolm speaks it, else the newest; later requests follow it
//!   (`outputSchema` and `structuredContent` from 2025-06-18 on);
//! - **stateless** (2026-07-28): a request whose `params._meta` names
//!   `io.modelcontextprotocol/protocolVersion` carries its version and capabilities itself;
//!   `server/discover` says what kolm speaks; every result says `resultType`.
//!
//! Unknown methods are answered at once with -32601 (a client probing `server/discover` on a
//! handshake-only server otherwise waits out a timeout). Bad arguments to a known tool are a
//! tool result with `isError: true` from 2025-11-25 on (SEP-1303: the model can read and fix
//! them), and a -32602 protocol error before; an unknown tool is -32602 in every era.

use std::io::{BufRead, Write};

use serde_json::{json, Map, Value};

use super::{Catalog, ToolInfo};
use crate::runtime::RunOutput;

/// The handshake-era versions, oldest first.
pub const HANDSHAKE: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The stateless versions.
pub const STATELESS: [&str; 1] = ["2026-07-28"];
/// Longest request line read, bytes; a longer one is answered -32600 and skipped.
pub const MAX_LINE: usize = 16 << 20;

const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPS_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// A JSON-RPC error.
pub(super) struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

fn err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
        data: None,
    }
}

/// The era a request is served in.
#[derive(Clone, Copy, PartialEq)]
enum Era<'a> {
    Handshake(&'a str),
    Stateless,
}

impl Era<'_> {
    /// Whether tools declare `outputSchema` and results carry `structuredContent`.
    fn structured(self) -> bool {
        match self {
            Era::Handshake(v) => v >= "2025-06-18",
            Era::Stateless => true,
        }
    }

    /// Whether bad arguments to a known tool are a tool result the model can read (SEP-1303)
    /// rather than a protocol error.
    fn argument_errors_as_results(self) -> bool {
        match self {
            Era::Handshake(v) => v >= "2025-11-25",
            Era::Stateless => true,
        }
    }
}

/// What MCP serves: the tools, and a way to run one. The stdio server runs them itself (a
/// [`Catalog`]); the HTTP server hands each call to its runner thread.
pub trait Tools {
    fn tools(&self) -> Vec<ToolInfo>;
    fn call(&mut self, name: &str, input: &str) -> crate::Result<RunOutput>;
}

impl Tools for Catalog {
    fn tools(&self) -> Vec<ToolInfo> {
        self.tools.values().map(super::Served::info).collect()
    }

    fn call(&mut self, name: &str, input: &str) -> crate::Result<RunOutput> {
        Catalog::call(self, name, input)
    }
}

/// One client's protocol state: the version an `initialize` chose, if any. A stdio connection
/// has one; over HTTP each `Mcp-Session-Id` has one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protocol {
    negotiated: Option<&'static str>,
}

/// The stdio server: the catalog and the one client's protocol state.
pub struct Server {
    catalog: Catalog,
    protocol: Protocol,
}

impl Server {
    pub fn new(catalog: Catalog) -> Server {
        Server {
            catalog,
            protocol: Protocol::default(),
        }
    }

    /// Serves `input` until it closes, answering on `output`. A reader that goes away (a
    /// broken pipe) ends the server quietly.
    pub fn serve(&mut self, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
        let mut lines = Lines::new(input);
        while let Some(line) = lines.next_line()? {
            let reply = match line {
                Line::TooLong(n) => Some(error_reply(
                    Value::Null,
                    err(
                        -32600,
                        format!("the request is {n} bytes or more, over the limit of {MAX_LINE}"),
                    ),
                )),
                Line::Text(t) => self.protocol.handle_text(&mut self.catalog, &t),
            };
            if let Some(r) = reply {
                let mut bytes = serde_json::to_vec(&r).expect("serialises");
                bytes.push(b'\n');
                if let Err(e) = output.write_all(&bytes).and_then(|_| output.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl Protocol {
    /// The version `initialize` chose (`None`: no `initialize` yet).
    pub fn negotiated(&self) -> Option<&'static str> {
        self.negotiated
    }

    /// One message: a request, a notification, or a batch of them; `None` when nothing is
    /// answered (notifications only).
    pub fn handle_text(&mut self, tools: &mut dyn Tools, text: &str) -> Option<Value> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let msg: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Some(error_reply(
                    Value::Null,
                    err(-32700, format!("parse error: {e}")),
                ))
            }
        };
        match msg {
            Value::Array(batch) if !batch.is_empty() => {
                let replies: Vec<Value> = batch
                    .into_iter()
                    .filter_map(|m| self.handle_message(tools, m))
                    .collect();
                (!replies.is_empty()).then_some(Value::Array(replies))
            }
            other => self.handle_message(tools, other),
        }
    }

    fn handle_message(&mut self, tools: &mut dyn Tools, msg: Value) -> Option<Value> {
        let Value::Object(obj) = msg else {
            return Some(error_reply(
                Value::Null,
                err(-32600, "a request must be a JSON object"),
            ));
        };
        let id = obj.get("id").cloned();
        let valid_id = matches!(id, Some(Value::String(_)) | Some(Value::Number(_)));
        let method = obj.get("method").and_then(Value::as_str);
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || method.is_none() {
            // A malformed notification is not answered; anything else is.
            return id.map(|id| {
                error_reply(
                    if valid_id { id } else { Value::Null },
                    err(-32600, "not a JSON-RPC 2.0 request: it needs \"jsonrpc\": \"2.0\" and a \"method\""),
                )
            });
        }
        let method = method.expect("checked");
        let params = obj.get("params").cloned().unwrap_or(json!({}));
        let Some(id) = id else {
            // Notifications (`notifications/initialized`, `notifications/cancelled`…) get no
            // reply, whatever they are.
            return None;
        };
        if !valid_id {
            return Some(error_reply(
                Value::Null,
                err(-32600, "the request's id must be a string or a number"),
            ));
        }
        Some(match self.dispatch(tools, method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(e) => error_reply(id, e),
        })
    }

    fn dispatch(
        &mut self,
        tools: &mut dyn Tools,
        method: &str,
        params: &Value,
    ) -> Result<Value, RpcError> {
        let meta = params.get("_meta").and_then(Value::as_object);
        let stateless = meta.is_some_and(|m| m.contains_key(VERSION_KEY));
        if stateless || method == "server/discover" {
            check_stateless(meta)?;
            let mut result = match method {
                "server/discover" => json!({
                    "supportedVersions": STATELESS,
                    "capabilities": {"tools": {"listChanged": false}},
                    "instructions": INSTRUCTIONS,
                    "ttlMs": 0,
                    "cacheScope": "public",
                }),
                "tools/list" => {
                    let mut r = tools_list(&tools.tools(), Era::Stateless);
                    r["ttlMs"] = json!(0);
                    r["cacheScope"] = json!("public");
                    r
                }
                "tools/call" => tools_call(tools, Era::Stateless, params)?,
                "initialize" => {
                    return Err(RpcError {
                        data: Some(json!({"supported": supported(), "requested": meta.and_then(|m| m.get(VERSION_KEY)).cloned()})),
                        ..err(-32022, "initialize is not part of the stateless protocol: send requests with their version in _meta, or initialize without it")
                    })
                }
                other => return Err(err(-32601, format!("method not found: {other}"))),
            };
            result["resultType"] = json!("complete");
            result
                .as_object_mut()
                .expect("an object")
                .entry("_meta")
                .or_insert(json!({}))[SERVER_INFO_KEY] = server_info();
            return Ok(result);
        }
        let era = Era::Handshake(self.negotiated.unwrap_or(HANDSHAKE[HANDSHAKE.len() - 1]));
        match method {
            "initialize" => {
                let asked = params.get("protocolVersion").and_then(Value::as_str);
                let version = HANDSHAKE
                    .iter()
                    .find(|v| Some(**v) == asked)
                    .copied()
                    .unwrap_or(HANDSHAKE[HANDSHAKE.len() - 1]);
                self.negotiated = Some(version);
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": server_info(),
                    "instructions": INSTRUCTIONS,
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => Ok(tools_list(&tools.tools(), era)),
            "tools/call" => tools_call(tools, era, params),
            other => Err(err(-32601, format!("method not found: {other}"))),
        }
    }
}

fn tools_list(tools: &[ToolInfo], era: Era) -> Value {
    let tools: Vec<Value> = tools
        .iter()
        .map(|s| {
            let mut t = json!({
                "name": s.name,
                "description": s.description,
                "inputSchema": s.input_schema,
            });
            if era.structured() && object_schema(&s.output_schema, era) {
                t["title"] = json!(s.name);
                t["outputSchema"] = s.output_schema.clone();
            }
            t
        })
        .collect();
    json!({ "tools": tools })
}

/// A tool result the model reads as a failure: the message says what to change.
fn tool_error(text: String) -> Value {
    json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
    })
}

fn tools_call(tools: &mut dyn Tools, era: Era, params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| err(-32602, "tools/call needs a tool `name`"))?;
    let listed = tools.tools();
    let Some(served) = listed.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
        return Err(RpcError {
            data: Some(json!({ "tools": names })),
            ..err(-32602, format!("unknown tool: {name}"))
        });
    };
    let structured = era.structured() && object_schema(&served.output_schema, era);
    let input = match arguments(params) {
        Ok(input) => input,
        Err(why) if era.argument_errors_as_results() => return Ok(tool_error(why)),
        Err(why) => return Err(err(-32602, why)),
    };
    Ok(match tools.call(name, &input) {
        Ok(out) => {
            let text = serde_json::to_string(&out.output).expect("serialises");
            let mut r = json!({
                "content": [{"type": "text", "text": text}],
                "isError": false,
                "_kolm": super::kolm_block(&out),
            });
            if structured {
                r["structuredContent"] = out.output.clone();
            }
            r
        }
        Err(e) => {
            eprintln!(
                "kolm serve: {name}: {}",
                crate::untrusted::shown(&e.to_string())
            );
            tool_error(format!("kolm: {e}"))
        }
    })
}

/// The call's `input`, or what is wrong with its arguments, said so that a model can fix it.
fn arguments(params: &Value) -> Result<String, String> {
    let args = match params.get("arguments") {
        None | Some(Value::Null) => {
            return Err("the tool needs arguments {\"input\": \"…\"}: `input` is missing".into())
        }
        Some(Value::Object(a)) => a,
        Some(_) => return Err("`arguments` must be an object: {\"input\": \"…\"}".into()),
    };
    let extra: Vec<&String> = args.keys().filter(|k| *k != "input").collect();
    if !extra.is_empty() {
        return Err(format!(
            "unknown argument(s) {extra:?}: the tool takes only `input`, the task's input as text"
        ));
    }
    match args.get("input") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "argument `input` must be a string (the task's input as text), not {}",
            kind_of(other)
        )),
        None => Err("the tool needs arguments {\"input\": \"…\"}: `input` is missing".into()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const INSTRUCTIONS: &str = "Each tool is a compiled kolm artifact: it answers its task offline and returns the task's JSON. Call it with {\"input\": \"…\"}.";

fn server_info() -> Value {
    json!({"name": "kolm", "version": env!("CARGO_PKG_VERSION")})
}

fn supported() -> Vec<&'static str> {
    STATELESS
        .iter()
        .chain(HANDSHAKE.iter().rev())
        .copied()
        .collect()
}

/// Before 2026-07-28 an output schema (and structured content) must be an object.
fn object_schema(schema: &Value, era: Era) -> bool {
    era == Era::Stateless || schema.get("type").and_then(Value::as_str) == Some("object")
}

/// A stateless request's `_meta` must name a version kolm speaks and the client's capabilities.
fn check_stateless(meta: Option<&Map<String, Value>>) -> Result<(), RpcError> {
    let Some(meta) = meta else {
        return Err(err(
            -32602,
            format!("a stateless request needs params._meta with `{VERSION_KEY}` and `{CAPS_KEY}`"),
        ));
    };
    let version = meta.get(VERSION_KEY).and_then(Value::as_str);
    if !meta.get(CAPS_KEY).is_some_and(Value::is_object) || version.is_none() {
        return Err(err(
            -32602,
            format!("params._meta needs `{VERSION_KEY}` (a string) and `{CAPS_KEY}` (an object)"),
        ));
    }
    if !STATELESS.contains(&version.expect("checked")) {
        return Err(RpcError {
            data: Some(json!({"supported": supported(), "requested": version})),
            ..err(-32022, "unsupported protocol version")
        });
    }
    Ok(())
}

/// A transport's refusal of a whole message, as a JSON-RPC error without a request id (the
/// HTTP transport's 400, 403, 404…).
pub(super) fn transport_error(code: i64, message: impl Into<String>) -> Value {
    error_reply(Value::Null, err(code, message))
}

fn error_reply(id: Value, e: RpcError) -> Value {
    let mut error = json!({"code": e.code, "message": e.message});
    if let Some(d) = e.data {
        error["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A line of input, or the news that one was too long (its bytes skipped).
enum Line {
    Text(String),
    TooLong(usize),
}

/// Reads lines of at most [`MAX_LINE`] bytes without holding more than that.
struct Lines<R> {
    r: R,
}

impl<R: BufRead> Lines<R> {
    fn new(r: R) -> Self {
        Lines { r }
    }

    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let mut skipped = 0usize;
        loop {
            let chunk = match self.r.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                // End of input: a last line without a newline still counts.
                return Ok(match (buf.is_empty(), skipped) {
                    (true, 0) => None,
                    (_, 0) => Some(Line::Text(String::from_utf8_lossy(&buf).into_owned())),
                    _ => Some(Line::TooLong(skipped)),
                });
            }
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if skipped > 0 || buf.len() + take > MAX_LINE + 1 {
                skipped += buf.len() + take;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
            self.r.consume(take);
            if done {
                return Ok(Some(if skipped > 0 {
                    Line::TooLong(skipped)
                } else {
                    Line::Text(String::from_utf8_lossy(&buf).into_owned())
                }));
            }
        }
    }
}
