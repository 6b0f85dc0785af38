//! `kolm serve --http` on loopback: the OpenAI-compatible API, limits, auth, shutdown, and a
//! real client (the Python `openai` SDK, from the test venv).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::http::*;
use support::*;

#[test]
fn the_openai_api_answers_with_the_artifact() {
    let (_p, _home, s) = serving();
    let get = |path: &str| reqwest::blocking::get(s.url(path)).unwrap();
    assert_eq!(json_of(get("/healthz"))["status"], "ok");
    let models = json_of(get("/v1/models"));
    assert_eq!(models["data"][0]["id"], "demo");

    let (status, r) = s.chat(&ask("demo", "my password expired"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    let content: Value =
        serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"label": "account"}));
    assert!(r["_kolm"]["recipe_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let (status, r) = s.chat(&ask("demo", "the app crashes"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // A schema of the caller's, in both nestings clients send: the output obeys it.
    let theirs = json!({"type": "object", "properties": {"label": {"type": "string", "enum": ["bug", "other"]}}, "required": ["label"], "additionalProperties": false});
    for rf in [
        json!({"type": "json_schema", "json_schema": {"name": "t", "schema": theirs}}),
        json!({"type": "json_schema", "schema": theirs}),
    ] {
        let mut body = ask("demo", "my password expired");
        body["response_format"] = rf;
        let (status, r) = s.chat(&body);
        assert_eq!(status, 200, "{r}");
        let out: Value =
            serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert!(
            ["bug", "other"].contains(&out["label"].as_str().unwrap()),
            "{out}"
        );
        assert!(
            r["_kolm"]["recipe_id"].is_null(),
            "recipes answer the task's schema only"
        );
    }

    // Errors, OpenAI-shaped.
    let (status, r) = s.chat(&ask("ghost", "x"));
    assert_eq!(
        (status, r["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    let (status, r) =
        s.chat(&json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "n": 2}));
    assert_eq!(
        (status, r["error"]["param"].clone()),
        (400, json!("n")),
        "{r}"
    );
    let (status, _) = s.chat(&json!({"model": "demo"}));
    assert_eq!(status, 400);
    let raw = reqwest::blocking::Client::new()
        .post(s.url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(get("/v1/nothing").status().as_u16(), 404);
    let metrics = get("/metrics").text().unwrap();
    assert!(
        metrics.contains(
            "kolm_http_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 4"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("kolm_recipe_answers_total 1"), "{metrics}");
    s.stop();
}

#[test]
fn wrap_verified_puts_k_samples_through_the_verifier_and_signs_a_receipt() {
    let (_p, home, s) = serving();
    let wrap = |extra: Value| {
        let mut body = json!({"model": "demo"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s.wrap(&body)
    };
    let mut receipts = 0;

    // An exact recipe is deterministic: one sample, and the receipt names it.
    let (status, r) = wrap(json!({"input": "my password expired", "k": 5}));
    assert_eq!(status, 200, "{r}");
    receipts += 1;
    assert_eq!(r["object"], "kolm.verified");
    assert_eq!(r["output"], json!({"label": "account"}));
    assert_eq!(r["verifier"]["k"], 1);
    assert_eq!(r["verifier"]["pass"], true);
    assert!(r["recipe_id"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(r["receipt"]["spec"], "rs-1-verified");
    assert!(r["receipt"]["path"]
        .as_str()
        .unwrap()
        .starts_with("recipe:"));
    assert!(r["receipt"]["mac"].is_string(), "signed with the key");

    // The model: sample 0 is the greedy answer, the chat endpoint's; near-greedy samples
    // agree with it; the winner's hash is the receipt's output hash.
    let (_, chat) = s.chat(&ask("demo", "the app crashes"));
    receipts += 1;
    let greedy: Value =
        serde_json::from_str(chat["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    let (status, r) = wrap(
        json!({"messages": [{"role": "user", "content": "the app crashes"}], "k": 3, "temperature": 0.01}),
    );
    assert_eq!(status, 200, "{r}");
    receipts += 1;
    assert_eq!(r["samples"][0]["output"], greedy);
    assert_eq!(
        r["verifier"],
        json!({"k": 3, "pass": true, "winner": 0, "agreement": 1.0, "reason": null})
    );
    assert_eq!(r["output"], greedy);
    assert_eq!(
        r["receipt"]["output_sha256"],
        json!(kolm::digest::sha256(&kolm::digest::canonical_json(&greedy)))
    );
    assert_eq!(r["receipt"]["verified"]["k"], 3);
    assert!(r["recipe_id"].is_null());

    // Samples that are not the schema's JSON (cut by max_tokens here) fail the verifier: the
    // call says so (200, output null, the reason) with a receipt that records the failure.
    let cut =
        json!({"input": "hello there", "k": 3, "max_tokens": 3, "temperature": 1.5, "seed": 9});
    let (status, r) = wrap(cut.clone());
    assert_eq!(status, 200, "{r}");
    receipts += 1;
    assert!(r["output"].is_null());
    assert_eq!(r["verifier"]["pass"], false);
    assert_eq!(r["verifier"]["reason"], "not JSON");
    assert_eq!(r["samples"].as_array().unwrap().len(), 3);
    assert_eq!(r["receipt"]["verified"]["pass"], false);
    assert_eq!(r["receipt"]["verified"]["seed"], 9);
    assert_eq!(
        r["receipt"]["output_sha256"],
        json!(kolm::digest::sha256(b"null"))
    );
    // One seed, the same samples.
    let (_, again) = wrap(cut);
    receipts += 1;
    assert_eq!(again["samples"], r["samples"]);

    // Refusals name the field.
    for (body, says) in [
        (json!({"input": "x", "k": 0}), "`k` must be 1 to 16"),
        (json!({"input": "x", "k": 17}), "`k` must be 1 to 16"),
        (
            json!({"input": "x", "temperature": 0}),
            "`temperature` must be in (0, 2]",
        ),
        (
            json!({"input": "x", "temperature": 2.5}),
            "`temperature` must be in (0, 2]",
        ),
        (json!({"input": "x", "seed": -1}), "`seed`"),
        (
            json!({"input": "x", "top_k": 0}),
            "`top_k` must be at least 1",
        ),
        (json!({"input": 3}), "`input` must be a string"),
        (json!({"input": "x", "messages": []}), "not both"),
        (json!({}), "`input` (a string) or `messages`"),
    ] {
        let (status, r) = wrap(body.clone());
        assert_eq!(status, 400, "{body}: {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let (status, r) = s.wrap(&json!({"model": "ghost", "input": "x"}));
    assert_eq!(
        (status, r["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    s.stop();

    // Every answered call is one link of the signed chain, run and verified receipts alike.
    let v = ok_json(
        &std::process::Command::new(env!("CARGO_BIN_EXE_kolm"))
            .args(["--json", "receipts", "verify"])
            .env("KOLM_HOME", home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .output()
            .unwrap(),
    );
    assert_eq!(v["chain"]["receipts"], receipts);
    assert_eq!(v["chain"]["macs_checked"], true);
}

#[test]
fn limits_auth_and_concurrency() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let art = p.artifact();
    // Beyond loopback, a token is required.
    let out = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args([
            "serve",
            "--http",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--artifact",
        ])
        .arg(&art)
        .env("KOLM_HOME", home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .env_remove("KOLM_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KOLM_SERVE_TOKEN"));

    let s = Http::start(
        home.path(),
        &[
            "--artifact",
            art.to_str().unwrap(),
            "--max-body-kib",
            "4",
            "--queue",
            "2",
        ],
        Some("s3cret-token"),
    );
    let c = reqwest::blocking::Client::new();
    assert_eq!(
        c.get(s.url("/healthz")).send().unwrap().status().as_u16(),
        200
    );
    let r = c.get(s.url("/v1/models")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(!r.text().unwrap().contains("s3cret"));
    let r = c
        .get(s.url("/v1/models"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(s.url("/v1/models"))
        .bearer_auth("s3cret-token")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Over the body limit: 413.
    let big = ask("demo", &"x".repeat(8 << 10));
    let r = c
        .post(s.url("/v1/chat/completions"))
        .bearer_auth("s3cret-token")
        .json_body(&big)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // 16 clients at once against a queue of 2: every one gets an answer or a clear 503.
    let url = s.url("/v1/chat/completions");
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::new()
                    .post(url)
                    .bearer_auth("s3cret-token")
                    .json_body(&ask("demo", &format!("the app crashes, case {i}")))
                    .timeout(Duration::from_secs(120))
                    .send()
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                (r.status().as_u16(), retry)
            })
        })
        .collect();
    let got: Vec<(u16, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        got.iter()
            .all(|(s, retry)| *s == 200 || (*s == 503 && *retry)),
        "{got:?}"
    );
    assert!(got.iter().any(|(s, _)| *s == 200), "{got:?}");
    s.stop();
}

/// The Python `openai` SDK against `--http`, with and without `response_format`.
#[test]
fn the_python_openai_sdk_talks_to_it() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let s = Http::start(
        home.path(),
        &["--artifact", p.artifact().to_str().unwrap()],
        Some("tok"),
    );
    let v = client_json(
        Command::new(support::python::venv_python())
            .arg(fixture("openai_client.py"))
            .arg(format!("{}/v1", s.base))
            .env("OPENAI_API_KEY", "tok"),
    );
    assert_eq!(v["models"], json!(["demo"]));
    assert_eq!(v["plain"], json!({"label": "account"}));
    assert!(
        ["bug", "other"].contains(&v["schema"]["label"].as_str().unwrap()),
        "{v}"
    );
    s.stop();
}

#[test]
fn sixty_four_clients_at_once_keep_memory_flat() {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let s = Http::start(
        home.path(),
        &[
            "--artifact",
            p.artifact().to_str().unwrap(),
            "--queue",
            "64",
        ],
        None,
    );
    let url = s.url("/v1/chat/completions");
    let round = |n: usize| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || {
                    // One client in eight asks the model; a recipe answers the others.
                    let input = if i % 8 == 0 {
                        format!("crash {n}-{i}")
                    } else {
                        format!("password {n}-{i}")
                    };
                    reqwest::blocking::Client::new()
                        .post(url)
                        .json_body(&ask("demo", &input))
                        .timeout(Duration::from_secs(300))
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200);
        }
    };
    round(0);
    let warm = rss_kib(s.child.id());
    for n in 1..=5 {
        round(n);
    }
    let after = rss_kib(s.child.id());
    eprintln!("kolm serve --http RSS: {warm} KiB after 64 requests, {after} KiB after 384");
    assert!(after < warm + 16 * 1024, "{warm} -> {after} KiB");
    s.stop();
}

/// `stream: true`: OpenAI's chunks for model and recipe answers alike, read by the `openai`
/// SDK (`create(stream=True)` and the `.stream()` helper) and by hand; the deltas put together
/// are the plain answer. `max_tokens` cuts recipe and model answers alike ("length").
#[test]
fn answers_stream_as_openai_chunks() {
    let (_p, _home, s) = serving();
    let inputs = ["my password expired", "the app crashes on start"];
    let rows = client_json(
        Command::new(support::python::venv_python())
            .arg(fixture("openai_stream.py"))
            .arg(format!("{}/v1", s.base))
            .args(inputs)
            .env("OPENAI_API_KEY", "unused"),
    );
    for (row, input) in rows.as_array().unwrap().iter().zip(inputs) {
        assert_eq!(row["streamed"], row["plain"], "{input}: {row}");
        assert_eq!(row["helper"], row["plain"], "{input}: {row}");
        assert_eq!(row["helper_final"], row["plain"], "{input}: {row}");
        assert_eq!(row["roles"], json!(["assistant"]), "{row}");
        assert_eq!(
            (row["finish"].clone(), row["plain_finish"].clone()),
            (json!("stop"), json!("stop"))
        );
        assert_eq!(row["usage"], row["plain_usage"], "{row}");
        serde_json::from_str::<Value>(row["plain"].as_str().unwrap()).unwrap();
    }
    // The model's answer comes in more than one piece; the recipe's in one.
    assert_eq!(rows[0]["chunks"], 1, "{rows}");
    assert!(rows[1]["chunks"].as_u64().unwrap() > 1, "{rows}");

    // By hand: the wire format, ending in [DONE].
    let body = json!({"model": "demo", "messages": [{"role": "user", "content": "the app crashes"}], "stream": true});
    let r = reqwest::blocking::Client::new()
        .post(s.url("/v1/chat/completions"))
        .json_body(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{last}");
    assert!(last["_kolm"]["receipt"]["mac"].is_string(), "{last}");

    // curl, as a user would stream: the same pieces.
    let out = Command::new("curl")
        .args([
            "-sSN",
            "--fail-with-body",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(body.to_string())
        .arg(s.url("/v1/chat/completions"))
        .output()
        .expect("curl (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let curled = String::from_utf8_lossy(&out.stdout);
    let content = |text: &str| -> String {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|e| *e != "[DONE]")
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(content(&curled), content(&text));
    assert!(curled.trim_end().ends_with("data: [DONE]"), "{curled}");

    // max_tokens: a cut answer is "length", for a recipe's answer and the model's, streamed
    // or not; the streamed pieces are the same cut text.
    for input in ["my password expired", "the app crashes"] {
        let mut body = ask("demo", input);
        body["max_tokens"] = json!(2);
        let (status, plain) = s.chat(&body);
        assert_eq!(status, 200, "{plain}");
        assert_eq!(
            plain["choices"][0]["finish_reason"], "length",
            "{input}: {plain}"
        );
        assert_eq!(plain["usage"]["completion_tokens"], 2, "{plain}");
        body["stream"] = json!(true);
        let text = reqwest::blocking::Client::new()
            .post(s.url("/v1/chat/completions"))
            .json_body(&body)
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert_eq!(
            content(&text),
            plain["choices"][0]["message"]["content"].as_str().unwrap(),
            "{input}"
        );
        assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    }

    // A request refused before any decoding is a plain 400, stream or not.
    let mut body = ask("demo", "x");
    body["stream"] = json!(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let (status, r) = s.chat(&body);
    assert_eq!(
        (status, r["error"]["param"].clone()),
        (400, json!("tools")),
        "{r}"
    );
    s.stop();
}
