//! Chunking: overlapping windows of about `window` characters, cut at whitespace where one is
//! near the window's end, so a chunk rarely splits a word. A pure function of the text and the
//! two settings: the same document always gives the same chunks (byte offsets into its text).

/// Byte ranges `(start, end)` of the chunks of `text`, in order. `overlap < window`.
pub fn chunks(text: &str, window: usize, overlap: usize) -> Vec<(usize, usize)> {
    let window = window.max(1);
    let overlap = overlap.min(window - 1);
    let mut out = Vec::new();
    let mut start = skip_space(text, 0);
    while start < text.len() {
        let hard_end = advance(text, start, window);
        let end = if hard_end >= text.len() {
            text.len()
        } else {
            // Cut after the last whitespace in the window's final fifth, if there is one.
            let floor = advance(text, start, window - window / 5);
            text[floor..hard_end]
                .rfind(char::is_whitespace)
                .map(|i| floor + i)
                .filter(|&e| e > start)
                .unwrap_or(hard_end)
        };
        let trimmed = start + text[start..end].trim_end().len();
        if trimmed > start {
            out.push((start, trimmed));
        }
        if end >= text.len() {
            break;
        }
        // Step back `overlap` characters, but always move forward.
        let back = retreat(text, end, overlap);
        start = skip_space(text, if back > start { back } else { end });
    }
    out
}

/// The byte offset `n` characters after `from` (or the end).
fn advance(text: &str, from: usize, n: usize) -> usize {
    text[from..]
        .char_indices()
        .nth(n)
        .map(|(i, _)| from + i)
        .unwrap_or(text.len())
}

/// The byte offset `n` characters before `from` (or 0).
fn retreat(text: &str, from: usize, n: usize) -> usize {
    if n == 0 {
        return from;
    }
    text[..from]
        .char_indices()
        .rev()
        .nth(n - 1)
        .map(|(i, _)| i)
        .unwrap_or(0)
}

fn skip_space(text: &str, from: usize) -> usize {
    from + (text[from..].len() - text[from..].trim_start().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_text_overlap_and_respect_words() {
        let text = "The refund window is thirty days. Items must be unused. ".repeat(40);
        let cs = chunks(&text, 200, 40);
        assert!(cs.len() > 5);
        assert_eq!(cs[0].0, 0);
        assert_eq!(cs.last().unwrap().1, text.trim_end().len());
        for w in cs.windows(2) {
            assert!(w[1].0 < w[0].1, "consecutive chunks overlap");
            assert!(w[1].0 > w[0].0, "and move forward");
        }
        for (s, e) in &cs {
            let c = &text[*s..*e];
            assert!(c.chars().count() <= 200);
            assert!(!c.starts_with(' ') && !c.ends_with(' '));
            assert!(
                text[*e..].is_empty() || text[*e..].starts_with(' '),
                "cut at a space"
            );
        }
        assert_eq!(cs, chunks(&text, 200, 40), "deterministic");
    }

    #[test]
    fn edge_cases() {
        assert!(chunks("", 100, 10).is_empty());
        assert!(chunks("   \n ", 100, 10).is_empty());
        assert_eq!(chunks("short", 100, 10), [(0, 5)]);
        // No whitespace at all, multi-byte characters: hard cuts on char boundaries.
        let t = "é".repeat(250);
        let cs = chunks(&t, 100, 99);
        assert!(cs
            .iter()
            .all(|(s, e)| t.is_char_boundary(*s) && t.is_char_boundary(*e)));
        assert_eq!(cs.last().unwrap().1, t.len());
    }
}
