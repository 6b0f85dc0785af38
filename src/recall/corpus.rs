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
            .map_err(|e| Error::invalid(format!("corpus glob `{g}`: {e}"), "fix the glob"))?
            .compile_matcher();
        let base: Vec<&str> = g
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[', '{']))
            .collect();
        // A glob with no wildcard names one file; its base is its folder.
        let base = if base.len() == g.split('/').count() {
            base[..base.len() - 1].join("/")
        } else {
            base.join("/")
        };
        let root = dir.join(&base);
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
                Error::invalid(
                    format!("cannot list the corpus under `{}`: {e}", root.display()),
                    "check the folder's permissions",
                )
            })?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
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
