//! `kolm serve --http` on loopback: the OpenAI-compatible API, limits, auth, shutdown, and a
//! real client (the Python `openai` SDK, from the test venv).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

struct Http {
    child: Child,
    base: String,
}

impl Http {
    fn start(home: &Path, args: &[&str], token: Option<&str>) -> Http {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kolm"));
        c.args(["serve", "--http", "--port", "0"])
            .args(args)
            .env("KOLM_HOME", home)
            .env("KOLM_SIGNING_KEY", KEY)
            .env_remove("KOLM_SERVE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            c.env("KOLM_SERVE_TOKEN", t);
        }
        let mut child = c.spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let base = loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "the server exited");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while err.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Http { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(self.url(path))
            .json_body(body)
            .timeout(Duration::from_secs(120))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, json_of(r))
    }

    fn chat(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body)
    }

    fn wrap(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/wrap/verified", body)
    }

    /// SIGTERM: the server finishes and exits 0.
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

/// reqwest without its `json` feature: a JSON body, and a body read as JSON.
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::blocking::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
}

fn json_of(r: reqwest::blocking::Response) -> Value {
    serde_json::from_slice(&r.bytes().unwrap()).unwrap_or(Value::Null)
}

fn ask(model: &str, input: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": input}]})
}

/// The recipe project built, and a server for its artifact (no token) in a fresh home.
fn serving() -> (Project, tempfile::TempDir, Http) {
    let p = recipe_project();
    let home = tempfile::tempdir().unwrap();
    let s = Http::start(
        home.path(),
        &["--artifact", p.artifact().to_str().unwrap()],
        None,
    );
    (p, home, s)
}

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
    let (status, r) = s.chat(
        &json!({"model": "demo", "messages": [{"role": "user", "content": "x"}], "stream": true}),
    );
    assert_eq!(status, 400, "{r}");
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
    let script: std::path::PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "openai_client.py",
    ]
    .iter()
    .collect();
    let out = Command::new(support::python::venv_python())
        .arg(&script)
        .arg(format!("{}/v1", s.base))
        .env("OPENAI_API_KEY", "tok")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
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
