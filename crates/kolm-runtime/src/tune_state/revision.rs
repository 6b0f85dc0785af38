//! `revisions/vN/revision.json`: what each revision of a tuned adapter records, read and
//! written in one place.

use serde::{Deserialize, Serialize};

use super::TuneDir;
use crate::{Error, Result};

/// What `revisions/vN/revision.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub name: String,
    /// The revision it was trained from (`None` for v0, the artifact's adapter).
    pub parent: Option<String>,
    /// K on the artifact's tests, once evaluated.
    pub k_score: Option<f64>,
    /// Capture lines it was trained on (the first `captures` lines of `captures.jsonl`).
    pub captures: u64,
    /// Pairs from `init --pairs` it was trained on.
    pub pairs: u64,
    pub steps: u64,
    pub tokens: u64,
    pub final_loss: Option<f64>,
}

impl TuneDir {
    /// The revision `name`, or an error that says it does not exist or is damaged.
    pub fn read_revision(&self, name: &str) -> Result<Revision> {
        let path = self.revision(name).join("revision.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(
                    format!("there is no revision `{name}`"),
                    "`kolm tune status` lists the revisions",
                )
            } else {
                Error::io(&path, "read", e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid_because(
                format!("`{}` is damaged", path.display()),
                e,
                "remove that revision's folder; it can be trained again with `kolm tune step`",
            )
        })
    }

    /// Writes a revision's record atomically.
    pub fn write_revision(&self, r: &Revision) -> Result<()> {
        let path = self.revision(&r.name).join("revision.json");
        crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(r).expect("serialises"))
    }

    /// Revision names, oldest first (`v0`, `v1`, …): the folders with a record.
    pub fn revision_names(&self) -> Result<Vec<String>> {
        let dir = self.revisions();
        let mut numbered: Vec<(u64, String)> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix('v')?.parse().ok()?;
                    e.path()
                        .join("revision.json")
                        .is_file()
                        .then_some((n, name))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&dir, "list", e)),
        };
        numbered.sort();
        Ok(numbered.into_iter().map(|(_, n)| n).collect())
    }
}
