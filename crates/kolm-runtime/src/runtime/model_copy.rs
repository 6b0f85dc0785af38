//! The store's copy of a model, trusted only for its content.
//!
//! A run reads the model in place from the artifact; training reads it by path, from the copy
//! extracted into the model store (`Opened::model_file`), and a copy can rot (a disk error
//! keeps its size, inode and times). Training must never use bytes that differ from the signed
//! ones, so every use checks the copy's content: its blake3, taken from the bytes as they were
//! extracted (and checked against the signed sha256), is kept beside it in `<model>.b3`, and the
//! copy is hashed again before use (blake3 over a memory map on every core: a fraction of a
//! sha256 pass). Any mismatch, or a missing or damaged record, makes the copy unsound and the
//! caller extracts it again.

use std::path::{Path, PathBuf};

use crate::Result;

fn record(model: &Path) -> PathBuf {
    let mut name = model.file_name().unwrap_or_default().to_os_string();
    name.push(".b3");
    model.with_file_name(name)
}

/// Whether the copy at `model` holds exactly the bytes it was extracted from.
/// (Unreadable is unsound: extracting again replaces it, or says why it cannot.)
pub fn is_sound(model: &Path) -> bool {
    let Ok(expected) = std::fs::read_to_string(record(model)) else {
        return false;
    };
    let mut h = blake3::Hasher::new();
    model.is_file()
        && h.update_mmap_rayon(model).is_ok()
        && h.finalize().to_hex().as_str() == expected.trim()
}

/// Records the blake3 of a copy just extracted and checked.
pub fn remember(model: &Path, hash: &blake3::Hash) -> Result<()> {
    crate::fsutil::write_cache_file(&record(model), hash.to_hex().as_bytes())
}
