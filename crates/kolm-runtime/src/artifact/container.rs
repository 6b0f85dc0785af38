//! Reading a `.kolm` as a container: its zip structure, checked byte for byte against the RS-1
//! layout, its manifest and signature entries read (not yet trusted), and its entries streamed
//! with hard limits. [`super::verify`] runs the whole verification on top of this, and
//! [`super::payload`] the entries' cross-checks.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::bufread::DeflateDecoder;

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

/// A verification failure. The reason may quote the file (entry names, a hostile zip's bytes):
/// it is escaped and capped before anything prints it.
pub fn fail(path: &Path, reason: impl Into<String>, help: &str) -> Error {
    Error::from(crate::artifact::VerifyFailed {
        path: path.to_path_buf(),
        reason: crate::untrusted::shown_up_to(&reason.into(), 1000),
        help: help.into(),
    })
}

pub const TAMPER: &str = "the file was modified or damaged after it was sealed: rebuild it, or fetch it again from its source";

/// Reads the structure, checks entry names and layout, and parses manifest and signature.
pub fn open(path: &Path) -> Result<Opened> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    open_raw(&mut f, path)?.parse()
}

/// An artifact whose structure is sound and whose manifest and signature bytes are read, not
/// yet parsed: the signature is checked over the bytes before anything trusts their content.
pub struct Raw {
    /// The DOS (date, time) all headers carry.
    pub(super) dos: (u16, u16),
    path: PathBuf,
    len: u64,
    entries: Vec<Entry>,
    pub(super) manifest_bytes: Vec<u8>,
    pub(super) signature: Signature,
}

impl Raw {
    pub(super) fn parse(self) -> Result<Opened> {
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

pub(super) fn open_raw(f: &mut std::fs::File, path: &Path) -> Result<Raw> {
    let md = f.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if !md.is_file() {
        return Err(Error::invalid(
            format!(
                "`{}` is not a file",
                crate::untrusted::shown(&path.display().to_string())
            ),
            "pass the path of a `.kolm` artifact (kolmbuild writes them to dist/)",
        ));
    }
    let len = md.len();
    let entries = zipread::read_entries(f, len).map_err(|m| fail(path, m.0, TAMPER))?;
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
    let dos = check_canonical(f, path, &entries, len)?;
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
    let manifest_bytes = read_small(f, path, &entries[5], 4 << 20)?;
    let sig_bytes = read_small(f, path, &entries[6], 4096)?;
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
    // Every header carries the same (time, date); the one most headers agree on is taken, so
    // a header whose date alone was changed is the one blamed, not its neighbour.
    let mut seen: Vec<((u16, u16), usize)> = Vec::new();
    for e in entries {
        let b = bytes_at(f, e.header_offset + 10, 4)?;
        let td = (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        );
        match seen.iter_mut().find(|(x, _)| *x == td) {
            Some((_, n)) => *n += 1,
            None => seen.push((td, 1)),
        }
    }
    let most = seen.iter().map(|&(_, n)| n).max().unwrap_or(0);
    let ((time, date), _) = *seen
        .iter()
        .find(|&&(_, n)| n == most)
        .expect("seven entries");
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
pub(super) fn expected_dos(created_at: Option<&str>) -> Option<(u16, u16)> {
    match created_at {
        None => Some(crate::dates::dos_datetime(None)),
        Some(s) => crate::dates::parse_rfc3339(s).map(|t| crate::dates::dos_datetime(Some(t))),
    }
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
