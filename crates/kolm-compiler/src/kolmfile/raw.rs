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
    (overlay $(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* }) => {
        table! { $(#[$m])* pub struct $name { $($(#[$fm])* pub $field: $ty,)* } }
        impl Overlay for $name {
            fn overlay(self, defaults: &Self) -> Self {
                $name { $($field: self.$field.or_else(|| defaults.$field.clone()),)* }
            }
        }
    };
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Deserialize, Default, Clone)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fm])* pub $field: $ty,)* }
        impl Key for $name {
            const NODE: Node = Node::Table(&[$((stringify!($field), <$ty as Key>::NODE),)*]);
        }
    };
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
        pub samples: S<i64>,
        pub temperature: S<f64>,
        pub seed: S<i64>,
        pub concurrency: S<i64>,
        pub timeout_secs: S<i64>,
        pub max_retries: S<i64>,
        pub synthesize: S<i64>,
        pub verify_seeds: S<bool>,
        pub price: Option<Spanned<RawPrice>>,
    }
}

table! {
    pub struct RawPrice {
        pub input_per_mtok: S<f64>,
        pub output_per_mtok: S<f64>,
    }
}

table! {
    overlay pub struct RawRecall {
        pub corpus: S<Vec<String>>,
        pub chunk_chars: S<i64>,
        pub overlap_chars: S<i64>,
        pub embedder: S<String>,
        pub top_k: S<i64>,
    }
}

table! {
    overlay pub struct RawDistill {
        pub train: S<bool>,
        pub rank: S<i64>,
        pub alpha: S<f64>,
        pub targets: S<Vec<String>>,
        pub epochs: S<i64>,
        pub learning_rate: S<f64>,
        pub batch_size: S<i64>,
        pub max_seq_len: S<i64>,
        pub seed: S<i64>,
        pub threads: S<i64>,
    }
}

table! {
    overlay pub struct RawDecompose {
        pub enabled: S<bool>,
        pub recipes: S<bool>,
        pub drafts: S<bool>,
        pub time_limit_ms: S<i64>,
        pub memory_limit_mb: S<i64>,
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
}
