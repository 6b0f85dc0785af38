//! Content digests and cache keys.
//!
//! Two hashes, each for one job: sha256 for content (it is what `sha256sum`, the Kolmfile's
//! pins and the manifest speak), blake3 for cache keys (fast, and never shown to a user as a
//! file's identity). Keys are computed over RFC 8785 canonical JSON so that field order or
//! number formatting can never change a key.

use std::io::Read;
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Chunk size for streaming hashes: large enough to amortise syscalls.
const CHUNK: usize = 1 << 20;

/// sha256 (lowercase hex) and size of a file, streamed; honours Ctrl-C between chunks.
pub fn sha256_file(path: &Path, progress: Option<&ProgressBar>) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "read", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        crate::interrupt::check()?;
        let n = f.read(&mut buf).map_err(|e| Error::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
        if let Some(p) = progress {
            p.inc(n as u64);
        }
    }
    Ok((hex::encode(h.finalize()), total))
}

/// CRC-32 (the zip one) of a file, streamed; honours Ctrl-C between chunks.
pub fn crc32_file(path: &Path) -> Result<u32> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "read", e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        crate::interrupt::check()?;
        let n = f.read(&mut buf).map_err(|e| Error::io(path, "read", e))?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// sha256 (lowercase hex) of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 8785 canonical JSON bytes of a value.
pub fn canonical_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).expect("kolm's own values always serialise")
}

/// blake3 (hex) of the canonical JSON of a value: the form of every cache key.
pub fn key_of<T: serde::Serialize>(v: &T) -> String {
    blake3::hash(&canonical_json(v)).to_hex().to_string()
}
