//! `kolm verify`: fail closed, with the precise reason.
//!
//! Order matters for the message a user gets: structure first (a file that is not an RS-1 zip
//! says so), then the signature over the manifest (cheap, and it vouches for every digest), then
//! every payload entry against its declared size and sha256, streamed with a hard limit so a
//! zip bomb can never inflate past what the manifest declares, then the cross-checks (the
//! adapter fits the base, the index fits its embedder).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::bufread::DeflateDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{Manifest, SPEC};
use super::sign::{self, Signature};
use super::zipread::{self, Entry};
use super::zipwrite::{central_directory, local_header, Layout, Method};
use super::{method_of, ENTRIES, MODEL_ALIGN};
use crate::{Error, Result};

/// An artifact whose structure, manifest and signature entry have been read (payload unread).
pub struct Opened {
    pub path: PathBuf,
    pub len: u64,
    pub entries: Vec<Entry>,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub signature: Signature,
}

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

fn fail(path: &Path, reason: impl Into<String>, help: &str) -> Error {
    Error::Verify {
        path: path.to_path_buf(),
        reason: reason.into(),
        help: help.into(),
    }
}

const TAMPER: &str = "the file was modified or damaged after it was sealed: rebuild it, or fetch it again from its source";

/// Reads the structure, checks entry names and layout, and parses manifest and signature.
pub fn open(path: &Path) -> Result<Opened> {
    let raw = open_raw(path)?;
    raw.parse()
}

/// An artifact whose structure is sound and whose manifest and signature bytes are read, not
/// yet parsed: the signature is checked over the bytes before anything trusts their content.
pub struct Raw {
    /// The DOS (date, time) all headers carry.
    dos: (u16, u16),
    path: PathBuf,
    len: u64,
    entries: Vec<Entry>,
    manifest_bytes: Vec<u8>,
    signature: Signature,
}

impl Raw {
    fn parse(self) -> Result<Opened> {
        let manifest: Manifest = serde_json::from_slice(&self.manifest_bytes).map_err(|e| {
            fail(
                &self.path,
                format!("manifest.json is not a valid RS-1 manifest: {e}"),
                TAMPER,
            )
        })?;
        if manifest.spec != SPEC {
            return Err(fail(
                &self.path,
                format!("manifest spec is `{}`, expected `{SPEC}`", manifest.spec),
                "this kolm cannot read that format",
            ));
        }
        Ok(Opened {
            path: self.path,
            len: self.len,
            entries: self.entries,
            manifest_bytes: self.manifest_bytes,
            manifest,
            signature: self.signature,
        })
    }
}

fn open_raw(path: &Path) -> Result<Raw> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let len = f.metadata().map_err(|e| Error::io(path, "stat", e))?.len();
    let entries = zipread::read_entries(&mut f, len).map_err(|m| fail(path, m.0, TAMPER))?;
    check_names(path, &entries)?;
    for e in &entries {
        if e.method != method_of(&e.name) {
            return Err(fail(
                path,
                format!("entry `{}` uses the wrong compression for RS-1", e.name),
                TAMPER,
            ));
        }
    }
    let dos = check_canonical(&mut f, path, &entries, len)?;
    if entries[0].data_offset % MODEL_ALIGN != 0 {
        return Err(fail(
            path,
            format!(
                "model.gguf data is at offset {}, not {MODEL_ALIGN}-byte aligned",
                entries[0].data_offset
            ),
            TAMPER,
        ));
    }
    let manifest_bytes = read_small(&mut f, path, &entries[5], 4 << 20)?;
    let sig_bytes = read_small(&mut f, path, &entries[6], 4096)?;
    let signature: Signature = serde_json::from_slice(&sig_bytes)
        .map_err(|e| fail(path, format!("signature.sig is malformed: {e}"), TAMPER))?;
    if sign::to_bytes(&signature) != sig_bytes {
        return Err(fail(
            path,
            "signature.sig is not in its canonical form",
            TAMPER,
        ));
    }
    Ok(Raw {
        dos,
        path: path.to_path_buf(),
        len,
        entries,
        manifest_bytes,
        signature,
    })
}

/// Every header byte must be exactly what the RS-1 writer produces for these entries: the
/// payload is covered by the manifest's digests and the manifest by the signature, and this
/// covers the rest, so no byte of the file can change unnoticed.
fn check_canonical(
    f: &mut std::fs::File,
    path: &Path,
    entries: &[Entry],
    len: u64,
) -> Result<(u16, u16)> {
    let bytes_at = |f: &mut std::fs::File, at: u64, n: u64| -> Result<Vec<u8>> {
        let mut b = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.read_exact(&mut b))
            .map_err(|e| Error::io(path, "read", e))?;
        Ok(b)
    };
    let first = bytes_at(f, 10, 4)?;
    let (time, date) = (
        u16::from_le_bytes([first[0], first[1]]),
        u16::from_le_bytes([first[2], first[3]]),
    );
    let layouts: Vec<Layout> = entries
        .iter()
        .map(|e| Layout {
            name: e.name.clone(),
            method: e.method,
            crc32: e.crc32,
            size: e.size,
            compressed: e.compressed,
            header_offset: e.header_offset,
            align: if e.name == ENTRIES[0] { MODEL_ALIGN } else { 1 },
        })
        .collect();
    for (e, l) in entries.iter().zip(&layouts) {
        let expected = local_header(l, date, time);
        let actual = bytes_at(f, e.header_offset, e.data_offset - e.header_offset)?;
        if actual != expected {
            return Err(fail(
                path,
                format!(
                    "the local header of `{}` differs from the RS-1 layout",
                    e.name
                ),
                TAMPER,
            ));
        }
    }
    let last = entries.last().expect("seven entries");
    let cd_offset = last.data_offset + last.compressed;
    let expected = central_directory(&layouts, cd_offset, date, time);
    if len - cd_offset != expected.len() as u64
        || bytes_at(f, cd_offset, len - cd_offset)? != expected
    {
        return Err(fail(
            path,
            "the central directory differs from the RS-1 layout",
            TAMPER,
        ));
    }
    Ok((date, time))
}

/// The DOS (date, time) every header must carry: 1980-01-01 00:00, or the manifest's pinned
/// `created_at` (from SOURCE_DATE_EPOCH), so the timestamps are covered by the signature too.
fn expected_dos(created_at: Option<&str>) -> Option<(u16, u16)> {
    let Some(s) = created_at else {
        return Some(super::zipwrite::dos_datetime(None));
    };
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d, hh, mm, ss) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if y < 1980 {
        return Some(super::zipwrite::dos_datetime(None));
    }
    let y = y.min(2107);
    Some((
        (((y - 1980) << 9) | (m << 5) | d) as u16,
        ((hh << 11) | (mm << 5) | (ss / 2)) as u16,
    ))
}

fn check_names(path: &Path, entries: &[Entry]) -> Result<()> {
    for e in entries {
        let n = &e.name;
        if n.starts_with('/')
            || n.contains('\\')
            || n.split('/').any(|c| c == ".." || c == ".")
            || n.contains(':')
            || n.contains('\0')
        {
            return Err(fail(
                path,
                format!("entry `{n}` has a path that escapes the archive"),
                TAMPER,
            ));
        }
    }
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(fail(path, format!("entry `{n}` appears twice"), TAMPER));
        }
    }
    if let Some(extra) = names.iter().find(|n| !ENTRIES.contains(n)) {
        return Err(fail(
            path,
            format!(
                "unexpected entry `{extra}`; RS-1 has exactly {}",
                ENTRIES.join(", ")
            ),
            TAMPER,
        ));
    }
    if let Some(missing) = ENTRIES.iter().find(|n| !names.contains(n)) {
        return Err(fail(path, format!("entry `{missing}` is missing"), TAMPER));
    }
    if names != ENTRIES {
        return Err(fail(
            path,
            format!(
                "entries are out of order: found {}, expected {}",
                names.join(", "),
                ENTRIES.join(", ")
            ),
            TAMPER,
        ));
    }
    Ok(())
}

/// Reads a small entry whole, checking its CRC and a size cap.
fn read_small(f: &mut std::fs::File, path: &Path, e: &Entry, cap: u64) -> Result<Vec<u8>> {
    if e.size > cap {
        return Err(fail(
            path,
            format!(
                "`{}` declares {} bytes; at most {cap} are allowed",
                e.name, e.size
            ),
            TAMPER,
        ));
    }
    let mut out = Vec::with_capacity(e.size as usize);
    stream_entry(f, path, e, e.size, |b| out.extend_from_slice(b))?;
    Ok(out)
}

/// Streams an entry's uncompressed bytes to `sink`, refusing more than `limit` bytes, and
/// checking the CRC-32 and the exact size.
pub fn stream_entry(
    f: &mut std::fs::File,
    path: &Path,
    e: &Entry,
    limit: u64,
    mut sink: impl FnMut(&[u8]),
) -> Result<()> {
    f.seek(SeekFrom::Start(e.data_offset))
        .map_err(|err| Error::io(path, "seek", err))?;
    let raw = (&mut *f).take(e.compressed);
    // A bufread decoder reports how much of the stream it consumed: bytes after the end of a
    // DEFLATE stream but inside the entry would otherwise be a hiding place.
    let mut inflater = None;
    let mut stored = None;
    let reader: &mut dyn Read = match e.method {
        Method::Stored => stored.insert(raw),
        Method::Deflated => inflater.insert(DeflateDecoder::new(std::io::BufReader::new(raw))),
    };
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        crate::interrupt::check()?;
        let n = reader
            .read(&mut buf)
            .map_err(|err| fail(path, format!("`{}` cannot be read: {err}", e.name), TAMPER))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(fail(
                path,
                format!(
                    "`{}` inflates past its declared {limit} bytes (zip bomb?)",
                    e.name
                ),
                TAMPER,
            ));
        }
        crc.update(&buf[..n]);
        sink(&buf[..n]);
    }
    if let Some(d) = &inflater {
        if d.total_in() != e.compressed {
            return Err(fail(
                path,
                format!(
                    "`{}` has {} bytes after its compressed stream",
                    e.name,
                    e.compressed - d.total_in().min(e.compressed)
                ),
                TAMPER,
            ));
        }
    }
    if total != e.size {
        return Err(fail(
            path,
            format!("`{}` holds {total} bytes but declares {}", e.name, e.size),
            TAMPER,
        ));
    }
    if crc.finalize() != e.crc32 {
        return Err(fail(
            path,
            format!("`{}` fails its CRC-32 check", e.name),
            TAMPER,
        ));
    }
    Ok(())
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
    pub k_score: f64,
    pub gate: f64,
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

/// Verifies everything; `on_bytes` reports payload bytes hashed (progress).
pub fn verify(path: &Path, opts: &VerifyOptions, on_bytes: &dyn Fn(u64)) -> Result<Verified> {
    verify_with(path, opts, false, &mut |_, b| on_bytes(b.len() as u64))
}

/// Verifies everything, handing each payload entry's bytes to `sink` as they are checked, so a
/// caller can extract entries in the same pass. Nothing it was handed may be trusted unless
/// this returns `Ok`.
///
/// `model_vouched`: the caller has verified this very file before and vouches that it has not
/// changed since (the runtime's verification stamp), so `model.gguf`, the one large entry, is
/// checked for its declared size but not rehashed. Every other check still runs.
pub fn verify_with(
    path: &Path,
    opts: &VerifyOptions,
    model_vouched: bool,
    sink: &mut dyn FnMut(&str, &[u8]),
) -> Result<Verified> {
    let raw = open_raw(path)?;
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
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
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
        stream_entry(&mut f, path, e, d.size, |b| {
            h.update(b);
            if keep {
                index.extend_from_slice(b);
            }
            sink(&e.name, b);
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
    check_adapter_fits(&mut f, &o)?;
    check_index(&o, &index)?;
    Ok(Verified {
        path: path.display().to_string(),
        signature: state,
        manifest_sha256: crate::digest::sha256(&o.manifest_bytes),
        manifest: o.manifest.clone(),
        entries: declared.clone(),
        k_score: o.manifest.k_score,
        gate: o.manifest.gate,
    })
}

/// Reads the GGUF header of a stored entry in place.
pub fn entry_header(f: &mut std::fs::File, o: &Opened, idx: usize) -> Result<crate::gguf::Header> {
    let e = &o.entries[idx];
    f.seek(SeekFrom::Start(e.data_offset))
        .map_err(|err| Error::io(&o.path, "seek", err))?;
    let mut r = std::io::BufReader::new((&mut *f).take(e.compressed));
    let h = crate::gguf::read_header_from(&mut r)
        .map_err(|err| fail(&o.path, format!("`{}`: {err}", e.name), TAMPER))?;
    crate::gguf::check_extent(&h, e.size)
        .map_err(|err| fail(&o.path, format!("`{}`: {err}", e.name), TAMPER))?;
    Ok(h)
}

/// Every LoRA tensor pair must match the base tensor it adapts (llama.cpp's own checks).
fn check_adapter_fits(f: &mut std::fs::File, o: &Opened) -> Result<()> {
    let base = entry_header(f, o, 0)?;
    let lora = entry_header(f, o, 1)?;
    if let Err(reason) = adapter_fits(&base, &lora) {
        return Err(fail(
            &o.path,
            format!("lora.bin does not fit model.gguf: {reason}"),
            "the adapter was made for another base",
        ));
    }
    Ok(())
}

/// Checks an adapter header against a base header.
pub fn adapter_fits(
    base: &crate::gguf::Header,
    lora: &crate::gguf::Header,
) -> std::result::Result<(), String> {
    if lora.get("general.type").and_then(|v| v.as_str()) != Some("adapter") {
        return Err("it is not a GGUF adapter (general.type)".into());
    }
    if lora.architecture() != base.architecture() {
        return Err(format!(
            "architecture {:?} vs {:?}",
            lora.architecture(),
            base.architecture()
        ));
    }
    for a in lora.tensors.iter().filter(|t| t.name.ends_with(".lora_a")) {
        let target = a.name.trim_end_matches(".lora_a");
        let b = lora
            .tensor(&format!("{target}.lora_b"))
            .ok_or_else(|| format!("`{target}` has lora_a but no lora_b"))?;
        let w = base
            .tensor(target)
            .ok_or_else(|| format!("the base has no tensor `{target}`"))?;
        if a.dims.len() != 2
            || b.dims.len() != 2
            || w.dims.len() < 2
            || a.dims[0] != w.dims[0]
            || b.dims[1] != w.dims[1]
            || a.dims[1] != b.dims[0]
        {
            return Err(format!(
                "`{target}` is {:?} but the adapter has A {:?} and B {:?}",
                w.dims, a.dims, b.dims
            ));
        }
    }
    Ok(())
}

/// The index must be the one the manifest describes: its embedder, its dimensions (as recorded
/// and as its vectors are), one vector per chunk; and when this machine keeps that embedder, the
/// embedder's own width.
fn check_index(o: &Opened, index: &[u8]) -> Result<()> {
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Other(format!("cannot create a temp folder: {e}")))?;
    let p = dir.path().join("index.sqlite");
    std::fs::write(&p, index).map_err(|e| Error::io(&p, "write", e))?;
    let r = &o.manifest.recall;
    let problem = match index_facts(&p) {
        Err(e) => Some(format!(
            "index.sqlite-vec is not a readable kolm index: {e}"
        )),
        Ok((dims, sha, vectors, width)) => {
            if dims != r.dimensions as u64 {
                Some(format!(
                    "index.sqlite-vec has {dims} dimensions but the manifest's embedder has {}",
                    r.dimensions
                ))
            } else if sha != r.embedder_sha256.clone().unwrap_or_default() {
                Some(
                    "index.sqlite-vec was embedded by another embedder than the manifest names"
                        .to_string(),
                )
            } else if dims > 0 && (vectors != r.chunks || width != dims) {
                Some(format!("index.sqlite-vec has {vectors} vectors of {width} dimensions for {} chunks of {dims}", r.chunks))
            } else {
                None
            }
        }
    };
    if let Some(p) = problem {
        return Err(fail(&o.path, p, TAMPER));
    }
    // The embedder itself, when this machine has it (the runtime checks it again on loading).
    if let (Some(sha), true) = (&r.embedder_sha256, r.dimensions > 0) {
        let config = crate::home::Home::from_env()
            .root()
            .join("embedders")
            .join(sha)
            .join("config.json");
        let hidden = std::fs::read(&config)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("hidden_size").and_then(|h| h.as_u64()));
        if let Some(h) = hidden.filter(|&h| h != r.dimensions as u64) {
            return Err(fail(
                &o.path,
                format!(
                    "the index has {} dimensions but its embedder ({}) makes {h}",
                    r.dimensions,
                    config.display()
                ),
                TAMPER,
            ));
        }
    }
    Ok(())
}

/// (dimensions, embedder identity, vector count, vector width) of an index file.
fn index_facts(p: &std::path::Path) -> Result<(u64, String, u64, u64)> {
    let db = crate::recall::index::open(p)?;
    let meta = |k: &str| crate::recall::index::meta(&db, k).map(Option::unwrap_or_default);
    let dims: u64 = meta("dimensions")?
        .parse()
        .map_err(|_| Error::Other("`dimensions` is not a number".into()))?;
    let sha = meta("embedder_sha256")?;
    if dims == 0 {
        return Ok((0, sha, 0, 0));
    }
    let (n, w): (u64, Option<u64>) = db
        .query_row(
            "SELECT count(*), max(vec_length(embedding)) FROM chunks_vec",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| Error::Other(format!("SQLite: {e}")))?;
    Ok((dims, sha, n, w.unwrap_or(dims)))
}
