//! The `score` stage: run the student through the same runtime as `kolm run` on the eval suite,
//! and measure the five K-score components.
//!
//! Only deterministic quantities are measured into K: the verdicts (greedy decoding under a
//! grammar), the payload sizes, and the latency *estimate* from counted work (prompt tokens,
//! decode passes) on the Kolmfile's reference device ([`kscore::estimate_latency_ms`]).
//! Wall-clock times are measured too, and go to the report beside the estimate, never into K,
//! so `kolm verify --rescore` recomputes the sealed K exactly: both measure with
//! [`crate::runtime::measure`].

use serde_json::json;

use super::{BuildOptions, Cx, Inputs, ScoreOut, Stage, StageKind, StageOutput};
use crate::evals;
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::recall::ground::Grounding;
use crate::runtime::measure::{measure, Subject};
use crate::runtime::{GenOptions, Student};
use crate::{Error, Result};

pub struct ScoreStage;

impl Stage for ScoreStage {
    fn kind(&self) -> StageKind {
        StageKind::Score
    }
    fn version(&self) -> u32 {
        8
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        json!({
            "score": task.score,
            "description": task.description,
            "output_schema": task.output_schema,
            "runtime": crate::versions::LLAMA_CPP_2,
            // Grounded prompts carry the index's best chunks.
            "top_k": task.recall.top_k,
            "grounding": crate::recall::ground::TEMPLATE_VERSION,
        })
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        Ok(vec![task.evals.clone()])
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        // What the artifact carries: with `[base] quantize`, the requantised copy.
        let (stage_base, recall, train, decompose) = (
            inputs.base()?,
            inputs.recall()?,
            inputs.train()?,
            inputs.decompose()?,
        );
        let base = stage_base.served();
        let bytes = super::read_project_file(cx, &cx.task.evals)?;
        let tests = evals::parse(&cx.task.evals, &bytes)?;
        if tests.is_empty() {
            return Err(Error::invalid(
                format!("{}: the eval suite is empty", cx.task.evals),
                "add at least one test: the artifact's K-score is measured on them",
            ));
        }
        let tests_blob = cx.store.put_blob(&bytes)?;
        let adapter_path =
            crate::runtime::open::adapter_file(cx.home, &cx.store.blob(&train.adapter)?)?;
        let mut student = Student::load(
            &cx.served_path(stage_base),
            Some(&adapter_path),
            Some(&cx.task.output_schema),
        )?;
        let index_path = crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
        let grounding = Grounding::open(&index_path, cx.home, cx.task.recall.top_k as usize, None)?;
        let size_bytes = base.size
            + train.adapter.size
            + decompose.recipes.size
            + recall.index.size
            + tests_blob.size;
        let bar = cx
            .progress
            .count(tests.len() as u64, &format!("scoring {}", cx.task.name));
        let recipes = crate::runtime::recipes::Recipes::load(
            &cx.store.blob(&decompose.recipes)?,
            &cx.task.output_schema,
        )?;
        let recipes = if recipes.pack().recipes.is_empty() || recall.chunks == 0 {
            recipes
        } else {
            recipes.with_rag(Some(crate::runtime::recipes::rag_over(
                crate::recall::index::open(&index_path)?,
            )))
        };
        let subject = Subject {
            description: &cx.task.description,
            schema: &cx.task.output_schema,
            size_bytes,
            parameters: base.model.parameters,
            model_bytes: base.size,
            device: &cx.task.score.device,
            grounding: grounding.as_ref(),
            recipes: &recipes,
        };
        let scored = measure(
            &mut student,
            &tests,
            &subject,
            &GenOptions::default(),
            &|| bar.inc(1),
        )?;
        bar.finish_and_clear();
        if !cx.options.quiet {
            cx.progress
                .println(&scored.summary(&cx.task.name, &cx.task.score.device));
        }
        let report = cx
            .store
            .put_blob(&crate::digest::canonical_json(&scored.report))?;
        Ok(StageOutput::Score(ScoreOut {
            tests: tests_blob,
            report,
            measured: scored.measured,
            baseline: inputs.baseline()?.baseline,
            baseline_source: inputs.baseline()?.source.clone(),
        }))
    }
}
