//! `kolm serve --mcp` on the wire: every protocol era, errors, hostile input, and the real
//! clients (the Python `mcp` SDK in its three modes).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};
use support::*;

struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Mcp {
    fn start(home: &Path, args: &[&str]) -> Mcp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kolm"))
            .arg("serve")
            .arg("--mcp")
            .args(args)
            .env("KOLM_HOME", home)
            .env("KOLM_SIGNING_KEY", KEY)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Mcp {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        }
    }

    fn send_raw(&mut self, line: &[u8]) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(line).unwrap();
        w.write_all(b"\n").unwrap();
        w.flush().unwrap();
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn call(&mut self, msg: Value) -> Value {
        self.send_raw(msg.to_string().as_bytes());
        self.read()
    }

    /// Closes stdin and waits: the server must exit cleanly.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn meta(version: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    })
}

fn art(p: &Project) -> String {
    p.artifact().to_string_lossy().into_owned()
}

#[test]
fn every_handshake_era_negotiates_lists_and_calls() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    for (asked, answered) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let mut s = Mcp::start(home.path(), &["--artifact", &art(&p)]);
        let init = s.call(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}));
        assert_eq!(init["id"], 0);
        assert_eq!(init["result"]["protocolVersion"], answered, "{init}");
        assert_eq!(init["result"]["serverInfo"]["name"], "kolm");
        assert!(init["result"]["capabilities"]["tools"].is_object());
        // A notification gets no reply: the next line read answers the next request.
        s.send_raw(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(
            s.call(json!({"jsonrpc": "2.0", "id": "p", "method": "ping"})),
            json!({"jsonrpc": "2.0", "id": "p", "result": {}})
        );
        let list = s.call(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        let tools = list["result"]["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["name"], "demo");
        assert!(tools[0]["description"].as_str().unwrap().contains("K = "));
        assert_eq!(tools[0]["inputSchema"]["required"], json!(["input"]));
        let structured = answered >= "2025-06-18";
        assert_eq!(
            tools[0].get("outputSchema").is_some(),
            structured,
            "{asked}"
        );

        let call = s.call(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "demo", "arguments": {"input": "my password expired"}}}));
        let r = &call["result"];
        assert_eq!(r["isError"], false, "{call}");
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(text, json!({"label": "account"}));
        assert_eq!(r.get("structuredContent").is_some(), structured);
        assert!(r["_kolm"]["recipe_id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        assert!(r["_kolm"]["receipt"]["seq"].is_u64());
        // The model answers what no recipe takes, and stays loaded for the next call.
        for _ in 0..2 {
            let call = s.call(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "demo", "arguments": {"input": "the app crashes"}}}));
            assert_eq!(call["result"]["isError"], false, "{call}");
            assert!(call["result"]["_kolm"]["recipe_id"].is_null());
        }
        s.finish();
    }
}

#[test]
fn the_stateless_era_discovers_and_calls_per_request() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let mut s = Mcp::start(home.path(), &["--artifact", &art(&p)]);
    let d = s.call(
        json!({"jsonrpc": "2.0", "id": "server-discover-probe-1", "method": "server/discover",
        "params": {"_meta": meta("2026-07-28")}}),
    );
    let r = &d["result"];
    assert_eq!(d["id"], "server-discover-probe-1");
    assert_eq!(r["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(r["resultType"], "complete");
    assert!(r["ttlMs"].is_u64() && r["cacheScope"] == "public", "{d}");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "kolm"
    );
    let list = s.call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": meta("2026-07-28")}}));
    assert_eq!(list["result"]["resultType"], "complete");
    assert!(list["result"]["ttlMs"].is_u64());
    assert!(list["result"]["tools"][0]["outputSchema"].is_object());
    let call = s.call(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "demo", "arguments": {"input": "password reset"}, "_meta": meta("2026-07-28")}}));
    assert_eq!(call["result"]["resultType"], "complete");
    assert_eq!(
        call["result"]["structuredContent"],
        json!({"label": "account"})
    );
    // ping is not part of the stateless protocol; a version kolm does not speak is -32022
    // naming the ones it does; a request without capabilities is malformed.
    let e = s.call(json!({"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"_meta": meta("2026-07-28")}}));
    assert_eq!(e["error"]["code"], -32601);
    let e = s.call(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": meta("2099-01-01")}}));
    assert_eq!(e["error"]["code"], -32022);
    assert_eq!(e["error"]["data"]["requested"], "2099-01-01");
    assert!(e["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!("2026-07-28")));
    let e = s.call(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}}));
    assert_eq!(e["error"]["code"], -32602);
    s.finish();
}

#[test]
fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    // A tampered artifact is not served; the reason is on stderr.
    let bad = p.path("bad.kolm");
    let mut bytes = std::fs::read(p.artifact()).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let mut s = Mcp::start(
        home.path(),
        &["--artifact", bad.to_str().unwrap(), "--artifact", &art(&p)],
    );
    s.call(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}));
    let code = |v: &Value| v["error"]["code"].as_i64().unwrap_or(0);
    assert_eq!(
        code(&s.call(json!({"jsonrpc": "2.0", "id": 2, "method": "nope/nope"}))),
        -32601
    );
    s.send_raw(b"{ this is not json");
    let e = s.read();
    assert_eq!((code(&e), e["id"].clone()), (-32700, Value::Null));
    s.send_raw(b"[1, 2]");
    let e = s.read();
    assert_eq!(e.as_array().map(|a| a.len()), Some(2), "{e}");
    assert_eq!(code(&e[0]), -32600);
    let bad_arguments = [
        (
            json!({"name": "demo", "arguments": {"input": 5}}),
            "must be a string",
        ),
        (
            json!({"name": "demo", "arguments": {}}),
            "`input` is missing",
        ),
        (
            json!({"name": "demo", "arguments": {"input": "x", "other": 1}}),
            "unknown argument",
        ),
    ];
    // From 2025-11-25 on, bad arguments are a tool result the model can read (SEP-1303);
    // an unknown tool and a call without a name stay protocol errors.
    for (params, what) in &bad_arguments {
        let r =
            s.call(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}));
        assert_eq!(r["result"]["isError"], true, "{r}");
        assert!(
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains(what),
            "{r}"
        );
    }
    for (params, what) in [
        (
            json!({"name": "ghost", "arguments": {"input": "x"}}),
            "unknown tool",
        ),
        (json!({"arguments": {"input": "x"}}), "needs a tool"),
    ] {
        let e =
            s.call(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}));
        assert_eq!(code(&e), -32602, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(what),
            "{e}"
        );
    }
    // A 10 MB line is answered and the connection goes on.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"demo","arguments":{{"input":"{}"}}}}}}"#,
        "a".repeat(10 << 20)
    );
    let r = s.call_raw(big.as_bytes());
    assert_eq!(r["id"], 8);
    assert_eq!(
        r["result"]["isError"], true,
        "a 10 MB input does not fit the context"
    );
    // Over the limit: refused without being held.
    let huge = vec![b'x'; 17 << 20];
    s.send_raw(&huge);
    assert_eq!(code(&s.read()), -32600);
    let list = s.call(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}));
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 1);
    // Before 2025-11-25, bad arguments are -32602.
    s.call(json!({"jsonrpc": "2.0", "id": 10, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}));
    for (params, what) in &bad_arguments {
        let e =
            s.call(json!({"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": params}));
        assert_eq!(code(&e), -32602, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(what),
            "{e}"
        );
    }
    let stderr = s.finish();
    assert!(
        stderr.contains("not serving") && stderr.contains("bad.kolm"),
        "{stderr}"
    );
}

impl Mcp {
    fn call_raw(&mut self, line: &[u8]) -> Value {
        self.send_raw(line);
        self.read()
    }
}

#[test]
fn installed_artifacts_are_served_and_a_vanished_client_ends_the_server() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .arg("install")
        .arg(p.artifact())
        .env("KOLM_HOME", home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut s = Mcp::start(home.path(), &[]);
    let list = s.call(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
    assert_eq!(list["result"]["tools"][0]["name"], "demo");
    // The client goes away in the middle of a call: the server exits, with no panic.
    s.send_raw(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "demo", "arguments": {"input": "the app crashes"}}})
        .to_string()
        .as_bytes(),
    );
    drop(s.stdin.take());
    drop(s.stdout);
    let out = s.child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_says_what_it_needs() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kolm"))
            .arg("serve")
            .args(args)
            .env("KOLM_HOME", home.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kolm serve --mcp"));
    let out = run(&["--mcp", "--http"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

/// The Python `mcp` SDK (2.x, from the test venv) in its three modes.
#[test]
fn the_python_mcp_sdk_lists_and_calls_in_every_mode() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let python = support::python::venv_python();
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "mcp_client.py",
    ]
    .iter()
    .collect();
    for mode in ["auto", "legacy", "2026-07-28"] {
        let out = Command::new(&python)
            .arg(&script)
            .arg(mode)
            .arg(env!("CARGO_BIN_EXE_kolm"))
            .arg(p.artifact())
            .env("KOLM_HOME", home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let want = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(v["protocol_version"], want, "{v}");
        assert_eq!(v["tools"], json!(["demo"]));
        assert_eq!(v["structured"], json!({"label": "account"}));
        assert_eq!(v["is_error"], false);
    }
}

#[test]
fn a_thousand_calls_in_a_row_keep_memory_flat() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let mut s = Mcp::start(home.path(), &["--artifact", &art(&p)]);
    let pid = s.child.id();
    s.call(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}));
    let call = |s: &mut Mcp, i: u64| {
        // Every tenth call goes to the model; a recipe answers the rest.
        let input = if !i.is_multiple_of(10) {
            format!("password {i}")
        } else {
            format!("crash {i}")
        };
        let r = s.call(json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "demo", "arguments": {"input": input}}}));
        assert_eq!(r["result"]["isError"], false, "{r}");
    };
    for i in 1..=100 {
        call(&mut s, i);
    }
    let warm = rss_kib(pid);
    for i in 101..=1000 {
        call(&mut s, i);
    }
    let after = rss_kib(pid);
    eprintln!("kolm serve --mcp RSS: {warm} KiB after 100 calls, {after} KiB after 1,000");
    assert!(after < warm + 16 * 1024, "{warm} -> {after} KiB");
    s.finish();
}

/// The MCP Inspector CLI (npm, pinned; `scripts/inspector.sh` installs it with its Node) in
/// each of its protocol eras: lists the tools and calls one.
#[test]
fn the_mcp_inspector_cli_lists_and_calls_in_every_era() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("KOLM_INSPECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/kolm-test/npm")
        });
    let node = dir.join("node_modules/.bin/node");
    let inspector =
        dir.join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    assert!(
        node.is_file() && inspector.is_file(),
        "run `bash scripts/inspector.sh` (`make test` does)"
    );
    let run = |era: &str, method: &[&str]| -> Value {
        let out = Command::new(&node)
            .arg(&inspector)
            .args(["--cli", "-q", "--format", "json", "--protocol-era", era])
            .args(method)
            .arg("-e")
            .arg(format!("KOLM_HOME={}", home.path().display()))
            .arg("-e")
            .arg(format!("KOLM_SIGNING_KEY={KEY}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_kolm"))
            .args(["serve", "--mcp", "--artifact", &art(&p)])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{era} {method:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim()).unwrap();
        v["result"].clone()
    };
    for era in ["legacy", "auto", "modern"] {
        let list = run(era, &["--method", "tools/list"]);
        assert_eq!(list["tools"][0]["name"], "demo", "{era}: {list}");
        let call = run(
            era,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "demo",
                "--tool-args-json",
                r#"{"input":"my password expired"}"#,
            ],
        );
        assert_eq!(
            call["structuredContent"],
            json!({"label": "account"}),
            "{era}: {call}"
        );
        assert!(call["_kolm"]["recipe_id"].is_string(), "{era}: {call}");
    }
}
