//! Opening a `.kolm` to run it: verify it, and keep the verified handle open.
//!
//! llama.cpp reads the model and the adapter in place, from that handle at their entries'
//! offsets ([`super::in_place`]): nothing is copied out, so a first run writes no model to disk,
//! and nothing is rehashed after verification. The index is a SQLite file, which SQLite opens by
//! path, so it goes to `KOLM_HOME/cache/indexes/` by digest. Training (`kolm tune step`) reads
//! the base with candle, by path: [`Opened::model_file`] extracts it into the model store
//! (`KOLM_HOME/models/sha256-<hex>.gguf`) for that, and only then ([`super::model_copy`]).
//!
//! Rehashing a multi-GB model on every run would make a cold start cost seconds. So, like git's
//! index, a successful verification leaves a *stamp*: the artifact's device, inode, size,
//! mtime and ctime. While those are unchanged (any write changes the ctime, which no user can
//! set back), the next open still runs every check except rehashing `model.gguf`: structure,
//! timestamps, the signature under the key in use now, every small entry's digest, the
//! adapter's fit. `kolm verify` never uses stamps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::in_place::Span;
use super::model_copy;
use crate::artifact::verify::{self, SignatureState, VerifyOptions};
use crate::artifact::Manifest;
use crate::home::Home;
use crate::{Error, Result};

/// A verified artifact, kept open: llama.cpp reads its model and adapter in place.
#[derive(Debug, Clone)]
pub struct Opened {
    pub path: PathBuf,
    /// sha256 of the whole `.kolm` file.
    pub sha256: String,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    pub signature: SignatureState,
    /// The handle that was verified; the model and adapter are read through it.
    pub file: Arc<std::fs::File>,
    /// Where `model.gguf` and `lora.bin` lie in the file (stored entries, as verified).
    pub model_span: Span,
    pub adapter_span: Span,
    /// The artifact's adapter (`lora.bin`), as verified.
    pub lora: Vec<u8>,
    /// An adapter file to run with instead of the artifact's own (a tune revision).
    pub adapter: Option<PathBuf>,
    /// `index.sqlite-vec`, extracted.
    pub index_path: PathBuf,
    pub recipes: Vec<u8>,
    pub tests: Vec<u8>,
    /// The model entry was vouched for by a stamp rather than rehashed.
    pub stamped: bool,
}

impl Opened {
    /// The artifact's student: its base and adapter (or [`Opened::adapter`]), constrained by its
    /// task's schema.
    pub fn student(&self) -> Result<super::Student> {
        self.student_with(self.adapter.as_deref())
    }

    /// The artifact's base with `adapter` (a file) instead of its own, or its own when `None`.
    pub fn student_with(&self, adapter: Option<&Path>) -> Result<super::Student> {
        let label = |entry: &str| format!("{entry} of `{}`", self.path.display());
        let (model_label, lora_label) = (label("model.gguf"), label("lora.bin"));
        let own = super::Gguf::Entry {
            file: &self.file,
            span: self.adapter_span,
            label: &lora_label,
        };
        super::Student::load_from(
            super::Gguf::Entry {
                file: &self.file,
                span: self.model_span,
                label: &model_label,
            },
            Some(adapter.map_or(own, super::Gguf::Path)),
            Some(&self.manifest.task.output_schema),
        )
    }

    /// `model.gguf` as a file of its own, for what reads a model by path (training: `kolm tune
    /// step`): extracted once into the model store from the verified handle, checked against
    /// the manifest's sha256 as it is written, and reused while its content is the one
    /// extracted ([`model_copy`]).
    pub fn model_file(&self, home: &Home) -> Result<PathBuf> {
        let declared = &self.manifest.entries[0].sha256;
        let dest = home.model(declared);
        if model_copy::is_sound(&dest) {
            return Ok(dest);
        }
        let mut tmp = crate::fsutil::temp_beside(&dest)?;
        let (mut sha, mut b3) = (sha2::Sha256::new(), blake3::Hasher::new());
        let mut w = super::in_place::Window::new(&self.file, self.model_span);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut w, &mut buf)
                .map_err(|e| Error::io(&self.path, "read", e))?;
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            b3.update(&buf[..n]);
            tmp.as_file_mut()
                .write_all(&buf[..n])
                .map_err(|e| Error::io(&dest, "extract the model to", e))?;
        }
        if hex::encode(sha.finalize()) != *declared {
            return Err(Error::from(crate::artifact::VerifyFailed {
                path: self.path.clone(),
                reason: "model.gguf changed since the artifact was verified".into(),
                help: "something is writing the artifact: run again once it is finished".into(),
            }));
        }
        crate::fsutil::persist(tmp, &dest)?;
        model_copy::remember(&dest, &b3.finalize())?;
        Ok(dest)
    }

    /// The artifact's own index opened for grounding (`None` without chunks); `embedder` names
    /// the embedder's folder when the copy a build keeps is not on this machine.
    pub fn grounding(
        &self,
        home: &Home,
        embedder: Option<&Path>,
    ) -> Result<Option<crate::recall::ground::Grounding>> {
        crate::recall::ground::Grounding::open(
            &self.index_path,
            home,
            self.manifest.recall.top_k as usize,
            embedder,
        )
    }
}

/// The adapter with these bytes as a file llama.cpp can load (see [`cache_file`]).
pub fn adapter_file(home: &Home, bytes: &[u8]) -> Result<PathBuf> {
    cache_file(home, "adapters", "gguf", bytes)
}

/// The recall index with these bytes as a file SQLite can open (see [`cache_file`]).
pub fn index_file(home: &Home, bytes: &[u8]) -> Result<PathBuf> {
    cache_file(home, "indexes", "sqlite", bytes)
}

/// An entry's bytes as a file, for the libraries that read files: kept under
/// `KOLM_HOME/cache/<folder>/` by digest, and rewritten if the copy there is not those bytes.
/// (Adapters and indexes are megabytes: checking the copy costs less than trusting a damaged
/// one.)
fn cache_file(home: &Home, folder: &str, ext: &str, bytes: &[u8]) -> Result<PathBuf> {
    let sha256 = crate::digest::sha256(bytes);
    let path = home
        .cache()
        .join(folder)
        .join(format!("sha256-{sha256}.{ext}"));
    let intact = std::fs::read(&path).is_ok_and(|b| crate::digest::sha256(&b) == sha256);
    if !intact {
        crate::fsutil::write_atomic(&path, bytes)?;
    }
    Ok(path)
}

/// What a verification saw of the file, and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    verified_ns: i64,
    sha256: String,
    manifest_sha256: String,
}

/// A stamp is trusted only if the file was last changed well before it was verified (a write
/// within the same timestamp tick would otherwise go unseen: git's "racy clean").
const RACY_NS: i64 = 2_000_000_000;

#[cfg(unix)]
fn facts(md: &std::fs::Metadata) -> (u64, u64, u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (
        md.dev(),
        md.ino(),
        md.len(),
        md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        md.ctime() * 1_000_000_000 + md.ctime_nsec(),
    )
}

#[cfg(not(unix))]
fn facts(_: &std::fs::Metadata) -> (u64, u64, u64, i64, i64) {
    // No ctime: never trust a stamp.
    (0, 0, 0, 0, i64::MAX)
}

impl Stamp {
    fn holds(&self, md: &std::fs::Metadata) -> bool {
        let (dev, inode, size, mtime_ns, ctime_ns) = facts(md);
        (dev, inode, size, mtime_ns, ctime_ns)
            == (
                self.dev,
                self.inode,
                self.size,
                self.mtime_ns,
                self.ctime_ns,
            )
            && self.verified_ns - mtime_ns.max(ctime_ns) >= RACY_NS
    }
}

fn stamp_path(home: &Home, abs: &Path) -> PathBuf {
    let id = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
    home.cache()
        .join("verified")
        .join(format!("{}.json", &id[..24]))
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The runtime's side of a verification pass: it learns which artifact this is from the
/// verified manifest, says whether its stamp vouches for the model, and keeps the small
/// entries as they are checked.
struct Extract<'a> {
    /// A stamp that holds for the open file (same device, inode, size, times).
    stamp: Option<&'a Stamp>,
    vouched: bool,
    lora: Vec<u8>,
    recipes: Vec<u8>,
    tests: Vec<u8>,
    index: Vec<u8>,
}

impl verify::Sink for Extract<'_> {
    fn verified_manifest(&mut self, _: &Manifest, manifest_sha256: &str) -> Result<bool> {
        self.vouched = self
            .stamp
            .is_some_and(|s| s.manifest_sha256 == manifest_sha256);
        Ok(self.vouched)
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) {
        match name {
            "lora.bin" => self.lora.extend_from_slice(bytes),
            "recipes.json" => self.recipes.extend_from_slice(bytes),
            "tests.jsonl" => self.tests.extend_from_slice(bytes),
            "index.sqlite-vec" => self.index.extend_from_slice(bytes),
            _ => {}
        }
    }
}

/// Verifies `path` (fails closed, as `kolm verify` does) and keeps it open for llama.cpp to
/// read in place. With `stamps`, an unchanged artifact verified before is not rehashed (see
/// above).
///
/// The file is opened once and everything is read through that handle: the checks, the
/// whole-file digest, and later the model and adapter. Every name (the stamp's manifest, the
/// entries' places) comes from the verified manifest and layout, never from an earlier,
/// unchecked read.
pub fn open(path: &Path, home: &Home, opts: &VerifyOptions, stamps: bool) -> Result<Opened> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
    let md = f.metadata().map_err(|e| Error::io(path, "stat", e))?;
    let stamp_file = stamp_path(home, &abs);
    let stamp: Option<Stamp> = std::fs::read(&stamp_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Stamp| stamps && s.holds(&md));

    let mut x = Extract {
        stamp: stamp.as_ref(),
        vouched: false,
        lora: Vec::new(),
        recipes: Vec::new(),
        tests: Vec::new(),
        index: Vec::new(),
    };
    let verified = verify::verify_with(&mut f, path, opts, &mut x)?;
    let vouched = x.vouched;
    let span = |name: &str| -> Result<Span> {
        verified
            .stored(name)
            .map(|e| Span {
                offset: e.offset,
                len: e.size,
            })
            .ok_or_else(|| {
                Error::from(crate::artifact::VerifyFailed {
                    path: path.to_path_buf(),
                    reason: format!("`{name}` is not stored uncompressed, as RS-1 requires"),
                    help: verify::TAMPER.into(),
                })
            })
    };
    let (model_span, adapter_span) = (span("model.gguf")?, span("lora.bin")?);
    let index_path = index_file(home, &x.index)?;
    let sha256 = match (&stamp, vouched) {
        (Some(s), true) => s.sha256.clone(),
        _ => {
            let sha256 = whole_file_sha256(&mut f, path, &md)?;
            let (dev, inode, size, mtime_ns, ctime_ns) = facts(&md);
            let fresh = Stamp {
                dev,
                inode,
                size,
                mtime_ns,
                ctime_ns,
                verified_ns: now_ns(),
                sha256: sha256.clone(),
                manifest_sha256: verified.manifest_sha256.clone(),
            };
            // A stamp is an optimisation: failing to write one costs a rehash next time.
            if let Some(dir) = stamp_file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = crate::fsutil::write_cache_file(
                &stamp_file,
                &serde_json::to_vec(&fresh).expect("serialises"),
            );
            sha256
        }
    };
    Ok(Opened {
        path: path.to_path_buf(),
        sha256,
        manifest: verified.manifest,
        manifest_sha256: verified.manifest_sha256,
        signature: verified.signature,
        file: Arc::new(f),
        model_span,
        adapter_span,
        lora: x.lora,
        adapter: None,
        index_path,
        recipes: x.recipes,
        tests: x.tests,
        stamped: vouched,
    })
}

/// The sha256 of the whole file, read through the handle that was verified; refused if the
/// file changed while it was being read (its size or times moved since the first stat).
fn whole_file_sha256(
    f: &mut std::fs::File,
    path: &Path,
    before: &std::fs::Metadata,
) -> Result<String> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, "seek", e))?;
    let (sha256, _) = crate::digest::sha256_reader(f, path, None)?;
    let after = f.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if facts(&after) != facts(before) {
        return Err(Error::from(crate::artifact::VerifyFailed {
            path: path.to_path_buf(),
            reason: "the file changed while it was being read".into(),
            help: "something is writing the artifact: run again once it is finished".into(),
        }));
    }
    Ok(sha256)
}
