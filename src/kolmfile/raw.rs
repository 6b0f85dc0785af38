//! The Kolmfile exactly as written: every value optional and wrapped in its span.
//!
//! These types mirror the TOML one to one, refuse unknown keys, and know nothing of defaults.
//! [`super::resolve`] turns them into the checked, defaulted configuration the graph reads.
//! Keeping the two apart means a value's span survives until the check that needs it, and the
//! task-over-defaults merge is a plain field-by-field `or`.

use serde::Deserialize;
use serde_spanned::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub remote: S<String>,
    pub read_only: S<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawProject {
    pub name: S<String>,
    pub dist: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBase {
    pub path: S<String>,
    pub url: S<String>,
    pub sha256: S<String>,
    pub tiny: Option<Spanned<RawTiny>>,
    pub quantize: S<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTiny {
    pub arch: S<String>,
    pub seed: S<u64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTeacher {
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

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: S<f64>,
    pub output_per_mtok: S<f64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRecall {
    pub corpus: S<Vec<String>>,
    pub chunk_chars: S<i64>,
    pub overlap_chars: S<i64>,
    pub embedder: S<String>,
    pub top_k: S<i64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDistill {
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

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDecompose {
    pub enabled: S<bool>,
    pub recipes: S<bool>,
    pub drafts: S<bool>,
    pub time_limit_ms: S<i64>,
    pub memory_limit_mb: S<i64>,
    pub recipes_dir: S<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawScore {
    pub device: S<String>,
    pub weights: Option<Spanned<RawWeights>>,
    pub baseline: Option<Spanned<RawBaseline>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawWeights {
    pub accuracy: S<f64>,
    pub size: S<f64>,
    pub latency: S<f64>,
    pub cost: S<f64>,
    pub coverage: S<f64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBaseline {
    pub accuracy: S<f64>,
    pub latency_ms: S<f64>,
    pub cost_per_1k: S<f64>,
    pub size_bytes: S<f64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub min_k: S<f64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSign {
    pub key_file: S<String>,
}

/// Field-by-field "the task's value, else the default's".
pub trait Overlay {
    fn overlay(self, defaults: &Self) -> Self;
}

macro_rules! overlay_fields {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl Overlay for $ty {
            fn overlay(self, defaults: &Self) -> Self {
                $ty { $($field: self.$field.or_else(|| defaults.$field.clone())),* }
            }
        }
    };
}

overlay_fields!(RawBase {
    path,
    url,
    sha256,
    tiny,
    quantize
});
overlay_fields!(RawTeacher {
    provider,
    model,
    endpoint,
    api_key_env,
    cassette,
    samples,
    temperature,
    seed,
    concurrency,
    timeout_secs,
    max_retries,
    synthesize,
    verify_seeds,
    price
});
overlay_fields!(RawRecall {
    corpus,
    chunk_chars,
    overlap_chars,
    embedder,
    top_k
});
overlay_fields!(RawDistill {
    train,
    rank,
    alpha,
    targets,
    epochs,
    learning_rate,
    batch_size,
    max_seq_len,
    seed,
    threads
});
overlay_fields!(RawDecompose {
    enabled,
    recipes,
    drafts,
    time_limit_ms,
    memory_limit_mb,
    recipes_dir
});
overlay_fields!(RawScore {
    device,
    weights,
    baseline
});
overlay_fields!(RawGate { min_k });
overlay_fields!(RawSign { key_file });
