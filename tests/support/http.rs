//! `kolm serve --http` for the tests: started on a free loopback port, with a small client
//! (reqwest without its `json` feature), and where the npm clients are installed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::KEY;

/// `kolm serve --http` on a free loopback port, for one test.
pub struct Http {
    pub child: Child,
    pub base: String,
}

impl Http {
    pub fn start(home: &Path, args: &[&str], token: Option<&str>) -> Http {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(self.url(path))
            .json_body(body)
            .timeout(Duration::from_secs(120))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, json_of(r))
    }

    pub fn chat(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body)
    }

    pub fn wrap(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/wrap/verified", body)
    }

    /// SIGTERM: the server finishes and exits 0.
    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}

/// reqwest without its `json` feature: a JSON body, and a body read as JSON.
pub trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::blocking::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(v).unwrap())
    }
}

pub fn json_of(r: reqwest::blocking::Response) -> Value {
    serde_json::from_slice(&r.bytes().unwrap()).unwrap_or(Value::Null)
}

pub fn ask(model: &str, input: &str) -> Value {
    json!({"model": model, "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": input}]})
}

/// The recipe project built, and a server for its artifact (no token) in a fresh home.
pub fn serving() -> (super::Project, tempfile::TempDir, Http) {
    let p = super::recipe_project();
    let home = tempfile::tempdir().unwrap();
    let s = Http::start(
        home.path(),
        &["--artifact", p.artifact().to_str().unwrap()],
        None,
    );
    (p, home, s)
}

/// Where `scripts/inspector.sh` installs the npm clients (the MCP Inspector, the conformance
/// suite, the TypeScript SDK) and their Node: `$KOLM_INSPECTOR_DIR`, default
/// `~/.cache/kolm-test/npm`. Panics with the command that installs them when they are missing.
pub fn npm_dir() -> PathBuf {
    let dir = std::env::var_os("KOLM_INSPECTOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/kolm-test/npm")
        });
    assert!(
        dir.join("node_modules/.bin/node").is_file()
            && dir
                .join("node_modules/@modelcontextprotocol/conformance")
                .is_dir(),
        "run `bash scripts/inspector.sh` (`make test` does)"
    );
    dir
}
