//! Every file, folder and environment variable a build reads: what `kolmbuild --depfile`
//! writes for Make, what a `build.rs` prints for Cargo, and what `kolmbuild watch` watches.
//!
//! The stages already say which files each of them reads (`Stage::files`: their digests go
//! into the keys), so the list is their union, per task, plus what the Kolmfile itself pulls
//! in (an `output_schema_file`, a signing key file) and the folders whose *listing* is an
//! input (`Stage::dirs`: a corpus glob's base folder, the recipes folder; a new file there can
//! change the build). One list serves all three wrappers, so they cannot disagree.
//!
//! | input | why it is listed |
//! |---|---|
//! | the Kolmfile | every key |
//! | each stage's files | seeds, evals, corpus files, embedder files, a local base, a cassette, recipes |
//! | `output_schema_file` | read when the Kolmfile is loaded |
//! | `[sign] key_file` | the signature (when `KOLM_SIGNING_KEY` is unset); `~/` is the home folder |
//! | the folders of `Stage::dirs` and every folder below them that holds a listed file | a new or removed file changes the build |
//! | `KOLM_HOME`, `KOLM_SIGNING_KEY`, `SOURCE_DATE_EPOCH`, the teacher's key variable, `HF_ENDPOINT`/`HF_TOKEN` for a base by address | the variables a build reads |
//!
//! Not listed: `Kolmfile.lock` and `dist/`, which the build writes (listing them would make
//! every build look out of date to Cargo and set a watcher rebuilding its own output), and
//! the shared cache under `KOLM_HOME`, which only ever holds what the keys above name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::kolmfile::{BaseSource, Kolmfile};
use crate::stages::{StageKind, Stages};
use crate::{Error, Result};

/// Variables every build reads.
pub const BUILD_ENV: [&str; 3] = ["KOLM_HOME", "KOLM_SIGNING_KEY", "SOURCE_DATE_EPOCH"];

/// What one task's build reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInputs {
    pub task: String,
    /// The artifact it writes (absolute).
    pub artifact: PathBuf,
    /// Files it reads, the Kolmfile first, then sorted (absolute).
    pub files: Vec<PathBuf>,
    /// Folders whose listing it reads (absolute, sorted).
    pub dirs: Vec<PathBuf>,
}

/// What a whole Kolmfile's build reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub tasks: Vec<TaskInputs>,
    /// Environment variables that change what the build does (sorted).
    pub env: Vec<String>,
}

impl Inputs {
    /// Lists the inputs of every task of `kolmfile` as `stages` would read them.
    pub fn of(kolmfile: &Kolmfile, stages: &Stages) -> Result<Inputs> {
        let mut env: BTreeSet<String> = BUILD_ENV.iter().map(|s| s.to_string()).collect();
        let mut tasks = Vec::new();
        for task in &kolmfile.tasks {
            let mut files = BTreeSet::new();
            let mut dirs = BTreeSet::new();
            for kind in StageKind::ALL {
                let stage = stages.get(kind);
                files.extend(stage.files(kolmfile, task)?);
                dirs.extend(stage.dirs(kolmfile, task));
            }
            files.extend(task.schema_file.clone());
            // Every folder between a listed folder and a file below it: Make sees a file
            // added in a subfolder only through that subfolder's own time.
            let roots: Vec<String> = dirs.iter().cloned().collect();
            for f in &files {
                for root in &roots {
                    dirs.extend(folders_between(root, f));
                }
            }
            let mut all = vec![std::path::absolute(&kolmfile.path)
                .map_err(|e| Error::io(&kolmfile.path, "resolve", e))?];
            all.extend(files.iter().map(|f| kolmfile.abs(f)));
            all.extend(
                task.sign
                    .key_file
                    .as_deref()
                    .map(|f| crate::artifact::sign::key_path(f, &kolmfile.dir)),
            );
            if let Some(v) = &task.teacher.api_key_env {
                if task.teacher.provider.uses_network() {
                    env.insert(v.clone());
                }
            }
            if matches!(task.base.source, BaseSource::Url { .. }) {
                env.extend(["HF_ENDPOINT".to_string(), "HF_TOKEN".to_string()]);
            }
            tasks.push(TaskInputs {
                task: task.name.clone(),
                artifact: kolmfile
                    .abs(&kolmfile.project.dist)
                    .join(format!("{}.kolm", task.name)),
                files: all,
                dirs: dirs
                    .iter()
                    .map(|d| kolmfile.abs(d))
                    .filter(|d| d.is_dir())
                    .collect(),
            });
        }
        Ok(Inputs {
            tasks,
            env: env.into_iter().collect(),
        })
    }

    /// Every file any task reads, once, sorted.
    pub fn files(&self) -> Vec<&Path> {
        self.union(|t| &t.files)
    }

    /// Every folder any task lists, once, sorted.
    pub fn dirs(&self) -> Vec<&Path> {
        self.union(|t| &t.dirs)
    }

    fn union<'a>(&'a self, of: impl Fn(&'a TaskInputs) -> &'a [PathBuf]) -> Vec<&'a Path> {
        let set: BTreeSet<&Path> = self
            .tasks
            .iter()
            .flat_map(|t| of(t).iter().map(PathBuf::as_path))
            .collect();
        set.into_iter().collect()
    }

    /// A Make rule per artifact in the style of `gcc -MD -MP`: `artifact: inputs…`, then an
    /// empty rule per input so that a deleted input makes the artifact stale instead of
    /// stopping Make with "No rule to make target". Paths under `base` are written relative
    /// to it (Make names its targets as it was told them), others absolute.
    pub fn depfile(&self, base: &Path) -> String {
        let name = |p: &Path| make_escape(&relative_to(p, base));
        let mut out =
            String::from("# Written by `kolmbuild --depfile`: every input of each artifact.\n");
        // Make reads no variables from a depfile; a build script's helper does (kolm-build).
        out.push_str(&format!("# env: {}\n", self.env.join(" ")));
        let mut seen = BTreeSet::new();
        for t in &self.tasks {
            out.push_str(&name(&t.artifact));
            out.push(':');
            for p in t.files.iter().chain(&t.dirs) {
                out.push_str(" \\\n  ");
                out.push_str(&name(p));
                seen.insert(p.as_path());
            }
            out.push('\n');
        }
        for p in seen {
            out.push('\n');
            out.push_str(&name(p));
            out.push_str(":\n");
        }
        out
    }
}

/// The folders strictly between `root` and the file `f` below it (project-relative), root
/// excluded; none when `f` is not below `root`.
fn folders_between(root: &str, f: &str) -> Vec<String> {
    let root = root.trim_end_matches('/');
    let rest = if root.is_empty() {
        Some(f)
    } else {
        f.strip_prefix(root).and_then(|r| r.strip_prefix('/'))
    };
    let Some(rest) = rest else { return Vec::new() };
    let mut out = Vec::new();
    let mut at = root.to_string();
    let parts: Vec<&str> = rest.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        out.push(at.clone());
    }
    out
}

/// `p` relative to `base` when it is below it, else `p` unchanged.
fn relative_to(p: &Path, base: &Path) -> String {
    p.strip_prefix(base)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// Make's quoting in a rule's target and prerequisite lists (as gcc writes depfiles): a
/// space, `#` and `:`'s neighbours need a backslash, `$` doubles.
fn make_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '#' | ':' => {
                out.push('\\');
                out.push(c);
            }
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_names_are_escaped_as_gcc_writes_them() {
        assert_eq!(make_escape("a b#c$d"), "a\\ b\\#c$$d");
        assert_eq!(relative_to(Path::new("/p/q/r"), Path::new("/p")), "q/r");
        assert_eq!(relative_to(Path::new("/x/r"), Path::new("/p")), "/x/r");
        assert_eq!(
            folders_between("docs", "docs/a/b/c.md"),
            ["docs/a", "docs/a/b"]
        );
        assert_eq!(folders_between("", "a/c.md"), ["a"]);
        assert!(folders_between("docs", "docsx/c.md").is_empty());
    }
}
