//! `Kolmfile.lock`: the pins that make a rebuild reproducible.
//!
//! Most stages are pure functions of their inputs, and the cache key says everything about
//! them. Two things are not: a teacher's answers (ask twice, get two answers), and the content
//! behind a base path that the Kolmfile does not pin. The lock records, per task, the base's
//! sha256 and the output digest of every nondeterministic stage, like Cargo.lock or dvc.lock.
//! Commit it. `--locked` refuses any build that would change it, and refuses to redo pinned
//! work whose result is not in the cache (redoing it could give a different answer).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const LOCK_NAME: &str = "Kolmfile.lock";
const HEADER: &str = "# Kolmfile.lock: written by kolm; pins nondeterministic work so rebuilds are reproducible.\n# Commit it. `kolmbuild --locked` refuses to change it.\n";

/// One pinned output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Pin {
    pub task: String,
    pub stage: String,
    /// The cache key the output belongs to.
    pub key: String,
    /// Digest of the stage's output.
    pub output: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub version: u32,
    /// Task name → base model sha256.
    #[serde(default)]
    pub base: BTreeMap<String, String>,
    #[serde(default)]
    pub pin: Vec<Pin>,
}

impl Lock {
    pub fn path_for(kolmfile_dir: &Path) -> PathBuf {
        kolmfile_dir.join(LOCK_NAME)
    }

    /// Reads the lock; a missing lock is empty, a malformed one is an error.
    pub fn load(path: &Path) -> Result<Lock> {
        match std::fs::read_to_string(path) {
            Ok(s) => toml_edit::de::from_str(&s).map_err(|e| {
                Error::invalid(
                    format!("{} is malformed: {}", path.display(), e.message()),
                    "delete it and build again to re-create it (pinned teacher answers will be asked again)",
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock { version: 1, ..Lock::default() }),
            Err(e) => Err(Error::io(path, "read", e)),
        }
    }

    pub fn pinned(&self, task: &str, stage: &str, key: &str) -> Option<&Pin> {
        self.pin
            .iter()
            .find(|p| p.task == task && p.stage == stage && p.key == key)
    }

    /// Replaces the pin for (task, stage).
    pub fn set_pin(&mut self, pin: Pin) {
        self.pin
            .retain(|p| !(p.task == pin.task && p.stage == pin.stage));
        self.pin.push(pin);
        self.pin.sort();
    }

    /// Drops entries for tasks that no longer exist.
    pub fn retain_tasks(&mut self, tasks: &[&str]) {
        self.base.retain(|t, _| tasks.contains(&t.as_str()));
        self.pin.retain(|p| tasks.contains(&p.task.as_str()));
    }

    /// The lines that differ between two locks, for `--locked` errors.
    pub fn diff(&self, new: &Lock) -> Vec<String> {
        let mut out = Vec::new();
        for (t, sha) in &new.base {
            match self.base.get(t) {
                Some(old) if old == sha => {}
                Some(old) => out.push(format!(
                    "base of task `{t}` changed: sha256 {}… → {}…",
                    &old[..12.min(old.len())],
                    &sha[..12]
                )),
                None => out.push(format!("base of task `{t}` is not pinned yet")),
            }
        }
        for p in &new.pin {
            if !self.pin.contains(p) {
                out.push(format!(
                    "stage `{}` of task `{}` would be pinned to a new output",
                    p.stage, p.task
                ));
            }
        }
        out
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = toml_edit::ser::to_string_pretty(self)
            .map_err(|e| Error::failed("could not write the lock", e))?;
        crate::fsutil::write_atomic(path, format!("{HEADER}{body}").as_bytes())
    }
}

/// `--locked` refused a change to Kolmfile.lock, or work it cannot redo the same.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{what}")]
#[diagnostic(code(kolm::locked), help("{help}"))]
pub struct Locked {
    pub what: String,
    pub help: String,
}

impl crate::error::Domain for Locked {
    fn stable_code(&self) -> &'static str {
        "LOCKED"
    }
}
