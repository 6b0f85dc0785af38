//! A copy of `examples/tiny-triage` (and `rules/`, which its wrappers include) in a temp
//! folder: the project the build-system tests build with real tools.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct Checkout {
    pub root: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Checkout {
    /// `examples/tiny-triage` and `rules/` copied as they are in the repository (its `dist/`
    /// left out), and an empty KOLM_HOME.
    pub fn tiny_triage() -> Checkout {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = tempfile::tempdir().unwrap();
        copy_tree(&repo.join("rules"), &root.path().join("rules"));
        copy_tree(
            &repo.join("examples/tiny-triage"),
            &root.path().join("examples/tiny-triage"),
        );
        Checkout {
            root,
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// The project folder.
    pub fn project(&self) -> PathBuf {
        self.root.path().join("examples/tiny-triage")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.project().join(rel)
    }

    pub fn artifact(&self) -> PathBuf {
        self.path("dist/tiny-triage.kolm")
    }

    /// Writes a project file now and dates the artifact ten seconds back, as if the edit came
    /// well after the build: tools comparing times (Make) must see it even within one tick.
    pub fn edit(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        self.age_artifact();
    }

    /// Dates the artifact ten seconds back (if it exists).
    pub fn age_artifact(&self) {
        if let Ok(f) = std::fs::File::options().write(true).open(self.artifact()) {
            f.set_modified(SystemTime::now() - Duration::from_secs(10))
                .unwrap();
        }
    }
}

/// Copies a folder tree (files and folders; `dist/` left out).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "dist" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
