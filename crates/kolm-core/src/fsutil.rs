//! Writing files so that a crash or Ctrl-C never leaves a partial one where a real one belongs:
//! write into a temp file beside the target, then rename over it.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut t = temp_beside(path)?;
    t.write_all(bytes)
        .map_err(|e| Error::io(path, "write", e))?;
    persist(t, path)
}

/// Writes a file that only caches what can be recomputed (fingerprints, build records):
/// atomic, so never torn, but not flushed to disk, so cheap enough for every build. After a
/// power loss it may be missing, which costs a rehash, never a wrong result.
pub fn write_cache_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut t = temp_beside(path)?;
    t.write_all(bytes)
        .map_err(|e| Error::io(path, "write", e))?;
    t.persist(path)
        .map_err(|e| Error::io(path, "rename into place", e.error))?;
    Ok(())
}

/// A temp file in the folder of `path` (created if missing), removed if dropped unpersisted.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    tempfile::Builder::new()
        .prefix(".kolm-tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create a temp file in", e))
}

/// Flushes and renames a temp file into place.
pub fn persist(t: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    t.as_file()
        .sync_all()
        .map_err(|e| Error::io(path, "sync", e))?;
    t.persist(path)
        .map_err(|e| Error::io(path, "rename into place", e.error))?;
    Ok(())
}

/// Takes an exclusive advisory lock on `path` (created with its folder if missing), held
/// until the returned file is dropped or the process ends (the kernel releases it on a
/// crash). When another process holds it, `waiting` is called once before blocking, so the
/// user hears why nothing moves (cargo's "Blocking waiting for file lock").
pub fn lock_exclusive(path: &Path, waiting: impl FnOnce()) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    match f.try_lock() {
        Ok(()) => return Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => waiting(),
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(path, "lock", e)),
    }
    f.lock().map_err(|e| Error::io(path, "lock", e))?;
    Ok(f)
}
