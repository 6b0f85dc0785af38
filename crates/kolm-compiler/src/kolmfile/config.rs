//! The checked, defaulted configuration of each task: what the graph and the stages read.
//!
//! Each stage reads exactly one of these slices, and the slice's canonical JSON goes into that
//! stage's cache key. So a field added here changes the keys of exactly the stages that read
//! it, and nothing a stage does not read can make it rerun. Paths are stored relative to the
//! Kolmfile (forward slashes) so that keys never depend on where the project is checked out.

use serde::{Deserialize, Serialize};

// The scoring inputs are K's own types: kscore sits below the Kolmfile and owns them.
pub use crate::kscore::{Baseline, DeviceProfile, Weights};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Project {
    pub name: String,
    /// Output folder for artifacts and reports, relative to the Kolmfile.
    pub dist: String,
    /// `[cache]`: the shared remote cache, if any. Never part of a key: it changes where a
    /// result comes from, never what it is.
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CacheConfig {
    /// `http(s)://host[:port][/prefix]`, without credentials (those go in the environment).
    pub remote: Option<String>,
    /// Read from the remote, never write to it.
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskConfig {
    pub name: String,
    pub description: String,
    /// The JSON schema every output must satisfy (inline, or loaded from `output_schema_file`).
    pub output_schema: serde_json::Value,
    /// The file the schema was read from, if any. Never part of a key (the schema's content
    /// is); listed among the build's inputs (`crate::inputs`).
    #[serde(skip)]
    pub schema_file: Option<String>,
    /// Seeds file (JSONL `{"input": .., "output": ..}`), relative to the Kolmfile.
    pub seeds: String,
    /// Evals file (JSONL, promptfoo-style tests), relative to the Kolmfile.
    pub evals: String,
    /// Assertions every teacher answer must pass to become a pair (promptfoo syntax).
    pub assert: Vec<serde_json::Value>,
    pub base: BaseConfig,
    pub teacher: TeacherConfig,
    pub recall: RecallConfig,
    pub distill: DistillConfig,
    pub decompose: DecomposeConfig,
    pub score: ScoreConfig,
    pub gate: GateConfig,
    pub sign: SignConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseSource {
    /// A GGUF file on disk, relative to the Kolmfile (or absolute, outside the project).
    Path { path: String },
    /// `hf://owner/repo/file.gguf`, downloaded once into `KOLM_HOME/models`.
    Url { url: String },
    /// A tiny model kolm writes itself, deterministically, from a seed (tests and examples).
    Tiny { arch: String, seed: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct BaseConfig {
    pub source: BaseSource,
    /// Pinned sha256 (lowercase hex). Required for `url`; checked whenever present.
    pub sha256: Option<String>,
    /// Requantise the base to this type before anything uses it (absent when not set, so a
    /// configuration without it serialises as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Quantize>,
}

/// `[base] quantize`: a llama.cpp quantisation the base is rewritten in. Which one decodes a
/// batch of rows fastest depends on the machine's kernels (kolmfile.md §8).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Quantize {
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q6_k")]
    Q6K,
    #[serde(rename = "q5_k_m")]
    Q5KM,
    #[serde(rename = "q4_k_m")]
    Q4KM,
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl Quantize {
    pub const ALL: [Quantize; 5] = [
        Quantize::Q8_0,
        Quantize::Q6K,
        Quantize::Q5KM,
        Quantize::Q4KM,
        Quantize::Q4_0,
    ];
    /// The name the Kolmfile spells it with, and GGUF's `general.file_type` for it
    /// (llama.cpp's `llama_ftype`).
    fn spelled(self) -> (&'static str, u32) {
        match self {
            Quantize::Q8_0 => ("q8_0", 7),
            Quantize::Q6K => ("q6_k", 18),
            Quantize::Q5KM => ("q5_k_m", 17),
            Quantize::Q4KM => ("q4_k_m", 15),
            Quantize::Q4_0 => ("q4_0", 2),
        }
    }
    pub fn name(self) -> &'static str {
        self.spelled().0
    }
    pub fn file_type(self) -> u32 {
        self.spelled().1
    }
    pub fn from_name(name: &str) -> Option<Quantize> {
        Self::ALL.into_iter().find(|q| q.name() == name)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    None,
    Openai,
    Anthropic,
    Replay,
}

impl Provider {
    pub const NAMES: [&'static str; 4] = ["none", "openai", "anthropic", "replay"];
    /// The name the Kolmfile spells it with.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
    pub fn uses_network(self) -> bool {
        matches!(self, Provider::Openai | Provider::Anthropic)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TeacherConfig {
    pub provider: Provider,
    pub model: Option<String>,
    pub endpoint: Option<String>,
    /// Name of the env var holding the API key. Never the key itself.
    pub api_key_env: Option<String>,
    pub cassette: Option<String>,
    pub samples: u32,
    pub temperature: f64,
    pub seed: i64,
    pub concurrency: u32,
    pub timeout_secs: u32,
    pub max_retries: u32,
    pub synthesize: u32,
    pub verify_seeds: bool,
    pub price: Price,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecallConfig {
    /// Globs relative to the Kolmfile; empty means no corpus.
    pub corpus: Vec<String>,
    pub chunk_chars: u32,
    pub overlap_chars: u32,
    pub embedder: Option<String>,
    pub top_k: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DistillConfig {
    pub train: bool,
    pub rank: u32,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub epochs: u32,
    pub learning_rate: f64,
    pub batch_size: u32,
    pub max_seq_len: u32,
    pub seed: i64,
    pub threads: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecomposeConfig {
    pub enabled: bool,
    pub recipes: bool,
    pub drafts: bool,
    pub time_limit_ms: u32,
    pub memory_limit_mb: u32,
    /// A folder of the user's recipes (`*.js`), relative to the Kolmfile.
    pub recipes_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreConfig {
    pub device: DeviceProfile,
    pub weights: Weights,
    pub baseline: Baseline,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct GateConfig {
    pub min_k: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignConfig {
    /// A key file (its UTF-8 contents are the key). `KOLM_SIGNING_KEY` wins when both exist.
    pub key_file: Option<String>,
}

/// LoRA targets kolm knows how to train, by llama.cpp tensor name.
pub const LORA_TARGETS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];
