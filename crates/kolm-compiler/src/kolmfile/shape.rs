//! Shape errors: what serde says about the TOML (unknown keys, wrong types, bad syntax),
//! re-worded for a person, with a suggestion, and with secrets kept out of the message.

use super::check::Cx;
use super::keys;
use super::mask::Shown;
use crate::diagnostic::{did_you_mean, KolmfileError};

/// Turns a serde error from the TOML deserializer into our error, with a suggestion. The file
/// is rendered as [`Shown`] has it: no value kolm does not recognise is ever printed.
pub(super) fn shape_error(cx: &Cx, e: &toml_edit::de::Error) -> KolmfileError {
    let span = e.span().unwrap_or(0..0);
    let shown = Shown::of(cx.src, span.start);
    let cx = &Cx {
        src: &shown.src,
        ..*cx
    };
    let msg = e.message().trim().to_string();
    if msg.contains("carriage return must be followed by newline") {
        // Old Mac line endings: TOML takes `\n` or `\r\n` only. Point at the first lone `\r`.
        let b = cx.src.as_bytes();
        let at = (0..b.len())
            .find(|&i| b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))
            .unwrap_or(span.start);
        return cx.err(
            at..at,
            "the line endings are carriage returns alone (old Mac style); TOML needs `\\n` or `\\r\\n`",
            "a lone carriage return",
            Some("convert the file's line endings to LF, e.g. `tr '\\r' '\\n' < Kolmfile.toml > fixed.toml`".into()),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let word = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let help = match did_you_mean(&word, expected.iter().copied()) {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None if !expected.is_empty() => {
                Some(format!("expected one of: {}", expected.join(", ")))
            }
            None => None,
        };
        let section = shown
            .table_of(span.start)
            .map_or_else(|| "the file".to_string(), keys::header);
        let lower = word.to_ascii_lowercase();
        if ["key", "token", "secret", "password"]
            .iter()
            .any(|s| lower.contains(s))
        {
            // The name says a credential may follow: its value is starred like every unknown
            // one, and the offending text is not quoted either.
            let help = help.map(|h| {
                format!("{h} (secrets never go in the Kolmfile: name an env var instead)")
            });
            let mut e = cx.err(
                span,
                format!("unknown key `{word}` in {section}"),
                "unknown key",
                help,
            );
            e.snippet = "<redacted>".into();
            return e;
        }
        return cx.err(
            span,
            format!("unknown key `{word}` in {section}"),
            "unknown key",
            help,
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let key = key_at(cx.src, span.start);
        let what = key.map(|k| format!(" for `{k}`")).unwrap_or_default();
        let msg = format!(
            "wrong type{what}: expected {}, found ",
            plain_type(expected)
        );
        if found.starts_with("string ") {
            // A string where kolm reads no string is not a value kolm recognises: it may be a
            // pasted credential, so say what it is, not what it says.
            return cx.secret_err(span.clone(), span, msg + "a string", "wrong type", None);
        }
        return cx.err(span, msg + found, "wrong type", None);
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        // The TOML is valid; the value is outside what the key takes (`seed = -1`).
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another value"));
        let key = key_before(cx.src, span.start).or_else(|| key_at(cx.src, span.start));
        let shown = found.split('`').nth(1).unwrap_or(found);
        let what = key
            .map(|k| format!("`{k}` = {shown}"))
            .unwrap_or_else(|| shown.to_string());
        return cx.err(
            span,
            format!("{what} is out of range"),
            "out of range",
            Some(format!("expected {}", allowed(expected))),
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return cx.err(
            span,
            format!("missing key `{field}`"),
            "in this table",
            None,
        );
    }
    if msg.contains("duplicate key") || msg.contains("invalid") || msg.contains("expected") {
        return cx.err(
            span,
            format!("invalid TOML: {}", first_line(&msg)),
            "here",
            None,
        );
    }
    cx.err(span, first_line(&msg).to_string(), "here", None)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Serde's type names, in words a TOML writer uses.
fn plain_type(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "i64" | "u64" | "u32" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" => "a string".into(),
        "a sequence" => "an array".into(),
        _ => e.to_string(),
    }
}

/// The values serde's integer types take, in words.
fn allowed(expected: &str) -> String {
    let e = expected.trim();
    let range = |lo: i128, hi: i128| format!("a whole number from {lo} to {hi}");
    match e {
        "u64" => range(0, u64::MAX as i128),
        "u32" => range(0, u32::MAX as i128),
        "u16" => range(0, u16::MAX as i128),
        "u8" => range(0, u8::MAX as i128),
        "i64" => range(i64::MIN as i128, i64::MAX as i128),
        "i32" => range(i32::MIN as i128, i32::MAX as i128),
        _ => plain_type(e),
    }
}

/// The key whose value starts at `offset`: the name before the nearest `=` on its line (so
/// inside an inline table, `seed` of `tiny = { seed = -1 }`).
fn key_before(src: &str, offset: usize) -> Option<String> {
    let line_start = src[..offset.min(src.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let before = &src[line_start..offset.min(src.len())];
    let (k, _) = before.rsplit_once('=')?;
    let k = k.trim_end();
    let name: String = k
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The key on the line of an offset (`key = value`).
fn key_at(src: &str, offset: usize) -> Option<String> {
    let start = src[..offset.min(src.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = src[start..].lines().next()?;
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.starts_with('[')).then(|| k.to_string())
}
