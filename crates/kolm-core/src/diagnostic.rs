//! Errors that point into a file the user wrote: the Kolmfile, and the files it names.
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
    ///
    /// The source is the user's file, and it is printed: a lone `\r` counts as a line break (so
    /// old Mac line endings number lines right), control characters are defused, and only a
    /// window around the offending text is kept when the file or its line is long (a 50 MB line
    /// is not echoed whole).
    pub fn at(
        path: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let start = floor_boundary(source, span.start.min(source.len()));
        let end = floor_boundary(source, span.end.clamp(start, source.len()));
        let text = lone_cr_as_newline(source);
        let (line, col) = line_col(&text, start);
        let snippet =
            crate::untrusted::shown(text[start..end].lines().next().unwrap_or_default().trim());
        let (shown, at, len) = window(&text, start, end);
        KolmfileError {
            message: message.into(),
            path: path.to_path_buf(),
            line,
            col,
            snippet,
            src: NamedSource::new(path.display().to_string(), shown),
            span: (at, len).into(),
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

/// The largest char boundary at or before `i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `s` with every `\r` not followed by `\n` turned into `\n` (same length, same offsets).
fn lone_cr_as_newline(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = s.to_string().into_bytes();
    for i in 0..b.len() {
        if b[i] == b'\r' && b.get(i + 1) != Some(&b'\n') {
            out[i] = b'\n';
        }
    }
    String::from_utf8(out).expect("ASCII for ASCII keeps UTF-8")
}

/// Files and lines longer than this are shown as a window around the offending text.
const WHOLE_FILE: usize = 256 << 10;
const WHOLE_LINE: usize = 1000;
/// Bytes kept on each side of the offending text's start in a long line.
const SIDE: usize = 240;

/// The text to render (defused), and the span in it: the whole file when it is small, else the
/// offending line, cut to a window around the span when the line itself is long.
fn window(text: &str, start: usize, end: usize) -> (String, usize, usize) {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    if text.len() <= WHOLE_FILE && line_end - line_start <= WHOLE_LINE {
        return (crate::untrusted::defused(text), start, end - start);
    }
    let from = floor_boundary(text, start.saturating_sub(SIDE).max(line_start));
    let to = floor_boundary(text, (start + SIDE).min(line_end)).max(start);
    let cut = &text[from..to];
    let len = end.min(to).saturating_sub(start);
    (crate::untrusted::defused(cut), start - from, len)
}

/// 1-based line and character column of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The span of the first line in `text` that reads `key = ...` (with `value` somewhere on it, when
/// given), trimmed; offsets are into `text`. For errors about a key found again by name: one that
/// conflicts with another, or one naming a file whose content is wrong.
pub fn key_line(text: &str, key: &str, value: Option<&str>) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with(key)
            && t[key.len()..].trim_start().starts_with('=')
            && value.is_none_or(|v| line.contains(v))
        {
            let start = offset + (line.len() - t.len());
            return Some(start..start + t.trim_end().len());
        }
        offset += line.len();
    }
    None
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
