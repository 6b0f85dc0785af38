//! `kolm verify`: fail closed, with the precise reason.
//!
//! Order matters for the message a user gets: structure first (a file that is not an RS-1 zip
//! says so), then the signature over the manifest (cheap, and it vouches for every digest), then
//! every payload entry against its declared size and sha256, streamed with a hard limit so a
//! zip bomb can never inflate past what the manifest declares, then the payload cross-checks
//! ([`super::payload`]: the adapter fits the base, the index is the one the manifest describes).
//!
//! The verdict depends on the file and the key only, never on what this machine keeps.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::container::{expected_dos, fail, open_raw, stream_entry};
use super::manifest::Manifest;
use super::sign::{self, Signature};
use super::ENTRIES;
use crate::{Error, Result};

// The container's reading, re-exported: `verify::open` is how callers read an artifact's
// structure and manifest without verifying its payload.
pub use super::container::{open, Opened, TAMPER};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// The HMAC matches the key we have.
    Verified,
    /// Built with `--unsigned`.
    Unsigned,
    /// Signed, but no key is available here to check it.
    NoKey,
    /// The HMAC does not match: tampered, or signed with another key.
    Bad,
}

impl SignatureState {
    pub fn describe(self) -> &'static str {
        match self {
            SignatureState::Verified => "ok (hmac-sha256 verified)",
            SignatureState::Unsigned => "unsigned",
            SignatureState::NoKey => "not checked (no KOLM_SIGNING_KEY here)",
            SignatureState::Bad => "BAD (does not match the key)",
        }
    }
}

/// Options of `kolm verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub allow_unsigned: bool,
    /// A key file (relative to the current folder); it wins over `KOLM_SIGNING_KEY`.
    pub key_file: Option<String>,
}

/// What a successful verification found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub path: String,
    pub signature: SignatureState,
    /// sha256 of `manifest.json` as stored: what receipts name.
    pub manifest_sha256: String,
    #[serde(skip)]
    pub manifest: Manifest,
    pub entries: Vec<super::manifest::EntryDigest>,
    /// Where each payload entry's data lies in the file, as verified: what a runtime reads in
    /// place through the same handle.
    #[serde(skip)]
    pub spans: Vec<EntrySpan>,
    pub k_score: f64,
    pub gate: f64,
}

/// A verified entry's data in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpan {
    pub name: String,
    /// Absolute offset of the entry's data.
    pub offset: u64,
    pub size: u64,
    /// Stored uncompressed: the data is the entry's bytes as they are.
    pub stored: bool,
}

impl Verified {
    /// The span of entry `name` when it is stored uncompressed.
    pub fn stored(&self, name: &str) -> Option<&EntrySpan> {
        self.spans.iter().find(|s| s.name == name && s.stored)
    }
}

/// The signature state of an opened artifact.
pub fn signature_state(o: &Opened, key: &sign::KeyChoice) -> Result<SignatureState> {
    state_of(&o.path, &o.manifest_bytes, &o.signature, key)
}

fn state_of(
    path: &Path,
    manifest: &[u8],
    sig: &Signature,
    key: &sign::KeyChoice,
) -> Result<SignatureState> {
    Ok(match sig.alg.as_str() {
        "none" if sig.mac.is_none() => SignatureState::Unsigned,
        "none" => {
            return Err(fail(
                path,
                "signature.sig says `none` but carries a mac",
                TAMPER,
            ))
        }
        "hmac-sha256" => match sign::load_key(key)? {
            None => SignatureState::NoKey,
            Some((key, _)) if sign::check(&key, manifest, sig) => SignatureState::Verified,
            Some(_) => SignatureState::Bad,
        },
        other => {
            return Err(fail(
                path,
                format!("unknown signature algorithm `{other}`"),
                TAMPER,
            ))
        }
    })
}

/// What a caller does with an artifact as it is verified: the runtime extracts entries in the
/// same pass; `kolm verify` counts bytes for its progress bar.
pub trait Sink {
    /// The manifest has been verified (signature checked, parsed, layout sound) and no payload
    /// has been read yet: the caller learns which artifact this is from the verified manifest
    /// alone, and answers whether it vouches for `model.gguf` (the runtime's verification
    /// stamp: this very file, unchanged since it was verified), which is then checked for its
    /// declared size but not rehashed. Every other check still runs.
    fn verified_manifest(&mut self, manifest: &Manifest, manifest_sha256: &str) -> Result<bool>;
    /// A payload entry's bytes, in order, as they are checked. Nothing handed over may be
    /// trusted unless the verification returns `Ok`.
    fn bytes(&mut self, name: &str, bytes: &[u8]);
}

/// A sink that only counts bytes.
struct Count<'a>(&'a dyn Fn(u64));

impl Sink for Count<'_> {
    fn verified_manifest(&mut self, _: &Manifest, _: &str) -> Result<bool> {
        Ok(false)
    }
    fn bytes(&mut self, _: &str, bytes: &[u8]) {
        (self.0)(bytes.len() as u64)
    }
}

/// Verifies everything; `on_bytes` reports payload bytes hashed (progress).
pub fn verify(path: &Path, opts: &VerifyOptions, on_bytes: &dyn Fn(u64)) -> Result<Verified> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    verify_with(&mut f, path, opts, &mut Count(on_bytes))
}

/// Verifies the artifact open as `f` (named `path` in messages), handing each payload entry's
/// bytes to `sink` as they are checked. Everything is read through the one handle, so a file
/// swapped at `path` meanwhile changes nothing that was checked.
pub fn verify_with(
    f: &mut std::fs::File,
    path: &Path,
    opts: &VerifyOptions,
    sink: &mut dyn Sink,
) -> Result<Verified> {
    let raw = open_raw(f, path)?;
    let key = sign::KeyChoice {
        file: opts.key_file.as_deref(),
        dir: Path::new("."),
        file_wins: true,
    };
    let state = state_of(path, &raw.manifest_bytes, &raw.signature, &key)?;
    match state {
        SignatureState::Bad => return Err(fail(
            path,
            "bad signature: manifest.json does not match signature.sig under this key",
            "the manifest was changed after signing, or the artifact was signed with another key",
        )),
        SignatureState::NoKey => {
            return Err(fail(
                path,
                "the artifact is signed but there is no key here to check it",
                "set KOLM_SIGNING_KEY (or pass --key-file) to the key it was signed with",
            ))
        }
        SignatureState::Unsigned if !opts.allow_unsigned => {
            return Err(fail(
                path,
                "the artifact is unsigned",
                "it was built with --unsigned; pass --allow-unsigned to accept it",
            ))
        }
        _ => {}
    }
    let dos = raw.dos;
    let o = raw.parse()?;
    if expected_dos(o.manifest.created_at.as_deref()) != Some(dos) {
        return Err(fail(
            path,
            "the entries' timestamps are not the ones the manifest pins",
            TAMPER,
        ));
    }
    let declared = &o.manifest.entries;
    let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    if names != ENTRIES[..5] {
        return Err(fail(
            path,
            format!("the manifest lists entries {names:?}, expected the first five RS-1 entries"),
            TAMPER,
        ));
    }
    let manifest_sha256 = crate::digest::sha256(&o.manifest_bytes);
    let model_vouched = sink.verified_manifest(&o.manifest, &manifest_sha256)?;
    let mut index = Vec::new();
    for (d, e) in declared.iter().zip(&o.entries) {
        if d.size != e.size {
            return Err(fail(
                path,
                format!(
                    "`{}` is {} bytes but the manifest declares {}",
                    e.name, e.size, d.size
                ),
                TAMPER,
            ));
        }
        if model_vouched && e.name == "model.gguf" {
            continue;
        }
        let mut h = Sha256::new();
        let keep = e.name == "index.sqlite-vec";
        stream_entry(f, path, e, d.size, |b| {
            h.update(b);
            if keep {
                index.extend_from_slice(b);
            }
            sink.bytes(&e.name, b);
        })?;
        let got = hex::encode(h.finalize());
        if got != d.sha256 {
            return Err(fail(
                path,
                format!(
                    "`{}` has sha256 {got}, but the manifest declares {}",
                    e.name, d.sha256
                ),
                TAMPER,
            ));
        }
    }
    super::payload::check(f, &o, &index)?;
    Ok(Verified {
        path: path.display().to_string(),
        signature: state,
        manifest_sha256,
        manifest: o.manifest.clone(),
        entries: declared.clone(),
        spans: o
            .entries
            .iter()
            .map(|e| EntrySpan {
                name: e.name.clone(),
                offset: e.data_offset,
                size: e.size,
                stored: e.method == super::zipwrite::Method::Stored,
            })
            .collect(),
        k_score: o.manifest.k_score,
        gate: o.manifest.gate,
    })
}
