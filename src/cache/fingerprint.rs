//! File fingerprints: content digests, without rehashing what has not changed.
//!
//! Hashing a multi-GB model on every build would make a no-op build take seconds. Like git's
//! index and cargo's mtime checks, we remember, per file, the stat facts (size, mtime in ns,
//! inode) we saw when we last hashed it; if they are the same now, the digest is reused. The
//! *decision* to rebuild is still made on the content digest: `touch` changes the stat facts,
//! the file is rehashed, the digest comes out the same, and nothing reruns.
//!
//! A file modified within the same timestamp tick as our hash could slip by (git's "racy
//! clean" problem), so an entry is only trusted if the file's mtime was at least two seconds
//! older than the moment we hashed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    sha256: String,
    /// When we hashed it (ns since the epoch).
    hashed_ns: i128,
}

/// The remembered fingerprints of one project's files, keyed by absolute path.
#[derive(Debug, Default)]
pub struct Fingerprints {
    file: Option<PathBuf>,
    seen: BTreeMap<PathBuf, Seen>,
    dirty: bool,
    /// Bytes hashed during this run (reported by `--explain`, and a no-op build shows 0).
    pub hashed_bytes: u64,
}

const RACY_NS: i128 = 2_000_000_000;

impl Fingerprints {
    /// Loads the fingerprints kept for the project whose Kolmfile folder is `project_dir`.
    pub fn load(cache_dir: &Path, project_dir: &Path) -> Fingerprints {
        let abs = std::path::absolute(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
        let id = blake3::hash(abs.to_string_lossy().as_bytes()).to_hex();
        let file = cache_dir
            .join("fingerprints")
            .join(format!("{}.json", &id[..24]));
        let seen = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Fingerprints {
            file: Some(file),
            seen,
            dirty: false,
            hashed_bytes: 0,
        }
    }

    /// An in-memory set, remembered nowhere (for tools and tests).
    pub fn ephemeral() -> Fingerprints {
        Fingerprints::default()
    }

    /// sha256 and size of `path`, rehashing only if its stat facts changed.
    pub fn digest(
        &mut self,
        path: &Path,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<(String, u64)> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let md = std::fs::metadata(&abs).map_err(|e| Error::io(path, "read", e))?;
        let (mtime_ns, inode) = stat_facts(&md);
        if let Some(s) = self.seen.get(&abs) {
            if s.size == md.len()
                && s.mtime_ns == mtime_ns
                && s.inode == inode
                && s.hashed_ns - s.mtime_ns >= RACY_NS
            {
                return Ok((s.sha256.clone(), s.size));
            }
        }
        let (sha256, size) = crate::digest::sha256_file(&abs, progress)?;
        self.hashed_bytes += size;
        let hashed_ns = now_ns();
        self.seen.insert(
            abs,
            Seen {
                size,
                mtime_ns,
                inode,
                sha256: sha256.clone(),
                hashed_ns,
            },
        );
        self.dirty = true;
        Ok((sha256, size))
    }

    /// Records the digest of a file kolm itself just wrote (and renamed into place), so the
    /// next build recognises it without rehashing. The racy-clean window does not apply: the
    /// digest was computed from the bytes written, and any later write changes the stat facts.
    pub fn remember_written(&mut self, path: &Path, sha256: &str) {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Ok(md) = std::fs::metadata(&abs) {
            let (mtime_ns, inode) = stat_facts(&md);
            self.seen.insert(
                abs,
                Seen {
                    size: md.len(),
                    mtime_ns,
                    inode,
                    sha256: sha256.to_string(),
                    hashed_ns: mtime_ns + RACY_NS,
                },
            );
            self.dirty = true;
        }
    }

    /// Writes the fingerprints back, atomically, if anything changed.
    pub fn save(&mut self) -> Result<()> {
        let (Some(file), true) = (&self.file, self.dirty) else {
            return Ok(());
        };
        let dir = file.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
        let bytes = serde_json::to_vec(&self.seen).expect("serialises");
        crate::fsutil::write_atomic(file, &bytes)?;
        self.dirty = false;
        Ok(())
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

#[cfg(unix)]
fn stat_facts(md: &std::fs::Metadata) -> (i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        md.ino(),
    )
}

#[cfg(not(unix))]
fn stat_facts(md: &std::fs::Metadata) -> (i128, u64) {
    let m = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    (m, 0)
}
