//! Serving benchmarks on the support-triage example's artifact (figures in the README and
//! `benches/results/serve.md`): `kolm serve --mcp` `tools/call` round trips, from the request
//! written to the answer read, for calls a recipe answers and calls the model answers, taking
//! turns on one server process.
//!
//! Needs the example built (`make demo`); `KOLM_BENCH_ARTIFACT` names another copy, and its
//! signing key comes from `KOLM_SIGNING_KEY` (default: the demo's key).

use std::io::{BufRead, BufReader, Write};
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
    let (r50, r99) = (percentile(&recipe_ms, 0.5), percentile(&recipe_ms, 0.99));
    let (m50, m99) = (percentile(&model_ms, 0.5), percentile(&model_ms, 0.99));
    let text = format!(
        "Machine: {} cores. Artifact: the support-triage example (SmolLM2-135M-Instruct Q4_1 + its trained adapter). `kolm serve --mcp`, one process, {CALLS} calls of each kind in turns.\n\n| measure | a recipe answers | the model answers | ratio |\n|---|---|---|---|\n| tools/call round trip p50 | {r50:.3} ms | {m50:.1} ms | {:.4}× |\n| tools/call round trip p99 | {r99:.3} ms | {m99:.1} ms | {:.4}× |\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        r50 / m50,
        r99 / m99,
    );
    print!("{text}");
    std::fs::write(root.join("benches/results/serve.md"), text).unwrap();
}
