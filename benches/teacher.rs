//! Teacher benchmarks (figures in the README and `benches/results/teacher.md`).
//!
//! 1. Throughput: [`REQUESTS`] distinct requests against the loopback teacher
//!    (`tests/support/teacher_server.rs`) at concurrency 1, 8 and 64, through kolm's teacher
//!    (cache lookup, the retry policy, logging every answer, the meter) and through the peer:
//!    a bare reqwest loop posting the same JSON (built with `json!`, as such a loop would) with
//!    the same per-request timeout and the same concurrency on the same kind of runtime, and
//!    parsing the replies into `serde_json::Value`, with no cache and no retries. The
//!    difference per request is kolm's overhead; the goal is ≤ 5%. Each run is timed on the
//!    wall clock and by the client thread's CPU time, which the server does not share.
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

const REQUESTS: usize = 5_000;
const SEEDS: usize = 200;
/// The per-request timeout both sides set (kolm's `teacher.timeout_secs` default): a request
/// without one can hang a build forever, so it is part of the request, not kolm's overhead.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Each configuration is timed this many times, alternating kolm and the peer; the best run
/// of each is kept (the least disturbed by the server sharing the 2 cores).
const ROUNDS: usize = 7;

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

/// Wall-clock and this thread's CPU time, taken together.
struct Clock(Instant, Duration);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now(), thread_cpu())
    }
    /// (wall, CPU of the calling thread: the client's share, without the server's)
    fn stop(self) -> (Duration, Duration) {
        (self.0.elapsed(), thread_cpu() - self.1)
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// kolm's side: a fresh cache each time, so every request goes out.
fn kolm_run(endpoint: &str, concurrency: usize, reqs: &[Request]) -> (Duration, Duration) {
    let p = Project::new(&kolmfile(endpoint, concurrency));
    let k = p.kolmfile();
    let teacher = Teacher::for_task(&k, &k.tasks[0].teacher).unwrap().unwrap();
    let store = kolm::cache::Store::new(p.home().cache());
    let meter = Meter::default();
    let t = Clock::start();
    let answers = teacher.ask_all(&store, &meter, reqs, &|| {}).unwrap();
    let d = t.stop();
    assert_eq!(answers.len(), reqs.len());
    assert_eq!(meter.totals().requests_sent, reqs.len() as u64);
    d
}

/// The body as a bare loop would write it: the same JSON, built with `json!`.
fn bare_body(r: &Request) -> Value {
    let mut b = serde_json::json!({
        "model": r.model,
        "messages": [
            {"role": "system", "content": r.system},
            {"role": "user", "content": r.user},
        ],
        "n": r.n,
        "temperature": r.temperature,
        "seed": r.seed,
        "max_tokens": r.max_tokens,
    });
    if let Some(schema) = &r.schema {
        b["response_format"] = serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": false},
        });
    }
    b
}

/// The peer: the same POSTs with reqwest and nothing else.
fn bare_run(endpoint: &str, concurrency: usize, reqs: &[Request]) -> (Duration, Duration) {
    let client = reqwest::Client::builder().build().unwrap();
    let url = openai::url(endpoint);
    let headers = openai::headers(TEACHER_KEY).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Clock::start();
    let n = rt.block_on(async {
        futures_util::stream::iter(reqs)
            .map(|r| {
                let req = client
                    .post(&url)
                    .headers(headers.clone())
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&bare_body(r)).unwrap())
                    .timeout(TIMEOUT);
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
    let d = t.stop();
    assert_eq!(n, reqs.len());
    d
}

fn seeds(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"input\": \"ticket {i}: the app crashes on start\"}}\n"))
        .collect()
}

fn main() {
    kolm::process::init();
    init_env();
    let server = Server::start(Box::new(|_, _| r#"{"label":"bug"}"#.to_string()));
    server
        .state
        .keep_seen
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let endpoint = server.endpoint();
    let mut rows = String::new();
    let (mut worst, mut worst_cpu): (f64, f64) = (0.0, 0.0);
    for concurrency in [1usize, 8, 64] {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let reqs = requests(concurrency * 100 + round);
            assert_eq!(
                serde_json::to_value(openai::body(&reqs[0], 1, 0)).unwrap(),
                bare_body(&reqs[0]),
                "both sides send the same JSON"
            );
            peer.push(bare_run(&endpoint, concurrency, &reqs));
            ours.push(kolm_run(&endpoint, concurrency, &reqs));
        }
        // Medians: of each side's wall-clock and client-thread CPU time, and of the ratio of
        // the two runs of each round (taken back to back with the same requests, so a slow
        // spell of the shared cores weighs on both).
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let per_req = |d: Duration| d.as_secs_f64() / REQUESTS as f64 * 1e6;
        let wall =
            |runs: &[(Duration, Duration)]| median(runs.iter().map(|r| per_req(r.0)).collect());
        let cpu =
            |runs: &[(Duration, Duration)]| median(runs.iter().map(|r| per_req(r.1)).collect());
        let (wall_k, wall_p) = (wall(&ours), wall(&peer));
        let (cpu_k, cpu_p) = (cpu(&ours), cpu(&peer));
        let rate = |us: f64| 1e6 / us;
        let ratio = median(
            ours.iter()
                .zip(&peer)
                .map(|(o, p)| o.0.as_secs_f64() / p.0.as_secs_f64())
                .collect(),
        );
        let overhead_us = (ratio - 1.0) * wall_p;
        let cpu_ratio = cpu_k / cpu_p;
        worst = worst.max(ratio);
        worst_cpu = worst_cpu.max(cpu_ratio);
        eprintln!(
            "concurrency {concurrency}: kolm {:.0} req/s, bare reqwest {:.0} req/s, overhead {overhead_us:.1} µs/request ({:+.1}%); client CPU {cpu_k:.1} vs {cpu_p:.1} µs/request ({:+.1}%)",
            rate(wall_k),
            rate(wall_p),
            (ratio - 1.0) * 100.0,
            (cpu_ratio - 1.0) * 100.0
        );
        rows.push_str(&format!(
            "| {REQUESTS} requests at concurrency {concurrency} | {:.0} req/s | {:.0} req/s | {ratio:.3}× | {overhead_us:+.1} µs ({:+.1}%) | {cpu_k:.1} µs vs {cpu_p:.1} µs ({:+.1}%) |\n",
            rate(wall_k),
            rate(wall_p),
            (ratio - 1.0) * 100.0,
            (cpu_ratio - 1.0) * 100.0
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
        "Machine: 2 cores (the loopback teacher shares them with the client). Peer: a bare reqwest 0.12 loop posting the same JSON (built with `json!`) with the same per-request timeout, `buffer_unordered(concurrency)` on a current-thread tokio runtime as kolm's teacher does, parsing replies into `serde_json::Value`; {ROUNDS} runs each, alternating: medians of each side's throughput and client CPU (the calling thread's CPU time, which the loopback server does not share), and of the ratio of the two runs of each round (back to back, same requests). kolm's side includes keying and looking up every request in the cache, the retry policy, logging every answer (written every 5 ms) and the meter; it serialises typed bodies and parses typed replies.\n\n\
| measure | kolm | bare reqwest | ratio | kolm's overhead per request | client CPU per request, kolm vs bare |\n|---|---|---|---|---|---|\n{rows}\n\
Goal: overhead ≤ 5% (worst wall-clock ratio here: {worst:.3}×; worst client-CPU ratio: {worst_cpu:.3}×).\n\n\
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
