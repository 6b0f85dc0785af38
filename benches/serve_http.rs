//! `kolm serve --http` against llama-cpp-python's OpenAI-compatible server
//! (`python -m llama_cpp.server`, from PyPI in the bench venv), in one run, on the
//! support-triage example's artifact (figures in the README and
//! `benches/results/serve_http.md`).
//!
//! Both serve the same GGUF with the same adapter: llama-cpp-python gets the files the artifact
//! holds, the system prompt kolm gives the student, the task's schema as `response_format`,
//! and temperature 0 (greedy, as kolm decodes). First every eval input is sent once to each,
//! in turn, and the outputs are compared (the goal is counted at equal output); then `wrk`
//! (Debian) drives each at concurrency 1 and 16, cycling through the same inputs; last, the
//! time to the first streamed token (`stream: true`, the first chunk with content), for the
//! inputs the model answers, on each in turns.
//!
//! Needs `make demo` (or `KOLM_BENCH_ARTIFACT`), `wrk`, and `KOLM_BENCH_PYTHON` with
//! `llama-cpp-python[server]` (benches/run.sh installs both).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/example.rs"]
#[allow(dead_code)] // shared by path; this bench takes its percentiles from wrk
mod example;

/// Seconds `wrk` drives each server at each concurrency.
const SECONDS: u64 = 40;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `GET /v1/models` answers (a model loading can take a while).
fn wait_ready(base: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(300);
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server at {base} exited: {status}");
        }
        if reqwest::blocking::get(format!("{base}/v1/models"))
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("the server at {base} did not come up in 300 s");
}

fn kolm_server(art: &Path) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args(["serve", "--http", "--threads", "2", "--queue", "64"])
        .args([
            "--timeout-secs",
            "600",
            "--port",
            &port.to_string(),
            "--artifact",
        ])
        .arg(art)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child);
    Server { child, base }
}

fn llama_cpp_python_server(model: &Path, adapter: &Path) -> Server {
    let python = std::env::var("KOLM_BENCH_PYTHON")
        .expect("KOLM_BENCH_PYTHON: a python with llama-cpp-python[server] (benches/run.sh)");
    let port = free_port();
    let mut child = Command::new(python)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(model)
        .arg("--lora_path")
        .arg(adapter)
        .args([
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--n_threads_batch",
            "2",
        ])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain its log so it never blocks on a full pipe.
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base, &mut child);
    Server { child, base }
}

/// A chat request to `base`, answered with a success status.
fn send(base: &str, body: &Value) -> reqwest::blocking::Response {
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(600))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{base}: {}", r.status());
    r
}

fn post(base: &str, body: &Value) -> (Value, f64) {
    let t = Instant::now();
    let v: Value = serde_json::from_slice(&send(base, body).bytes().unwrap()).unwrap();
    (v, t.elapsed().as_secs_f64() * 1e3)
}

/// The answer's JSON (`None` when it is not JSON).
fn content(v: &Value) -> Option<Value> {
    serde_json::from_str(v["choices"][0]["message"]["content"].as_str()?.trim()).ok()
}

/// What `wrk --latency` measured.
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
}

/// `wrk -t1 -c<conns> -d<SECONDS>s --latency` cycling through `bodies`.
fn wrk(base: &str, bodies: &Path, conns: u32, dir: &Path) -> Load {
    let script = dir.join(format!("bodies-{conns}.lua"));
    std::fs::write(
        &script,
        format!(
            "local bodies = {{}}\nfor line in io.lines(\"{}\") do bodies[#bodies + 1] = line end\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"POST\", \"/v1/chat/completions\", {{[\"Content-Type\"] = \"application/json\"}}, bodies[(i - 1) % #bodies + 1])\nend\n",
            bodies.display()
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{SECONDS}s")])
        .args(["--timeout", "600s", "--latency", "-s"])
        .arg(&script)
        .arg(base)
        .output()
        .expect("wrk (Debian: apt-get install wrk; benches/run.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "{base} answered with errors under load:\n{text}"
    );
    let field = |after: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(after))
            .unwrap_or_else(|| panic!("no `{after}` in wrk's output:\n{text}"))
            .trim()
    };
    let ms = |s: &str| -> f64 {
        let s = s.split_whitespace().next().unwrap();
        let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap());
        let n: f64 = num.parse().unwrap();
        match unit {
            "us" => n / 1e3,
            "ms" => n,
            "s" => n * 1e3,
            "m" => n * 60e3,
            other => panic!("unit {other} in wrk's output"),
        }
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Load {
        rps: field("Requests/sec:").parse().unwrap(),
        p50_ms: ms(field("50%")),
        p99_ms: ms(field("99%")),
        requests,
    }
}

fn main() {
    let (art, root, home, opened, tests) = example::open();
    let task = &opened.manifest.task;
    let system = kolm::runtime::prompt::system_prompt(&task.description, Some(&task.output_schema));
    let inputs: Vec<String> = tests.iter().map(|t| t.input()).collect();
    let dir = tempfile::tempdir().unwrap();

    // The same inputs as each server takes them.
    let kolm_body =
        |input: &str| json!({"model": task.name, "messages": [{"role": "user", "content": input}]});
    let peer_body = |input: &str| {
        json!({
            "model": task.name,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": input}],
            "temperature": 0.0,
            "max_tokens": 512,
            "response_format": {"type": "json_object", "schema": task.output_schema},
        })
    };
    let lines = |f: &dyn Fn(&str) -> Value, name: &str| {
        let p = dir.path().join(name);
        let text: String = inputs.iter().map(|i| format!("{}\n", f(i))).collect();
        std::fs::write(&p, text).unwrap();
        p
    };
    let kolm_bodies = lines(&kolm_body, "kolm.jsonl");
    let peer_bodies = lines(&peer_body, "peer.jsonl");

    let kolm = kolm_server(&art);
    let adapter = kolm::runtime::open::adapter_file(&home, &opened.lora).unwrap();
    let peer = llama_cpp_python_server(&opened.model_file(&home).unwrap(), &adapter);
    // Warm both (model load, first context).
    post(&kolm.base, &kolm_body(&inputs[0]));
    post(&peer.base, &peer_body(&inputs[0]));

    // Equal output: every input once to each, in turns.
    let (mut equal, mut recipe) = (0, 0);
    let mut differ = Vec::new();
    for input in &inputs {
        let (k, _) = post(&kolm.base, &kolm_body(input));
        let (p, _) = post(&peer.base, &peer_body(input));
        if !k["_kolm"]["recipe_id"].is_null() {
            recipe += 1;
        }
        if content(&k).is_some() && content(&k) == content(&p) {
            equal += 1;
        } else if differ.len() < 3 {
            differ.push(format!(
                "{:?}: kolm {} vs llama-cpp-python {}",
                input.chars().take(60).collect::<String>(),
                k["choices"][0]["message"]["content"],
                p["choices"][0]["message"]["content"]
            ));
        }
    }

    // The same answer every time (runtime.md §7): the sealed report's outputs against the
    // server's in order (above), in reverse, and `kolm run` in a fresh process per input.
    let report: Value = serde_json::from_slice(
        &std::fs::read(art.with_file_name(format!("{}.report.json", task.name))).unwrap(),
    )
    .unwrap();
    let sealed: Vec<String> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["output"].as_str().unwrap_or_default().to_string())
        .collect();
    let text_of = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let forward: Vec<String> = inputs
        .iter()
        .map(|i| text_of(&post(&kolm.base, &kolm_body(i)).0))
        .collect();
    let mut reverse: Vec<String> = inputs
        .iter()
        .rev()
        .map(|i| text_of(&post(&kolm.base, &kolm_body(i)).0))
        .collect();
    reverse.reverse();
    let run: Vec<String> = inputs
        .iter()
        .map(|i| {
            let out = Command::new(env!("CARGO_BIN_EXE_kolm"))
                .args(["--json", "run", "--threads", "2"])
                .arg(&art)
                .arg(i)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            v["generation"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let same = |got: &[String]| got.iter().zip(&sealed).filter(|(a, b)| a == b).count();
    let determinism = format!(
        "\nThe same answer every time: of the {} eval inputs, the server's answers equal the sealed report's in order {} and in reverse {}, and `kolm run` (a fresh process each) {}.\n",
        inputs.len(),
        same(&forward),
        same(&reverse),
        same(&run)
    );
    eprint!("{determinism}");

    let mut rows = String::new();
    for conns in [1, 16] {
        let a = wrk(&kolm.base, &kolm_bodies, conns, dir.path());
        let b = wrk(&peer.base, &peer_bodies, conns, dir.path());
        rows.push_str(&format!(
            "| {conns} | {:.2} req/s | {:.2} req/s | **{:.2}×** | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {} / {} |\n",
            a.rps, b.rps, a.rps / b.rps, a.p50_ms, a.p99_ms, b.p50_ms, b.p99_ms, a.requests, b.requests
        ));
    }
    // Streamed time to first token, on the inputs the model answers (a recipe's answer is one
    // chunk, at once), in turns.
    let pack = kolm::runtime::recipes::of_artifact(&opened).unwrap();
    let modelled: Vec<&String> = inputs
        .iter()
        .filter(|i| pack.consult(i).exact.is_none())
        .take(30)
        .collect();
    // wrk leaves requests queued when it stops: one plain request each, first, waits them out.
    post(&kolm.base, &kolm_body(modelled[0]));
    post(&peer.base, &peer_body(modelled[0]));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for input in &modelled {
        let mut k = kolm_body(input);
        k["stream"] = json!(true);
        let mut p = peer_body(input);
        p["stream"] = json!(true);
        ours.push(first_token_ms(&kolm.base, &k));
        theirs.push(first_token_ms(&peer.base, &p));
    }
    let (k50, p50) = (
        example::percentile(&ours, 0.5),
        example::percentile(&theirs, 0.5),
    );
    let (k99, p99) = (
        example::percentile(&ours, 0.99),
        example::percentile(&theirs, 0.99),
    );
    rows.push_str(&format!(
        "\nStreamed time to first token (`stream: true`, the first chunk with content; {} inputs the model answers, in turns):\n\n| | kolm serve --http | llama-cpp-python | ratio |\n|---|---|---|---|\n| p50 | {k50:.0} ms | {p50:.0} ms | {:.2}× |\n| p99 | {k99:.0} ms | {p99:.0} ms | {:.2}× |\n",
        modelled.len(),
        k50 / p50,
        k99 / p99
    ));
    drop((kolm, peer));
    let text = format!(
        "Machine: {} cores. Artifact: the support-triage example (SmolLM2-135M-Instruct {} + its trained adapter). Peer: llama-cpp-python {} (`python -m llama_cpp.server`) on the same GGUF and adapter files, kolm's system prompt, the task's schema as `response_format`, temperature 0. `wrk -t1 -cN -d{SECONDS}s` cycling through the {} eval inputs; both threads 2.\n\nEqual output: {equal} of {} inputs give the same JSON from both ({recipe} answered by a kolm recipe).{}\n\n| concurrency | kolm serve --http | llama-cpp-python | ratio | kolm p50 / p99 | peer p50 / p99 | requests (kolm / peer) |\n|---|---|---|---|---|---|---|\n{rows}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        opened.manifest.base_model.quantization,
        peer_version(),
        inputs.len(),
        inputs.len(),
        if differ.is_empty() {
            String::new()
        } else {
            format!(" Differing, first: {}.", differ.join("; "))
        },
    );
    let text = text + &determinism;
    print!("{text}");
    std::fs::write(root.join("benches/results/serve_http.md"), text).unwrap();
}

/// Milliseconds from sending a streamed request to reading its first chunk with content.
fn first_token_ms(base: &str, body: &Value) -> f64 {
    let t = Instant::now();
    let r = send(base, body);
    let mut first = None;
    for line in BufReader::new(r).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        let has_text = v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty());
        if has_text && first.is_none() {
            first = Some(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    first.unwrap_or_else(|| panic!("{base} streamed no content"))
}

fn peer_version() -> String {
    let python = std::env::var("KOLM_BENCH_PYTHON").unwrap_or_default();
    Command::new(python)
        .args(["-c", "import llama_cpp; print(llama_cpp.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
