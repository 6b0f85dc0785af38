//! An embedder folder (a sentence-transformers BERT: `config.json`, `model.safetensors`,
//! `tokenizer.json`) and its identity, which needs no model: the manifest, the embedding cache
//! and the runtime's search for the embedder a dense index needs all go by it.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The files an embedder folder must have, in the order their digests enter its identity.
pub const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// The identity of an embedder from the sha256 of each of its [`FILES`]: the sha256 of the lines
/// `<file> <sha256>\n` in [`FILES`] order (kolmfile-spec/rag.md §4).
pub fn identity(file_sha256: &[String; 3]) -> String {
    let mut s = String::new();
    for (f, d) in FILES.iter().zip(file_sha256) {
        s.push_str(&format!("{f} {d}\n"));
    }
    crate::digest::sha256(s.as_bytes())
}

pub(super) fn bad(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(
        format!("embedder `{}`: {what}", dir.display()),
        "point `recall.embedder` at a sentence-transformers BERT folder (config.json, tokenizer.json, model.safetensors), e.g. all-MiniLM-L6-v2",
    )
}

/// The paths of an embedder's [`FILES`], or an error naming the one that is missing.
pub fn files(dir: &Path) -> Result<[PathBuf; 3]> {
    let paths = FILES.map(|f| dir.join(f));
    for p in &paths {
        if !p.is_file() {
            return Err(bad(
                dir,
                format_args!(
                    "`{}` is missing",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
    }
    Ok(paths)
}

/// Hashes the files of the embedder in `dir`: its [`identity`].
pub fn identity_of(dir: &Path) -> Result<String> {
    let paths = files(dir)?;
    let mut digests: [String; 3] = Default::default();
    for (d, p) in digests.iter_mut().zip(&paths) {
        *d = crate::digest::sha256_file(p, None)?.0;
    }
    Ok(identity(&digests))
}
