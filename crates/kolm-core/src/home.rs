//! `KOLM_HOME`: where kolm keeps state that outlives a project checkout.
//!
//! `cache/` (action cache and blobs), `models/` (downloaded bases), `artifacts/`, `tune/`,
//! `rag/`, `logs/`. Defaults to `~/.kolm`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `KOLM_HOME`, else `~/.kolm`.
    pub fn from_env() -> Home {
        let root = std::env::var_os("KOLM_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kolm")))
            .unwrap_or_else(|| PathBuf::from(".kolm"));
        Home { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    /// The content-addressed model store: one file per model, named by its sha256. A downloaded
    /// base, a built-in tiny base and a model extracted from an artifact to run it all live
    /// here, so one copy serves every build and run that uses it.
    pub fn model(&self, sha256: &str) -> PathBuf {
        self.models().join(format!("sha256-{sha256}.gguf"))
    }
    /// Where the embedder with this identity is kept.
    pub fn embedder(&self, sha256: &str) -> PathBuf {
        self.root.join("embedders").join(sha256)
    }
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}
