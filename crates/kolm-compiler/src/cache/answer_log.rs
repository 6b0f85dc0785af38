//! The answer log: the teacher's answers, one JSON line each, appended as they arrive.
//!
//! Teacher answers are the cache's smallest and most numerous entries: a build may ask for
//! thousands, each a few hundred bytes, and each must reach the disk promptly, since an
//! interrupted build must never lose an answer that was paid for. As cacache entries each
//! would cost two new files in two new directories (over a millisecond on the benchmark
//! machine, ten times the round trip to a local server); as lines of one append-only file,
//! the answers that arrive together cost one write, and a build reads them all back with one
//! sequential read.
//!
//! [`AnswerLog::put`] queues a line; [`AnswerLog::flush`] writes what is queued. The teacher
//! flushes every [`crate::teacher::WRITE_EVERY`], when it finishes, and when it stops on an
//! error or Ctrl-C; dropping the log flushes too (a panic unwinding). Only a SIGKILL can lose
//! the answers of the last few milliseconds.
//!
//! The file is `<cache>/answers/log.jsonl`; each line is `{"key", "t", "value"}` with `t` the
//! time written (Unix ms). The last line for a key wins. Values are kept as the JSON text they
//! were written as and parsed only when asked for. A line that does not parse (a write cut
//! short by a crash) is skipped, and a missing final newline is restored before the next
//! append so that the cut line cannot swallow it. `kolm cache gc --max-age-days` and `kolm
//! cache verify` rewrite the file atomically without the old or unreadable lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Store;
use crate::{Error, Result};

/// One line of the file (written by [`AnswerLog::put`] in place, in this same form).
#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    t: u128,
    value: Box<RawValue>,
}

/// One line as `kolm cache ls` shows it.
pub struct Logged {
    pub key: String,
    pub written_unix_ms: u128,
}

/// The log read into memory, open for appending.
pub struct AnswerLog {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// Keys are blake3 digests already: a fast hash serves as well as SipHash, for less.
    entries: HashMap<String, Box<RawValue>, foldhash::fast::RandomState>,
    /// Lines put but not yet written.
    queued: Vec<u8>,
    /// Opened at the first write, and kept.
    file: Option<std::fs::File>,
}

fn path_in(store: &Store) -> PathBuf {
    store.dir().join("answers").join("log.jsonl")
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Every readable line, in file order, and the number of unreadable ones.
fn read(path: &Path) -> Result<(Vec<Line>, usize)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0)),
        Err(e) => return Err(Error::io(path, "read the teacher's answer log", e)),
    };
    let (mut lines, mut bad) = (Vec::new(), 0);
    for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Line>(l) {
            Ok(line) => lines.push(line),
            Err(_) => bad += 1,
        }
    }
    Ok((lines, bad))
}

impl AnswerLog {
    pub fn open(store: &Store) -> Result<AnswerLog> {
        let path = path_in(store);
        let (lines, _) = read(&path)?;
        let entries = lines.into_iter().map(|l| (l.key, l.value)).collect();
        Ok(AnswerLog {
            path,
            state: Mutex::new(State {
                entries,
                queued: Vec::new(),
                file: None,
            }),
        })
    }

    /// The entry under `key`, if there is one and it reads as a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::from_str(st.entries.get(key)?.get()).ok()
    }

    /// Queues an entry for the next [`AnswerLog::flush`]; [`AnswerLog::get`] sees it at once.
    pub fn put<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut st.queued;
        let line_start = q.len();
        // The line is [`Line`]'s serialisation, written in place so that the value is
        // serialised once and kept in memory as the very text on its way to the file.
        q.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut *q, key).expect("writing to a Vec cannot fail");
        q.extend_from_slice(b",\"t\":");
        q.extend_from_slice(itoa::Buffer::new().format(now_ms()).as_bytes());
        q.extend_from_slice(b",\"value\":");
        let value_start = q.len();
        if let Err(e) = serde_json::to_writer(&mut *q, value) {
            q.truncate(line_start);
            return Err(Error::failed(
                format!("could not write a teacher answer for {key}"),
                e,
            ));
        }
        let text = String::from_utf8(q[value_start..].to_vec()).expect("serde_json writes UTF-8");
        q.extend_from_slice(b"}\n");
        let value = RawValue::from_string(text).expect("serde_json writes one JSON value");
        st.entries.insert(key.to_string(), value);
        Ok(())
    }

    /// Writes every queued line: in the OS's hands when this returns.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        write_queued(&self.path, &mut st)
    }

    /// Every entry (last line per key), for `kolm cache ls`.
    pub fn list(store: &Store) -> Vec<Logged> {
        let Ok((lines, _)) = read(&path_in(store)) else {
            return vec![];
        };
        let mut last: HashMap<String, u128> = HashMap::new();
        for l in lines {
            last.insert(l.key, l.t);
        }
        last.into_iter()
            .map(|(key, written_unix_ms)| Logged {
                key,
                written_unix_ms,
            })
            .collect()
    }

    /// Rewrites the log with only the latest line of each key that `keep(written ms)`
    /// accepts. Returns (entries removed, unreadable lines dropped).
    pub fn retain(store: &Store, keep: impl Fn(u128) -> bool) -> Result<(usize, usize)> {
        let path = path_in(store);
        let (lines, bad) = read(&path)?;
        let mut latest: HashMap<String, Line> = HashMap::new();
        for l in lines {
            latest.insert(l.key.clone(), l);
        }
        let total = latest.len();
        let mut kept: Vec<Line> = latest.into_values().filter(|l| keep(l.t)).collect();
        let removed = total - kept.len();
        if removed == 0 && bad == 0 {
            return Ok((0, 0));
        }
        kept.sort_by_key(|l| l.t);
        let mut out = Vec::new();
        for l in &kept {
            out.extend(serde_json::to_vec(l).expect("log lines serialise"));
            out.push(b'\n');
        }
        crate::fsutil::write_atomic(&path, &out)?;
        Ok((removed, bad))
    }
}

/// The error paths drop the log without flushing it; what they queued is written here.
impl Drop for AnswerLog {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = write_queued(&self.path, st);
    }
}

fn write_queued(path: &Path, st: &mut State) -> Result<()> {
    if st.queued.is_empty() {
        return Ok(());
    }
    let io = |e| Error::io(path, "append to the teacher's answer log", e);
    if st.file.is_none() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        if len > 0 && !ends_with_newline(path, len)? {
            f.write_all(b"\n").map_err(io)?;
        }
        st.file = Some(f);
    }
    let State { queued, file, .. } = st;
    file.as_mut()
        .expect("opened above")
        .write_all(queued)
        .map_err(io)?;
    queued.clear();
    Ok(())
}

fn ends_with_newline(path: &Path, len: u64) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| Error::io(path, "read the teacher's answer log", e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last).map_err(io)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cut_line_is_skipped_and_cannot_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let log = AnswerLog::open(&store).unwrap();
        log.put("a", &json!(1)).unwrap();
        log.flush().unwrap();
        // A crash mid-write leaves half a line and no newline.
        let p = path_in(&store);
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"key":"b","t":1,"val"#).unwrap();
        // The next build appends after it.
        AnswerLog::open(&store)
            .unwrap()
            .put("c", &json!(3))
            .unwrap();
        let again = AnswerLog::open(&store).unwrap();
        assert_eq!(again.get::<serde_json::Value>("a"), Some(json!(1)));
        assert_eq!(again.get::<serde_json::Value>("b"), None);
        assert_eq!(again.get::<serde_json::Value>("c"), Some(json!(3)));
        assert_eq!(AnswerLog::retain(&store, |_| true).unwrap(), (0, 1));
        assert_eq!(AnswerLog::list(&store).len(), 2);
        assert_eq!(AnswerLog::retain(&store, |_| false).unwrap(), (2, 0));
        assert!(AnswerLog::open(&store)
            .unwrap()
            .get::<serde_json::Value>("a")
            .is_none());
    }

    #[test]
    fn a_put_is_seen_at_once_written_at_flush_and_never_lost_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let on_disk = |k: &str| AnswerLog::open(&store).unwrap().get::<u32>(k);
        let log = AnswerLog::open(&store).unwrap();
        log.put("a", &1u32).unwrap();
        assert_eq!(log.get::<u32>("a"), Some(1));
        assert_eq!(log.get::<String>("a"), None, "not a string");
        assert_eq!(on_disk("a"), None, "queued, not yet written");
        log.flush().unwrap();
        assert_eq!(on_disk("a"), Some(1));
        log.put("b", &2u32).unwrap();
        drop(log);
        assert_eq!(
            on_disk("b"),
            Some(2),
            "dropping the log writes what it queued"
        );
    }
}
