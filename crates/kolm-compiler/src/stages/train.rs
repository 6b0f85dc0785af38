//! The `train` stage: the LoRA adapter (`lora.bin`, GGUF).
//!
//! With training on, the adapter is trained with candle on the label stage's pairs
//! ([`crate::train`]), each rendered as the runtime will render it: grounded in the task's
//! index, in the base's chat template, tokenised by llama.cpp. With training off it is the
//! zero-init adapter (B = 0), which llama.cpp applies as the identity: the artifact behaves
//! exactly like its base. Both start from the same seeded A, so they differ only by training.
//!
//! An interrupted training saves a checkpoint under `KOLM_HOME/cache/train/<stage key>`; the
//! rerun, having the same key, resumes it.

use super::{BuildOptions, Cx, Inputs, Stage, StageKind, StageOutput, TrainOut};
use crate::kolmfile::TaskConfig;
use crate::recall::ground::Grounding;
use crate::train::{self, data};
use crate::{Error, Result};

pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> StageKind {
        StageKind::Train
    }
    fn version(&self) -> u32 {
        4
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::json!({
            "distill": task.distill,
            // A trained adapter depends on the prompts it saw.
            "description": task.description,
            "output_schema": task.output_schema,
            "top_k": task.recall.top_k,
            "grounding": crate::recall::ground::TEMPLATE_VERSION,
            "runtime": crate::versions::LLAMA_CPP_2,
        })
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        let d = &cx.task.distill;
        let base = inputs.base()?;
        let path = cx.base_path(base);
        let header = crate::gguf::read_header(&path).map_err(|e| {
            Error::invalid_because(
                format!("base `{}`", path.display()),
                e,
                "check the base model",
            )
        })?;
        let label = inputs.label()?;
        let (bytes, stats) = if d.train {
            let pairs = crate::jsonl::parse("pairs.jsonl", &cx.store.blob(&label.pairs)?)?
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>();
            let recall = inputs.recall()?;
            let index = crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
            let grounding = Grounding::open(&index, cx.home, cx.task.recall.top_k as usize, None)?;
            let task = data::Task {
                description: &cx.task.description,
                schema: &cx.task.output_schema,
                grounding: grounding.as_ref(),
            };
            let examples = data::examples(&path, &task, &pairs, d.max_seq_len as usize)?;
            let checkpoint = cx.home.cache().join("train").join(crate::digest::key_of(&(
                &base.sha256,
                &label.pairs,
                d,
            )));
            let name = &cx.task.name;
            let bar = cx.progress.measured(0, &format!("training {name}"));
            let pace = crate::progress::Pace::default();
            let what = format!("training {name}");
            let trained = train::train(&path, &examples, d, Some(&checkpoint), &|s| {
                s.show(&bar, &pace, &what)
            })?;
            bar.finish_and_clear();
            if !cx.options.quiet {
                cx.progress.println(&format!(
                    "    train {}: {} pairs, {} epochs, {} steps, {} tokens, final loss {:.4}",
                    cx.task.name,
                    examples.len(),
                    d.epochs,
                    trained.steps,
                    trained.tokens,
                    trained.final_loss
                ));
            }
            let stats = (d.epochs, trained.tokens, Some(trained.final_loss));
            (trained.adapter, stats)
        } else {
            let zero = crate::gguf::tiny::zero_lora(&header, &d.targets, d.rank, d.alpha, d.seed as u64)
                .map_err(|e| Error::invalid(e, "choose `distill.targets` the base has (attn_q, attn_k, attn_v, attn_output, ffn_*)"))?;
            (zero, (0, 0, None))
        };
        Ok(StageOutput::Train(TrainOut {
            adapter: cx.store.put_blob(&bytes)?,
            rank: d.rank,
            alpha: d.alpha,
            targets: d.targets.clone(),
            trained: d.train,
            pairs: label.kept,
            epochs: stats.0,
            tokens: stats.1,
            final_loss: stats.2,
            seed: d.seed,
        }))
    }
}
