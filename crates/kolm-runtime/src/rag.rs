//! `kolm rag`: named BM25 indexes kept under `KOLM_HOME/rag/<name>/`, and attaching one to an
//! artifact by a sidecar file, for facts that change too often to compile in.
//!
//! An index here is exactly a recall index ([`crate::recall::index`]): the same reading,
//! chunking and FTS5 file, so what `kolm rag query` finds is what a recipe or the runner will
//! find. Attaching never touches the artifact: it writes `<artifact>.rag.json` beside it
//! (`app.kolm` → `app.kolm.rag.json`), so the signed file, and every receipt naming its digest,
//! stay as they were.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::recall;
use crate::{Error, Result};

/// `manifest.json` of a named index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RagManifest {
    pub spec: String,
    pub name: String,
    /// The folder it was built from, as given.
    pub source: String,
    pub documents: u64,
    pub chunks: u64,
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub chunk_chars: u32,
    pub overlap_chars: u32,
    /// sha256 of `index.sqlite`.
    pub sha256: String,
    pub size: u64,
}

/// The sidecar that attaches an index to an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub spec: String,
    pub index: String,
    /// The index as it was when attached: a rebuilt index must be attached again.
    pub index_sha256: String,
}

pub const MANIFEST_SPEC: &str = "kolm-rag-1";
pub const SIDECAR_SPEC: &str = "kolm-rag-sidecar-1";

fn dir_of(home: &Home, name: &str) -> Result<PathBuf> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && !name.starts_with('.');
    if !ok {
        return Err(Error::invalid(
            format!("`{name}` is not a valid index name"),
            "use lowercase letters, digits, `-`, `_` and `.` (not first), at most 64",
        ));
    }
    Ok(home.root().join("rag").join(name))
}

/// Where the sidecar of `artifact` lives.
pub fn sidecar_path(artifact: &Path) -> PathBuf {
    let mut s = artifact.as_os_str().to_owned();
    s.push(".rag.json");
    PathBuf::from(s)
}

/// Indexes every file under `src` (ignore files and hidden files honoured, non-text skipped)
/// as the named index, replacing a previous one of that name.
pub fn index(home: &Home, src: &Path, name: &str, chunk: u32, overlap: u32) -> Result<RagManifest> {
    let dir = dir_of(home, name)?;
    if !src.is_dir() {
        return Err(Error::invalid(
            format!("`{}` is not a folder", src.display()),
            "give the folder of documents to index",
        ));
    }
    if overlap >= chunk || chunk < 64 {
        return Err(Error::invalid(
            format!("chunks of {chunk} characters overlapping by {overlap} do not work"),
            "use --chunk-chars of at least 64 and a smaller --overlap-chars",
        ));
    }
    let files = recall::corpus::files(src, &["**/*".to_string()])?;
    if files.is_empty() {
        return Err(Error::invalid(
            format!("`{}` has no files to index", src.display()),
            "hidden files and whatever ignore files exclude are skipped",
        ));
    }
    let mut shas = std::collections::BTreeMap::new();
    for rel in files {
        let (sha, _) = crate::digest::sha256_file(&src.join(&rel), None)?;
        shas.insert(rel, sha);
    }
    let recall::Indexed {
        bytes,
        built,
        skipped,
    } = recall::index_files(src, &shas, chunk as usize, overlap as usize, None)?;
    let manifest = RagManifest {
        spec: MANIFEST_SPEC.into(),
        name: name.into(),
        source: src.display().to_string(),
        documents: built.documents,
        chunks: built.chunks,
        skipped,
        chunk_chars: chunk,
        overlap_chars: overlap,
        sha256: crate::digest::sha256(&bytes),
        size: bytes.len() as u64,
    };
    // The index first, then the manifest that vouches for it: a crash in between leaves a
    // manifest that does not match, which `open` reports.
    crate::fsutil::write_atomic(&dir.join("index.sqlite"), &bytes)?;
    crate::fsutil::write_atomic(
        &dir.join("manifest.json"),
        &serde_json::to_vec_pretty(&manifest).expect("serialises"),
    )?;
    Ok(manifest)
}

/// Opens a named index, checking it against its manifest.
pub fn open(home: &Home, name: &str) -> Result<(RagManifest, rusqlite::Connection)> {
    let dir = dir_of(home, name)?;
    let mpath = dir.join("manifest.json");
    let m: RagManifest = match std::fs::read(&mpath) {
        Err(_) => {
            return Err(Error::invalid(
                format!("there is no index named `{name}`"),
                format!("create it with `kolm rag index DIR --name {name}`"),
            ))
        }
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::invalid_because(
                format!("`{}` is not a rag manifest", mpath.display()),
                e,
                format!("rebuild it with `kolm rag index DIR --name {name}`"),
            )
        })?,
    };
    let ipath = dir.join("index.sqlite");
    let (sha, _) = crate::digest::sha256_file(&ipath, None)?;
    if sha != m.sha256 {
        return Err(Error::invalid(
            format!("the index `{name}` does not match its manifest (changed or damaged)"),
            format!("rebuild it with `kolm rag index DIR --name {name}`"),
        ));
    }
    Ok((m, recall::index::open(&ipath)?))
}

/// Attaches the named index to an artifact (which must be a readable RS-1 file).
pub fn attach(home: &Home, artifact: &Path, name: &str) -> Result<PathBuf> {
    crate::artifact::verify::open(artifact)?;
    let (m, _) = open(home, name)?;
    let side = sidecar_path(artifact);
    let s = Sidecar {
        spec: SIDECAR_SPEC.into(),
        index: name.into(),
        index_sha256: m.sha256,
    };
    crate::fsutil::write_atomic(&side, &serde_json::to_vec_pretty(&s).expect("serialises"))?;
    Ok(side)
}

/// Removes an artifact's sidecar.
pub fn detach(artifact: &Path) -> Result<PathBuf> {
    let side = sidecar_path(artifact);
    match std::fs::remove_file(&side) {
        Ok(()) => Ok(side),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::invalid(
            format!("`{}` has no index attached", artifact.display()),
            "nothing to detach",
        )),
        Err(e) => Err(Error::io(&side, "remove", e)),
    }
}

/// The index attached to an artifact, if any, checked: the sidecar parses, the index exists
/// and is the one that was attached.
pub fn attached(home: &Home, artifact: &Path) -> Result<Option<(Sidecar, rusqlite::Connection)>> {
    let side = sidecar_path(artifact);
    let Ok(bytes) = std::fs::read(&side) else {
        return Ok(None);
    };
    let s: Sidecar = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_because(
            format!("`{}` is not a rag sidecar", side.display()),
            e,
            "remove it with `kolm rag detach`, then attach again",
        )
    })?;
    let (m, db) = open(home, &s.index)?;
    if m.sha256 != s.index_sha256 {
        return Err(Error::invalid(
            format!(
                "the index `{}` was rebuilt after it was attached to `{}`",
                s.index,
                artifact.display()
            ),
            format!(
                "attach it again: `kolm rag attach {} --index {}`",
                artifact.display(),
                s.index
            ),
        ));
    }
    Ok(Some((s, db)))
}
