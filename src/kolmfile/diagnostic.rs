//! Errors that point into a Kolmfile.
//!
//! A person fixing a Kolmfile needs three things: where (file:line:col), what is wrong with the
//! text they wrote, and what would be right. Every error raised while reading a Kolmfile is a
//! [`KolmfileError`] carrying all three, rendered by miette with the offending line underlined.
//! The `Display` form starts with `path:line:col:` so plain logs and editors can jump to it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use miette::{NamedSource, SourceSpan};

/// One mistake in a Kolmfile, with its place and, where one exists, a suggestion.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{}:{}:{}: {message}", path.display(), line, col)]
#[diagnostic(code(kolm::kolmfile))]
pub struct KolmfileError {
    /// What is wrong, in one sentence.
    pub message: String,
    /// The file, as the user named it.
    pub path: PathBuf,
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub col: usize,
    /// The offending text itself, trimmed to one line.
    pub snippet: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: SourceSpan,
    label: String,
    /// What to do about it ("did you mean `samples`?").
    #[help]
    pub help: Option<String>,
}

impl KolmfileError {
    /// Builds an error at `span` (byte range) of `source`.
    pub fn at(
        path: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let start = span.start.min(source.len());
        let end = span.end.clamp(start, source.len());
        let (line, col) = line_col(source, start);
        let snippet = source[start..end]
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        KolmfileError {
            message: message.into(),
            path: path.to_path_buf(),
            line,
            col,
            snippet,
            src: NamedSource::new(path.display().to_string(), source.to_string()),
            span: (start, end - start).into(),
            label: label.into(),
            help,
        }
    }

    /// An error about the file as a whole (no better place to point at).
    pub fn whole_file(
        path: &Path,
        source: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        Self::at(path, source, 0..0, message, "here", help)
    }

    /// Machine-readable form for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": "KOLMFILE",
            "file": self.path.display().to_string(),
            "line": self.line,
            "col": self.col,
            "message": self.message,
            "text": self.snippet,
            "help": self.help,
        })
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
