//! Serving benchmarks on the support-triage example's artifact (figures in the README and
//! `benches/results/serve.md`): MCP `tools/call` round trips, from the request written to the
//! answer read, for calls a recipe answers and calls the model answers, taking turns on one
//! server process: over stdio (`kolm serve --mcp`), then over Streamable HTTP (`/mcp` of
//! `kolm serve --http`, one session, one connection kept alive), the same calls.
//!
//! Needs the example built (`make demo`); `KOLM_BENCH_ARTIFACT` names another copy, and its
//! signing key comes from `KOLM_SIGNING_KEY` (default: the demo's key).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

/// Round trips of each kind.
#[path = "support/example.rs"]
mod example;
use example::percentile;

const CALLS: usize = 60;

fn main() {
    let (art, root, _, opened, tests) = example::open();
    let pack = kolm::runtime::recipes::of_artifact(&opened).unwrap();
    let (mut by_recipe, mut by_model) = (Vec::new(), Vec::new());
    for t in &tests {
        let input = t.input();
        if pack.consult(&input).exact.is_some() {
            by_recipe.push(input);
        } else {
            by_model.push(input);
        }
    }
    assert!(
        !by_recipe.is_empty() && !by_model.is_empty(),
        "the artifact must answer some tests with a recipe and some with the model: build the example with this kolm (make demo)"
    );
    let task = opened.manifest.task.name.clone();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args(["serve", "--mcp", "--threads", "2", "--artifact"])
        .arg(&art)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut id = 0u64;
    let mut call = |msg: Value| -> (Value, f64) {
        let t = Instant::now();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (
            serde_json::from_str(&line).unwrap(),
            t.elapsed().as_secs_f64() * 1e3,
        )
    };
    call(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}),
    );
    let mut tool = |input: &str| {
        id += 1;
        let (r, ms) = call(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": task, "arguments": {"input": input}}}));
        assert_eq!(r["result"]["isError"], false, "{r}");
        ms
    };
    // Warm: the model loads at the first call.
    tool(&by_model[0]);
    let (mut recipe_ms, mut model_ms) = (Vec::new(), Vec::new());
    for i in 0..CALLS {
        recipe_ms.push(tool(&by_recipe[i % by_recipe.len()]));
        model_ms.push(tool(&by_model[i % by_model.len()]));
    }
    drop(stdin);
    child.wait().unwrap();
    let (http_recipe, http_model) = over_http(&art, &task, &by_recipe, &by_model);
    let p = |v: &[f64], q: f64| percentile(v, q);
    let (r50, r99) = (p(&recipe_ms, 0.5), p(&recipe_ms, 0.99));
    let (m50, m99) = (p(&model_ms, 0.5), p(&model_ms, 0.99));
    let mut text = format!(
        "Machine: {} cores. Artifact: the support-triage example ({} + its trained adapter). One server process, {CALLS} calls of each kind in turns.\n\n| measure | a recipe answers | the model answers | ratio |\n|---|---|---|---|\n| stdio tools/call round trip p50 | {r50:.3} ms | {m50:.1} ms | {:.4}× |\n| stdio tools/call round trip p99 | {r99:.3} ms | {m99:.1} ms | {:.4}× |\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        opened.manifest.base_model.quantization,
        r50 / m50,
        r99 / m99,
    );
    text.push_str("\nMCP over Streamable HTTP (`/mcp`, one session, keep-alive) against stdio, the same calls:\n\n| measure | stdio | HTTP | HTTP / stdio |\n|---|---|---|---|\n");
    for (what, stdio, http) in [
        ("recipe", &recipe_ms, &http_recipe),
        ("model", &model_ms, &http_model),
    ] {
        for q in [0.5, 0.99] {
            let (a, b) = (p(stdio, q), p(http, q));
            text.push_str(&format!(
                "| {what} tools/call p{} | {a:.3} ms | {b:.3} ms | {:.2}× |\n",
                (q * 100.0) as u32,
                b / a
            ));
        }
    }
    print!("{text}");
    std::fs::write(root.join("benches/results/serve.md"), text).unwrap();
}

/// The same calls over MCP's Streamable HTTP transport: `kolm serve --http`, one session.
fn over_http(
    art: &Path,
    task: &str,
    by_recipe: &[String],
    by_model: &[String],
) -> (Vec<f64>, Vec<f64>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args([
            "serve",
            "--http",
            "--port",
            "0",
            "--threads",
            "2",
            "--artifact",
        ])
        .arg(art)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server exited");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let url = format!("{base}/mcp");
    let c = reqwest::blocking::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut r = c
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = session {
            r = r.header("mcp-session-id", s);
        }
        r.body(body.to_string()).send().unwrap()
    };
    let r = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}),
        None,
    );
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let mut id = 0u64;
    let mut tool = |input: &str| {
        id += 1;
        let t = Instant::now();
        let r = post(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": task, "arguments": {"input": input}}}),
            Some(&session),
        );
        let v: Value = serde_json::from_slice(&r.bytes().unwrap()).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(v["result"]["isError"], false, "{v}");
        ms
    };
    tool(&by_model[0]);
    let (mut recipe_ms, mut model_ms) = (Vec::new(), Vec::new());
    for i in 0..CALLS {
        recipe_ms.push(tool(&by_recipe[i % by_recipe.len()]));
        model_ms.push(tool(&by_model[i % by_model.len()]));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    (recipe_ms, model_ms)
}
