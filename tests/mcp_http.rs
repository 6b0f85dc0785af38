//! MCP over Streamable HTTP (`/mcp` of `kolm serve --http`) on loopback: the transport's rules
//! on the wire, the official conformance suite, and two real clients (the TypeScript SDK and
//! the Python `mcp` SDK).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::http::*;
use support::*;

/// A POST to `/mcp` with the headers a client sends, and any others.
fn mcp_post(s: &Http, body: &Value, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut r = reqwest::blocking::Client::new()
        .post(s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .timeout(Duration::from_secs(120))
        .json_body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

fn call(id: u64, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
}

/// Opens a session in `version`; its id.
fn open(s: &Http, version: &str) -> String {
    let r = mcp_post(s, &initialize(version), &[]);
    assert_eq!(r.status().as_u16(), 200);
    let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let v = json_of(r);
    assert_eq!(v["result"]["protocolVersion"], version, "{v}");
    id
}

#[test]
fn the_transport_keeps_its_rules() {
    let (p, home, s) = serving();

    // A session: its id on initialize, then required.
    let sid = open(&s, "2025-11-25");
    assert!(
        sid.len() >= 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    fn with<'a>(sid: &'a str, extra: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
        let mut h = vec![
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        h.extend_from_slice(extra);
        h
    }
    let with = |extra: &[(&'static str, &'static str)]| with(&sid, extra);
    let r = mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        &with(&[]),
    );
    assert_eq!(r.status().as_u16(), 202);
    assert!(r.bytes().unwrap().is_empty());
    let list = json_of(mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &with(&[]),
    ));
    assert_eq!(list["result"]["tools"][0]["name"], "demo", "{list}");
    assert_eq!(list["result"]["tools"][0]["outputSchema"]["type"], "object");
    let r = mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[],
    );
    assert_eq!(r.status().as_u16(), 400, "no session id");
    let r = mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[("mcp-session-id", "feedface")],
    );
    assert_eq!(r.status().as_u16(), 404, "an unknown session");
    let r = mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "1999-01-01"),
        ],
    );
    assert_eq!(r.status().as_u16(), 400, "an unknown protocol version");

    // A call, as stdio answers it: the JSON, structured, and the _kolm block.
    let r = json_of(mcp_post(
        &s,
        &call(
            2,
            json!({"name": "demo", "arguments": {"input": "my password expired"}}),
        ),
        &with(&[]),
    ));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"label": "account"}),
        "{r}"
    );
    assert_eq!(r["result"]["isError"], false);
    assert!(r["result"]["_kolm"]["receipt"]["mac"].is_string(), "{r}");
    // 2025-11-25: bad arguments are a result the model reads; an unknown tool is -32602.
    let r = json_of(mcp_post(
        &s,
        &call(3, json!({"name": "demo", "arguments": {"input": 5}})),
        &with(&[]),
    ));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("must be a string"));
    let r = json_of(mcp_post(
        &s,
        &call(4, json!({"name": "ghost", "arguments": {"input": "x"}})),
        &with(&[]),
    ));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    // 2025-06-18: bad arguments are -32602.
    let old = open(&s, "2025-06-18");
    let r = json_of(mcp_post(
        &s,
        &call(5, json!({"name": "demo", "arguments": {}})),
        &[("mcp-session-id", &old)],
    ));
    assert_eq!(r["error"]["code"], -32602, "{r}");

    // A client that accepts only an event stream gets the answer as one event.
    let r = reqwest::blocking::Client::new()
        .post(s.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid.as_str())
        .json_body(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().unwrap();
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap(),
        json!({"jsonrpc": "2.0", "id": 6, "result": {}})
    );

    // Stateless (2026-07-28): no session, the version in _meta.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let r = json_of(mcp_post(
        &s,
        &call(
            7,
            json!({"name": "demo", "arguments": {"input": "password reset"}, "_meta": meta}),
        ),
        &[("mcp-protocol-version", "2026-07-28")],
    ));
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"label": "account"})
    );

    // No server-to-client stream; DELETE ends a session.
    let c = reqwest::blocking::Client::new();
    let r = c
        .get(s.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = c
        .delete(s.url("/mcp"))
        .header("mcp-session-id", sid.as_str())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = mcp_post(
        &s,
        &json!({"jsonrpc": "2.0", "id": 8, "method": "ping"}),
        &with(&[]),
    );
    assert_eq!(r.status().as_u16(), 404, "the session ended");

    // DNS rebinding: a foreign Origin or Host is refused, on /mcp and the OpenAI API alike.
    for (k, v) in [
        ("origin", "http://evil.example.com"),
        ("host", "evil.example.com:80"),
    ] {
        let r = mcp_post(&s, &initialize("2025-11-25"), &[(k, v)]);
        assert_eq!(r.status().as_u16(), 403, "{k}: {v}");
        let r = c
            .post(s.url("/v1/chat/completions"))
            .header(k, v)
            .json_body(&ask("demo", "x"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{k}: {v}");
    }
    let r = mcp_post(
        &s,
        &initialize("2025-11-25"),
        &[("origin", "http://localhost:3000")],
    );
    assert_eq!(r.status().as_u16(), 200, "a loopback origin is welcome");
    s.stop();

    // The bearer token covers /mcp too; an allowed browser origin gets in.
    let s = Http::start(
        home.path(),
        &[
            "--artifact",
            p.artifact().to_str().unwrap(),
            "--allow-origin",
            "https://app.example",
        ],
        Some("tok-123"),
    );
    let r = mcp_post(&s, &initialize("2025-11-25"), &[]);
    assert_eq!(r.status().as_u16(), 401);
    assert!(!r.text().unwrap().contains("tok-123"));
    let r = mcp_post(
        &s,
        &initialize("2025-11-25"),
        &[
            ("authorization", "Bearer tok-123"),
            ("origin", "https://app.example"),
        ],
    );
    assert_eq!(r.status().as_u16(), 200);
    s.stop();
}

/// The official conformance suite (npm `@modelcontextprotocol/conformance`, pinned), every
/// scenario that applies to a server whose tools are artifacts (serve.md §2.4 lists the others
/// and why they do not apply).
#[test]
fn the_conformance_suite_passes_every_scenario_that_applies() {
    let (_p, _home, s) = serving();
    let dir = npm_dir();
    let out_dir = tempfile::tempdir().unwrap();
    for scenario in [
        "server-initialize",
        "ping",
        "tools-list",
        "dns-rebinding-protection",
        "server-sse-multiple-streams",
    ] {
        let out = Command::new(dir.join("node_modules/.bin/node"))
            .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
            .args([
                "server",
                "--url",
                &s.url("/mcp"),
                "--scenario",
                scenario,
                "-o",
            ])
            .arg(out_dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{scenario}:\n{text}");
        // Every check it made passed, and it made some ("Passed: 2/2, 0 failed, 0 warnings").
        let passed = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Passed: "))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.split_once('/'))
            .unwrap_or_else(|| panic!("{scenario}: no result line:\n{text}"));
        assert!(
            passed.0 == passed.1 && passed.0 != "0" && text.contains(" 0 failed"),
            "{scenario}:\n{text}"
        );
        assert!(!text.contains("FAILURE"), "{scenario}:\n{text}");
    }
    s.stop();
}

/// Two real clients over HTTP: the TypeScript SDK's Streamable HTTP client, and the Python
/// `mcp` SDK in its handshake and stateless modes. Each lists the tools and calls one.
#[test]
fn the_typescript_and_python_sdks_list_and_call_over_http() {
    let (_p, _home, s) = serving();
    let url = s.url("/mcp");
    let dir = npm_dir();
    let v = client_json(
        Command::new(dir.join("node_modules/.bin/node"))
            .arg(fixture("mcp_http_client.mjs"))
            .arg(dir.join("node_modules/@modelcontextprotocol/sdk"))
            .arg(&url)
            .arg("my password expired"),
    );
    assert_eq!(v["tools"], json!(["demo"]), "{v}");
    assert_eq!(v["session"], true, "{v}");
    assert_eq!(v["structured"], json!({"label": "account"}), "{v}");
    assert_eq!(v["is_error"], false);

    for mode in ["legacy", "auto", "2026-07-28"] {
        let v = client_json(
            Command::new(support::python::venv_python())
                .arg(fixture("mcp_client.py"))
                .args([mode, "--url", &url]),
        );
        assert_eq!(v["tools"], json!(["demo"]), "{mode}: {v}");
        assert_eq!(v["structured"], json!({"label": "account"}), "{mode}: {v}");
        assert_eq!(v["is_error"], false, "{mode}: {v}");
    }
    s.stop();
}
