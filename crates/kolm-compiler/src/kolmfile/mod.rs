//! The Kolmfile: what the user asks kolm to build.
//!
//! `raw` mirrors the TOML as written, `resolve` checks it and applies defaults, `config` is the
//! result every later step reads (a mistake is reported as a [`KolmfileError`], from
//! [`crate::diagnostic`]), and `init` writes a starter project. The normative reference is `kolmfile-spec/kolmfile.md`.

mod check;
pub mod config;
pub mod defaults;
pub mod init;
mod keys;
mod mask;
mod raw;
mod resolve;
mod sections;
mod shape;

use std::path::{Path, PathBuf};

pub use crate::diagnostic::KolmfileError;
pub use config::*;

/// The conventional file name, looked for in the current folder and its parents.
pub const FILE_NAME: &str = "Kolmfile.toml";

/// A parsed and checked Kolmfile.
#[derive(Debug, Clone)]
pub struct Kolmfile {
    /// The file as the user named it.
    pub path: PathBuf,
    /// Its folder: every path in the Kolmfile is relative to this.
    pub dir: PathBuf,
    pub project: Project,
    pub tasks: Vec<TaskConfig>,
}

impl Kolmfile {
    /// Reads and checks a Kolmfile.
    pub fn load(path: &Path) -> crate::Result<Kolmfile> {
        let bytes =
            std::fs::read(path).map_err(|e| crate::Error::io(path, "read the Kolmfile", e))?;
        let source = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                // Point at the bad byte in the text before it (which is valid UTF-8).
                let at = e.utf8_error().valid_up_to();
                let before = String::from_utf8_lossy(&e.as_bytes()[..at]).into_owned();
                return Err(KolmfileError::at(
                    path,
                    &before,
                    at..at,
                    format!("byte {at} (0x{:02x}) is not UTF-8", e.as_bytes()[at]),
                    "the next byte",
                    Some("a Kolmfile is UTF-8 text: re-save it as UTF-8".into()),
                )
                .into());
            }
        };
        Ok(Self::parse(path, &source)?)
    }

    /// Checks Kolmfile text; `path` is used for messages and as the base of relative paths.
    #[allow(clippy::result_large_err)] // built once, on the way out
    pub fn parse(path: &Path, source: &str) -> Result<Kolmfile, KolmfileError> {
        // Absolute once here, so every path joined to it is absolute (no per-file getcwd).
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        let cx = check::Cx {
            path,
            src: source,
            dir: &dir,
        };
        let raw: raw::RawKolmfile =
            toml_edit::de::from_str(source).map_err(|e| shape::shape_error(&cx, &e))?;
        let (project, tasks) = resolve::resolve(&cx, raw)?;
        Ok(Kolmfile {
            path: path.to_path_buf(),
            dir,
            project,
            tasks,
        })
    }

    /// Finds `Kolmfile.toml` in `start` or the nearest parent folder, as cargo finds Cargo.toml.
    pub fn find(start: &Path) -> Option<PathBuf> {
        start
            .ancestors()
            .map(|d| d.join(FILE_NAME))
            .find(|p| p.is_file())
    }

    /// Absolute path of a Kolmfile-relative path.
    pub fn abs(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskConfig> {
        self.tasks.iter().find(|t| t.name == name)
    }
}
