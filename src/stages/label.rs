//! The `label` stage: the (input, output) pairs the student learns from (`pairs.jsonl`).
//!
//! Seeds with gold outputs are taken as they are, each grounded in the task's index the way the
//! student will be (the chunk ids its prompt carries travel with the pair). Asking a teacher for k grounded samples and
//! verifying them comes with the teacher issue; until then a task with a teacher, or a seed
//! without a gold output, fails clearly.

use std::collections::BTreeMap;

use super::{
    read_project_file, unavailable, BuildOptions, Cx, Inputs, LabelOut, Stage, StageKind,
    StageOutput,
};
use crate::kolmfile::{Kolmfile, Provider, TaskConfig};
use crate::recall::ground::{ground, Grounding};
use crate::{Error, Result};

pub struct LabelStage;

impl Stage for LabelStage {
    fn kind(&self) -> StageKind {
        StageKind::Label
    }
    fn version(&self) -> u32 {
        2
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::json!({
            "description": task.description,
            "output_schema": task.output_schema,
            "teacher": task.teacher,
            "top_k": task.recall.top_k,
            "grounding": crate::recall::ground::TEMPLATE_VERSION,
        })
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        Ok(vec![task.seeds.clone()])
    }
    fn deterministic(&self, task: &TaskConfig) -> bool {
        task.teacher.provider == Provider::None
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        if cx.task.teacher.provider != Provider::None {
            return Err(unavailable(
                StageKind::Label,
                cx.task,
                "labelling with a teacher is not built yet",
                "set `[teacher] provider = \"none\"` and give every seed a gold `output`",
            ));
        }
        let seeds = crate::jsonl::parse(&cx.task.seeds, &read_project_file(cx, &cx.task.seeds)?)?;
        if seeds.is_empty() {
            return Err(Error::invalid(
                format!("{}: no seeds", cx.task.seeds),
                "add one JSON object per line: {\"input\": ..., \"output\": ...}",
            ));
        }
        let recall = inputs.recall()?;
        let index = crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
        let grounding = Grounding::open(&index, cx.home, cx.task.recall.top_k as usize, None)?;
        let mut pairs = Vec::with_capacity(seeds.len());
        for (line, seed) in &seeds {
            let at = format!("{}:{line}", cx.task.seeds);
            let input = seed.get("input").ok_or_else(|| {
                Error::invalid(
                    format!("{at}: the seed has no `input`"),
                    "each seed is {\"input\": ..., \"output\": ...}",
                )
            })?;
            let output = seed.get("output").ok_or_else(|| {
                Error::invalid(
                    format!(
                        "{at}: the seed has no gold `output`, and there is no teacher to label it"
                    ),
                    "add `output`, or configure a teacher",
                )
            })?;
            let text = crate::runtime::prompt::input_text(input);
            let grounded = ground(grounding.as_ref(), &text)?;
            pairs.push(serde_json::json!({
                "input": input, "output": output, "source": "seed", "line": line,
                "chunk_ids": grounded.chunk_ids,
            }));
        }
        let blob = cx.store.put_blob(&crate::jsonl::write(&pairs))?;
        Ok(StageOutput::Label(LabelOut {
            pairs: blob,
            kept: pairs.len() as u64,
            dropped: BTreeMap::new(),
            teacher_requests: 0,
        }))
    }
}
