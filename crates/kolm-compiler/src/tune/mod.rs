//! `kolm tune`: the evolve loop beside an unchanged signed artifact (kolmfile-spec/tune.md).
//!
//! Revisions are complete adapters for the artifact's base, in `revisions/vN/`. `v0` is the
//! artifact's own adapter, so a tuned artifact starts out answering exactly as it did; `step`
//! trains `v(n+1)` from HEAD's adapter on the captures (and the pairs given to `init`) with the
//! train stage's code; `eval` is K on the artifact's own tests with the compile's code; `promote`
//! moves HEAD only through the gate; `rollback` swaps HEAD and `head.prev`. What the runtime
//! reads (HEAD, the capture log) is [`crate::tune_state`]; every state change is one JSON
//! line in `KOLM_HOME/logs/tune.jsonl` ([`log`]).

pub mod daemon;
pub mod step;

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::runtime::open::{self, Opened};
pub use crate::tune_state::Revision;
use crate::tune_state::{log, Head, TuneDir};
use crate::{Error, Result};

pub use daemon::{daemon, DaemonOptions};
pub use step::{eval, step, StepOptions};

/// What `--airgap` sets for anything the loop starts (tune.md §3.2).
pub const AIRGAP_ENV: [(&str, &str); 4] = [
    ("KOLM_AIRGAP", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
];

/// `--airgap` (also `KOLM_AIRGAP=1`): the offline environment for this process and anything
/// it starts, and a base that must be a local file that exists: never a URL, never fetched.
/// (The loop trains in process and opens no connection; this makes the promise checkable.)
pub fn airgap(t: &Tuned) -> Result<()> {
    for (k, v) in AIRGAP_ENV {
        std::env::set_var(k, v);
    }
    // The base is the artifact's own model.gguf, read in place or extracted from it.
    let base = &t.opened.path;
    if base.to_string_lossy().contains("://") || !base.is_file() {
        return Err(Error::invalid(
            format!(
                "--airgap: the artifact `{}` is not a local file",
                base.display()
            ),
            "an airgapped loop trains only on a base already on this machine",
        ));
    }
    Ok(())
}

/// Whether the environment asks for `--airgap`.
pub fn airgap_from_env() -> bool {
    std::env::var("KOLM_AIRGAP").is_ok_and(|v| v == "1")
}

/// An artifact being tuned: the verified artifact and its state folder.
pub struct Tuned {
    pub opened: Opened,
    pub dir: TuneDir,
    pub home: Home,
}

impl Tuned {
    /// `artifact` is a `.kolm` path or an installed artifact's name.
    pub fn open(home: &Home, artifact: &str, verify: &VerifyOptions) -> Result<Tuned> {
        let path = crate::artifact::installed::resolve(home, artifact)?;
        let opened = open::open(&path, home, verify, true)?;
        let dir = TuneDir::of(home, &opened.manifest.task.name, &opened.sha256);
        Ok(Tuned {
            opened,
            dir,
            home: home.clone(),
        })
    }

    /// HEAD, or the error that says the artifact is not tuned yet.
    pub fn head(&self) -> Result<Head> {
        self.dir.head()?.ok_or_else(|| {
            Error::invalid(
                format!(
                    "`{}` is not being tuned (no `{}`)",
                    self.opened.path.display(),
                    self.dir.head_file().display()
                ),
                "start with `kolm tune init ART`",
            )
        })
    }

    pub fn revision(&self, name: &str) -> Result<Revision> {
        self.dir.read_revision(name)
    }

    fn write_revision_json(&self, r: &Revision) -> Result<()> {
        self.dir.write_revision(r)
    }

    /// Revision names, oldest first (`v0`, `v1`, …).
    pub fn revisions(&self) -> Result<Vec<String>> {
        self.dir.revision_names()
    }

    /// Moves HEAD (and `head.prev`) in one atomic write, and logs it.
    fn set_head(&self, head: &Head, event: &str, extra: serde_json::Value) -> Result<()> {
        use std::io::Write;
        let path = self.dir.head_file();
        let mut tmp = crate::fsutil::temp_beside(&path)?;
        tmp.write_all(&serde_json::to_vec(head).expect("serialises"))
            .map_err(|e| Error::io(&path, "write", e))?;
        crash_point(&format!("{event}-head-staged"));
        crate::fsutil::persist(tmp, &path)?;
        crash_point(&format!("{event}-head-moved"));
        let mut fields = json!({"head": head.head, "prev": head.prev});
        if let (Some(f), serde_json::Value::Object(more)) = (fields.as_object_mut(), extra) {
            f.extend(more);
        }
        self.log(event, fields)
    }

    /// Takes the state's exclusive lock (`tune.lock`) for one state-changing verb, so that two
    /// tuners (a daemon and a person) never interleave a step or a HEAD change.
    pub fn lock(&self) -> Result<std::fs::File> {
        crate::fsutil::lock_exclusive(&self.dir.root.join("tune.lock"), || {})
    }

    /// One line in `tune.jsonl`: `fields` (an object) after the time, event and slug.
    fn log(&self, event: &str, fields: serde_json::Value) -> Result<()> {
        let fields = match fields {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        log::append(&self.home, event, &self.slug(), fields)
    }

    pub fn slug(&self) -> String {
        crate::tune_state::slug(&self.opened.manifest.task.name, &self.opened.sha256)
    }
}

/// The crash-safety tests' hook (tests/tune.rs): with `KOLM_TUNE_CRASH_AT=<point>` the process
/// aborts at that point, as a kill would stop it (no destructor, no cleanup runs).
pub(crate) fn crash_point(point: &str) {
    if std::env::var_os("KOLM_TUNE_CRASH_AT").is_some_and(|p| p == point) {
        std::process::abort();
    }
}

/// `kolm tune init`: revision v0 (the artifact's own adapter) as HEAD; `pairs`, a JSONL of
/// `{"input", "output"}` (the seeds the artifact was compiled from), joins every step so that
/// training on captures does not forget them.
pub fn init(t: &Tuned, pairs: Option<&Path>) -> Result<Head> {
    let _lock = t.lock()?;
    if let Some(h) = t.dir.head()? {
        return Err(Error::invalid(
            format!(
                "`{}` is already being tuned (HEAD {})",
                t.opened.path.display(),
                h.head
            ),
            "`kolm tune status` shows its state; remove the tune folder to start over",
        ));
    }
    let pairs_n = match pairs {
        None => 0,
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, "read", e))?;
            let rows = step::read_pairs(&p.display().to_string(), &bytes)?;
            crate::fsutil::write_atomic(&t.dir.root.join("pairs.jsonl"), &bytes)?;
            rows.len() as u64
        }
    };
    crate::fsutil::write_atomic(&t.dir.adapter("v0"), &t.opened.lora)?;
    let v0 = Revision {
        name: "v0".into(),
        parent: None,
        // v0 is the artifact's adapter: its K is the sealed one.
        k_score: Some(t.opened.manifest.k_score),
        captures: 0,
        pairs: 0,
        steps: 0,
        tokens: 0,
        final_loss: None,
    };
    t.write_revision_json(&v0)?;
    let head = Head {
        head: "v0".into(),
        prev: None,
    };
    t.set_head(
        &head,
        "init",
        json!({"artifact_sha256": t.opened.sha256, "pairs": pairs_n}),
    )?;
    Ok(head)
}

/// `kolm tune capture-on` / `capture-off`.
pub fn capture(t: &Tuned, on: bool) -> Result<()> {
    t.head()?;
    let flag = t.dir.capture_flag();
    if on {
        crate::fsutil::write_atomic(&flag, b"")?;
    } else if let Err(e) = std::fs::remove_file(&flag) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(Error::io(&flag, "remove", e));
        }
    }
    t.log(if on { "capture_on" } else { "capture_off" }, json!({}))
}

/// The promotion gate.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub k: f64,
    pub require_improvement: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            k: crate::kolmfile::defaults::PROMOTE_MIN_K,
            require_improvement: true,
        }
    }
}

/// `kolm tune promote`: HEAD moves to `candidate` (default: the newest revision) only if its K
/// clears the gate and, with `require_improvement`, is at least HEAD's; each K is evaluated
/// first if it has not been. Refused: `gate_blocked` is logged and the error is exit 2, K_GATE.
pub fn promote(t: &Tuned, candidate: Option<&str>, gate: Gate) -> Result<Head> {
    let _lock = t.lock()?;
    let head = t.head()?;
    let name = match candidate {
        Some(c) => c.to_string(),
        None => t.revisions()?.pop().unwrap_or_else(|| head.head.clone()),
    };
    if name == head.head {
        return Err(Error::invalid(
            format!("`{name}` is HEAD already"),
            "train a candidate with `kolm tune step`",
        ));
    }
    let k = eval(t, &name)?;
    let k_head = eval(t, &head.head)?;
    let why = if k < gate.k {
        Some(format!(
            "K {k:.4} is below the promotion gate {:.2}",
            gate.k
        ))
    } else if gate.require_improvement && k < k_head {
        Some(format!(
            "K {k:.4} is below HEAD {}'s {k_head:.4} (require_improvement)",
            head.head
        ))
    } else {
        None
    };
    if let Some(why) = why {
        t.log(
            "gate_blocked",
            json!({"candidate": name, "k_score": k, "head": head.head, "head_k_score": k_head, "gate": gate.k, "require_improvement": gate.require_improvement, "reason": why}),
        )?;
        return Err(Error::from(crate::tune::PromotionBlocked {
            candidate: name,
            k,
            gate: gate.k,
            head: head.head,
            head_k: k_head,
            reason: why,
        }));
    }
    let new = Head {
        head: name.clone(),
        prev: Some(head.head.clone()),
    };
    t.set_head(
        &new,
        "promote",
        json!({"k_score": k, "head_k_score_before": k_head, "gate": gate.k}),
    )?;
    Ok(new)
}

/// `kolm tune rollback`: HEAD and `head.prev` swap; nothing is retrained.
pub fn rollback(t: &Tuned) -> Result<Head> {
    let _lock = t.lock()?;
    let head = t.head()?;
    let Some(prev) = head.prev.clone() else {
        return Err(Error::invalid(
            format!(
                "HEAD {} has no previous revision to roll back to",
                head.head
            ),
            "nothing has been promoted yet",
        ));
    };
    t.revision(&prev)?;
    let new = Head {
        head: prev,
        prev: Some(head.head),
    };
    t.set_head(&new, "rollback", json!({}))?;
    Ok(new)
}

/// `kolm tune status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub artifact: String,
    pub slug: String,
    pub head: String,
    pub prev: Option<String>,
    pub capturing: bool,
    pub captures: u64,
    /// Captures after the ones the newest revision was trained on.
    pub captures_since_step: u64,
    pub revisions: Vec<Revision>,
}

pub fn status(t: &Tuned) -> Result<Status> {
    let head = t.head()?;
    let revisions = t
        .revisions()?
        .iter()
        .map(|n| t.revision(n))
        .collect::<Result<Vec<_>>>()?;
    let captures = step::read_captures(&t.dir)?.len() as u64;
    let trained_on = revisions.iter().map(|r| r.captures).max().unwrap_or(0);
    Ok(Status {
        artifact: t.opened.path.display().to_string(),
        slug: t.slug(),
        head: head.head,
        prev: head.prev,
        capturing: t.dir.capturing(),
        captures,
        captures_since_step: captures.saturating_sub(trained_on),
        revisions,
    })
}

/// A tune promotion the gate refused: HEAD stays. Exit code 2, `--json` code `K_GATE`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("tune promotion of `{candidate}` refused: {reason}; HEAD stays {head}")]
#[diagnostic(
    code(K_GATE),
    help("capture more runs and `kolm tune step` again, or lower the gate with `--gate`")
)]
pub struct PromotionBlocked {
    pub candidate: String,
    pub k: f64,
    pub gate: f64,
    pub head: String,
    pub head_k: f64,
    pub reason: String,
}

impl crate::error::Domain for PromotionBlocked {
    fn stable_code(&self) -> &'static str {
        "K_GATE"
    }
    fn exit_code(&self) -> i32 {
        2
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "candidate": self.candidate, "k_score": self.k, "gate": self.gate,
            "head": self.head, "head_k_score": self.head_k, "reason": self.reason,
        })
    }
}
