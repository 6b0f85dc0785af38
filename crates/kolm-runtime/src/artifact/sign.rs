//! `signature.sig`: HMAC-SHA256 over the exact bytes of `manifest.json`.
//!
//! The manifest carries the sha256 and size of every other entry, so signing it signs the
//! bundle. The key is the UTF-8 bytes of `KOLM_SIGNING_KEY`, or of the key file named by
//! `[sign] key_file` (one trailing newline trimmed); the env var wins. The key is held only in
//! memory, never logged, cached, or put in an error.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};

pub const ENV: &str = "KOLM_SIGNING_KEY";

/// A signing key. Its `Debug` never shows the bytes.
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Where a key came from, for messages (never the key).
#[derive(Debug, Clone)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

/// Where to look for a key.
#[derive(Debug, Clone, Copy)]
pub struct KeyChoice<'a> {
    /// A key file (`[sign] key_file`, or `--key-file`).
    pub file: Option<&'a str>,
    /// What a relative `file` is relative to.
    pub dir: &'a Path,
    /// The file wins over the env var (an explicit `--key-file`); otherwise the env var wins.
    pub file_wins: bool,
}

/// Finds the signing key. `Ok(None)` when there is none.
pub fn load_key(choice: &KeyChoice) -> Result<Option<(Key, KeySource)>> {
    let env = || -> Result<Option<(Key, KeySource)>> {
        match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(v) => {
                let s = v.into_string().map_err(|_| {
                    Error::invalid(format!("{ENV} is not valid UTF-8"), "use a UTF-8 key")
                })?;
                Ok(Some((Key(s.into_bytes()), KeySource::Env)))
            }
            None => Ok(None),
        }
    };
    let file = match choice.file {
        Some(f) if choice.file_wins => f,
        _ => match env()? {
            Some(k) => return Ok(Some(k)),
            None => match choice.file {
                Some(f) => f,
                None => return Ok(None),
            },
        },
    };
    let path = key_path(file, choice.dir);
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(&path, "read the signing key file", e))?;
    let mut s = String::from_utf8(bytes).map_err(|_| {
        Error::invalid(
            format!("key file `{}` is not UTF-8", path.display()),
            "use a UTF-8 key",
        )
    })?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    if s.is_empty() {
        return Err(Error::invalid(
            format!("key file `{}` is empty", path.display()),
            "put the key in it",
        ));
    }
    Ok(Some((Key(s.into_bytes()), KeySource::File(path))))
}

/// Where a `key_file` is: `~/` is the home folder, a relative path is the project's.
pub fn key_path(file: &str, base_dir: &Path) -> PathBuf {
    if let Some(rest) = file.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = PathBuf::from(file);
    if p.is_absolute() {
        p
    } else {
        base_dir.join(p)
    }
}

/// The contents of `signature.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// `hmac-sha256`, or `none` for an artifact built with `--unsigned`.
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

fn mac(key: &Key, manifest: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(manifest);
    m
}

/// Signs manifest bytes.
pub fn sign(key: &Key, manifest: &[u8]) -> Signature {
    Signature {
        alg: "hmac-sha256".into(),
        mac: Some(hex::encode(mac(key, manifest).finalize().into_bytes())),
    }
}

pub fn unsigned() -> Signature {
    Signature {
        alg: "none".into(),
        mac: None,
    }
}

/// Checks a signature in constant time.
pub fn check(key: &Key, manifest: &[u8], sig: &Signature) -> bool {
    let Some(hexmac) = &sig.mac else { return false };
    let Ok(bytes) = hex::decode(hexmac) else {
        return false;
    };
    hexmac.len() == 64
        && hexmac
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        && mac(key, manifest).verify_slice(&bytes).is_ok()
}

/// The canonical bytes of `signature.sig`.
pub fn to_bytes(sig: &Signature) -> Vec<u8> {
    crate::digest::canonical_json(sig)
}
