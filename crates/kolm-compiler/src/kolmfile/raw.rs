//! The Kolmfile exactly as written: every value optional and wrapped in its span.
//!
//! These types mirror the TOML one to one, refuse unknown keys, and know nothing of defaults.
//! [`super::resolve`] turns them into the checked, defaulted configuration the graph reads.
//! Keeping the two apart means a value's span survives until the check that needs it, and the
//! task-over-defaults merge is a plain field-by-field `or`.
//!
//! Each table is declared once, with [`table!`]: the one struct gives serde its fields, the
//! tree of known keys that errors mask by ([`super::keys`]), and, for the sections a task may
//! override, the overlay.

use serde::Deserialize;
use serde_spanned::Spanned;

use super::keys::{Key, Keys, Node};

pub type S<T> = Option<Spanned<T>>;

/// Every key a Kolmfile may hold: the tree errors mask by (kolmfile.md §5.2).
pub(super) const KEYS: Keys = match <RawKolmfile as Key>::NODE {
    Node::Table(keys) => keys,
    Node::Leaf => &[],
};

/// Field-by-field "the task's value, else the default's".
pub trait Overlay {
    fn overlay(self, defaults: &Self) -> Self;
}

/// Declares a table: the struct (every key optional, unknown keys refused), its place in the
/// tree of known keys, and with `overlay`, the task-over-defaults merge.
macro_rules! table {
    (overlay $(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty $(= $default:literal in $lo:literal ..= $hi:literal)?,)* }) => {
        table! { $(#[$m])* pub struct $name { $($(#[$fm])* pub $field: $ty $(= $default in $lo ..= $hi)?,)* } }
        impl Overlay for $name {
            fn overlay(self, defaults: &Self) -> Self {
                $name { $($field: self.$field.or_else(|| defaults.$field.clone()),)* }
            }
        }
    };
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty $(= $default:literal in $lo:literal ..= $hi:literal)?,)* }) => {
        $(#[$m])*
        #[derive(Debug, Deserialize, Default, Clone)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fm])* pub $field: $ty,)* }
        impl Key for $name {
            const NODE: Node = Node::Table(&[$((stringify!($field), <$ty as Key>::NODE),)*]);
        }
        // Generated for every table; only those with numeric keys use it.
        #[allow(dead_code)]
        impl $name {
            /// The numeric keys' defaults and allowed ranges, as declared.
            pub const BOUNDS: &'static [(&'static str, Bounds)] = &[
                $($((stringify!($field), Bounds { default: $default as f64, lo: $lo as f64, hi: $hi as f64 }),)?)*
            ];

            /// The declared bounds of `key` (a name this table declares with them).
            pub fn bounds(key: &str) -> Bounds {
                Self::BOUNDS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, b)| *b)
                    .unwrap_or_else(|| panic!("`{key}` is declared with bounds in {}", stringify!($name)))
            }
        }
    };
}

/// A numeric key's default and the range it takes, from its declaration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub default: f64,
    pub lo: f64,
    pub hi: f64,
}

table! {
    pub struct RawKolmfile {
        pub project: Option<Spanned<RawProject>>,
        #[serde(default)]
        pub task: Vec<Spanned<RawTask>>,
        pub base: Option<Spanned<RawBase>>,
        pub teacher: Option<Spanned<RawTeacher>>,
        pub recall: Option<Spanned<RawRecall>>,
        pub distill: Option<Spanned<RawDistill>>,
        pub decompose: Option<Spanned<RawDecompose>>,
        pub score: Option<Spanned<RawScore>>,
        pub gate: Option<Spanned<RawGate>>,
        pub sign: Option<Spanned<RawSign>>,
        pub cache: Option<Spanned<RawCache>>,
    }
}

table! {
    pub struct RawCache {
        pub remote: S<String>,
        pub read_only: S<bool>,
    }
}

table! {
    pub struct RawProject {
        pub name: S<String>,
        pub dist: S<String>,
    }
}

table! {
    pub struct RawTask {
        pub name: S<String>,
        pub description: S<String>,
        pub output_schema: S<serde_json::Value>,
        pub output_schema_file: S<String>,
        pub seeds: S<String>,
        pub evals: S<String>,
        pub assert: S<Vec<serde_json::Value>>,
        pub base: Option<Spanned<RawBase>>,
        pub teacher: Option<Spanned<RawTeacher>>,
        pub recall: Option<Spanned<RawRecall>>,
        pub distill: Option<Spanned<RawDistill>>,
        pub decompose: Option<Spanned<RawDecompose>>,
        pub score: Option<Spanned<RawScore>>,
        pub gate: Option<Spanned<RawGate>>,
        pub sign: Option<Spanned<RawSign>>,
    }
}

table! {
    overlay pub struct RawBase {
        pub path: S<String>,
        pub url: S<String>,
        pub sha256: S<String>,
        pub tiny: Option<Spanned<RawTiny>>,
        pub quantize: S<String>,
    }
}

table! {
    pub struct RawTiny {
        pub arch: S<String>,
        pub seed: S<u64>,
    }
}

table! {
    overlay pub struct RawTeacher {
        pub provider: S<String>,
        pub model: S<String>,
        pub endpoint: S<String>,
        pub api_key_env: S<String>,
        pub cassette: S<String>,
        pub samples: S<i64> = 3 in 1..=64,
        pub temperature: S<f64> = 0.7 in 0.0..=2.0,
        pub seed: S<i64>,
        pub concurrency: S<i64> = 8 in 1..=1024,
        pub timeout_secs: S<i64> = 120 in 1..=3600,
        pub max_retries: S<i64> = 5 in 0..=100,
        pub synthesize: S<i64> = 0 in 0..=1_000_000,
        pub verify_seeds: S<bool>,
        pub price: Option<Spanned<RawPrice>>,
    }
}

table! {
    pub struct RawPrice {
        pub input_per_mtok: S<f64> = 0.0 in 0.0..=1e6,
        pub output_per_mtok: S<f64> = 0.0 in 0.0..=1e6,
    }
}

table! {
    overlay pub struct RawRecall {
        pub corpus: S<Vec<String>>,
        pub chunk_chars: S<i64> = 1200 in 64..=1_000_000,
        pub overlap_chars: S<i64>,
        pub embedder: S<String>,
        pub top_k: S<i64> = 4 in 1..=100,
    }
}

table! {
    overlay pub struct RawDistill {
        pub train: S<bool>,
        pub rank: S<i64> = 8 in 1..=1024,
        pub alpha: S<f64> = 16.0 in 1e-6..=1e6,
        pub targets: S<Vec<String>>,
        pub epochs: S<i64> = 3 in 1..=10_000,
        pub learning_rate: S<f64> = 1e-3 in 1e-9..=10.0,
        pub batch_size: S<i64> = 8 in 1..=4096,
        pub max_seq_len: S<i64> = 512 in 16..=131_072,
        pub seed: S<i64>,
        pub threads: S<i64> = 2 in 1..=1024,
    }
}

table! {
    overlay pub struct RawDecompose {
        pub enabled: S<bool>,
        pub recipes: S<bool>,
        pub drafts: S<bool>,
        pub time_limit_ms: S<i64> = 50 in 1..=60_000,
        pub memory_limit_mb: S<i64> = 16 in 1..=4096,
        pub recipes_dir: S<String>,
    }
}

table! {
    overlay pub struct RawScore {
        pub device: S<String>,
        pub weights: Option<Spanned<RawWeights>>,
        pub baseline: Option<Spanned<RawBaseline>>,
    }
}

table! {
    pub struct RawWeights {
        pub accuracy: S<f64>,
        pub size: S<f64>,
        pub latency: S<f64>,
        pub cost: S<f64>,
        pub coverage: S<f64>,
    }
}

table! {
    pub struct RawBaseline {
        pub accuracy: S<f64>,
        pub latency_ms: S<f64>,
        pub cost_per_1k: S<f64>,
        pub size_bytes: S<f64>,
    }
}

table! {
    overlay pub struct RawGate {
        pub min_k: S<f64>,
    }
}

table! {
    overlay pub struct RawSign {
        pub key_file: S<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table path of the tree, with its keys.
    fn tables(
        path: Vec<&'static str>,
        t: Keys,
        out: &mut Vec<(Vec<&'static str>, Vec<&'static str>)>,
    ) {
        out.push((path.clone(), t.iter().map(|(k, _)| *k).collect()));
        for (k, n) in t {
            if let Node::Table(sub) = n {
                let mut p = path.clone();
                p.push(k);
                tables(p, sub, out);
            }
        }
    }

    /// The keys serde expects in the table at `path`, read from its unknown-key error.
    fn serde_keys(path: &[&str]) -> Vec<String> {
        let stray = "zz_not_a_key = 1\n";
        let text = match path {
            [] => stray.to_string(),
            ["task"] => format!("[[task]]\n{stray}"),
            ["task", rest @ ..] => format!("[[task]]\n[task.{}]\n{stray}", rest.join(".")),
            _ => format!("[{}]\n{stray}", path.join(".")),
        };
        let e = toml_edit::de::from_str::<RawKolmfile>(&text).expect_err("a stray key is refused");
        let msg = e.message().to_string();
        let (_, expected) = msg
            .split_once("expected")
            .unwrap_or_else(|| panic!("{path:?}: {msg}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_tree_is_what_the_serde_types_read() {
        let mut all = Vec::new();
        tables(Vec::new(), KEYS, &mut all);
        assert!(all.len() > 20, "{}", all.len());
        for (path, keys) in all {
            assert_eq!(serde_keys(&path), keys, "the keys of {path:?}");
        }
    }

    /// The declared ranges are the ones kolmfile.md's "allowed" column gives (`1–64`,
    /// `1e-6 – 1e6`), key by key; the defaults are checked against the spec by
    /// `tests/spec_defaults.rs` through the resolved configuration.
    #[test]
    fn declared_ranges_are_the_specs() {
        let spec = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../kolmfile-spec/kolmfile.md"
        ))
        .unwrap();
        let declared: [(&str, &[(&str, Bounds)]); 5] = [
            ("teacher", RawTeacher::BOUNDS),
            ("teacher.price", RawPrice::BOUNDS),
            ("recall", RawRecall::BOUNDS),
            ("distill", RawDistill::BOUNDS),
            ("decompose", RawDecompose::BOUNDS),
        ];
        let mut table = None;
        let mut checked = 0;
        for line in spec.lines() {
            if line.starts_with('#') {
                table = line
                    .split("`[")
                    .nth(1)
                    .and_then(|r| r.split("]`").next())
                    .map(str::to_string);
                continue;
            }
            let cells: Vec<&str> = line.split(" | ").collect();
            let (Some(t), true) = (&table, line.starts_with("| `") && cells.len() > 3) else {
                continue;
            };
            let key = cells[0].trim_start_matches("| ").trim_matches('`');
            let Some((_, bounds)) = declared.iter().find(|(name, _)| name == t) else {
                continue;
            };
            let Some((_, b)) = bounds.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            let num = |x: &str| x.trim().replace(',', "").parse::<f64>().ok();
            let range = cells[3]
                .split_once('–')
                .and_then(|(lo, hi)| Some((num(lo)?, num(hi)?)));
            assert_eq!(
                range,
                Some((b.lo, b.hi)),
                "the allowed range of `{t}.{key}`"
            );
            checked += 1;
        }
        let all: usize = declared.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(checked, all, "every declared range is in kolmfile.md");
    }
}
