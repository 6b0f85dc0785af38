//! Opening a `.kolm` to run it: verify first, and extract in the same pass.
//!
//! llama.cpp loads weights from a path, so `model.gguf` is extracted once into the content-
//! addressed model store (`KOLM_HOME/models/sha256-<hex>.gguf`, the same place a downloaded
//! base lives) and reused by every later run of any artifact with the same base. Extraction
//! rides on verification: the bytes are written while they are hashed, and the file is moved
//! into place only once every check has passed, so a tampered artifact never leaves a model
//! behind. The adapter is small and goes to `KOLM_HOME/cache/adapters/` the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

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
    pub recipes: Vec<u8>,
    pub tests: Vec<u8>,
}

/// Where an adapter with this digest is kept.
pub fn stored_adapter(home: &Home, sha256: &str) -> PathBuf {
    home.cache()
        .join("adapters")
        .join(format!("sha256-{sha256}.gguf"))
}

/// Verifies `path` (fails closed, as `kolm verify`) and makes its model and adapter loadable.
pub fn open(path: &Path, home: &Home, opts: &VerifyOptions) -> Result<Opened> {
    // The manifest says which model this is; if the store already has it, nothing is written.
    let pre = verify::open(path)?;
    let model_sha = pre
        .manifest
        .entries
        .first()
        .map(|e| e.sha256.clone())
        .unwrap_or_default();
    let model_dest = crate::stages::base::stored_model(home, &model_sha);
    let mut model_tmp = if model_dest.is_file() {
        None
    } else {
        Some(crate::fsutil::temp_beside(&model_dest)?)
    };
    let mut write_err: Option<std::io::Error> = None;
    let (mut lora, mut recipes, mut tests) = (Vec::new(), Vec::new(), Vec::new());
    let verified = verify::verify_with(path, opts, &mut |name, bytes| match name {
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
        _ => {}
    })?;
    if let Some(e) = write_err {
        return Err(Error::io(&model_dest, "extract the model to", e));
    }
    if let Some(t) = model_tmp {
        crate::fsutil::persist(t, &model_dest)?;
    }
    let adapter_sha = crate::digest::sha256(&lora);
    let adapter_path = stored_adapter(home, &adapter_sha);
    if !adapter_path.is_file() {
        crate::fsutil::write_atomic(&adapter_path, &lora)?;
    }
    let mut fp = crate::cache::Fingerprints::load(&home.cache(), Path::new("/"));
    let (sha256, _) = fp.digest(path, None)?;
    let _ = fp.save();
    Ok(Opened {
        path: path.to_path_buf(),
        sha256,
        manifest: verified.manifest,
        manifest_sha256: verified.manifest_sha256,
        signature: verified.signature,
        model_path: model_dest,
        adapter_path,
        recipes,
        tests,
    })
}
