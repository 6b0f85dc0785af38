//! The corpus: which files `recall.corpus` globs (or `kolm rag index DIR`) select.

use std::path::Path;

use crate::{Error, Result};

/// The corpus: project-relative paths (forward slashes, sorted, deduplicated) of the files the
/// globs match, honouring `.gitignore`, `.ignore` and `.kolmignore` files and skipping hidden
/// files (the `ignore` crate's rules, as ripgrep applies them; a `.gitignore` counts outside a
/// git checkout too). In a glob, `*` stays within one folder and `**` crosses folders. Each glob is walked from its literal base folder
/// (`docs/**/*.md` walks `docs/`), never the whole project, which keeps a no-op build's
/// listing proportional to the corpus.
pub fn files(dir: &Path, globs: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for g in globs {
        let matcher = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::invalid_because(format!("corpus glob `{g}`"), e, "fix the glob"))?
            .compile_matcher();
        let base = root_of(g);
        let root = dir.join(base);
        if !root.is_dir() {
            continue;
        }
        let walker = ignore::WalkBuilder::new(&root)
            .git_global(false)
            .require_git(false)
            .add_custom_ignore_filename(".kolmignore")
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| {
                Error::invalid_because(
                    format!("cannot list the corpus under `{}`", root.display()),
                    e,
                    "check the folder's permissions",
                )
            })?;
            // A symlink to a file counts (a Bazel sandbox is a tree of them); a symlink to a
            // folder is not followed (no loops).
            let is_file = entry
                .file_type()
                .is_some_and(|t| t.is_file() || (t.is_symlink() && entry.path().is_file()));
            if !is_file {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if matcher.is_match(&rel) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The literal base folder of each glob (project-relative; `""` is the project itself): the
/// folders a corpus listing walks, so a file added below one can change the corpus.
pub fn roots(globs: &[String]) -> Vec<String> {
    globs.iter().map(|g| root_of(g)).collect()
}

/// `docs/**/*.md` → `docs`; a glob with no wildcard names one file, whose base is its folder.
fn root_of(glob: &str) -> String {
    let parts: Vec<&str> = glob.split('/').collect();
    let literal = parts
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[', '{']))
        .count();
    let n = if literal == parts.len() {
        literal - 1
    } else {
        literal
    };
    parts[..n].join("/")
}
