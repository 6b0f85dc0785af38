//! The `label` stage: the (input, output) pairs the student learns from (`pairs.jsonl`).
//!
//! Glue between the build and [`crate::label`]: it reads the seeds, opens the task's index so
//! every input is grounded as the student's will be, makes the task's teacher, and stores what
//! labelling produced. With a live teacher the output is not a function of the inputs (ask
//! twice, get two answers), so the executor pins it in `Kolmfile.lock`; a `replay` teacher
//! answers from its cassette, which is an input like the seeds, and needs no pin.

use super::{read_project_file, BuildOptions, Cx, Inputs, LabelOut, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, Provider, TaskConfig};
use crate::label::{self, Asker};
use crate::recall::ground::Grounding;
use crate::teacher::{Request, Teacher};
use crate::Result;

pub struct LabelStage;

impl Stage for LabelStage {
    fn kind(&self) -> StageKind {
        StageKind::Label
    }
    fn version(&self) -> u32 {
        3
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::json!({
            "description": task.description,
            "output_schema": task.output_schema,
            "assert": task.assert,
            "teacher": task.teacher,
            "top_k": task.recall.top_k,
            "grounding": crate::recall::ground::TEMPLATE_VERSION,
            "request": crate::teacher::request::REQUEST_FORMAT,
        })
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        let mut f = vec![task.seeds.clone()];
        if task.teacher.provider == Provider::Replay {
            f.extend(task.teacher.cassette.clone());
        }
        Ok(f)
    }
    fn deterministic(&self, task: &TaskConfig) -> bool {
        !task.teacher.provider.uses_network()
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        let seeds = label::seeds(&cx.task.seeds, &read_project_file(cx, &cx.task.seeds)?)?;
        let recall = inputs.recall()?;
        let index = crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
        let grounding = Grounding::open(&index, cx.home, cx.task.recall.top_k as usize, None)?;
        let teacher = Teacher::for_task(cx.kolmfile, &cx.task.teacher)?;
        let labelled = match &teacher {
            None => label::label(cx.task, &seeds, grounding.as_ref(), None)?,
            Some(t) => {
                let ask = |reqs: &[Request]| ask(cx, t, reqs, "labelling");
                let cost = |a: &crate::teacher::Answer| t.cost(a);
                let asker = Asker::new(&ask, &cost);
                label::label(
                    cx.task,
                    &seeds,
                    grounding.as_ref(),
                    Some((&t.model, &asker)),
                )?
            }
        };
        if let Some(t) = teacher {
            t.finish()?;
        }
        if !cx.options.quiet && cx.task.teacher.provider != Provider::None {
            let dropped: Vec<String> = labelled
                .dropped
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect();
            cx.progress.println(&format!(
                "    label {}: {} pairs from {} seeds and {} synthesized inputs; dropped: {}",
                cx.task.name,
                labelled.pairs.len(),
                seeds.len(),
                labelled.synthesized,
                if dropped.is_empty() {
                    "none".into()
                } else {
                    dropped.join(", ")
                }
            ));
        }
        if !cx.options.quiet && !labelled.disagreements.is_empty() {
            cx.progress.println(&format!(
                "  note: the teacher disagrees with {} gold seed(s) of `{}` (lines {:?}); the gold outputs are kept",
                labelled.disagreements.len(),
                cx.task.seeds,
                labelled.disagreements
            ));
        }
        let blob = cx.store.put_blob(&crate::jsonl::write(&labelled.pairs))?;
        Ok(StageOutput::Label(LabelOut {
            pairs: blob,
            kept: labelled.pairs.len() as u64,
            dropped: labelled.dropped,
            teacher_requests: labelled.requests,
            teacher_usage: labelled.usage,
            teacher_cost_usd: labelled.cost_usd,
            synthesized: labelled.synthesized,
            disagreements: labelled.disagreements,
        }))
    }
}

/// Asks a batch with a progress bar; shared with the baseline stage.
pub fn ask(
    cx: &Cx,
    t: &Teacher,
    requests: &[Request],
    what: &str,
) -> Result<Vec<crate::teacher::Answer>> {
    let bar = cx.progress.count(
        requests.len() as u64,
        &format!("{what} {} (teacher)", cx.task.name),
    );
    let out = t.ask_all(cx.store, cx.meter, requests, &|| bar.inc(1));
    bar.finish_and_clear();
    out
}
