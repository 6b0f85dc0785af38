//! Cassettes: a teacher's answers in a file, replayed offline or recorded as they come.
//!
//! A cassette is JSON Lines. The first line is a header, `{"kolm_cassette": 1, "note": …}`,
//! whose note says where the answers came from (a recording of a model, or example data).
//! Every other line is `{"key", "request", "answer"}`, where `key` is [`Request::key`] of the
//! request. A replayed build asks the same requests as the recorded one and looks each up by
//! key; a key that does not match its request is tampering or a hand edit, and is refused.
//!
//! Recording appends each answer as it arrives (an interrupted build keeps what it paid for),
//! and at the end of the stage rewrites the file sorted by key, so the same answers give the
//! same bytes however the requests raced.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::request::{Answer, Request};
use crate::{Error, Result};

pub const FORMAT: u64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: String,
    request: Request,
    answer: Answer,
}

/// A cassette read into memory, for replay.
pub struct Cassette {
    path: PathBuf,
    note: String,
    entries: BTreeMap<String, Entry>,
}

impl Cassette {
    /// Reads and checks a cassette. Every line must parse and every key must match its request.
    pub fn load(path: &Path) -> Result<Cassette> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read the cassette", e))?;
        let name = path.display().to_string();
        let lines = crate::jsonl::parse(&name, &bytes)?;
        let bad = |line: usize, what: String| {
            Error::invalid(
                format!("{name}:{line}: {what}"),
                "a cassette is written by kolm (a `record` build); re-record it rather than edit it by hand",
            )
        };
        let mut it = lines.into_iter();
        let note = match it.next() {
            Some((line, h)) => {
                if h.get("kolm_cassette").and_then(|v| v.as_u64()) != Some(FORMAT) {
                    return Err(bad(line, format!("the first line must be the header {{\"kolm_cassette\": {FORMAT}, \"note\": …}}")));
                }
                h.get("note")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            }
            None => String::new(),
        };
        let mut entries = BTreeMap::new();
        for (line, v) in it {
            let e: Entry = serde_json::from_value(v)
                .map_err(|e| bad(line, format!("not a cassette entry ({e})")))?;
            if e.request.key() != e.key {
                return Err(bad(
                    line,
                    format!("the key {} does not match its request", e.key),
                ));
            }
            entries.insert(e.key.clone(), e);
        }
        Ok(Cassette {
            path: path.to_path_buf(),
            note,
            entries,
        })
    }

    pub fn note(&self) -> &str {
        &self.note
    }

    /// The answer to `r`, or an error that names the request and how to record it.
    pub fn answer(&self, r: &Request) -> Result<Answer> {
        let key = r.key();
        if let Some(e) = self.entries.get(&key) {
            return Ok(e.answer.clone());
        }
        let other_model = self
            .entries
            .values()
            .map(|e| &e.request.model)
            .find(|m| **m != r.model);
        let hint = match other_model {
            Some(m) => format!(
                " (its answers are from model `{m}`; `teacher.model` is `{}`)",
                r.model
            ),
            None => String::new(),
        };
        Err(Error::from(crate::teacher::TeacherFailed {
            what: format!(
                "the cassette `{}` has no answer for request {} [{}]{hint}",
                self.path.display(),
                &key[..16],
                r.describe()
            ),
            help: "record it: build once with `provider = \"openai\"` or `\"anthropic\"` and the same `cassette`, then switch back to `\"replay\"`".into(),
        }))
    }
}

/// Appends answers to a cassette while a live teacher answers.
pub struct Recorder {
    path: PathBuf,
    /// Keys already in the file, so an answer is written once.
    known: Mutex<BTreeSet<String>>,
}

/// Serialises every recorder's file operations in this process. Two stages of one build
/// (`label` and `baseline`) may record into the same cassette at the same time, and one's
/// final rewrite replaces the file: each append therefore opens the file by name and holds
/// this lock, so no answer goes to a file that has just been replaced.
static FILES: Mutex<()> = Mutex::new(());

impl Recorder {
    /// Opens (or starts) a cassette for recording. A last line cut short by a crash is dropped.
    pub fn open(path: &Path, note: &str) -> Result<Recorder> {
        let io = |e| Error::io(path, "record into the cassette", e);
        let _files = FILES.lock().unwrap_or_else(|p| p.into_inner());
        let mut known = BTreeSet::new();
        match std::fs::read(path) {
            Ok(mut bytes) => {
                let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if complete < bytes.len() {
                    bytes.truncate(complete);
                    crate::fsutil::write_atomic(path, &bytes)?;
                }
                let c = Cassette::load(path)?;
                known.extend(c.entries.into_keys());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let header = json!({"kolm_cassette": FORMAT, "note": note});
                crate::fsutil::write_atomic(path, format!("{header}\n").as_bytes())?;
            }
            Err(e) => return Err(io(e)),
        }
        Ok(Recorder {
            path: path.to_path_buf(),
            known: Mutex::new(known),
        })
    }

    /// Writes an answer unless the cassette has it.
    pub fn record(&self, r: &Request, a: &Answer) -> Result<()> {
        let key = r.key();
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.contains(&key) {
            return Ok(());
        }
        let line = serde_json::to_string(&Entry {
            key: key.clone(),
            request: r.clone(),
            answer: a.clone(),
        })
        .expect("entries serialise");
        let io = |e| Error::io(&self.path, "record into the cassette", e);
        let _files = FILES.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
            .map_err(io)?;
        known.insert(key);
        Ok(())
    }

    /// Rewrites the cassette sorted by key, one entry per key: the same answers, the same
    /// bytes, however the requests (and the stages recording) raced.
    pub fn finish(self) -> Result<()> {
        let _files = FILES.lock().unwrap_or_else(|p| p.into_inner());
        let bytes =
            std::fs::read(&self.path).map_err(|e| Error::io(&self.path, "read the cassette", e))?;
        let mut lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let Some(header) = lines.next() else {
            return Ok(());
        };
        let key_of = |l: &[u8]| -> String {
            serde_json::from_slice::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_string))
                .unwrap_or_default()
        };
        let entries: BTreeMap<String, &[u8]> = lines.map(|l| (key_of(l), l)).collect();
        let mut out = Vec::with_capacity(bytes.len());
        for l in std::iter::once(header).chain(entries.into_values()) {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        crate::fsutil::write_atomic(&self.path, &out)
    }
}
