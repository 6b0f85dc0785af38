//! Opening a `.kolm` to run it: verify first, and extract in the same pass.
//!
//! llama.cpp loads weights from a path, so `model.gguf` is extracted once into the content-
//! addressed model store (`KOLM_HOME/models/sha256-<hex>.gguf`, the same place a downloaded
//! base lives) and reused by every later run of any artifact with the same base. Extraction
//! rides on verification: the bytes are written while they are hashed, and the file is moved
//! into place only once every check has passed, so a tampered artifact never leaves a model
//! behind. The adapter is small and goes to `KOLM_HOME/cache/adapters/` the same way.
//!
//! Rehashing a multi-GB model on every run would make a cold start cost seconds. So, like git's
//! index, a successful verification leaves a *stamp*: the artifact's device, inode, size,
//! mtime and ctime. While those are unchanged (any write changes the ctime, which no user can
//! set back), the next open still runs every check except rehashing `model.gguf`: structure,
//! timestamps, the signature under the key in use now, every small entry's digest, the
//! adapter's fit. The extracted model is itself trusted only while its content is the one
//! extracted ([`super::model_copy`]).
//! `kolm verify` never uses stamps.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model_copy;
use crate::artifact::verify::{self, SignatureState, VerifyOptions};
use crate::artifact::Manifest;
use crate::home::Home;
use crate::{Error, Result};

/// A verified artifact, its entries where llama.cpp can read them.
#[derive(Debug, Clone)]
pub struct Opened {
    pub path: PathBuf,
    /// sha256 of the whole `.kolm` file.
    pub sha256: String,
    pub manifest: Manifest,
    pub manifest_sha256: String,
    pub signature: SignatureState,
    pub model_path: PathBuf,
    pub adapter_path: PathBuf,
    /// `index.sqlite-vec`, extracted.
    pub index_path: PathBuf,
    pub recipes: Vec<u8>,
    pub tests: Vec<u8>,
    /// The model entry was vouched for by a stamp rather than rehashed.
    pub stamped: bool,
}

impl Opened {
    /// The artifact's student: its base and adapter, constrained by its task's schema.
    pub fn student(&self) -> Result<super::Student> {
        super::Student::load(
            &self.model_path,
            Some(&self.adapter_path),
            Some(&self.manifest.task.output_schema),
        )
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

/// The runtime's side of a verification pass: it learns which model the artifact holds from
/// the verified manifest, decides whether the store's copy can serve, and extracts what it needs
/// from the bytes as they are checked.
struct Extract<'a> {
    path: &'a Path,
    home: &'a Home,
    /// A stamp that holds for the open file (same device, inode, size, times).
    stamp: Option<&'a Stamp>,
    /// Where the model goes, from the verified manifest's digest; and the copy being written,
    /// unless the store's copy is sound.
    model_dest: Option<PathBuf>,
    model_tmp: Option<(tempfile::NamedTempFile, blake3::Hasher)>,
    vouched: bool,
    write_err: Option<std::io::Error>,
    lora: Vec<u8>,
    recipes: Vec<u8>,
    tests: Vec<u8>,
    index: Vec<u8>,
}

impl verify::Sink for Extract<'_> {
    fn verified_manifest(&mut self, m: &Manifest, manifest_sha256: &str) -> Result<bool> {
        let model_sha = m
            .entries
            .first()
            .map(|e| e.sha256.as_str())
            .unwrap_or_default();
        // It names a file before the payload is hashed: only a digest may (an unsigned
        // manifest could say `../../x`). A declared value of any other form fails anyway.
        if model_sha.len() != 64 || !model_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Verify {
                path: self.path.to_path_buf(),
                reason: "the manifest's sha256 of model.gguf is not 64 hex digits".into(),
                help: verify::TAMPER.into(),
            });
        }
        let dest = self.home.model(model_sha);
        let sound = model_copy::is_sound(&dest);
        self.vouched = sound
            && self
                .stamp
                .is_some_and(|s| s.manifest_sha256 == manifest_sha256);
        if !sound {
            self.model_tmp = Some((crate::fsutil::temp_beside(&dest)?, blake3::Hasher::new()));
        }
        self.model_dest = Some(dest);
        Ok(self.vouched)
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) {
        match name {
            "model.gguf" => {
                if let (Some((t, h)), None) = (self.model_tmp.as_mut(), self.write_err.as_ref()) {
                    h.update(bytes);
                    if let Err(e) = t.as_file_mut().write_all(bytes) {
                        self.write_err = Some(e);
                    }
                }
            }
            "lora.bin" => self.lora.extend_from_slice(bytes),
            "recipes.json" => self.recipes.extend_from_slice(bytes),
            "tests.jsonl" => self.tests.extend_from_slice(bytes),
            "index.sqlite-vec" => self.index.extend_from_slice(bytes),
            _ => {}
        }
    }
}

/// Verifies `path` (fails closed, as `kolm verify` does) and makes its model and adapter
/// loadable. With `stamps`, an unchanged artifact verified before is not rehashed (see above).
///
/// The file is opened once and everything is read through that handle: the checks, the
/// extraction and the whole-file digest. Every name (the model's place in the store, the
/// stamp's manifest) comes from the verified manifest, never from an earlier, unchecked read.
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
        path,
        home,
        stamp: stamp.as_ref(),
        model_dest: None,
        model_tmp: None,
        vouched: false,
        write_err: None,
        lora: Vec::new(),
        recipes: Vec::new(),
        tests: Vec::new(),
        index: Vec::new(),
    };
    let verified = verify::verify_with(&mut f, path, opts, &mut x)?;
    let model_dest = x.model_dest.take().expect("set once the manifest verified");
    if let Some(e) = x.write_err.take() {
        return Err(Error::io(&model_dest, "extract the model to", e));
    }
    if let Some((t, h)) = x.model_tmp.take() {
        crate::fsutil::persist(t, &model_dest)?;
        model_copy::remember(&model_dest, &h.finalize())?;
    }
    let vouched = x.vouched;
    let adapter_path = adapter_file(home, &x.lora)?;
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
        model_path: model_dest,
        adapter_path,
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
        return Err(Error::Verify {
            path: path.to_path_buf(),
            reason: "the file changed while it was being read".into(),
            help: "something is writing the artifact: run again once it is finished".into(),
        });
    }
    Ok(sha256)
}
