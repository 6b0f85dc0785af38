//! Shared test support: projects on disk built with the real stages. The stand-ins are deterministic
//! functions of their declared inputs, so they exercise the executor's caching exactly as the
//! real stages will.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kolm::cache::BlobRef;
use kolm::executor::{self, BuildReport, ExecOptions, Failed, NodeStatus};
use kolm::home::Home;
use kolm::kolmfile::Kolmfile;
use kolm::progress::Progress;
use kolm::stages::*;

pub mod example;
pub mod http;
pub mod nginx;
pub mod python;
pub mod student;
pub mod teacher_server;

pub const KEY: &str = "test-signing-key";
/// Every stage of the build graph, in the order a build reports them (written out here, not
/// taken from the library, so that a test notices when the graph changes).
pub const STAGES: [&str; 8] = [
    "base",
    "recall",
    "label",
    "train",
    "decompose",
    "baseline",
    "score",
    "seal",
];
/// The teacher's API key in tests, in the variable `TEACHER_KEY_ENV`.
pub const TEACHER_KEY: &str = "sk-test-7f3a9c-not-a-real-key";
pub const TEACHER_KEY_ENV: &str = "KOLM_TEST_TEACHER_KEY";
/// The remote cache's HMAC secret in tests (`KOLM_REMOTE_CACHE_KEY`).
pub const REMOTE_KEY: &str = "team-cache-secret-not-real";

/// Sets the signing key once per test process. Tests never change the environment after
/// that: concurrent `setenv` and `getenv` across test threads is not safe.
pub fn init_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("KOLM_SIGNING_KEY", KEY);
        std::env::set_var(TEACHER_KEY_ENV, TEACHER_KEY);
        std::env::set_var("KOLM_REMOTE_CACHE_KEY", REMOTE_KEY);
    });
}

/// A Kolmfile using the tiny base, no teacher, training off, and a corpus for the test recall.
pub fn kolmfile_text(extra_task: &str) -> String {
    format!(
        r#"# a test project
[project]
name = "demo"

[base]
tiny = {{ arch = "llama", seed = 3 }}

[distill]
train = false

[recall]
corpus = ["docs/*.md"]

[gate]
min_k = 0.5

[[task]]
name = "demo"
description = "Classify a message."
output_schema = {{ type = "object", properties = {{ label = {{ type = "string", enum = ["account", "bug", "other"] }} }}, required = ["label"] }}
seeds = "data/seeds.jsonl"
evals = "data/evals.jsonl"
{extra_task}"#
    )
}

pub struct Project {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Project {
    /// A project with seeds, evals, three corpus docs and the given Kolmfile, all files dated
    /// an hour ago (so the fingerprint cache trusts them at once).
    pub fn new(kolmfile: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let p = Project { dir, home };
        p.write("Kolmfile.toml", kolmfile);
        p.write(
            "data/seeds.jsonl",
            "{\"input\": \"reset my password\", \"output\": {\"label\": \"account\"}}\n{\"input\": \"app crashes\", \"output\": {\"label\": \"bug\"}}\n",
        );
        p.write(
            "data/evals.jsonl",
            "{\"description\": \"a\", \"vars\": {\"input\": \"locked out\"}, \"assert\": [{\"type\": \"is-json\"}]}\n",
        );
        for i in 0..3 {
            p.write(
                &format!("docs/doc{i}.md"),
                &format!("# Doc {i}\nSome policy text number {i}.\n"),
            );
        }
        p.age_all();
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }

    /// Writes and dates the file an hour ago.
    pub fn edit(&self, rel: &str, text: &str) {
        self.write(rel, text);
        set_old(&self.path(rel));
    }

    pub fn age_all(&self) {
        for e in walk(self.dir.path()) {
            set_old(&e);
        }
    }

    pub fn kolmfile(&self) -> Kolmfile {
        Kolmfile::load(&self.path("Kolmfile.toml")).unwrap()
    }

    pub fn home(&self) -> Home {
        Home::at(self.home.path())
    }

    pub fn build_with(
        &self,
        options: BuildOptions,
        exec: ExecOptions,
    ) -> Result<BuildReport, Box<Failed>> {
        init_env();
        executor::build(
            self.kolmfile(),
            self.home(),
            test_stages(),
            options,
            exec,
            Progress::hidden(),
        )
    }

    pub fn build(&self) -> BuildReport {
        self.build_with(BuildOptions::default(), ExecOptions::default())
            .map_err(|f| f.error)
            .expect("build succeeds")
    }

    pub fn artifact(&self) -> PathBuf {
        self.path("dist/demo.kolm")
    }
}

pub fn set_old(p: &Path) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

/// Every file under `d` (file types from the directory listing: no stat per file).
pub fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The stages tests build with: the real ones.
pub fn test_stages() -> Stages {
    Stages::default()
}

/// Statuses by stage name.
pub fn statuses(r: &BuildReport) -> Vec<(String, NodeStatus, bool)> {
    r.nodes
        .iter()
        .map(|n| (n.stage.name().to_string(), n.status, n.cutoff))
        .collect()
}

pub fn ran(r: &BuildReport) -> Vec<String> {
    r.nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Ran)
        .map(|n| n.stage.name().to_string())
        .collect()
}

/// The stdout of a command that must have succeeded, as JSON (its stderr in the panic if not).
pub fn ok_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

pub fn blob_ref(sha256: &str, size: u64) -> BlobRef {
    BlobRef {
        sha256: sha256.into(),
        size,
    }
}

/// Ctrl-C to a running `kolmbuild`: it must stop with exit 130 and say it was interrupted.
pub fn ctrl_c(child: std::process::Child) -> std::process::Output {
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    out
}

/// The two-field triage schema the runtime tests decode under.
pub fn triage_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "label": { "type": "string", "enum": ["billing", "bug", "account"] },
            "severity": { "type": "string", "enum": ["low", "high"] }
        },
        "required": ["label", "severity"],
        "additionalProperties": false
    })
}

/// A project built end to end with decompose on: six password seeds and a recipe that answers
/// every input mentioning a password exactly, so a run can go either way.
pub fn recipe_project() -> Project {
    let p = Project::new(&kolmfile_text(
        "[decompose]\nenabled = true\nrecipes_dir = \"recipes\"\n",
    ));
    let seeds: String = (0..6)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"input": format!("password problem {i}"), "output": {"label": "account"}})
            )
        })
        .collect();
    p.write("data/seeds.jsonl", &seeds);
    p.write(
        "recipes/password.js",
        "function recipe(input) { return /password/.test(input) ? {label: 'account'} : null; }",
    );
    p.age_all();
    p.build();
    p
}

/// A file of `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs a client program that prints one JSON line last (the fixtures' clients), and returns
/// that line; a failure shows everything the program printed.
pub fn client_json(c: &mut std::process::Command) -> serde_json::Value {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{c:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{c:?}: {e}: {stdout}"))
}

/// Resident memory of a process, KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The ways a secret could be written down: as is, in hex (either case), and in base64 at each
/// of the three alignments a longer encoded stream could give it (only the characters that do
/// not depend on its neighbours).
pub fn secret_forms(secret: &str) -> Vec<Vec<u8>> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut forms = vec![
        secret.as_bytes().to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for pad in 0..3 {
        let bytes: Vec<u8> = std::iter::repeat_n(0u8, pad)
            .chain(secret.bytes())
            .collect();
        let mut enc = Vec::new();
        for c in bytes.chunks(3) {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=c.len() {
                enc.push(B64[(n >> (18 - 6 * i) & 63) as usize]);
            }
        }
        // Drop the characters touched by the padding and by whatever follows.
        let skip = (pad * 4).div_ceil(3);
        forms.push(enc[skip..enc.len() - 2].to_vec());
    }
    forms
}

/// Panics, saying where, when `bytes` hold `secret` in any of its [`secret_forms`].
pub fn assert_no_secret(secret: &str, place: &str, bytes: &[u8]) {
    for form in secret_forms(secret) {
        assert!(
            !bytes.windows(form.len()).any(|w| w == form.as_slice()),
            "the secret leaked into {place} (as {:?})",
            String::from_utf8_lossy(&form)
        );
    }
}
