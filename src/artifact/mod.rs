//! The `.kolm` artifact (RS-1): writing it, reading it, verifying it, showing it.
//!
//! A zip with exactly seven entries in a fixed order. `zipwrite` and `zipread` own the byte
//! layout, `manifest` the contract, `sign` the signature, `container` the strict reading of the
//! zip, `verify` the fail-closed checks, `payload` the entries' cross-checks, and `inspect` the
//! human and JSON views. The normative format is `kolmfile-spec/rs-1.md`.

pub mod container;
pub mod inspect;
pub mod manifest;
pub mod payload;
pub mod sign;
pub mod verify;
pub mod zipread;
pub mod zipwrite;

use std::path::Path;

pub use manifest::Manifest;
use zipwrite::{EntrySpec, Method, Source};

use crate::Result;

/// The seven entries, in the order they must appear.
pub const ENTRIES: [&str; 7] = [
    "model.gguf",
    "lora.bin",
    "recipes.json",
    "index.sqlite-vec",
    "tests.jsonl",
    "manifest.json",
    "signature.sig",
];

/// `model.gguf`'s data starts at a multiple of this, so it can be mapped in place.
pub const MODEL_ALIGN: u64 = 4096;

/// The compression each entry is written with (part of the format, so part of reproducibility).
pub fn method_of(name: &str) -> Method {
    match name {
        "recipes.json" | "index.sqlite-vec" | "tests.jsonl" => Method::Deflated,
        _ => Method::Stored,
    }
}

/// The payload entries (the first five) of an artifact about to be sealed.
pub struct Payload<'a> {
    pub model: &'a Path,
    /// The model's CRC-32 when known (the `base` stage computes it): the model is then copied
    /// by the kernel instead of read and rewritten.
    pub model_crc32: Option<u32>,
    /// The model's sha256 as the manifest declares it: the sealed copy is read back and must
    /// have it, so nothing is signed that does not verify.
    pub model_sha256: &'a str,
    pub lora: &'a [u8],
    pub recipes: &'a [u8],
    pub index: &'a [u8],
    pub tests: &'a [u8],
}

/// What [`write`] wrote: the artifact's sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub sha256: String,
    pub size: u64,
}

/// Writes the artifact to `dest` atomically: nothing appears at `dest` unless all of it was
/// written, and its model entry read back has the declared sha256. `on_bytes` reports streamed
/// model bytes (progress).
pub fn write(
    dest: &Path,
    payload: &Payload,
    manifest: &[u8],
    signature: &[u8],
    epoch: Option<i64>,
    on_bytes: &dyn Fn(u64),
) -> Result<Written> {
    let sources: [Source; 7] = [
        Source::File(payload.model, payload.model_crc32),
        Source::Bytes(payload.lora),
        Source::Bytes(payload.recipes),
        Source::Bytes(payload.index),
        Source::Bytes(payload.tests),
        Source::Bytes(manifest),
        Source::Bytes(signature),
    ];
    let specs: Vec<EntrySpec> = ENTRIES
        .iter()
        .zip(sources)
        .map(|(name, source)| EntrySpec {
            name,
            method: method_of(name),
            align: if *name == "model.gguf" {
                MODEL_ALIGN
            } else {
                1
            },
            source,
        })
        .collect();
    let mut tmp = crate::fsutil::temp_beside(dest)?;
    let layouts = zipwrite::write_zip(tmp.as_file_mut(), dest, &specs, epoch, on_bytes)?;
    let written = read_back(tmp.as_file_mut(), dest, &layouts[0], payload)?;
    // World-readable like any build output (temp files are created 0600), and not fsynced: like
    // cargo's outputs it is reproducible from the cache, and `verify` catches any damage.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(dest)
        .map_err(|e| crate::Error::io(dest, "rename into place", e.error))?;
    Ok(written)
}

/// Reads the written artifact once: its whole-file sha256, and the model entry's sha256, which
/// must be the declared one. The model was copied from a file outside the artifact (the kernel
/// may have copied it without kolm seeing a byte), and that file could have changed or rotted
/// since the base stage hashed it.
fn read_back(
    f: &mut std::fs::File,
    dest: &Path,
    model: &zipwrite::Layout,
    payload: &Payload,
) -> Result<Written> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| crate::Error::io(dest, "read back", e);
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let start = model.header_offset + zipwrite::local_header(model, 0, 0).len() as u64;
    let end = start + model.size;
    let (mut whole, mut entry) = (Sha256::new(), Sha256::new());
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    loop {
        crate::interrupt::check()?;
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let (a, b) = (pos.max(start), (pos + n as u64).min(end));
        if a < b {
            // Two digests of the same bytes: one per core, so the check costs no more wall
            // time than the whole-file digest the seal needs anyway.
            let part = &chunk[(a - pos) as usize..(b - pos) as usize];
            rayon::join(|| whole.update(chunk), || entry.update(part));
        } else {
            whole.update(chunk);
        }
        pos += n as u64;
    }
    let got = hex::encode(entry.finalize());
    if got != payload.model_sha256 {
        return Err(crate::Error::Invalid {
            what: format!(
                "the base model `{}` changed since the build checked it: the sealed copy has sha256 {got}, not {}",
                payload.model.display(),
                payload.model_sha256
            ),
            help: "nothing was sealed; run the build again to read the base afresh".into(),
        });
    }
    Ok(Written {
        sha256: hex::encode(whole.finalize()),
        size: pos,
    })
}
