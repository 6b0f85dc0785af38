//! The local store: an action cache over a content-addressed blob store, both in cacache.
//!
//! A stage's result is two things. Its outputs (an index, an adapter, a recipe pack…) are blobs,
//! addressed by their sha256. Its *action entry*, stored under `ac:<key>`, is a small JSON
//! record that names those blobs and carries the stage's typed output. cacache writes
//! atomically (temp file + rename) and checks integrity on every read, so an interrupted write
//! leaves nothing and a damaged entry reads as a miss, never as a wrong hit.

use std::path::{Path, PathBuf};

use cacache::{Algorithm, Integrity};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A blob's identity: its sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

impl BlobRef {
    fn integrity(&self) -> Option<Integrity> {
        Integrity::from_hex(&self.sha256, Algorithm::Sha256).ok()
    }
}

/// What an action entry records: the stage that made it and its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionEntry {
    /// Format of the entry itself.
    pub v: u32,
    pub stage: String,
    /// The stage's typed output, as JSON.
    pub output: serde_json::Value,
    /// Every blob the output names; all must exist for the entry to count as a hit.
    pub blobs: Vec<BlobRef>,
}

pub const ACTION_FORMAT: u32 = 1;

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cache_err(&self, e: impl std::fmt::Display) -> Error {
        Error::from(crate::cache::store::CacheUnusable {
            path: self.dir.clone(),
            reason: e.to_string(),
        })
    }

    /// Stores bytes; returns their reference.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<BlobRef> {
        cacache::write_hash_sync_with_algo(Algorithm::Sha256, &self.dir, bytes)
            .map_err(|e| self.cache_err(e))?;
        Ok(BlobRef {
            sha256: crate::digest::sha256(bytes),
            size: bytes.len() as u64,
        })
    }

    /// Reads a blob, checking its integrity. `None` if it is missing or damaged.
    pub fn get_blob(&self, r: &BlobRef) -> Option<Vec<u8>> {
        let sri = r.integrity()?;
        cacache::read_hash_sync(&self.dir, &sri).ok()
    }

    /// Reads a blob that must exist. A missing or damaged one is removed (so every action entry
    /// naming it becomes a miss: damage is a miss, never a dead end) and reported as
    /// [`BlobLost`], on which the executor builds again.
    pub fn blob(&self, r: &BlobRef) -> Result<Vec<u8>> {
        self.get_blob(r).ok_or_else(|| {
            let _ = self.remove_blob(&r.sha256);
            Error::from(crate::cache::store::BlobLost {
                path: self.dir.clone(),
                sha256: r.sha256.clone(),
            })
        })
    }

    pub fn has_blob(&self, r: &BlobRef) -> bool {
        r.integrity()
            .is_some_and(|sri| cacache::exists_sync(&self.dir, &sri))
    }

    /// The action entry for `key`, if present, intact, and all its blobs exist.
    pub fn get_action(&self, key: &str) -> Option<ActionEntry> {
        let bytes = cacache::read_sync(&self.dir, action_key(key)).ok()?;
        let entry: ActionEntry = serde_json::from_slice(&bytes).ok()?;
        (entry.v == ACTION_FORMAT && entry.blobs.iter().all(|b| self.has_blob(b))).then_some(entry)
    }

    pub fn put_action(&self, key: &str, entry: &ActionEntry) -> Result<()> {
        let bytes = serde_json::to_vec(entry).expect("entries serialise");
        cacache::write_sync_with_algo(Algorithm::Sha256, &self.dir, action_key(key), bytes)
            .map_err(|e| self.cache_err(e))?;
        Ok(())
    }

    pub fn remove_action(&self, key: &str) -> Result<()> {
        cacache::remove_sync(&self.dir, action_key(key)).map_err(|e| self.cache_err(e))
    }

    /// Every action entry: (key, stage, size on disk of its record, last write ms).
    pub fn list_actions(&self) -> Vec<ListedAction> {
        cacache::list_sync(&self.dir)
            .filter_map(|m| m.ok())
            .filter_map(|m| {
                let key = m.key.strip_prefix("ac:")?.to_string();
                Some(ListedAction {
                    key,
                    size: m.size as u64,
                    time_ms: m.time,
                    integrity: m.integrity,
                })
            })
            .collect()
    }

    /// Removes a blob's content.
    pub fn remove_blob(&self, sha256: &str) -> Result<()> {
        let Ok(sri) = Integrity::from_hex(sha256, Algorithm::Sha256) else {
            return Ok(());
        };
        cacache::remove_hash_sync(&self.dir, &sri).map_err(|e| self.cache_err(e))
    }

    /// Reads and checks one action entry's record, for `kolm cache verify`.
    pub fn check_action(&self, key: &str) -> std::result::Result<ActionEntry, String> {
        let bytes = cacache::read_sync(&self.dir, action_key(key))
            .map_err(|e| format!("record unreadable: {e}"))?;
        let entry: ActionEntry =
            serde_json::from_slice(&bytes).map_err(|e| format!("record malformed: {e}"))?;
        for b in &entry.blobs {
            match self.get_blob(b) {
                Some(bytes) if bytes.len() as u64 == b.size => {}
                Some(_) => return Err(format!("blob sha256:{} has the wrong size", b.sha256)),
                None => return Err(format!("blob sha256:{} is missing or damaged", b.sha256)),
            }
        }
        Ok(entry)
    }

    /// Every content file's sha256 under the store (for gc), with its size.
    pub fn list_blobs(&self) -> Vec<(String, u64)> {
        let root = self.dir.join("content-v2").join("sha256");
        let mut out = Vec::new();
        for e in walk_files(&root) {
            let rel = e
                .strip_prefix(&root)
                .ok()
                .map(|p| p.to_string_lossy().replace(['/', '\\'], ""));
            if let (Some(hex), Ok(md)) = (rel, std::fs::metadata(&e)) {
                if hex.len() == 64 {
                    out.push((hex, md.len()));
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct ListedAction {
    pub key: String,
    pub size: u64,
    pub time_ms: u128,
    pub integrity: Integrity,
}

fn action_key(key: &str) -> String {
    format!("ac:{key}")
}

fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The cache folder cannot be read or written.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the cache at `{}` is unusable: {reason}", path.display())]
#[diagnostic(
    code(kolm::cache),
    help("run `kolm cache verify`; `kolm cache gc` or removing the folder starts it afresh")
)]
pub struct CacheUnusable {
    pub path: PathBuf,
    pub reason: String,
}

impl crate::error::Domain for CacheUnusable {
    fn stable_code(&self) -> &'static str {
        "CACHE"
    }
}

/// A blob a cached result names is missing or damaged. The store has already dropped it, so the
/// result it belongs to is a miss from now on; the executor builds again once.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the cache at `{}` lost a result: blob sha256:{sha256} is missing or damaged", path.display())]
#[diagnostic(
    code(kolm::cache),
    help("run the build again: the stage that made it runs again and repairs the cache")
)]
pub struct BlobLost {
    pub path: PathBuf,
    pub sha256: String,
}

impl crate::error::Domain for BlobLost {
    fn stable_code(&self) -> &'static str {
        "CACHE"
    }
}
