//! The `.kolm` artifact (RS-1): writing it, reading it, verifying it, showing it.
//!
//! A zip with exactly seven entries in a fixed order. `zipwrite` and `zipread` own the byte
//! layout, `manifest` the contract, `sign` the signature, `container` the strict reading of the
//! zip, `verify` the fail-closed checks, `payload` the entries' cross-checks, and `inspect` the
//! human and JSON views. The normative format is `kolmfile-spec/rs-1.md`.

pub mod container;
pub mod failures;
pub mod inspect;
pub mod installed;
pub mod manifest;
pub mod payload;
pub mod sign;
pub mod verify;
pub mod zipread;
pub mod zipwrite;

use std::path::Path;

pub use failures::{NoSigningKey, VerifyFailed};
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
    /// The model's sha256 as the manifest declares it: the model is hashed again as it is
    /// sealed and must have it, so nothing is signed that does not verify.
    pub model_sha256: &'a str,
    pub lora: &'a [u8],
    pub recipes: &'a [u8],
    pub index: &'a [u8],
    pub tests: &'a [u8],
}

/// Writes the artifact to `dest` atomically: nothing appears at `dest` unless all of it was
/// written and the model's bytes, hashed as they were copied, have the declared sha256.
/// `on_bytes` reports streamed model bytes (progress).
pub fn write(
    dest: &Path,
    payload: &Payload,
    manifest: &[u8],
    signature: &[u8],
    epoch: Option<i64>,
    on_bytes: &dyn Fn(u64),
) -> Result<()> {
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
    // The model is copied from a file outside the artifact (by the kernel, without kolm seeing
    // a byte), and that file could have changed or rotted since the base stage hashed it: it is
    // hashed again on the other core while the copy runs, and must not change meanwhile.
    std::thread::scope(|s| {
        let check = s.spawn(|| source_digest(payload.model));
        let written = zipwrite::write_zip(tmp.as_file_mut(), dest, &specs, epoch, on_bytes);
        let checked = check.join().expect("the digest thread does not panic");
        written?;
        let got = checked?;
        if got != payload.model_sha256 {
            return Err(crate::Error::Invalid {
                what: format!(
                    "the base model `{}` changed since the build checked it: its bytes have sha256 {got}, not {}",
                    payload.model.display(),
                    payload.model_sha256
                ),
                help: "nothing was sealed; run the build again to read the base afresh".into(),
 cause: None,
            });
        }
        Ok(())
    })?;
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
    Ok(())
}

/// The sha256 of a file, refused if its size or times move while it is read.
fn source_digest(path: &Path) -> Result<String> {
    let stat = |what| {
        std::fs::metadata(path)
            .map(|m| (m.len(), m.modified().ok()))
            .map_err(|e| crate::Error::io(path, what, e))
    };
    let before = stat("read")?;
    let (sha256, _) = crate::digest::sha256_file(path, None)?;
    if stat("read")? != before {
        return Err(crate::Error::Invalid {
            what: format!(
                "the base model `{}` changed while it was sealed",
                path.display()
            ),
            help: "nothing was sealed; run the build again once nothing writes the model".into(),
            cause: None,
        });
    }
    Ok(sha256)
}
