//! What a node's files contribute to its key: each file by its name in the key (project-relative,
//! or `external:<file name>` for an absolute path, so keys never depend on where a project
//! is checked out) and its sha256, folded into one digest of the whole listing.

use std::collections::BTreeMap;

use super::Shared;
use crate::graph::Node;
use crate::Result;

/// The files a node reads, by key name, with their sha256.
pub(super) fn file_digests(shared: &Shared, node: &Node) -> Result<BTreeMap<String, String>> {
    let paths: Vec<std::path::PathBuf> =
        node.files.iter().map(|f| shared.kolmfile.abs(f)).collect();
    let mut fp = shared.fingerprints.lock().expect("not poisoned");
    let digests = fp.digest_many(&paths, Some(&shared.progress))?;
    Ok(node
        .files
        .iter()
        .zip(digests)
        .map(|(f, (sha, _))| (key_name(f), sha))
        .collect())
}

/// A file's name in a key: project-relative, or `external:<file name>` for an absolute path
/// (keys never contain absolute paths).
fn key_name(f: &str) -> String {
    if std::path::Path::new(f).is_absolute() {
        format!("external:{}", f.rsplit('/').next().unwrap_or(f))
    } else {
        f.to_string()
    }
}

/// One digest for a node's whole file listing (name and sha256 of each file, in name order):
/// what the key holds in place of the listing itself.
pub(super) fn files_digest(files: &BTreeMap<String, String>) -> String {
    let mut h = blake3::Hasher::new();
    for (name, sha) in files {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(sha.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

pub(super) fn files_by_path(
    names: &[String],
    by_key: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|n| by_key.get(&key_name(n)).map(|sha| (n.clone(), sha.clone())))
        .collect()
}
