//! Content digests and cache keys.
//!
//! Two hashes, each for one job: sha256 for content (it is what `sha256sum`, the Kolmfile's
//! pins and the manifest speak), blake3 for cache keys (fast, and never shown to a user as a
//! file's identity). Keys are computed over RFC 8785 canonical JSON so that field order or
//! number formatting can never change a key.

use std::io::Read;
use std::path::Path;

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Chunk size for streaming hashes: large enough to amortise syscalls.
const CHUNK: usize = 1 << 20;

/// sha256 (lowercase hex) and size of a file, streamed; honours Ctrl-C between chunks.
pub fn sha256_file(path: &Path, progress: Option<&ProgressBar>) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "read", e))?;
    sha256_reader(&mut f, path, progress)
}

/// sha256 (hex) and length of everything `r` yields (`path` names it in errors); honours
/// Ctrl-C between chunks.
pub fn sha256_reader(
    f: &mut dyn Read,
    path: &Path,
    progress: Option<&ProgressBar>,
) -> Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        crate::interrupt::check()?;
        let n = f.read(&mut buf).map_err(|e| Error::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
        if let Some(p) = progress {
            p.inc(n as u64);
        }
    }
    Ok((hex::encode(h.finalize()), total))
}

/// CRC-32 (the zip one) of a file, streamed; honours Ctrl-C between chunks.
pub fn crc32_file(path: &Path) -> Result<u32> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "read", e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        crate::interrupt::check()?;
        let n = f.read(&mut buf).map_err(|e| Error::io(path, "read", e))?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// sha256 (lowercase hex) of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// RFC 8785 canonical JSON bytes of a value.
pub fn canonical_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).expect("kolm's own values always serialise")
}

/// `v` with every object's keys in sorted order (RFC 8785's order for ASCII keys), recursively.
/// The manifest carries the task's schema as canonical JSON, so sorted is the only property
/// order a runtime knows: the grammar, the training targets and the drafts all take it, and an
/// output's fields come in one order at build time and at run time (runtime.md §3).
pub fn sorted_keys(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_keys(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// blake3 (hex) of the canonical JSON of a value: the form of every cache key.
pub fn key_of<T: serde::Serialize>(v: &T) -> String {
    blake3::hash(&canonical_json(v)).to_hex().to_string()
}

/// Appends the RFC 8785 canonical JSON of a [`serde_json::Value`] to `out`: the same bytes as
/// [`canonical_json`], without its buffer per property, for values on a hot path (a teacher
/// request's schema). `None` for a number JSON cannot carry.
pub fn write_canonical_value(v: &serde_json::Value, out: &mut Vec<u8>) -> Option<()> {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_canonical_number(n.as_f64()?, out)?,
        Value::String(s) => write_canonical_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Properties in the order of their names' UTF-16 code units.
            let mut props: Vec<(&String, &Value)> = map.iter().collect();
            props.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in props.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_str(k, out);
                out.push(b':');
                write_canonical_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Some(())
}

/// A number as RFC 8785 writes every number: the ECMAScript form of a double. Whole numbers
/// that a double holds exactly are their plain digits in that form, and are written as such
/// (counts and seeds, on the teacher's hot path); the rest go through `ryu_js`.
pub fn write_canonical_number(x: f64, out: &mut Vec<u8>) -> Option<()> {
    const EXACT: f64 = (1u64 << 53) as f64;
    if x.fract() == 0.0 && x.abs() <= EXACT {
        // -0.0 is "0" in ECMAScript, as `0i64` prints.
        out.extend_from_slice(itoa::Buffer::new().format(x as i64).as_bytes());
        return Some(());
    }
    x.is_finite()
        .then(|| out.extend_from_slice(ryu_js::Buffer::new().format_finite(x).as_bytes()))
}

/// A string as RFC 8785 escapes it, which is serde_json's escaping (the canonicaliser uses
/// serde_json's escaper).
pub fn write_canonical_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_value_writer_is_the_canonicaliser() {
        let cases = [
            json!(null),
            json!({"b": 1, "a": [1.5, -0.0, 1e21, 1e-7, 123456789012345678u64, -5], "A": {}, "é": "x\u{1}\"/\\", "😀": true, "\u{e000}": false}),
            json!([[], {}, "", 0.1, 1e300, {"z": {"y": {"x": null}}}]),
            json!([
                0,
                -0.0,
                1,
                -1,
                9007199254740992u64,
                9007199254740993u64,
                -9007199254740992i64,
                1e20,
                1e21,
                123.0,
                u64::MAX,
                i64::MIN,
                0.5,
                -2.5e-8
            ]),
            json!({"type": "object", "properties": {"label": {"enum": ["bug", "billing"]}}, "required": ["label"]}),
        ];
        for v in cases {
            let mut out = Vec::new();
            write_canonical_value(&v, &mut out).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(canonical_json(&v)).unwrap()
            );
        }
    }

    #[test]
    fn names_sort_by_utf16_not_by_bytes() {
        // U+E000 is one UTF-16 unit above every surrogate; U+1F600 is a surrogate pair, so
        // it sorts before U+E000 in UTF-16 though after it in UTF-8.
        let v: Value = serde_json::from_str(r#"{"\ue000": 1, "\ud83d\ude00": 2}"#).unwrap();
        let mut out = Vec::new();
        write_canonical_value(&v, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"😀\":2,\"\u{e000}\":1}");
    }
}
