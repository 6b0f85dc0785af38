//! The `train` stage: the LoRA adapter (`lora.bin`, GGUF).
//!
//! With training off it writes the zero-init adapter (B = 0), which llama.cpp applies as the
//! identity: the artifact behaves exactly like its base. Training with candle comes with the
//! distill issue.

use super::{unavailable, BuildOptions, Cx, Inputs, Stage, StageKind, StageOutput, TrainOut};
use crate::kolmfile::TaskConfig;
use crate::{Error, Result};

pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> StageKind {
        StageKind::Train
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::to_value(&task.distill).expect("serialises")
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        let d = &cx.task.distill;
        if d.train {
            return Err(unavailable(
                StageKind::Train,
                cx.task,
                "LoRA training is not built yet",
                "set `[distill] train = false` to seal a zero-init (identity) adapter",
            ));
        }
        let base = inputs.base()?;
        let path = cx.base_path(base);
        let header = crate::gguf::read_header(&path).map_err(|e| {
            Error::invalid(
                format!("base `{}`: {e}", path.display()),
                "check the base model",
            )
        })?;
        let bytes = crate::gguf::tiny::zero_lora(&header, &d.targets, d.rank, d.alpha, d.seed as u64)
            .map_err(|e| Error::invalid(e, "choose `distill.targets` the base has (attn_q, attn_k, attn_v, attn_output, ffn_*)"))?;
        let adapter = cx.store.put_blob(&bytes)?;
        let pairs = inputs.label()?.kept;
        Ok(StageOutput::Train(TrainOut {
            adapter,
            rank: d.rank,
            alpha: d.alpha,
            targets: d.targets.clone(),
            trained: false,
            pairs,
            epochs: 0,
            tokens: 0,
            final_loss: None,
            seed: d.seed,
        }))
    }
}
