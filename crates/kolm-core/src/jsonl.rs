//! JSON Lines files (seeds, evals, pairs), read with line numbers so a bad line is reported as
//! `file:line`, and written canonically (RFC 8785 per line) so equal data gives equal bytes.

use crate::{Error, Result};

/// Parses JSONL text; blank lines are skipped. Returns (1-based line, value).
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<(usize, serde_json::Value)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let ok = &bytes[..e.valid_up_to()];
        let line = ok.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = ok.len() - ok.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        Error::invalid(
            format!(
                "{name}:{line}:{col}: byte 0x{:02x} is not UTF-8 (a binary file?)",
                bytes[e.valid_up_to()]
            ),
            "JSON Lines files are UTF-8 text: save the file as UTF-8",
        )
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| {
            Error::invalid(
                format!("{name}:{}:{}: not valid JSON: {e}", i + 1, e.column()),
                "each line must be one JSON object",
            )
        })?;
        out.push((i + 1, v));
    }
    Ok(out)
}

/// Canonical JSONL bytes of values.
pub fn write<'a>(values: impl IntoIterator<Item = &'a serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(&crate::digest::canonical_json(v));
        out.push(b'\n');
    }
    out
}
