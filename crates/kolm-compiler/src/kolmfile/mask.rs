//! What an error about a refused Kolmfile may show of it (kolmfile.md §5.2).
//!
//! A value under a key kolm does not know may be a credential pasted by mistake, and an error
//! is printed where CI logs keep it. So before a shape error renders the file, every value kolm
//! does not recognise is starred out wherever it sits (a stray key, a stray table or sub-table,
//! an inline table, an array, a multi-line string, a dotted key), keeping byte offsets and line
//! breaks so that lines and columns still point at the user's text. A file that is not TOML at
//! all cannot be sorted into known and unknown: then only the offending line is shown, with its
//! strings starred except the one the error is in.

use std::ops::Range;

use toml_edit::{Item, Table, Value};

use super::keys::{self, Keys, Node};

/// The file as an error may render it, and where each key sits.
pub(super) struct Shown {
    /// The source with what may not be shown starred out (same length, same line breaks).
    pub src: String,
    /// Each key's span, with the path of the table it sits in (empty when not TOML).
    keys: Vec<(Range<usize>, Vec<String>)>,
}

impl Shown {
    /// The view of `src` for an error at byte `at`.
    pub(super) fn of(src: &str, at: usize) -> Shown {
        match toml_edit::Document::parse(src) {
            Ok(doc) => {
                let mut w = Walk {
                    masks: Vec::new(),
                    keys: Vec::new(),
                };
                w.table(doc.as_table(), &[], Some(super::raw::KEYS));
                Shown {
                    src: starred(src, &w.masks),
                    keys: w.keys,
                }
            }
            Err(_) => Shown {
                src: only_line(src, at),
                keys: Vec::new(),
            },
        }
    }

    /// The path of the table holding the key that starts at `at`.
    pub(super) fn table_of(&self, at: usize) -> Option<&[String]> {
        self.keys
            .iter()
            .find(|(span, _)| span.start == at)
            .map(|(_, path)| path.as_slice())
    }
}

struct Walk {
    masks: Vec<Range<usize>>,
    keys: Vec<(Range<usize>, Vec<String>)>,
}

impl Walk {
    /// A table at `path`; `known` is its keys when kolm knows the table, `None` when every
    /// value in it is to be hidden.
    fn table(&mut self, t: &Table, path: &[String], known: Option<Keys>) {
        for (name, item) in t.iter() {
            if let Some(span) = t.key(name).and_then(|k| k.span()) {
                self.keys.push((span, path.to_vec()));
            }
            let node = known.and_then(|k| keys::child(k, name));
            let path = [path, &[name.to_string()]].concat();
            match (node, item) {
                (Some(Node::Leaf), _) | (_, Item::None) => {}
                (node, Item::Value(v)) => self.value(v, &path, node),
                (node, Item::Table(t)) => self.table(t, &path, sub(node)),
                (node, Item::ArrayOfTables(a)) => {
                    for t in a.iter() {
                        self.table(t, &path, sub(node));
                    }
                }
            }
        }
    }

    /// A value under a key that is not a known leaf: a known table written inline is walked
    /// like a table; anything under an unknown key is hidden, down to each string.
    fn value(&mut self, v: &Value, path: &[String], node: Option<&'static Node>) {
        match v {
            Value::InlineTable(t) => {
                for (name, v) in t.iter() {
                    if let Some(span) = t.key(name).and_then(|k| k.span()) {
                        self.keys.push((span, path.to_vec()));
                    }
                    let child = sub(node).and_then(|k| keys::child(k, name));
                    if !matches!(child, Some(Node::Leaf)) {
                        self.value(v, &[path, &[name.to_string()]].concat(), child);
                    }
                }
            }
            Value::Array(a) if node.is_none() => {
                for v in a.iter() {
                    self.value(v, path, None);
                }
            }
            // A scalar (or array) where a known table belongs is a type error about a key kolm
            // knows; it is shown.
            _ if node.is_some() => {}
            _ => self.masks.extend(v.span()),
        }
    }
}

fn sub(node: Option<&Node>) -> Option<Keys> {
    match node {
        Some(Node::Table(k)) => Some(k),
        _ => None,
    }
}

/// `src` with every byte in `masks` but line breaks turned into `*`.
fn starred(src: &str, masks: &[Range<usize>]) -> String {
    let mut b = src.as_bytes().to_vec();
    for m in masks {
        for c in &mut b[m.start.min(src.len())..m.end.min(src.len())] {
            if *c != b'\n' && *c != b'\r' {
                *c = b'*';
            }
        }
    }
    // Whole UTF-8 sequences are starred byte by byte (spans start and end on characters).
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `src` with every line but the one holding `at` blanked, and on that line each quoted string
/// starred unless `at` is inside it.
fn only_line(src: &str, at: usize) -> String {
    let at = at.min(src.len());
    let start = src[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let end = src[at..].find(['\n', '\r']).map_or(src.len(), |i| at + i);
    let mut masks = vec![0..start, end..src.len()];
    let line = &src.as_bytes()[start..end];
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'#' => break,
            q @ (b'"' | b'\'') => {
                let mut j = i + 1;
                while j < line.len() && line[j] != q {
                    j += if q == b'"' && line[j] == b'\\' { 2 } else { 1 };
                }
                let (a, b) = (start + i, start + j.min(line.len()));
                if !(a..=b).contains(&at) {
                    masks.push(a + 1..b);
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    let mut s = starred(src, &masks).into_bytes();
    // Blank rather than star the other lines: they are not the error's.
    for r in [0..start, end..src.len()] {
        for c in &mut s[r] {
            if *c == b'*' {
                *c = b' ';
            }
        }
    }
    String::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(src: &str) -> String {
        Shown::of(src, 0).src
    }

    #[test]
    fn known_values_stay_and_unknown_ones_go() {
        let src = "[teacher]\nprovider = \"none\"\nnote = \"s3cr3t\"\n[teacher.secret]\nv = 'x1'\n";
        let s = shown(src);
        assert_eq!(s.len(), src.len());
        assert!(s.contains("provider = \"none\""), "{s}");
        assert!(!s.contains("s3cr3t") && !s.contains("x1"), "{s}");
        assert!(s.contains("[teacher.secret]"), "{s}");
    }

    #[test]
    fn multi_line_strings_keep_their_line_breaks() {
        let src = "blob = \"\"\"\nline one\nline two\n\"\"\"\n";
        let s = shown(src);
        assert_eq!(s.lines().count(), src.lines().count());
        assert!(!s.contains("line"), "{s}");
    }

    #[test]
    fn a_stray_key_names_its_table() {
        let src = "[teacher.secret]\nv = 1\n";
        let s = Shown::of(src, 0);
        let at = src.find("secret").unwrap();
        assert_eq!(s.table_of(at), Some(&["teacher".to_string()][..]));
    }

    #[test]
    fn a_file_that_is_not_toml_shows_only_the_offending_line() {
        let src = "note = \"s3cr3t\"\nx = = \"y\" # c\n";
        let at = src.find("= \"y").unwrap();
        let s = Shown::of(src, at).src;
        assert_eq!(s.len(), src.len());
        assert!(!s.contains("s3cr3t") && !s.contains('y'), "{s}");
        assert!(s.contains("x = = \"*\" # c"), "{s}");
    }
}
