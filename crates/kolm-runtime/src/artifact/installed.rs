//! Installed artifacts: `KOLM_HOME/artifacts/<task>.kolm`, the ones `kolm serve` serves.
//!
//! One file per task, named for it. Installing verifies the artifact (failing closed, as
//! `kolm verify` does), copies it beside its final name, verifies the copy, and renames it into
//! place: a reader sees the old file or the new one, never a part, and a failed install leaves
//! the old one installed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::verify::{self, VerifyOptions};
use crate::home::Home;
use crate::{Error, Result};

/// One installed artifact, as `kolm list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// The task's name: the file's stem and the tool's name.
    pub name: String,
    pub description: String,
    pub k_score: f64,
    pub size: u64,
    /// sha256 of the manifest as stored (what receipts name).
    pub manifest_sha256: String,
    pub path: PathBuf,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub installed: Installed,
    /// The manifest digest of the install it replaced, if any.
    pub replaced: Option<String>,
}

fn describe(path: &Path, o: &super::container::Opened) -> Installed {
    Installed {
        name: o.manifest.task.name.clone(),
        description: o.manifest.task.description.trim().to_string(),
        k_score: o.manifest.k_score,
        size: o.len,
        manifest_sha256: crate::digest::sha256(&o.manifest_bytes),
        path: path.to_path_buf(),
    }
}

/// Where the install named `name` is (whether or not it exists); `None` for a name that could
/// escape the folder.
pub fn path_of(home: &Home, name: &str) -> Option<PathBuf> {
    (!name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.'))
        .then(|| home.artifacts().join(format!("{name}.kolm")))
}

/// What a command names an artifact by: a `.kolm` path, or an installed artifact's name.
pub fn resolve(home: &Home, artifact: &str) -> Result<PathBuf> {
    let p = Path::new(artifact);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    match path_of(home, artifact) {
        Some(installed) if installed.is_file() => Ok(installed),
        _ => Err(Error::invalid(
            format!("`{artifact}` is neither a .kolm file nor an installed artifact"),
            "pass the artifact's path, or a name `kolm list` shows",
        )),
    }
}

/// Verifies `src` and installs it under its task's name, replacing an older install.
pub fn install(home: &Home, src: &Path, opts: &VerifyOptions) -> Result<Outcome> {
    let v = verify::verify(src, opts, &|_| {})?;
    let name = v.manifest.task.name.clone();
    let dir = home.artifacts();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
    let dest = dir.join(format!("{name}.kolm"));
    let replaced = verify::open(&dest)
        .ok()
        .map(|o| crate::digest::sha256(&o.manifest_bytes));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, "create a file in", e))?;
    let mut from = std::fs::File::open(src).map_err(|e| Error::io(src, "open", e))?;
    std::io::copy(&mut from, &mut tmp.as_file()).map_err(|e| Error::io(tmp.path(), "write", e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), "sync", e))?;
    // The copy is what will be served: it must verify too.
    verify::verify(tmp.path(), opts, &|_| {})?;
    tmp.persist(&dest)
        .map_err(|e| Error::io(&dest, "replace", e.error))?;
    let o = verify::open(&dest)?;
    Ok(Outcome {
        installed: describe(&dest, &o),
        replaced,
    })
}

/// The installed artifacts, by name. Reads each one's manifest (no digests): an artifact that
/// cannot even be read is listed by the error, so `kolm list` shows it rather than hiding it.
pub fn list(home: &Home) -> Result<Vec<std::result::Result<Installed, (PathBuf, String)>>> {
    let dir = home.artifacts();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, "list", e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "kolm") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| match verify::open(&p) {
            Ok(o) => Ok(describe(&p, &o)),
            Err(e) => Err((p, e.to_string())),
        })
        .collect())
}

/// Removes the install named `name`.
pub fn uninstall(home: &Home, name: &str) -> Result<PathBuf> {
    let Some(path) = path_of(home, name).filter(|p| p.is_file()) else {
        let names: Vec<String> = list(home)?
            .into_iter()
            .filter_map(|r| r.ok().map(|i| i.name))
            .collect();
        return Err(Error::invalid(
            format!("no artifact named `{name}` is installed"),
            if names.is_empty() {
                "nothing is installed: `kolm install ART.kolm` installs one".to_string()
            } else {
                format!("installed: {}", names.join(", "))
            },
        ));
    };
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, "remove", e))?;
    Ok(path)
}
