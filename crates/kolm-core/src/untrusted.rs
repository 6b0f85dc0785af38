//! Text kolm did not write, shown to a person: entry names from a hostile zip, a line of a
//! Kolmfile, a path. A terminal obeys escape sequences (even with `NO_COLOR`), and a 50 MB line
//! echoed whole is 50 MB of stderr, so such text is escaped and capped before it is printed.

/// At most this many characters of one piece of untrusted text are shown.
pub const MAX_CHARS: usize = 200;

/// Whether a terminal could act on `c` rather than print it: C0 and C1 controls, DEL, and the
/// bidirectional overrides that reorder what follows them.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as an escape (`\u{1b}`), and cut after
/// [`MAX_CHARS`] characters with a note of how much was left out.
pub fn shown(s: &str) -> String {
    shown_up_to(s, MAX_CHARS)
}

/// [`shown`], cut after `max` characters: for a whole message that may carry untrusted parts.
pub fn shown_up_to(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == max {
            out.push_str(&format!("… ({} more bytes)", s.len() - i));
            break;
        }
        if is_control(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with every control character but line breaks and tab replaced by a placeholder of the same
/// length in bytes (`?`, or `¿` for a two-byte character, and so on), so byte offsets into it
/// stay valid: for source text a renderer underlines by offset.
pub fn defused(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_control(c) && !matches!(c, '\n' | '\r' | '\t') {
            out.push_str(match c.len_utf8() {
                1 => "?",
                2 => "\u{bf}",
                3 => "\u{fffd}",
                _ => "\u{1f5f5}",
            });
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_length_is_capped() {
        assert_eq!(shown("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(shown("x\u{202e}y"), "x\\u{202e}y");
        let long = "z".repeat(1000);
        let s = shown(&long);
        assert!(s.starts_with(&"z".repeat(MAX_CHARS)));
        assert!(s.ends_with("(800 more bytes)"), "{s}");
    }

    #[test]
    fn defusing_keeps_byte_offsets() {
        for s in ["a\u{1b}b", "\u{9b}31m", "x\u{202e}y\r\n", "ok\ttab\n"] {
            let d = defused(s);
            assert_eq!(d.len(), s.len(), "{s:?}");
            assert!(!d
                .chars()
                .any(|c| is_control(c) && !matches!(c, '\n' | '\r' | '\t')));
        }
    }
}
