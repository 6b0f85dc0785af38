//! The teacher and the label stage against a real HTTP server on loopback that speaks the
//! OpenAI and Anthropic APIs (tests/support/teacher_server.rs): k-sample labelling and the
//! verifier, never paying twice, retries and fail-fast errors, cassettes, synthesis, the
//! measured baseline, and keys that never land anywhere.

mod support;

use std::time::Duration;

use kolm::stages::{BuildOptions, LabelOut, StageOutput};
use kolm::teacher::{Meter, Request, Teacher};
use serde_json::{json, Value};
use support::teacher_server::*;
use support::*;

const SEEDS: &str = r#"{"input": "reset my password"}
{"input": "app crashes on start"}
{"input": "the weather is nice"}
{"input": "gibberish"}
"#;

/// Answers as a teacher that knows the task, except for one input it cannot agree on and one
/// it cannot answer in JSON. Synthesis requests get ten proposals, two of them repeats.
fn oracle() -> Box<Answerer> {
    Box::new(|body, i| {
        if system_text(body).starts_with("You write new example inputs") {
            let s = body["seed"].as_i64().unwrap_or(0);
            let mut inputs: Vec<String> = (0..8)
                .map(|j| format!("synthetic question {s}-{j}"))
                .collect();
            inputs.push("reset my password".into());
            inputs.push(format!("synthetic question {s}-0"));
            return json!({ "inputs": inputs }).to_string();
        }
        let user = user_text(body);
        match input_of(&user) {
            "the weather is nice" => {
                let label = ["account", "bug", "other"][i % 3];
                json!({ "label": label }).to_string()
            }
            "gibberish" => "I cannot answer that.".into(),
            s if s.contains("password") || s.contains("locked") => r#"{"label":"account"}"#.into(),
            s if s.contains("crash") => r#"{"label": "bug"}"#.into(),
            _ => r#"{"label":"other"}"#.into(),
        }
    })
}

fn teacher_kolmfile(server_endpoint: &str, provider: &str, extra: &str) -> String {
    format!(
        "[teacher]\nprovider = \"{provider}\"\nmodel = \"teach-1\"\nendpoint = \"{server_endpoint}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"\nsamples = 3\n{extra}\n{}",
        kolmfile_text("")
    )
}

fn project(k: &str, seeds: &str) -> Project {
    let p = Project::new(k);
    p.edit("data/seeds.jsonl", seeds);
    p
}

fn no_gate() -> BuildOptions {
    BuildOptions {
        gate: Some(0.0),
        ..Default::default()
    }
}

fn one_job() -> kolm::executor::ExecOptions {
    kolm::executor::ExecOptions {
        jobs: 1,
        ..Default::default()
    }
}

fn build(p: &Project) -> kolm::executor::BuildReport {
    p.build_with(no_gate(), one_job())
        .map_err(|f| f.error)
        .expect("build succeeds")
}

fn output_of(r: &kolm::executor::BuildReport, p: &Project, stage: &str) -> StageOutput {
    let n = r.nodes.iter().find(|n| n.stage.name() == stage).unwrap();
    let store = kolm::cache::Store::new(p.home().cache());
    serde_json::from_value(store.get_action(n.key.as_deref().unwrap()).unwrap().output).unwrap()
}

fn label_of(r: &kolm::executor::BuildReport, p: &Project) -> (LabelOut, Vec<Value>) {
    let StageOutput::Label(l) = output_of(r, p, "label") else {
        panic!()
    };
    let store = kolm::cache::Store::new(p.home().cache());
    let pairs = kolm::jsonl::parse("pairs", &store.blob(&l.pairs).unwrap()).unwrap();
    (l, pairs.into_iter().map(|(_, v)| v).collect())
}

#[test]
fn openai_labels_by_majority_and_never_asks_twice() {
    let server = Server::start(oracle());
    let p = project(&teacher_kolmfile(&server.endpoint(), "openai", ""), SEEDS);
    let r = build(&p);
    let (l, pairs) = label_of(&r, &p);
    assert_eq!(l.kept, 2);
    assert_eq!(l.dropped.get("no majority"), Some(&1), "{:?}", l.dropped);
    assert_eq!(l.dropped.get("not JSON"), Some(&1), "{:?}", l.dropped);
    assert_eq!(l.teacher_requests, 4);
    assert!(l.teacher_usage.input_tokens > 0 && l.teacher_usage.output_tokens > 0);
    assert_eq!(pairs[0]["input"], "reset my password");
    assert_eq!(pairs[0]["output"], json!({"label": "account"}));
    assert_eq!(pairs[0]["source"], "teacher");
    assert_eq!(pairs[0]["line"], 1);
    assert_eq!(pairs[0]["winner"], 0);
    assert_eq!(pairs[0]["agreement"].as_f64(), Some(1.0));
    assert_eq!(pairs[1]["output"], json!({"label": "bug"}));
    assert!(pairs[0]["chunk_ids"].is_array());

    // What went over the wire: 4 label requests with k = 3 each, and 1 baseline request.
    let seen = server.seen();
    assert_eq!(seen.len(), 5);
    for s in &seen {
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {TEACHER_KEY}").as_str())
        );
        assert_eq!(s.body["model"], "teach-1");
        assert_eq!(s.body["response_format"]["type"], "json_schema");
        assert_eq!(s.body["messages"][0]["role"], "system");
    }
    let label_reqs: Vec<_> = seen.iter().filter(|s| s.body["n"] == 3).collect();
    assert_eq!(label_reqs.len(), 4);
    assert!(label_reqs
        .iter()
        .all(|s| s.body["temperature"] == 0.7 && s.body["seed"] == 0));
    assert_eq!(r.teacher.requests_sent, 5);
    assert_eq!(r.teacher.cache_hits, 0);

    // The baseline was measured on the evals, and sealed.
    let StageOutput::Baseline(b) = output_of(&r, &p, "baseline") else {
        panic!()
    };
    assert_eq!(b.source, "teacher");
    assert_eq!(b.baseline.accuracy, 1.0);
    let opened = kolm::artifact::verify::open(&p.artifact()).unwrap();
    let manifest: Value = serde_json::from_slice(&opened.manifest_bytes).unwrap();
    assert_eq!(manifest["baseline"]["source"], "teacher");
    assert_eq!(manifest["training"]["teacher_requests"], 4);

    // Both nondeterministic stages are pinned.
    let lock = std::fs::read_to_string(p.path("Kolmfile.lock")).unwrap();
    assert!(
        lock.contains("stage = \"label\"") && lock.contains("stage = \"baseline\""),
        "{lock}"
    );

    // A rebuild with no change asks nothing.
    let r = build(&p);
    assert_eq!(server.requests(), 5);
    assert_eq!(r.teacher, kolm::teacher::Totals::default());

    // One more seed: exactly one more request; the other answers come from the cache.
    p.edit(
        "data/seeds.jsonl",
        &format!("{SEEDS}{{\"input\": \"app crashes when saving\"}}\n"),
    );
    let r = build(&p);
    assert_eq!(server.requests(), 6);
    assert_eq!((r.teacher.requests_sent, r.teacher.cache_hits), (1, 4));
    let (l, _) = label_of(&r, &p);
    assert_eq!(l.kept, 3);

    // The key is nowhere on disk.
    for root in [p.dir.path(), p.home.path()] {
        for f in walk(root) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert_no_secret(TEACHER_KEY, &f.display().to_string(), &bytes);
        }
    }
}

#[test]
fn anthropic_speaks_messages_with_one_request_per_sample() {
    let server = Server::start(oracle());
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "anthropic", "")
            .replace("samples = 3", "samples = 2"),
        "{\"input\": \"reset my password\"}\n",
    );
    let r = build(&p);
    let (l, pairs) = label_of(&r, &p);
    assert_eq!(l.kept, 1);
    assert_eq!(pairs[0]["output"], json!({"label": "account"}));
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "2 samples + 1 baseline request");
    for s in &seen {
        assert_eq!(s.path, "/v1/messages");
        assert_eq!(s.header("x-api-key"), Some(TEACHER_KEY));
        assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
        assert!(s.header("authorization").is_none());
        assert!(s.body["system"].as_str().unwrap().contains("JSON schema"));
        assert!(s.body["max_tokens"].as_u64().unwrap() > 0);
        assert!(s.body.get("n").is_none());
    }
}

#[test]
fn servers_that_ignore_n_are_asked_again_until_k_samples_are_in() {
    let server = Server::start(oracle());
    server
        .state
        .ignore_n
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "openai", ""),
        "{\"input\": \"app crashes\"}\n",
    );
    let r = build(&p);
    let (l, pairs) = label_of(&r, &p);
    assert_eq!((l.kept, pairs[0]["samples"].clone()), (1, json!(3)));
    let seeds: Vec<Value> = server
        .seen()
        .iter()
        .filter(|s| s.body["temperature"] == 0.7)
        .map(|s| s.body["seed"].clone())
        .collect();
    assert_eq!(
        seeds,
        vec![json!(0), json!(1), json!(2)],
        "each top-up draws with the next seed"
    );
}

/// A teacher made directly from a project's Kolmfile, for the wire-level tests.
fn direct(server: &Server, extra: &str) -> (Project, Teacher) {
    init_env();
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "openai", extra),
        SEEDS,
    );
    let k = p.kolmfile();
    let t = Teacher::for_task(&k, &k.tasks[0].teacher).unwrap().unwrap();
    (p, t)
}

fn request(n: u32) -> Request {
    Request {
        model: "teach-1".into(),
        system: "s".into(),
        user: "reset my password".into(),
        schema: None,
        n,
        temperature: 0.0,
        seed: 0,
        max_tokens: 16,
    }
}

fn ask(
    p: &Project,
    t: &Teacher,
    r: Request,
) -> (
    kolm::Result<Vec<kolm::teacher::Answer>>,
    kolm::teacher::Totals,
) {
    let store = kolm::cache::Store::new(p.home().cache());
    let meter = Meter::default();
    let out = t.ask_all(&store, &meter, &[r], &|| {});
    (out, meter.totals())
}

#[test]
fn transient_failures_are_retried_honouring_retry_after() {
    let server = Server::start(oracle());
    let (p, t) = direct(&server, "");
    server.script([
        Fault::status(429).with_header("retry-after-ms", "10"),
        Fault::status(429).with_header("Retry-After", "0"),
        Fault::status(503),
        Fault::Malformed,
        Fault::Truncated,
    ]);
    let (out, totals) = ask(&p, &t, request(1));
    let answers = out.expect("the sixth attempt succeeds");
    assert_eq!(answers[0].texts, vec![r#"{"label":"account"}"#.to_string()]);
    assert_eq!(server.requests(), 6);
    assert_eq!((totals.requests_sent, totals.http_attempts), (1, 6));

    // And the answer is cached: asking again sends nothing.
    let (out, totals) = ask(&p, &t, request(1));
    assert_eq!(out.unwrap(), answers);
    assert_eq!((server.requests(), totals.cache_hits), (6, 1));
}

#[test]
fn a_request_that_hangs_times_out_and_is_retried() {
    let server = Server::start(oracle());
    let (p, t) = direct(&server, "timeout_secs = 1");
    server.script([Fault::Hang(Duration::from_secs(3))]);
    let (out, _) = ask(&p, &t, request(1));
    out.expect("the retry succeeds");
    assert_eq!(server.requests(), 2);
}

#[test]
fn retries_run_out_with_a_clear_error() {
    let server = Server::start(oracle());
    let (p, t) = direct(&server, "max_retries = 2");
    server.script([Fault::status(500), Fault::status(502), Fault::status(500)]);
    let err = ask(&p, &t, request(1)).0.unwrap_err().to_string();
    assert!(
        err.contains("failed 3 time(s)") && err.contains("scripted 500"),
        "{err}"
    );
    assert_eq!(server.requests(), 3);
}

#[test]
fn a_batch_sends_each_distinct_request_once_and_answers_the_cached_ones_first() {
    let server = Server::start(oracle());
    let (p, t) = direct(&server, "");
    let store = kolm::cache::Store::new(p.home().cache());
    let mut other = request(1);
    other.user = "the invoice is wrong".into();
    let batch = [request(1), other.clone(), request(1)];
    let meter = Meter::default();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let on_each = || {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    };
    let answers = t.ask_all(&store, &meter, &batch, &on_each).unwrap();
    assert_eq!(server.requests(), 2, "the repeated request went out once");
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(calls.into_inner(), 3, "progress counts every answer");
    assert_eq!(meter.totals().requests_sent, 2);
    // Next time, all three come from the log.
    let meter = Meter::default();
    let again = t.ask_all(&store, &meter, &batch, &|| {}).unwrap();
    assert_eq!(again, answers);
    assert_eq!(server.requests(), 2);
    assert_eq!(meter.totals().cache_hits, 3);
}

#[test]
fn key_quota_and_bad_request_errors_fail_fast() {
    let server = Server::start(oracle());
    let (p, t) = direct(&server, "");
    let cases = [
        (Fault::status(401).with_body(json!({"error": {"message": format!("Incorrect API key provided: {TEACHER_KEY}")}})), "rejected the API key"),
        (Fault::status(403), "rejected the API key"),
        (Fault::status(429).with_body(json!({"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}})), "out of quota"),
        (Fault::status(400).with_body(json!({"error": {"message": "model `teach-1` does not exist"}})), "refused the request"),
        // An endpoint that speaks another wire: JSON, but not a chat completion.
        (Fault::status(200).with_body(json!({"content": [{"type": "text", "text": "hi"}]})), "answered in a shape kolm does not know: missing field `choices`"),
    ];
    for (i, (fault, says)) in cases.into_iter().enumerate() {
        server.script([fault]);
        let err = ask(&p, &t, request(1)).0.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains(says), "{text}");
        assert_eq!(
            server.requests(),
            i as u64 + 1,
            "no retry for a fatal error"
        );
        assert!(
            !text.contains(TEACHER_KEY),
            "the key must be scrubbed: {text}"
        );
        if says.contains("API key") || says.contains("quota") {
            assert!(
                text.contains(TEACHER_KEY_ENV),
                "the message names the key's variable: {text}"
            );
        }
    }
}

#[test]
fn a_missing_key_names_its_variable() {
    init_env();
    let p = project(
        &teacher_kolmfile("http://127.0.0.1:9", "openai", "")
            .replace(TEACHER_KEY_ENV, "KOLM_TEST_NO_SUCH_KEY"),
        SEEDS,
    );
    let k = p.kolmfile();
    let err = Teacher::for_task(&k, &k.tasks[0].teacher)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("KOLM_TEST_NO_SUCH_KEY") && err.contains("not set"),
        "{err}"
    );
}

#[test]
fn a_recorded_cassette_replays_offline_and_a_miss_says_how_to_record() {
    let server = Server::start(oracle());
    let p = project(
        &teacher_kolmfile(
            &server.endpoint(),
            "openai",
            "cassette = \"teacher.cassette.jsonl\"",
        ),
        SEEDS,
    );
    let r = build(&p);
    let (recorded, _) = label_of(&r, &p);
    let cassette = std::fs::read_to_string(p.path("teacher.cassette.jsonl")).unwrap();
    let lines: Vec<Value> = cassette
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["kolm_cassette"], 1);
    assert_eq!(
        lines.len(),
        1 + 5,
        "a header and every answer used (4 labels, 1 baseline)"
    );
    let keys: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted by key");
    assert!(!cassette.contains(TEACHER_KEY));

    // Replay, in a fresh home (no cache), with no server behind the endpoint.
    let replay = std::fs::read_to_string(p.path("Kolmfile.toml"))
        .unwrap()
        .replace("provider = \"openai\"", "provider = \"replay\"");
    let q = project(
        &replay.replace(&server.endpoint(), "http://127.0.0.1:9"),
        SEEDS,
    );
    std::fs::copy(
        p.path("teacher.cassette.jsonl"),
        q.path("teacher.cassette.jsonl"),
    )
    .unwrap();
    q.age_all();
    let before = server.requests();
    let r = build(&q);
    let (replayed, _) = label_of(&r, &q);
    assert_eq!(
        replayed.pairs, recorded.pairs,
        "the same pairs, byte for byte"
    );
    assert_eq!((r.teacher.replayed, r.teacher.requests_sent), (5, 0));
    assert_eq!(server.requests(), before);
    assert!(
        !std::fs::read_to_string(q.path("Kolmfile.lock"))
            .unwrap()
            .contains("stage = \"label\""),
        "replay is a pure function of the cassette: nothing to pin"
    );

    // A seed the cassette has never seen.
    q.edit(
        "data/seeds.jsonl",
        &format!("{SEEDS}{{\"input\": \"new question\"}}\n"),
    );
    let err = q.build_with(no_gate(), one_job()).err().unwrap().error;
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("has no answer for request") && text.contains("new question"),
        "{text}"
    );
    assert!(text.contains("record it"), "{text}");
    assert_eq!(err.code(), "TEACHER");

    // A hand-edited entry is refused.
    let tampered = cassette.replacen("reset my password", "reset my passw0rd", 1);
    q.edit("teacher.cassette.jsonl", &tampered);
    q.edit("data/seeds.jsonl", SEEDS);
    let err = q
        .build_with(no_gate(), one_job())
        .err()
        .unwrap()
        .error
        .to_string();
    assert!(err.contains("does not match its request"), "{err}");
}

#[test]
fn synthesis_adds_new_inputs_and_drops_repeats() {
    let server = Server::start(oracle());
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "openai", "synthesize = 12"),
        "{\"input\": \"reset my password\", \"output\": {\"label\": \"account\"}}\n",
    );
    let r = build(&p);
    let (l, pairs) = label_of(&r, &p);
    assert_eq!(l.synthesized, 12);
    let synth: Vec<&Value> = pairs
        .iter()
        .filter(|p| p["source"] == "synthesized")
        .collect();
    assert_eq!(synth.len(), 12);
    assert_eq!(
        pairs[0]["source"], "seed",
        "gold seeds are kept as they are, first"
    );
    assert!(synth.iter().all(|p| p["input"]
        .as_str()
        .unwrap()
        .starts_with("synthetic question")));
    assert!(
        l.dropped["synthesized duplicate or malformed"] >= 2,
        "{:?}",
        l.dropped
    );
    let inputs: std::collections::BTreeSet<&str> =
        synth.iter().map(|p| p["input"].as_str().unwrap()).collect();
    assert_eq!(inputs.len(), 12, "no duplicates");
}

#[test]
fn verify_seeds_reports_where_the_teacher_disagrees_with_gold() {
    let server = Server::start(oracle());
    let seeds = "{\"input\": \"reset my password\", \"output\": {\"label\": \"account\"}}\n{\"input\": \"app crashes\", \"output\": {\"label\": \"account\"}}\n";
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "openai", "verify_seeds = true"),
        seeds,
    );
    let r = build(&p);
    let (l, pairs) = label_of(&r, &p);
    assert_eq!(l.disagreements, vec![2]);
    assert_eq!(
        pairs[1]["output"],
        json!({"label": "account"}),
        "the gold stays"
    );
    assert_eq!(server.requests(), 3, "both seeds asked, plus the baseline");
    // Without verify_seeds, gold seeds cost nothing.
    let q = project(&teacher_kolmfile(&server.endpoint(), "openai", ""), seeds);
    build(&q);
    assert_eq!(
        server.requests(),
        4,
        "without verify_seeds gold seeds cost nothing: only the baseline (its own home) was asked"
    );
}

#[test]
fn task_assertions_gate_what_the_teacher_says() {
    let server = Server::start(oracle());
    let k = teacher_kolmfile(&server.endpoint(), "openai", "")
        + "assert = [{ type = \"not-contains\", value = \"bug\" }]\n";
    let p = project(&k, SEEDS);
    let r = build(&p);
    let (l, _) = label_of(&r, &p);
    assert_eq!(l.kept, 1);
    assert_eq!(
        l.dropped.get("assertion failed"),
        Some(&1),
        "{:?}",
        l.dropped
    );
}

#[test]
fn airgap_refuses_a_network_teacher() {
    let p = project(&teacher_kolmfile("http://127.0.0.1:9", "openai", ""), SEEDS);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kolmbuild"))
        .args(["--airgap", "--json"])
        .current_dir(p.dir.path())
        .env("KOLM_HOME", p.home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| serde_json::from_slice(&out.stderr).unwrap_or(Value::Null));
    let text = format!("{v} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("--airgap") && text.contains("network teacher"),
        "{text}"
    );
}

#[test]
fn ctrl_c_mid_label_keeps_every_answer_and_the_rerun_sends_only_the_rest() {
    init_env();
    let server = Server::start(oracle());
    let seeds: String = (0..12)
        .map(|i| format!("{{\"input\": \"reset my password, attempt {i}\"}}\n"))
        .collect();
    let p = project(
        &teacher_kolmfile(&server.endpoint(), "openai", "concurrency = 1"),
        &seeds,
    );
    // Each of the first answers takes 300 ms, so Ctrl-C lands while one is in flight.
    server.script((0..6).map(|_| Fault::Hang(Duration::from_millis(300))));
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kolmbuild"))
        .args(["-j", "1"])
        .current_dir(p.dir.path())
        .env("KOLM_HOME", p.home.path())
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while server.requests() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the build never got to label"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    ctrl_c(child);

    // Every answer that came back before Ctrl-C is in the cache.
    let store = kolm::cache::Store::new(p.home().cache());
    let stored = kolm::cache::admin::ls(&store)
        .iter()
        .filter(|e| e.stage == "teacher")
        .count() as u64;
    let first = server.requests();
    assert!(stored >= 3, "{stored} answers kept");
    assert!(
        first == stored || first == stored + 1,
        "sent {first}, kept {stored}: only the one in flight may be lost"
    );

    // The rerun asks for the rest and nothing else: 12 label requests and 1 baseline in all.
    let r = build(&p);
    assert_eq!(r.teacher.cache_hits, stored);
    assert_eq!(r.teacher.requests_sent, 13 - stored);
    assert_eq!(server.requests() - first, 13 - stored);
    let (l, _) = label_of(&r, &p);
    assert_eq!(l.kept, 12);
}
