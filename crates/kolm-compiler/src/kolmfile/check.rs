//! The reading context every part of resolving shares, and the checks of single values (paths,
//! ranges, names) that point at the offending text when they fail.

// See resolve.rs: a KolmfileError is built once, on the way out.
#![allow(clippy::result_large_err)]

use std::ops::Range;
use std::path::Path;

use serde_spanned::Spanned;

use super::raw::{Bounds, S};
use crate::diagnostic::{did_you_mean, KolmfileError};

pub(super) type R<T> = Result<T, KolmfileError>;

/// Reading context: the file and its text, for pointing at mistakes.
pub(super) struct Cx<'a> {
    pub path: &'a Path,
    pub src: &'a str,
    pub dir: &'a Path,
}

impl Cx<'_> {
    pub(super) fn err(
        &self,
        span: Range<usize>,
        msg: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) -> KolmfileError {
        KolmfileError::at(self.path, self.src, span, msg, label, help)
    }

    /// An error about text that may be a secret: the bytes in `mask` are starred out of the
    /// source the error renders (offsets kept), and the snippet is withheld.
    pub(super) fn secret_err(
        &self,
        mask: Range<usize>,
        span: Range<usize>,
        msg: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) -> KolmfileError {
        let mut masked = self.src.to_string();
        masked.replace_range(mask.clone(), &"*".repeat(mask.len()));
        let mut e = KolmfileError::at(self.path, &masked, span, msg, label, help);
        e.snippet = "<redacted>".into();
        e
    }

    /// The span of `key = ...` inside a table's span, to point at a key that is missing a
    /// partner or conflicts with one.
    pub(super) fn key_span(&self, table: Range<usize>, key: &str) -> Range<usize> {
        match crate::diagnostic::key_line(&self.src[table.clone()], key, None) {
            Some(r) => table.start + r.start..table.start + r.end,
            None => table,
        }
    }
}

/// A path relative to the Kolmfile, normalised to forward slashes, that must not escape it.
pub(super) fn relative_path(cx: &Cx, v: Spanned<String>) -> R<String> {
    let s = v.get_ref().replace('\\', "/");
    let s = s.trim_start_matches("./").trim_end_matches('/').to_string();
    if s.is_empty() || s == "." || s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return Err(cx.err(v.span(), format!("path `{s}` must stay inside the project"), "this path", Some("paths are relative to the Kolmfile's folder and may not start with `/` or contain `..`".into())));
    }
    Ok(s)
}

/// A Kolmfile-relative path that must name an existing file.
pub(super) fn existing_file(cx: &Cx, v: Spanned<String>, what: &str) -> R<String> {
    let span = v.span();
    let rel = relative_path(cx, v)?;
    must_be_file(cx, span, &rel, &cx.dir.join(&rel), what)?;
    Ok(rel)
}

/// `abs` (written as `shown` at `span`) must be a file: a folder or a missing path is an error
/// that says which.
pub(super) fn must_be_file(
    cx: &Cx,
    span: Range<usize>,
    shown: &str,
    abs: &Path,
    what: &str,
) -> R<()> {
    if abs.is_file() {
        return Ok(());
    }
    Err(if abs.is_dir() {
        cx.err(
            span,
            format!("{what} `{shown}` is a folder, not a file"),
            "a folder",
            Some("name a file inside it".into()),
        )
    } else {
        cx.err(
            span,
            format!("{what} `{shown}` does not exist"),
            "no such file",
            Some(format!("paths are relative to {}", display_dir(cx.dir))),
        )
    })
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        "the current folder".into()
    } else {
        format!("`{}`", dir.display())
    }
}

pub(super) fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    cx: &Cx,
    v: Spanned<T>,
    lo: T,
    hi: T,
    key: &str,
) -> R<T> {
    let x = *v.get_ref();
    // Written so that NaN is out of every range.
    if !(x >= lo && x <= hi) {
        return Err(cx.err(
            v.span(),
            format!("`{key}` = {x} is out of range"),
            "out of range",
            Some(format!("expected a value from {lo} to {hi}")),
        ));
    }
    Ok(x)
}

/// An integer key: in its declared range, else its declared default.
pub(super) fn int(cx: &Cx, v: S<i64>, b: Bounds, key: &str) -> R<u32> {
    Ok(v.map(|v| in_range(cx, v, b.lo as i64, b.hi as i64, key))
        .transpose()?
        .unwrap_or(b.default as i64) as u32)
}

/// A number key: in its declared range, else its declared default.
pub(super) fn float(cx: &Cx, v: S<f64>, b: Bounds, key: &str) -> R<f64> {
    Ok(v.map(|v| in_range(cx, v, b.lo, b.hi, key))
        .transpose()?
        .unwrap_or(b.default))
}

pub(super) fn one_of(cx: &Cx, v: &Spanned<String>, names: &[&str], key: &str) -> R<()> {
    if names.contains(&v.get_ref().as_str()) {
        return Ok(());
    }
    let help = did_you_mean(v.get_ref(), names.iter().copied())
        .map(|s| format!("did you mean `{s}`?"))
        .unwrap_or_else(|| format!("expected one of: {}", names.join(", ")));
    Err(cx.err(
        v.span(),
        format!("unknown {key} `{}`", v.get_ref()),
        "unknown value",
        Some(help),
    ))
}
