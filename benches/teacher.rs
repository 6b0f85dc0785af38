//! Teacher benchmarks (figures in the README and `benches/results/teacher.md`).
//!
//! 1. Throughput: [`REQUESTS`] distinct requests against the loopback teacher
//!    (`tests/support/teacher_server.rs`) at concurrency 1, 8 and 64, through kolm's teacher
//!    (cache lookup, the HTTP policy, storing every answer, the meter) and through the peer: a
//!    bare reqwest loop posting the same bodies with the same concurrency on the same kind of
//!    runtime and parsing the replies, with no cache and no retries. The difference per request
//!    is kolm's overhead; the goal is ≤ 5%.
//! 2. Never paying twice: a build labelling [`SEEDS`] seeds, the same build again (expected: 0
//!    requests), and a build after adding 10 seeds (expected: exactly 10).
//!
//! Run with `cargo bench --bench teacher` (or `make bench`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kolm::stages::BuildOptions;
use kolm::teacher::{openai, Meter, Request, Teacher};
use serde_json::Value;
use support::teacher_server::Server;
use support::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: usize = 2_000;
const SEEDS: usize = 200;
/// Each configuration is timed this many times, alternating kolm and the peer; the best run
/// of each is kept (the least disturbed by the server sharing the 2 cores).
const ROUNDS: usize = 3;

fn kolmfile(endpoint: &str, concurrency: usize) -> String {
    format!(
        "[teacher]\nprovider = \"openai\"\nmodel = \"bench\"\nendpoint = \"{endpoint}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"\nsamples = 1\nconcurrency = {concurrency}\n{}",
        kolmfile_text("")
    )
}

fn requests(round: usize) -> Vec<Request> {
    (0..REQUESTS)
        .map(|i| Request {
            model: "bench".into(),
            system: "Triage the email. Answer with JSON.".into(),
            user: format!("round {round}, email {i}: the export button does nothing"),
            schema: Some(serde_json::json!({"type": "object"})),
            n: 1,
            temperature: 0.0,
            seed: 0,
            max_tokens: 64,
        })
        .collect()
}

/// kolm's side: a fresh cache each time, so every request goes out.
fn kolm_run(endpoint: &str, concurrency: usize, reqs: &[Request]) -> Duration {
    let p = Project::new(&kolmfile(endpoint, concurrency));
    let k = p.kolmfile();
    let teacher = Teacher::for_task(&k, &k.tasks[0].teacher).unwrap().unwrap();
    let store = kolm::cache::Store::new(p.home().cache());
    let meter = Meter::default();
    let t = Instant::now();
    let answers = teacher.ask_all(&store, &meter, reqs, &|| {}).unwrap();
    let d = t.elapsed();
    assert_eq!(answers.len(), reqs.len());
    assert_eq!(meter.totals().requests_sent, reqs.len() as u64);
    d
}

/// The peer: the same POSTs with reqwest and nothing else.
fn bare_run(endpoint: &str, concurrency: usize, reqs: &[Request]) -> Duration {
    let client = reqwest::Client::builder().build().unwrap();
    let url = openai::url(endpoint);
    let headers = openai::headers(TEACHER_KEY).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let n = rt.block_on(async {
        futures_util::stream::iter(reqs)
            .map(|r| {
                let req = client
                    .post(&url)
                    .headers(headers.clone())
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&openai::body(r, r.n, r.seed)).unwrap());
                async move {
                    let bytes = req.send().await.unwrap().bytes().await.unwrap();
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    v["choices"].as_array().unwrap().len()
                }
            })
            .buffer_unordered(concurrency)
            .fold(0, |a, n| async move { a + n })
            .await
    });
    let d = t.elapsed();
    assert_eq!(n, reqs.len());
    d
}

fn seeds(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"input\": \"ticket {i}: the app crashes on start\"}}\n"))
        .collect()
}

fn main() {
    init_env();
    let server = Server::start(Box::new(|_, _| r#"{"label":"bug"}"#.to_string()));
    let endpoint = server.endpoint();
    let mut rows = String::new();
    let mut worst: f64 = 0.0;
    for concurrency in [1usize, 8, 64] {
        let (mut ours, mut peer) = (Duration::MAX, Duration::MAX);
        for round in 0..ROUNDS {
            let reqs = requests(concurrency * 100 + round);
            peer = peer.min(bare_run(&endpoint, concurrency, &reqs));
            ours = ours.min(kolm_run(&endpoint, concurrency, &reqs));
        }
        let rate = |d: Duration| REQUESTS as f64 / d.as_secs_f64();
        let overhead_us = (ours.as_secs_f64() - peer.as_secs_f64()) / REQUESTS as f64 * 1e6;
        let ratio = ours.as_secs_f64() / peer.as_secs_f64();
        worst = worst.max(ratio);
        eprintln!(
            "concurrency {concurrency}: kolm {:.0} req/s, bare reqwest {:.0} req/s, overhead {overhead_us:.1} µs/request ({:+.1}%)",
            rate(ours),
            rate(peer),
            (ratio - 1.0) * 100.0
        );
        rows.push_str(&format!(
            "| {REQUESTS} requests at concurrency {concurrency} | {:.0} req/s ({:.2} s) | {:.0} req/s ({:.2} s) | {ratio:.3}× | {overhead_us:+.1} µs ({:+.1}%) |\n",
            rate(ours),
            ours.as_secs_f64(),
            rate(peer),
            peer.as_secs_f64(),
            (ratio - 1.0) * 100.0
        ));
    }

    // Never paying twice, through whole builds.
    let p = Project::new(&format!(
        "[teacher]\nprovider = \"openai\"\nmodel = \"bench\"\nendpoint = \"{endpoint}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"\nsamples = 3\n{}",
        kolmfile_text("")
    ));
    p.edit("data/seeds.jsonl", &seeds(SEEDS));
    let build = || {
        let before = server.requests();
        let t = Instant::now();
        let r = p
            .build_with(
                BuildOptions {
                    gate: Some(0.0),
                    ..Default::default()
                },
                Default::default(),
            )
            .map_err(|f| f.error)
            .unwrap();
        (
            server.requests() - before,
            r.teacher.requests_sent,
            t.elapsed(),
        )
    };
    let (first, first_sent, first_t) = build();
    let (again, again_sent, again_t) = build();
    p.edit("data/seeds.jsonl", &seeds(SEEDS + 10));
    let (more, more_sent, more_t) = build();
    eprintln!(
        "builds: first {first} requests ({first_sent} counted, {:.2} s), unchanged {again} ({again_sent}, {:.2} s), +10 seeds {more} ({more_sent}, {:.2} s)",
        first_t.as_secs_f64(),
        again_t.as_secs_f64(),
        more_t.as_secs_f64()
    );
    assert_eq!(
        first,
        SEEDS as u64 + 1,
        "one request per seed, one baseline"
    );
    assert_eq!(again, 0, "a rebuild with no change sends nothing");
    assert_eq!(more, 10, "adding 10 seeds sends exactly 10");

    let table = format!(
        "Machine: 2 cores (the loopback teacher shares them with the client). Peer: a bare reqwest 0.12 loop posting the same bodies with `buffer_unordered(concurrency)` on a current-thread tokio runtime, as kolm's teacher does; best of {ROUNDS} runs each, alternating. kolm's side includes looking every request up in the cache, the retry policy, appending every answer to the answer log (one write each) and the meter.\n\n\
| measure | kolm | bare reqwest | ratio | kolm's overhead per request |\n|---|---|---|---|---|\n{rows}\n\
Goal: overhead ≤ 5% (worst ratio here: {worst:.3}×).\n\n\
| build (tiny base, k = 3, {SEEDS} seeds without outputs, 1 eval) | teacher requests sent | time |\n|---|---|---|\n\
| first | {first} | {:.2} s |\n| again, no change | {again} | {:.2} s |\n| after adding 10 seeds | {more} | {:.2} s |\n\n\
Reproduce: `cargo bench --bench teacher`.\n",
        first_t.as_secs_f64(),
        again_t.as_secs_f64(),
        more_t.as_secs_f64()
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results/teacher.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("wrote {}", out.display());
}
