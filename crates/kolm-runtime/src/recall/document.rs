//! A corpus file as text. Anything that is not text is skipped and counted, so one stray
//! binary or a legacy-encoded file never fails a build, and the build report says what was
//! left out and why.

use std::io::Read;
use std::path::Path;

/// Files larger than this are skipped ("too large"): a corpus is documents, not dumps.
pub const MAX_BYTES: u64 = 64 << 20;

/// Why a file was left out of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    Binary,
    NotUtf8,
    TooLarge,
    Unreadable,
}

impl Skip {
    pub fn name(self) -> &'static str {
        match self {
            Skip::Binary => "binary",
            Skip::NotUtf8 => "not UTF-8",
            Skip::TooLarge => "too large",
            Skip::Unreadable => "unreadable",
        }
    }
}

/// Reads `path` as text: HTML is reduced to its text, everything else is taken as it is.
pub fn load(path: &Path) -> Result<String, Skip> {
    let f = std::fs::File::open(path).map_err(|_| Skip::Unreadable)?;
    let len = f.metadata().map_err(|_| Skip::Unreadable)?.len();
    if len > MAX_BYTES {
        return Err(Skip::TooLarge);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| Skip::Unreadable)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Skip::TooLarge);
    }
    // Text files do not contain NUL; binaries almost always do, early.
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Skip::Binary);
    }
    let text = String::from_utf8(bytes).map_err(|_| Skip::NotUtf8)?;
    let html = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    Ok(if html { html_text(&text) } else { text })
}

/// The text of an HTML page: tags dropped, `script` and `style` bodies dropped, the common
/// entities decoded, whitespace runs collapsed.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            for skip in ["script", "style"] {
                if lower[i + 1..].starts_with(skip) {
                    let close = format!("</{skip}");
                    i = lower[i..].find(&close).map(|j| i + j).unwrap_or(html.len());
                    break;
                }
            }
            match html[i..].find('>') {
                Some(j) => {
                    i += j + 1;
                    out.push(' ');
                }
                None => break,
            }
            continue;
        }
        let next = rest.find('<').unwrap_or(rest.len());
        out.push_str(&decode_entities(&rest[..next]));
        i += next;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entities(s: &str) -> String {
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_reduced_to_text() {
        let t = html_text(
            "<html><head><style>p{}</style><script>var x = '<b>';</script></head><body><h1>Refunds</h1><p>Within&nbsp;30 days &amp; free.</p></body></html>",
        );
        assert_eq!(t, "Refunds Within 30 days & free.");
    }

    #[test]
    fn binaries_and_other_encodings_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, b: &[u8]| {
            let p = d.path().join(n);
            std::fs::write(&p, b).unwrap();
            p
        };
        assert_eq!(load(&w("a.bin", b"\x7fELF\0\0\x01")), Err(Skip::Binary));
        assert_eq!(load(&w("b.txt", b"caf\xe9")), Err(Skip::NotUtf8));
        assert_eq!(load(&d.path().join("missing.txt")), Err(Skip::Unreadable));
        assert_eq!(
            load(&w("c.md", "# Ünïcode".as_bytes())).unwrap(),
            "# Ünïcode"
        );
    }
}
