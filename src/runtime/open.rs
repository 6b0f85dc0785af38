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
//! adapter's fit. The extracted model is itself trusted only while its own fingerprint holds.
//! `kolm verify` never uses stamps.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::verify::{self, SignatureState, VerifyOptions};
use crate::artifact::Manifest;
use crate::cache::Fingerprints;
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

/// Verifies `path` (fails closed, as `kolm verify` does) and makes its model and adapter
/// loadable. With `stamps`, an unchanged artifact verified before is not rehashed (see above).
pub fn open(path: &Path, home: &Home, opts: &VerifyOptions, stamps: bool) -> Result<Opened> {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, "open", e))?;
    let stamp_file = stamp_path(home, &abs);
    let stamp: Option<Stamp> = std::fs::read(&stamp_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Stamp| stamps && s.holds(&md));

    // The manifest says which model this is; if the store has a sound copy, nothing is written.
    let pre = verify::open(path)?;
    let model_sha = pre
        .manifest
        .entries
        .first()
        .map(|e| e.sha256.clone())
        .unwrap_or_default();
    let model_dest = crate::stages::base::stored_model(home, &model_sha);
    let mut fp = Fingerprints::load(&home.cache(), Path::new("/"));
    let have_model = model_dest.is_file()
        && matches!(fp.digest(&model_dest, None), Ok((sha, _)) if sha == model_sha);
    let vouched = have_model
        && stamp
            .as_ref()
            .is_some_and(|s| s.manifest_sha256 == crate::digest::sha256(&pre.manifest_bytes));
    let mut model_tmp = if have_model {
        None
    } else {
        Some(crate::fsutil::temp_beside(&model_dest)?)
    };
    let mut write_err: Option<std::io::Error> = None;
    let (mut lora, mut recipes, mut tests, mut index) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let verified = verify::verify_with(path, opts, vouched, &mut |name, bytes| match name {
        "model.gguf" => {
            if let (Some(t), None) = (model_tmp.as_mut(), write_err.as_ref()) {
                if let Err(e) = t.as_file_mut().write_all(bytes) {
                    write_err = Some(e);
                }
            }
        }
        "lora.bin" => lora.extend_from_slice(bytes),
        "recipes.json" => recipes.extend_from_slice(bytes),
        "tests.jsonl" => tests.extend_from_slice(bytes),
        "index.sqlite-vec" => index.extend_from_slice(bytes),
        _ => {}
    })?;
    if let Some(e) = write_err {
        return Err(Error::io(&model_dest, "extract the model to", e));
    }
    if let Some(t) = model_tmp {
        crate::fsutil::persist(t, &model_dest)?;
        fp.remember_written(&model_dest, &model_sha);
    }
    let adapter_path = adapter_file(home, &lora)?;
    let index_path = index_file(home, &index)?;
    let sha256 = match (&stamp, vouched) {
        (Some(s), true) => s.sha256.clone(),
        _ => {
            let (sha256, _) = fp.digest(path, None)?;
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
    let _ = fp.save();
    Ok(Opened {
        path: path.to_path_buf(),
        sha256,
        manifest: verified.manifest,
        manifest_sha256: verified.manifest_sha256,
        signature: verified.signature,
        model_path: model_dest,
        adapter_path,
        index_path,
        recipes,
        tests,
        stamped: vouched,
    })
}
