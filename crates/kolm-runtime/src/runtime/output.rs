//! What a generation has produced so far, and the checks on its bytes: where a stop string
//! cuts it, whether it is a whole JSON value, and which of it a streaming caller may have.

use llama_cpp_2::token::LlamaToken;

/// Where generated text goes as it is made (`Session::generate_streamed`).
pub type TextSink<'a> = dyn FnMut(&str) + 'a;

/// What a generation has produced so far.
#[derive(Default)]
pub(super) struct Output {
    pub(super) bytes: Vec<u8>,
    /// How many of `bytes` went to the sink.
    pub(super) sent: usize,
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) produced: u64,
    pub(super) drafted: u64,
    pub(super) accepted: u64,
    pub(super) verify_rows: Vec<u64>,
}

impl Output {
    /// Hands the sink what is new, up to the last whole UTF-8 character and short of the last
    /// `held` bytes.
    pub(super) fn emit(&mut self, sink: Option<&mut TextSink<'_>>, held: usize) {
        let Some(sink) = sink else { return };
        let upto = self.bytes.len().saturating_sub(held);
        if upto <= self.sent {
            return;
        }
        let fresh = &self.bytes[self.sent..upto];
        let whole = match std::str::from_utf8(fresh) {
            Ok(t) => t,
            Err(e) => std::str::from_utf8(&fresh[..e.valid_up_to()]).expect("valid up to here"),
        };
        if !whole.is_empty() {
            sink(whole);
            self.sent += whole.len();
        }
    }
}

/// Whether `bytes` is one whole JSON value that nothing may extend: anything but a number
/// (more digits would be a longer number). Under a schema's grammar, which admits no
/// whitespace (`schema_grammar`), the only token allowed after such a value is the end of
/// generation.
pub(super) fn whole_json(bytes: &[u8]) -> bool {
    matches!(bytes.last(), Some(b'}' | b']' | b'"' | b'e' | b'l'))
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Where the earliest stop string starts, looking only at matches that end in the bytes added
/// since `fresh` (earlier ones were looked for already).
pub(super) fn find_stop(out: &[u8], fresh: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let from = fresh.saturating_sub(s.len() - 1);
            out[from..]
                .windows(s.len())
                .position(|w| w == s.as_bytes())
                .map(|i| from + i)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::whole_json;

    #[test]
    fn a_whole_json_value_is_one_nothing_can_extend() {
        for whole in [
            &br#"{"label":"billing","severity":"high"}"#[..],
            br#"[1,2]"#,
            br#""done""#,
            b"true",
            b"false",
            b"null",
        ] {
            assert!(whole_json(whole), "{}", String::from_utf8_lossy(whole));
        }
        for open in [
            &br#"{"label":"billing","severity":"high""#[..],
            br#"{"a":"}""#,
            br#"{"a":[1]"#,
            b"12",
            b"1e5",
            b"tru",
            b"",
            br#"{"a":1}}"#,
        ] {
            assert!(!whole_json(open), "{}", String::from_utf8_lossy(open));
        }
    }
}
