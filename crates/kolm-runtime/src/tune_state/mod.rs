//! An artifact's tune state (kolmfile-spec/tune.md), all of it: the HEAD file, the revisions,
//! the capture log ([`TuneDir`]), and the tune log (`log`). The signed `.kolm` never changes;
//! everything that evolves lives under `KOLM_HOME/tune/<slug>/`. The runtime reads HEAD's
//! adapter and appends captures; the verbs that change the state (`kolm tune`, in the
//! compiler's `tune`) go through this module too. It sits below the runtime so that `kolm run`
//! and `kolm serve` need no training code.

pub mod log;
mod revision;

pub use revision::Revision;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::{Error, Result};

/// HEAD and the revision before it, kept in one file so that every change of either is one
/// atomic rename: a crash leaves the old pair or the new, never half of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub head: String,
    /// `head.prev`: what `rollback` swaps with HEAD.
    pub prev: Option<String>,
}

/// One captured run: a line of `captures.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    pub input: String,
    pub output: serde_json::Value,
    /// The exact recipe that answered, if one did.
    pub recipe: Option<String>,
    pub latency_us: u64,
    /// The tune revision that answered (`None`: the artifact's own adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// An artifact's tune state folder.
#[derive(Debug, Clone)]
pub struct TuneDir {
    pub root: PathBuf,
}

/// The folder name of an artifact's state: its task and the start of its digest, so two builds
/// of one task never share (or overwrite) each other's revisions.
pub fn slug(task: &str, artifact_sha256: &str) -> String {
    format!(
        "{task}-{}",
        &artifact_sha256[..12.min(artifact_sha256.len())]
    )
}

impl TuneDir {
    pub fn of(home: &Home, task: &str, artifact_sha256: &str) -> TuneDir {
        TuneDir {
            root: home.root().join("tune").join(slug(task, artifact_sha256)),
        }
    }

    pub fn exists(&self) -> bool {
        self.head_file().is_file()
    }

    pub fn head_file(&self) -> PathBuf {
        self.root.join("head.json")
    }

    pub fn captures(&self) -> PathBuf {
        self.root.join("captures.jsonl")
    }

    /// The marker whose presence means capture is on.
    pub fn capture_flag(&self) -> PathBuf {
        self.root.join("capture.on")
    }

    pub fn revisions(&self) -> PathBuf {
        self.root.join("revisions")
    }

    pub fn revision(&self, name: &str) -> PathBuf {
        self.revisions().join(name)
    }

    /// A revision's adapter (a complete LoRA for the base, GGUF).
    pub fn adapter(&self, name: &str) -> PathBuf {
        self.revision(name).join("lora.gguf")
    }

    /// HEAD, when the artifact is tuned (`kolm tune init` ran).
    pub fn head(&self) -> Result<Option<Head>> {
        let path = self.head_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "read", e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::invalid_because(
 format!("`{}` is not a tune HEAD", path.display()),
 e,

                "it is written only by `kolm tune`; restore it with `kolm tune rollback`, or remove the tune folder to start over",
            )
        })
    }

    /// The adapter `kolm run` applies: HEAD's, checked to exist. `None` when not tuned.
    pub fn head_adapter(&self) -> Result<Option<(String, PathBuf)>> {
        let Some(h) = self.head()? else {
            return Ok(None);
        };
        let adapter = self.adapter(&h.head);
        if !adapter.is_file() {
            return Err(Error::invalid(
                format!(
                    "the tune HEAD `{}` has no adapter at `{}`",
                    h.head,
                    adapter.display()
                ),
                "`kolm tune status` lists the revisions; `kolm tune rollback` goes back to the previous one",
            ));
        }
        Ok(Some((h.head, adapter)))
    }

    pub fn capturing(&self) -> bool {
        self.capture_flag().is_file()
    }

    /// Appends one capture: a single `write` of the whole line on a file opened for append, so
    /// concurrent runners never interleave within a line.
    pub fn capture(&self, row: &Capture) -> Result<()> {
        let mut line = serde_json::to_vec(row).expect("serialises");
        line.push(b'\n');
        append_line(&self.captures(), &line)
    }
}

/// One `write(2)` of `line` at the end of `path` (O_APPEND).
pub fn append_line(path: &Path, line: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    let n = f.write(line).map_err(|e| Error::io(path, "append to", e))?;
    if n != line.len() {
        return Err(Error::failed(
            format!("a capture was cut short in `{}`", path.display()),
            format!("{n} of {} bytes written (disk full?)", line.len()),
        ));
    }
    Ok(())
}
