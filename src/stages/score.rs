//! The `score` stage: run the artifact's own runtime on the eval suite and measure the five
//! K-score components (accuracy, size, latency, cost, coverage).
//!
//! Measuring needs the student runtime (llama.cpp), which comes with the runtime issue. Until
//! then this stage fails clearly; the K-score arithmetic and the gate it feeds live in
//! [`crate::kscore`] and are complete.

use super::{unavailable, BuildOptions, Cx, Inputs, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::Result;

pub struct ScoreStage;

impl Stage for ScoreStage {
    fn kind(&self) -> StageKind {
        StageKind::Score
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::json!({ "score": task.score, "output_schema": task.output_schema, "teacher": task.teacher })
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        Ok(vec![task.evals.clone()])
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        Err(unavailable(
            StageKind::Score,
            cx.task,
            "measuring the student needs the llama.cpp runtime, which is not built yet",
            "everything up to scoring is built and cached; this build will resume from here once the runtime lands",
        ))
    }
}
