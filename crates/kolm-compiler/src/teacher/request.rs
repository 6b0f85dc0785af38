//! What kolm asks a teacher, and what it keeps of the answer.
//!
//! A [`Request`] is provider-neutral: the question (model, system prompt, user message, the
//! JSON schema of the answer) and how the samples are drawn (how many, temperature, seed). Its
//! [`Request::key`] is the blake3 of its canonical JSON, so the same question asked by two
//! tasks, by two builds, or by a build that was interrupted halfway is one entry in the cache
//! and one line in a cassette: kolm never pays for it twice. What carries the question is not
//! part of it (endpoint, API key, wire format): the same model behind a proxy is the same
//! teacher, and a cassette recorded against one endpoint replays for any.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kolmfile::Price;

/// Bumped when the meaning of a request changes, so old answers stop matching.
pub const REQUEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub model: String,
    pub system: String,
    pub user: String,
    /// The JSON schema every answer must match; sent where the API can enforce it.
    pub schema: Option<Value>,
    /// Samples wanted (k).
    pub n: u32,
    pub temperature: f64,
    pub seed: i64,
    pub max_tokens: u32,
}

impl Request {
    /// The request's content address: blake3 of the RFC 8785 canonical JSON of
    /// `{"request": self, "teacher_request": REQUEST_FORMAT}`, as [`crate::digest::key_of`]
    /// would compute it.
    ///
    /// Written out by hand because it is on every request's path: the general canonicaliser
    /// buffers and sorts every property of every object (3.5 µs a request, a fifth of a
    /// loopback round trip); here the field order is known, and the schema, whose keys are the
    /// user's, goes through [`crate::digest::write_canonical_value`]. A test holds the two to
    /// the same bytes.
    pub fn key(&self) -> String {
        match self.canonical() {
            Some(bytes) => blake3::hash(&bytes).to_hex().to_string(),
            None => crate::digest::key_of(&self.keyed()),
        }
    }

    /// What [`Request::key`] hashes, in the form the general canonicaliser takes.
    fn keyed(&self) -> Value {
        serde_json::json!({ "teacher_request": REQUEST_FORMAT, "request": self })
    }

    /// The canonical JSON of [`Request::keyed`], or `None` when it has a number JSON cannot
    /// carry (left to the general path, which refuses it the same way everywhere).
    fn canonical(&self) -> Option<Vec<u8>> {
        use crate::digest::{write_canonical_number as num, write_canonical_str as text};
        let mut out = Vec::with_capacity(192 + self.system.len() + self.user.len());
        // Fields in the UTF-16 order of their names, as JCS sorts them.
        out.extend_from_slice(b"{\"request\":{\"max_tokens\":");
        num(self.max_tokens as f64, &mut out)?;
        out.extend_from_slice(b",\"model\":");
        text(&self.model, &mut out);
        out.extend_from_slice(b",\"n\":");
        num(self.n as f64, &mut out)?;
        out.extend_from_slice(b",\"schema\":");
        match &self.schema {
            Some(s) => crate::digest::write_canonical_value(s, &mut out)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"seed\":");
        num(self.seed as f64, &mut out)?;
        out.extend_from_slice(b",\"system\":");
        text(&self.system, &mut out);
        out.extend_from_slice(b",\"temperature\":");
        num(self.temperature, &mut out)?;
        out.extend_from_slice(b",\"user\":");
        text(&self.user, &mut out);
        out.extend_from_slice(b"},\"teacher_request\":");
        num(REQUEST_FORMAT as f64, &mut out)?;
        out.push(b'}');
        Some(out)
    }

    /// A short description for messages: the model and the start of the user message.
    pub fn describe(&self) -> String {
        let head: String = self.user.chars().take(60).collect();
        let more = if self.user.chars().count() > 60 {
            "…"
        } else {
            ""
        };
        format!("{} ← {:?}{more}", self.model, head)
    }
}

/// Tokens as the provider counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Token counts as either wire reports them: Anthropic's names, and OpenAI's as aliases. A
/// count the server leaves out or sends as `null` is 0.
#[derive(Debug, Default, Deserialize)]
pub struct WireUsage {
    #[serde(alias = "prompt_tokens")]
    input_tokens: Option<u64>,
    #[serde(alias = "completion_tokens")]
    output_tokens: Option<u64>,
}

impl From<Option<WireUsage>> for Usage {
    fn from(u: Option<WireUsage>) -> Usage {
        let u = u.unwrap_or_default();
        Usage {
            input_tokens: u.input_tokens.unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
        }
    }
}

impl Usage {
    pub fn add(&mut self, o: Usage) {
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
    }

    /// Dollars at the Kolmfile's prices.
    pub fn cost(&self, p: &Price) -> f64 {
        (self.input_tokens as f64 * p.input_per_mtok
            + self.output_tokens as f64 * p.output_per_mtok)
            / 1e6
    }
}

/// What is kept of an answer: the sampled texts, the tokens they cost, and how long the first
/// one took to come back (measured when it was asked; a cached or replayed answer keeps it, so
/// a baseline measured from answers is the same on every rebuild).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub texts: Vec<String>,
    pub usage: Usage,
    pub latency_ms: f64,
}

impl Answer {
    /// Adds one response's texts to an answer being gathered over several requests. The
    /// latency kept is the first response's: the time a caller waits for an answer to begin.
    pub fn gather(&mut self, texts: impl IntoIterator<Item = String>, usage: Usage, millis: f64) {
        if self.texts.is_empty() {
            self.latency_ms = millis;
        }
        self.usage.add(usage);
        self.texts.extend(texts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            model: "m".into(),
            system: "s".into(),
            user: "u".into(),
            schema: None,
            n: 3,
            temperature: 0.7,
            seed: 0,
            max_tokens: 512,
        }
    }

    #[test]
    fn key_changes_with_every_field_that_shapes_the_answer() {
        let base = req().key();
        let mut r = req();
        r.n = 4;
        assert_ne!(r.key(), base);
        let mut r = req();
        r.seed = 1;
        assert_ne!(r.key(), base);
        let mut r = req();
        r.schema = Some(serde_json::json!({"type": "object"}));
        assert_ne!(r.key(), base);
        assert_eq!(req().key(), base);
    }

    #[test]
    fn the_hand_written_key_is_the_canonicalisers() {
        let mut rng = crate::rng::SplitMix64::new(7);
        let odd = [
            "",
            "\"quoted\" \\ back",
            "tab\tnl\n\u{1}\u{1f}\u{7f}",
            "é 漢字 😀 \u{2028}",
            "/slash",
        ];
        for i in 0..500 {
            let pick = |rng: &mut crate::rng::SplitMix64| {
                odd[(rng.next_u64() % odd.len() as u64) as usize]
            };
            let r = Request {
                model: format!("{}m{i}", pick(&mut rng)),
                system: pick(&mut rng).repeat(i % 3),
                user: format!("{} {}", pick(&mut rng), rng.next_u64()),
                schema: (i % 2 == 0).then(|| {
                    serde_json::json!({"type": "object", "properties": {"zeta": {"type": "number", "minimum": 1e21}, "Alpha": {}, "é": {}, "b": [1.5, -0.0, 1e-7]}})
                }),
                n: (rng.next_u64() % 9) as u32,
                temperature: [0.0, 0.7, 1.0, 1e-7, 123456.75, -0.0][i % 6],
                seed: [0, -1, i64::MAX, 1 << 53, 42][i % 5],
                max_tokens: (rng.next_u64() % 5000) as u32,
            };
            assert_eq!(
                String::from_utf8(r.canonical().unwrap()).unwrap(),
                String::from_utf8(crate::digest::canonical_json(&r.keyed())).unwrap(),
                "request {i}"
            );
        }
        let mut r = req();
        r.temperature = f64::NAN;
        assert!(r.canonical().is_none());
    }

    #[test]
    fn usage_reads_both_wires_and_treats_missing_counts_as_zero() {
        let read = |s: &str| Usage::from(serde_json::from_str::<Option<WireUsage>>(s).unwrap());
        let usage = |i, o| Usage {
            input_tokens: i,
            output_tokens: o,
        };
        assert_eq!(
            read(r#"{"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}"#),
            usage(7, 2)
        );
        assert_eq!(
            read(r#"{"input_tokens": 5, "output_tokens": 3}"#),
            usage(5, 3)
        );
        assert_eq!(read(r#"{"prompt_tokens": null}"#), usage(0, 0));
        assert_eq!(read("null"), usage(0, 0));
    }
}
