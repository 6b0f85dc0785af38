//! The stages of a build, and the contract every stage keeps.
//!
//! A stage is a function from typed inputs (its slice of the task's configuration, the
//! digests of the files it reads, and the typed outputs of the stages it depends on) to a typed
//! output. The executor owns caching: a stage never looks at the cache, so it cannot get
//! invalidation wrong. All a stage declares is what it reads ([`Stage::config`],
//! [`Stage::files`], [`StageKind::deps`]) and whether its output is a pure function of that
//! ([`Stage::deterministic`]); if not, its output is pinned in `Kolmfile.lock`.
//!
//! Each stage's body lives in the module named for it. Bodies still to come from their own
//! issues fail with [`StageUnavailable`] rather than producing anything.

pub mod base;
pub mod baseline;
pub mod decompose;
pub mod label;
pub mod preflight;
pub mod recall;
pub mod score;
pub mod seal;
pub mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::{BlobRef, Fingerprints, Store};
use crate::home::Home;
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::{Error, Result};

/// The kinds of stage, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Base,
    Recall,
    Label,
    Train,
    Decompose,
    Baseline,
    Score,
    Seal,
}

impl StageKind {
    pub const ALL: [StageKind; 8] = [
        StageKind::Base,
        StageKind::Recall,
        StageKind::Label,
        StageKind::Train,
        StageKind::Decompose,
        StageKind::Baseline,
        StageKind::Score,
        StageKind::Seal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Base => "base",
            StageKind::Recall => "recall",
            StageKind::Label => "label",
            StageKind::Train => "train",
            StageKind::Decompose => "decompose",
            StageKind::Baseline => "baseline",
            StageKind::Score => "score",
            StageKind::Seal => "seal",
        }
    }

    /// The stages whose outputs this one reads. This is the graph's edge list.
    pub fn deps(self) -> &'static [StageKind] {
        use StageKind::*;
        match self {
            Base | Recall => &[],
            Label => &[Recall],
            Train => &[Base, Recall, Label],
            Decompose => &[Recall, Label],
            Baseline => &[Recall],
            Score => &[Base, Recall, Train, Decompose, Baseline],
            Seal => &[Base, Recall, Label, Train, Decompose, Score],
        }
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The base model: identified by content; where it lives is recomputed from the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseOut {
    pub sha256: String,
    pub size: u64,
    /// The zip CRC-32 of the file, so sealing can let the kernel copy it.
    pub crc32: u32,
    pub model: crate::gguf::ModelSummary,
    /// With `[base] quantize`: the requantised copy in the model store, which `score` measures
    /// and `seal` seals (the fields above stay the file the Kolmfile names, which `train`
    /// learns on and the lock pins). Absent otherwise, so such outputs keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Box<BaseOut>>,
}

impl BaseOut {
    /// The model the artifact carries: the requantised copy, or the base itself.
    pub fn served(&self) -> &BaseOut {
        self.served.as_deref().unwrap_or(self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallOut {
    /// `index.sqlite-vec`.
    pub index: BlobRef,
    pub embedder: Option<String>,
    pub embedder_sha256: Option<String>,
    pub dimensions: u32,
    /// `recall.top_k`: how many chunks a grounded prompt carries.
    pub top_k: u32,
    pub documents: u64,
    pub chunks: u64,
    /// Corpus files left out, by reason (`binary`, `not UTF-8`, `too large`, `unreadable`).
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelOut {
    /// `pairs.jsonl`: one `{input, output, source, …}` per line.
    pub pairs: BlobRef,
    pub kept: u64,
    /// Inputs left out, by reason (the verifier's, or synthesis's).
    pub dropped: BTreeMap<String, u64>,
    /// Requests the labels took, and what their answers cost (however they were obtained).
    pub teacher_requests: u64,
    #[serde(default)]
    pub teacher_usage: crate::teacher::Usage,
    #[serde(default)]
    pub teacher_cost_usd: f64,
    #[serde(default)]
    pub synthesized: u64,
    /// Lines of gold seeds the teacher disagreed with (`teacher.verify_seeds`).
    #[serde(default)]
    pub disagreements: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOut {
    /// `lora.bin`, a GGUF LoRA adapter.
    pub adapter: BlobRef,
    pub rank: u32,
    pub alpha: f64,
    pub targets: Vec<String>,
    pub trained: bool,
    pub pairs: u64,
    pub epochs: u32,
    pub tokens: u64,
    pub final_loss: Option<f64>,
    pub seed: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecomposeOut {
    /// `recipes.json`.
    pub recipes: BlobRef,
    pub recipe_count: u64,
    pub draft_count: u64,
    pub registry: String,
    /// Each candidate recipe's fate and why (the build report).
    #[serde(default)]
    pub verdicts: Vec<crate::recipes::verify::Verdict>,
}

/// What the artifact is normalised against (k-score.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineOut {
    pub baseline: crate::kolmfile::Baseline,
    /// `kolmfile` (configured) or `teacher` (measured on the eval suite).
    pub source: String,
    pub teacher_requests: u64,
    pub teacher_cost_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreOut {
    /// `tests.jsonl`, the eval suite as sealed.
    pub tests: BlobRef,
    /// The per-test report (`dist/<task>.report.json`).
    pub report: BlobRef,
    pub measured: crate::kscore::Measured,
    pub baseline: crate::kolmfile::Baseline,
    pub baseline_source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealOut {
    /// Project-relative path of the artifact.
    pub artifact: String,
    pub sha256: String,
    pub size: u64,
    pub k_score: f64,
    pub signed: bool,
}

/// Any stage's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum StageOutput {
    Base(BaseOut),
    Recall(RecallOut),
    Label(LabelOut),
    Train(TrainOut),
    Decompose(DecomposeOut),
    Baseline(BaselineOut),
    Score(ScoreOut),
    Seal(SealOut),
}

impl StageOutput {
    /// The digest dependents key on: a rerun with an equal output leaves them fresh (early cutoff).
    pub fn digest(&self) -> String {
        crate::digest::key_of(self)
    }

    /// Every blob the output names.
    pub fn blobs(&self) -> Vec<BlobRef> {
        match self {
            StageOutput::Base(_) | StageOutput::Baseline(_) | StageOutput::Seal(_) => vec![],
            StageOutput::Recall(o) => vec![o.index.clone()],
            StageOutput::Label(o) => vec![o.pairs.clone()],
            StageOutput::Train(o) => vec![o.adapter.clone()],
            StageOutput::Decompose(o) => vec![o.recipes.clone()],
            StageOutput::Score(o) => vec![o.tests.clone(), o.report.clone()],
        }
    }
}

/// The outputs of the stages a stage depends on.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub base: Option<BaseOut>,
    pub recall: Option<RecallOut>,
    pub label: Option<LabelOut>,
    pub train: Option<TrainOut>,
    pub decompose: Option<DecomposeOut>,
    pub baseline: Option<BaselineOut>,
    pub score: Option<ScoreOut>,
}

macro_rules! input_getter {
    ($($field:ident: $ty:ty),*) => {
        impl Inputs {
            $(
                pub fn $field(&self) -> Result<&$ty> {
                    self.$field.as_ref().ok_or_else(|| Error::Internal(format!("stage input `{}` missing", stringify!($field))))
                }
            )*
        }
    };
}
input_getter!(base: BaseOut, recall: RecallOut, label: LabelOut, train: TrainOut, decompose: DecomposeOut, baseline: BaselineOut, score: ScoreOut);

impl Inputs {
    pub fn set(&mut self, out: StageOutput) {
        match out {
            StageOutput::Base(o) => self.base = Some(o),
            StageOutput::Recall(o) => self.recall = Some(o),
            StageOutput::Label(o) => self.label = Some(o),
            StageOutput::Train(o) => self.train = Some(o),
            StageOutput::Decompose(o) => self.decompose = Some(o),
            StageOutput::Baseline(o) => self.baseline = Some(o),
            StageOutput::Score(o) => self.score = Some(o),
            StageOutput::Seal(_) => {}
        }
    }
}

/// Everything a stage may touch while it runs.
pub struct Cx<'a> {
    pub kolmfile: &'a Kolmfile,
    pub task: &'a TaskConfig,
    pub home: &'a Home,
    pub store: &'a Store,
    pub options: &'a BuildOptions,
    /// Digests of the files the stage declared, by project-relative path.
    pub files: &'a BTreeMap<String, String>,
    pub progress: &'a crate::progress::Progress,
    /// The build's teacher meter: what was sent, hit, and spent.
    pub meter: &'a crate::teacher::Meter,
}

impl Cx<'_> {
    pub fn project_path(&self, rel: &str) -> PathBuf {
        self.kolmfile.abs(rel)
    }
    /// Where the base model file is, given the base stage's output.
    pub fn base_path(&self, base: &BaseOut) -> PathBuf {
        base::model_path(self.kolmfile, self.home, &self.task.base, &base.sha256)
    }
    /// Where the model the artifact carries is ([`BaseOut::served`]).
    pub fn served_path(&self, base: &BaseOut) -> PathBuf {
        match &base.served {
            Some(s) => self.home.model(&s.sha256),
            None => self.base_path(base),
        }
    }
}

/// Options of one build that stages can see.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Overrides every task's gate (`--gate`).
    pub gate: Option<f64>,
    /// Build without a signing key; the artifact is marked unsigned.
    pub unsigned: bool,
    /// Refuse network use.
    pub airgap: bool,
    /// `SOURCE_DATE_EPOCH`, when set: the timestamp written into the zip.
    pub source_date_epoch: Option<i64>,
    /// No summaries on stderr (`--quiet`, `--json`). Never part of a key.
    pub quiet: bool,
}

/// One stage implementation.
pub trait Stage: Send + Sync {
    fn kind(&self) -> StageKind;
    /// Bumped whenever the stage's output for the same inputs changes: it is part of the key.
    fn version(&self) -> u32;
    /// The slice of the task's configuration this stage reads.
    fn config(&self, task: &TaskConfig, options: &BuildOptions) -> serde_json::Value;
    /// Project-relative files this stage reads (their content digests go into the key).
    fn files(&self, _kolmfile: &Kolmfile, _task: &TaskConfig) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// Project-relative folders whose listing this stage reads: a file added there can change
    /// its `files` (a corpus glob's base folder, the recipes folder). For the build's
    /// wrappers (`crate::inputs`); the key already covers the files found.
    fn dirs(&self, _kolmfile: &Kolmfile, _task: &TaskConfig) -> Vec<String> {
        Vec::new()
    }
    /// False for stages whose output is not a function of their inputs (teacher answers).
    fn deterministic(&self, _task: &TaskConfig) -> bool {
        true
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput>;
    /// Files outside the store this stage wrote, with their sha256 (so they need not be
    /// rehashed to be recognised on the next build).
    fn written(&self, _cx: &Cx, _out: &StageOutput) -> Vec<(PathBuf, String)> {
        Vec::new()
    }
    /// Whether a cached output is still usable (a file outside the store may have been removed).
    fn still_valid(&self, _cx: &Cx, _out: &StageOutput, _fp: &mut Fingerprints) -> bool {
        true
    }
}

/// Which implementation runs each stage. Tests swap in their own.
pub struct Stages {
    map: BTreeMap<StageKind, Box<dyn Stage>>,
}

impl Default for Stages {
    fn default() -> Self {
        let mut s = Stages {
            map: BTreeMap::new(),
        };
        s.set(Box::new(base::BaseStage));
        s.set(Box::new(recall::RecallStage));
        s.set(Box::new(label::LabelStage));
        s.set(Box::new(train::TrainStage));
        s.set(Box::new(decompose::DecomposeStage));
        s.set(Box::new(baseline::BaselineStage));
        s.set(Box::new(score::ScoreStage));
        s.set(Box::new(seal::SealStage));
        s
    }
}

impl Stages {
    pub fn set(&mut self, stage: Box<dyn Stage>) {
        self.map.insert(stage.kind(), stage);
    }
    pub fn with(mut self, stage: Box<dyn Stage>) -> Self {
        self.set(stage);
        self
    }
    pub fn get(&self, kind: StageKind) -> &dyn Stage {
        self.map
            .get(&kind)
            .expect("every kind has an implementation")
            .as_ref()
    }
}

/// The error for a stage body that has not been built yet.
pub fn unavailable(stage: StageKind, task: &TaskConfig, why: &str, help: &str) -> Error {
    Error::from(crate::stages::StageUnavailable {
        stage: stage.name().into(),
        task: task.name.clone(),
        why: why.into(),
        help: help.into(),
    })
}

/// Reads a project file named in the Kolmfile.
pub fn read_project_file(cx: &Cx, rel: &str) -> Result<Vec<u8>> {
    let p = cx.project_path(rel);
    std::fs::read(&p).map_err(|e| Error::io(&p, "read", e))
}

/// Relative path display used in messages.
pub fn rel_display(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// A stage whose body is not built yet: it fails rather than producing anything.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("stage `{stage}` is not available yet (task `{task}`): {why}")]
#[diagnostic(code(kolm::stage_unavailable), help("{help}"))]
pub struct StageUnavailable {
    pub stage: String,
    pub task: String,
    pub why: String,
    pub help: String,
}

impl crate::error::Domain for StageUnavailable {
    fn stable_code(&self) -> &'static str {
        "STAGE_UNAVAILABLE"
    }
}
