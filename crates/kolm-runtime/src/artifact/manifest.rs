//! `manifest.json`: the contract for what a `.kolm` is.
//!
//! Stored as RFC 8785 canonical JSON, so the same facts are always the same bytes and the
//! signature covers them exactly. No wall-clock time appears unless `SOURCE_DATE_EPOCH` pins it.

use serde::{Deserialize, Serialize};

use crate::kscore::{Baseline, Components, DeviceProfile, Measured, Weights};

pub const SPEC: &str = "rs-1-manifest";
pub const SPEC_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub spec: String,
    pub spec_version: u32,
    pub task: TaskInfo,
    pub base_model: BaseInfo,
    pub lora: LoraInfo,
    pub recall: RecallInfo,
    pub recipe_registry: String,
    pub recipes: RecipeInfo,
    pub tests: TestInfo,
    pub k_score: f64,
    pub k_components: Components,
    pub k_weights: Weights,
    pub k_measured: Measured,
    pub baseline: BaselineInfo,
    pub device: DeviceProfile,
    pub gate: f64,
    pub training: TrainingInfo,
    pub seeds: SeedInfo,
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// sha256 and size of the first five entries, in order.
    pub entries: Vec<EntryDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub description: String,
    pub output_schema: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseInfo {
    pub id: String,
    pub sha256: String,
    pub size: u64,
    pub architecture: String,
    pub quantization: String,
    pub parameters: u64,
    pub context_length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraInfo {
    pub rank: u32,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub trained: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallInfo {
    pub embedder: Option<String>,
    pub embedder_sha256: Option<String>,
    pub dimensions: u32,
    pub documents: u64,
    pub chunks: u64,
    /// How many chunks a grounded prompt carries (`recall.top_k`).
    #[serde(default = "default_top_k")]
    pub top_k: u32,
}

fn default_top_k() -> u32 {
    4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecipeInfo {
    pub count: u64,
    pub drafts: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestInfo {
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineInfo {
    #[serde(flatten)]
    pub values: Baseline,
    /// `teacher` (measured at compile time) or `kolmfile` (configured).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub distilled_pairs: u64,
    pub dropped_pairs: u64,
    pub teacher_requests: u64,
    pub epochs: u32,
    pub tokens: u64,
    pub final_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedInfo {
    pub distill: i64,
    pub teacher: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryDigest {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

impl Manifest {
    /// The exact bytes stored as `manifest.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::digest::canonical_json(self)
    }
}
