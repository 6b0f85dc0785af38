//! Mechanical drafts: what the output will probably say next, read off the output schema and
//! the labelled outputs, for the model to verify (recipe speculative decoding).
//!
//! Four parts, all computed at build time and sealed in `recipes.json`:
//! - the **skeleton**: the constant text of a flat object schema, in the order the grammar
//!   writes it (`{"label":"`, `","severity":"`, `"}`);
//! - the **enums**: each property's allowed strings;
//! - the **table**: every distinct labelled output (compact JSON, as the student was trained to
//!   write it) with how often it occurs, most frequent first;
//! - the **neighbours**: each labelled input's terms with its output's place in the table
//!   ([`super::neighbours`]), from which a run drafts the outputs of the inputs most like its
//!   own, nearest first, before any proposal.
//!
//! At run time [`Drafts::propose`] maps the output so far to a continuation: the most frequent
//! table entry that extends it (its exact prefix); failing that, what follows the longest suffix
//! of the output so far inside a table entry or a skeleton piece (its shape: after a free-text
//! value, the skeleton's next key). A wrong draft costs nothing but the verification it rides
//! on; the model decides every token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::neighbours::{self, Nearest, Neighbour};

/// Most table entries kept (the most frequent): the lookup is linear in them.
pub const MAX_TABLE: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drafts {
    pub skeleton: Vec<String>,
    pub enums: BTreeMap<String, Vec<String>>,
    pub table: Vec<Entry>,
    /// Absent from packs sealed before neighbour drafts: none.
    #[serde(default)]
    pub neighbours: Vec<Neighbour>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub text: String,
    pub count: u64,
}

impl Drafts {
    /// Drafts for outputs of `schema`, from the labelled (input, output) pairs.
    pub fn build(schema: &Value, pairs: &[(Value, Value)]) -> Drafts {
        let texts: Vec<String> = pairs
            .iter()
            .map(|(_, o)| {
                serde_json::to_string(&crate::digest::sorted_keys(o)).expect("serialises")
            })
            .collect();
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for t in &texts {
            *counts.entry(t).or_default() += 1;
        }
        let mut table: Vec<Entry> = counts
            .into_iter()
            .map(|(text, count)| Entry {
                text: text.to_owned(),
                count,
            })
            .collect();
        // Most frequent first; the text breaks ties, so the order is a function of the pairs.
        table.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
        table.truncate(MAX_TABLE);
        let place: BTreeMap<&str, u32> = table
            .iter()
            .enumerate()
            .map(|(i, e)| (e.text.as_str(), i as u32))
            .collect();
        // A pair whose output fell off the table has nothing to draft.
        let neighbours = pairs
            .iter()
            .zip(&texts)
            .filter_map(|((input, _), text)| {
                Some(Neighbour {
                    terms: neighbours::terms(&neighbours::input_text(input)),
                    output: *place.get(text.as_str())?,
                })
            })
            .take(neighbours::MAX_PAIRS)
            .collect();
        Drafts {
            // The grammar's field order is the sorted one (runtime.md §3).
            skeleton: skeleton(&crate::digest::sorted_keys(schema)),
            enums: enums(schema),
            table,
            neighbours,
        }
    }

    /// How many drafts the pack carries (the manifest's `recipes.drafts`).
    pub fn count(&self) -> u64 {
        (self.table.len() + self.skeleton.len()) as u64
    }
}

/// [`Drafts`] prepared for lookups: each entry's shape computed once.
pub struct Drafter {
    /// (text, its shape, shape index → text index), table entries by frequency, then the
    /// skeleton (its values the [`HOLE`] byte, never drafted).
    entries: Vec<(Vec<u8>, Vec<u8>, Vec<usize>)>,
    /// Table entries with their counts, most frequent first.
    table: Vec<(Vec<u8>, u64)>,
    nearest: Nearest,
}

/// A value string's content in a shape (and the skeleton's unknown values).
const HOLE: u8 = 0x01;

impl Drafter {
    pub fn new(d: &Drafts) -> Drafter {
        let table: Vec<(Vec<u8>, u64)> = d
            .table
            .iter()
            .map(|e| (e.text.clone().into_bytes(), e.count))
            .collect();
        let mut texts: Vec<Vec<u8>> = table.iter().map(|(t, _)| t.clone()).collect();
        if !d.skeleton.is_empty() {
            texts.push(d.skeleton.join("\u{1}").into_bytes());
        }
        let entries = texts
            .into_iter()
            .map(|t| {
                let (s, map, _) = shape(&t);
                (t, s, map)
            })
            .collect();
        Drafter {
            entries,
            table,
            nearest: Nearest::new(&d.neighbours),
        }
    }

    /// The outputs of the labelled inputs most like `input`, nearest first, each once: drafts
    /// for this input, tried before [`Drafter::propose`].
    pub fn neighbours(&self, input: &str) -> Vec<&[u8]> {
        self.nearest
            .ranked(input, neighbours::RANKED)
            .into_iter()
            .filter_map(|i| self.table.get(i as usize).map(|(t, _)| t.as_slice()))
            .collect()
    }

    /// The continuation to draft after `so_far`, if any.
    pub fn propose(&self, so_far: &[u8]) -> Option<&[u8]> {
        if let Some((t, _)) = self
            .table
            .iter()
            .find(|(t, _)| t.len() > so_far.len() && t.starts_with(so_far))
        {
            let end = self.confident_end(t, so_far.len());
            return (end > so_far.len()).then(|| &t[so_far.len()..end]);
        }
        let (s, _, inside_value) = shape(so_far);
        if inside_value {
            return None;
        }
        self.entries.iter().find_map(|(text, shape, map)| {
            if shape.len() <= s.len() || !shape.starts_with(&s) {
                return None;
            }
            // Up to where the next value's content begins: by shape, a value is a guess.
            let end = shape[s.len()..]
                .iter()
                .position(|b| *b == HOLE)
                .map_or(text.len(), |h| map[s.len() + h - 1] + 1);
            let rest = &text[map[s.len()]..end];
            (!rest.is_empty()).then_some(rest)
        })
    }

    /// Where a draft along the table entry `t` from `from` stops: at the first byte where the
    /// entries that agree with `t` so far split with less than [`CONFIDENT`] of their weight on
    /// `t`'s next byte. Every drafted token costs a row of arithmetic in the verifying pass, so
    /// a draft that runs on through a coin toss wastes more than it saves.
    fn confident_end(&self, t: &[u8], from: usize) -> usize {
        let mut live: Vec<&(Vec<u8>, u64)> = self
            .table
            .iter()
            .filter(|(e, _)| e.starts_with(&t[..from]))
            .collect();
        for (i, &b) in t.iter().enumerate().skip(from) {
            let total: u64 = live.iter().map(|(_, c)| c).sum();
            live.retain(|(e, _)| e.get(i) == Some(&b));
            let agree: u64 = live.iter().map(|(_, c)| c).sum();
            if (agree as f64) < CONFIDENT * total as f64 {
                return i;
            }
        }
        t.len()
    }
}

/// The least share of the labelled outputs (by count) that must agree on the next byte for a
/// draft to go on through it.
pub const CONFIDENT: f64 = 0.5;

/// The shape of compact JSON: each value string's content replaced by one [`HOLE`] (keys
/// kept). Returns the shape, where each of its bytes (and its end) lies in `text`, and whether
/// `text` ends inside a value string.
fn shape(text: &[u8]) -> (Vec<u8>, Vec<usize>, bool) {
    let mut out = Vec::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    let mut stack: Vec<u8> = Vec::new();
    let mut key_next = false;
    // Inside a string: whether it is a key.
    let mut in_string: Option<bool> = None;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate() {
        match in_string {
            Some(key) => {
                let closes = !escaped && b == b'"';
                escaped = !escaped && b == b'\\';
                if closes {
                    in_string = None;
                    if !key {
                        out.push(HOLE);
                        map.push(i);
                    }
                } else if !key {
                    continue;
                }
            }
            None => match b {
                b'"' => in_string = Some(key_next && stack.last() == Some(&b'{')),
                b'{' | b'[' => {
                    stack.push(b);
                    key_next = b == b'{';
                }
                b'}' | b']' => {
                    stack.pop();
                }
                b':' => key_next = false,
                b',' => key_next = stack.last() == Some(&b'{'),
                _ => {}
            },
        }
        out.push(b);
        map.push(i);
    }
    map.push(text.len());
    (out, map, in_string == Some(false))
}

/// The constant pieces of a flat object schema's compact JSON, in property order (required
/// properties only: optional ones may be absent). Empty for any other schema.
fn skeleton(schema: &Value) -> Vec<String> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut pieces = Vec::new();
    let mut piece = String::from("{");
    let mut first = true;
    for (name, p) in props {
        if !required.contains(&name.as_str()) {
            continue;
        }
        if !first {
            piece.push(',');
        }
        first = false;
        piece.push_str(&serde_json::to_string(name).expect("serialises"));
        piece.push(':');
        let string = p.get("type").and_then(Value::as_str) == Some("string")
            || p.get("enum")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty() && e.iter().all(Value::is_string));
        if string {
            piece.push('"');
        }
        pieces.push(std::mem::take(&mut piece));
        if string {
            piece.push('"');
        }
    }
    if first {
        return Vec::new();
    }
    piece.push('}');
    pieces.push(piece);
    pieces
}

/// Each property's allowed strings.
fn enums(schema: &Value) -> BTreeMap<String, Vec<String>> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    props
        .iter()
        .filter_map(|(name, p)| {
            let values: Vec<String> = p
                .get("enum")?
                .as_array()?
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()?;
            Some((name.clone(), values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Pairs with these outputs, each input its own words.
    fn pairs(outputs: &[Value]) -> Vec<(Value, Value)> {
        outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (json!(format!("mail number {i}")), o.clone()))
            .collect()
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "label": {"type": "string", "enum": ["billing", "bug", "other"]},
            "severity": {"type": "string", "enum": ["low", "high"]},
            "note": {"type": "string"}},
            "required": ["label", "severity"]})
    }

    #[test]
    fn skeleton_enums_and_table_come_from_the_schema_and_the_pairs() {
        let d = Drafts::build(
            &schema(),
            &pairs(&[
                json!({"label": "bug", "severity": "high"}),
                json!({"label": "billing", "severity": "low"}),
                json!({"label": "bug", "severity": "high"}),
            ]),
        );
        assert_eq!(d.skeleton, [r#"{"label":""#, r#"","severity":""#, r#""}"#]);
        assert_eq!(d.enums["label"], ["billing", "bug", "other"]);
        assert_eq!(d.table[0].text, r#"{"label":"bug","severity":"high"}"#);
        assert_eq!((d.table[0].count, d.table[1].count), (2, 1));
        assert_eq!(d.count(), 5);
    }

    #[test]
    fn proposals_follow_the_exact_prefix_then_the_shape() {
        let d = Drafts::build(
            &schema(),
            &pairs(&[
                json!({"label": "bug", "severity": "high"}),
                json!({"label": "billing", "severity": "low"}),
                json!({"label": "bug", "severity": "high"}),
            ]),
        );
        let d = Drafter::new(&d);
        let p = |s: &str| {
            d.propose(s.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        // Two thirds of the outputs agree all the way: the whole of the likeliest is drafted.
        assert_eq!(p("").unwrap(), r#"{"label":"bug","severity":"high"}"#);
        assert_eq!(p(r#"{"label":"bi"#).unwrap(), r#"lling","severity":"low"}"#);
        // `other` is in no pair: inside it nothing is drafted; after it, the shape knows what
        // comes next, up to the next value (by shape, a value is a guess).
        assert_eq!(p(r#"{"label":"oth"#), None);
        assert_eq!(p(r#"{"label":"other""#).unwrap(), r#","severity":""#);
        // Where the outputs split with no majority, the draft stops at the split.
        let even = Drafter::new(&Drafts::build(
            &schema(),
            &pairs(&[
                json!({"label": "bug", "severity": "high"}),
                json!({"label": "account", "severity": "low"}),
                json!({"label": "other", "severity": "low"}),
            ]),
        ));
        let e = |s: &str| {
            even.propose(s.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        assert_eq!(e("").unwrap(), r#"{"label":""#);
        assert_eq!(e(r#"{"label":"bu"#).unwrap(), r#"g","severity":"high"}"#);
        assert_eq!(p(r#"{"label":"bug","severity":"high"}"#), None);
        // With no table, the skeleton alone drafts the constant text, never a value.
        let bare = Drafter::new(&Drafts::build(&schema(), &[]));
        let q = |s: &str| {
            bare.propose(s.as_bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        assert_eq!(q("").unwrap(), r#"{"label":""#);
        assert_eq!(q(r#"{"label":"x""#).unwrap(), r#","severity":""#);
        assert_eq!(q(r#"{"label":"x","severity":"y""#).unwrap(), "}");
    }

    #[test]
    fn neighbours_draft_the_outputs_of_the_likest_inputs_nearest_first() {
        let pair = |input: &str, label: &str, severity: &str| {
            (json!(input), json!({"label": label, "severity": severity}))
        };
        let d = Drafts::build(
            &schema(),
            &[
                pair("I was charged twice for my plan", "billing", "high"),
                pair("The app crashes when I open a report", "bug", "high"),
                pair(
                    "Please refund the double charge on my card",
                    "billing",
                    "high",
                ),
                pair("Could you add a dark mode?", "other", "low"),
                pair("The export crashes with an error", "bug", "low"),
                pair("Thanks for the quick help", "other", "low"),
            ],
        );
        // Every pair is kept, pointing at its output's place in the table.
        assert_eq!(d.neighbours.len(), 6);
        let text = |i: u32| d.table[i as usize].text.clone();
        assert_eq!(
            text(d.neighbours[3].output),
            r#"{"label":"other","severity":"low"}"#
        );
        let n = Drafter::new(&d);
        let ranked = |input: &str| -> Vec<String> {
            n.neighbours(input)
                .into_iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        };
        // The crash mails share the rarest words: theirs come first, the nearer one first,
        // each output once.
        let r = ranked("report export crashes");
        assert_eq!(r[0], r#"{"label":"bug","severity":"low"}"#);
        assert_eq!(r[1], r#"{"label":"bug","severity":"high"}"#);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(
            ranked("charged twice")[0],
            r#"{"label":"billing","severity":"high"}"#
        );
        // Case and punctuation do not matter; an input sharing no word drafts nothing.
        assert_eq!(ranked("CHARGED, TWICE!"), ranked("charged twice"));
        assert!(ranked("zebra xylophone").is_empty());
        // A pack sealed before neighbours reads as none.
        let mut v = serde_json::to_value(&d).unwrap();
        v.as_object_mut().unwrap().remove("neighbours");
        let old: Drafts = serde_json::from_value(v).unwrap();
        assert!(old.neighbours.is_empty());
        assert!(Drafter::new(&old).neighbours("charged twice").is_empty());
    }
}
