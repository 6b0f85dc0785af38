//! The answer log: the teacher's answers, one JSON line each, appended as they arrive.
//!
//! Teacher answers are the cache's smallest and most numerous entries: a build may ask for
//! thousands, each a few hundred bytes, and each must be on disk the moment it arrives, since
//! Ctrl-C must never lose an answer that was paid for. As cacache entries each would cost two
//! new files in two new directories (over a millisecond on the benchmark machine, ten times
//! the round trip to a local server); as lines of one append-only file each costs one write,
//! and a build reads them all back with one sequential read.
//!
//! The file is `<cache>/answers/log.jsonl`; each line is `{"key", "t", "value"}` with `t` the
//! time written (Unix ms). The last line for a key wins. A line that does not parse (a write
//! cut short by a crash) is skipped, and a missing final newline is restored before the next
//! append so that the cut line cannot swallow it. `kolm cache gc --max-age-days` and `kolm
//! cache verify` rewrite the file atomically without the old or unreadable lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Store;
use crate::{Error, Result};

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    t: u128,
    value: Value,
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
    entries: HashMap<String, Value>,
    /// Opened at the first append, and kept: one write per answer after that.
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
                file: None,
            }),
        })
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .get(key)
            .cloned()
    }

    /// Appends an entry: on disk (in the OS's hands) when this returns.
    pub fn put(&self, key: &str, value: &Value) -> Result<()> {
        let io = |e| Error::io(&self.path, "append to the teacher's answer log", e);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_vec(&Line {
            key: key.to_string(),
            t: now_ms(),
            value: value.clone(),
        })
        .expect("log lines serialise");
        line.push(b'\n');
        if st.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            if len > 0 && !ends_with_newline(&self.path, len)? {
                f.write_all(b"\n").map_err(io)?;
            }
            st.file = Some(f);
        }
        st.file
            .as_mut()
            .expect("opened above")
            .write_all(&line)
            .map_err(io)?;
        st.entries.insert(key.to_string(), value.clone());
        Ok(())
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
        assert_eq!(again.get("a"), Some(json!(1)));
        assert_eq!(again.get("b"), None);
        assert_eq!(again.get("c"), Some(json!(3)));
        assert_eq!(AnswerLog::retain(&store, |_| true).unwrap(), (0, 1));
        assert_eq!(AnswerLog::list(&store).len(), 2);
        assert_eq!(AnswerLog::retain(&store, |_| false).unwrap(), (2, 0));
        assert!(AnswerLog::open(&store).unwrap().get("a").is_none());
    }
}
