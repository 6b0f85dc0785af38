//! The `baseline` stage: what the frontier teacher scores on the task's own eval suite.
//!
//! K normalises the artifact against a baseline (k-score.md §3). With a teacher, kolm measures
//! it: every eval input, grounded as the student's is, goes to the teacher once at temperature
//! 0 with the student's prompt, and its answer is graded by the same assertions. Accuracy is the
//! weighted pass rate, latency the median of the answers' measured times, cost the mean dollars
//! of an answer × 1,000. The requests go through the teacher's cache like any other, and an
//! answer keeps the latency measured when it was first asked, so a rebuild measures the same
//! baseline without asking again. Without a teacher, the Kolmfile's `[score.baseline]` is used.
//! The frontier's size is never measurable: it always comes from the Kolmfile.

use serde_json::json;

use super::{BaselineOut, BuildOptions, Cx, Inputs, Stage, StageKind, StageOutput};
use crate::evals::{self, Observed};
use crate::kolmfile::{Baseline, Kolmfile, Provider, TaskConfig};
use crate::recall::ground::{ground, Grounding};
use crate::runtime::prompt::input_text;
use crate::teacher::{json_in, Teacher};
use crate::{Error, Result};

pub struct BaselineStage;

impl Stage for BaselineStage {
    fn kind(&self) -> StageKind {
        StageKind::Baseline
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        match task.teacher.provider {
            Provider::None => json!({ "configured": task.score.baseline }),
            _ => json!({
                "configured_size_bytes": task.score.baseline.size_bytes,
                "description": task.description,
                "output_schema": task.output_schema,
                "teacher": task.teacher,
                "top_k": task.recall.top_k,
                "grounding": crate::recall::ground::TEMPLATE_VERSION,
                "request": crate::teacher::request::REQUEST_FORMAT,
            }),
        }
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        Ok(match task.teacher.provider {
            Provider::None => vec![],
            Provider::Replay => {
                let mut f = vec![task.evals.clone()];
                f.extend(task.teacher.cassette.clone());
                f
            }
            _ => vec![task.evals.clone()],
        })
    }
    fn deterministic(&self, task: &TaskConfig) -> bool {
        !task.teacher.provider.uses_network()
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        let Some(teacher) = Teacher::for_task(cx.kolmfile, &cx.task.teacher)? else {
            return Ok(StageOutput::Baseline(BaselineOut {
                baseline: cx.task.score.baseline,
                source: "kolmfile".into(),
                teacher_requests: 0,
                teacher_cost_usd: 0.0,
            }));
        };
        let bytes = super::read_project_file(cx, &cx.task.evals)?;
        let tests = evals::parse(&cx.task.evals, &bytes)?;
        if tests.is_empty() {
            return Err(Error::invalid(
                format!("{}: the eval suite is empty", cx.task.evals),
                "add at least one test: the teacher's baseline is measured on them",
            ));
        }
        let recall = inputs.recall()?;
        let index = crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
        let grounding = Grounding::open(&index, cx.home, cx.task.recall.top_k as usize, None)?;
        let mut requests = Vec::with_capacity(tests.len());
        for t in &tests {
            let g = ground(
                grounding.as_ref(),
                &input_text(&serde_json::Value::String(t.input())),
            )?;
            requests.push(crate::label::request(
                cx.task,
                &teacher.model,
                &g.text,
                1,
                0.0,
            ));
        }
        let answers = super::label::ask(cx, &teacher, &requests, "measuring the baseline of")?;
        let mut graded = Vec::with_capacity(tests.len());
        let mut latencies = Vec::with_capacity(tests.len());
        let mut cost = 0.0;
        for (t, a) in tests.iter().zip(&answers) {
            let text = a.texts.first().map(String::as_str).unwrap_or("");
            // Graded as the student's output is: the JSON it carries, compact.
            let output = json_in(text)
                .map(|v| v.to_string())
                .unwrap_or_else(|| text.to_string());
            let c = teacher.cost(a);
            let g = evals::grade(
                t,
                &Observed {
                    output: &output,
                    latency_ms: a.latency_ms,
                    cost: c,
                },
            );
            graded.push((t.weight, g.pass));
            latencies.push(a.latency_ms);
            cost += c;
        }
        teacher.finish()?;
        latencies.sort_by(f64::total_cmp);
        let baseline = Baseline {
            accuracy: evals::accuracy(&graded),
            latency_ms: latencies[latencies.len() / 2],
            cost_per_1k: cost / answers.len() as f64 * 1000.0,
            size_bytes: cx.task.score.baseline.size_bytes,
        };
        if !cx.options.quiet {
            cx.progress.println(&format!(
                "    baseline {}: the teacher scores accuracy {:.3}, p50 {:.0} ms, ${:.2} per 1,000 runs ({} tests)",
                cx.task.name, baseline.accuracy, baseline.latency_ms, baseline.cost_per_1k, tests.len()
            ));
        }
        Ok(StageOutput::Baseline(BaselineOut {
            baseline,
            source: "teacher".into(),
            teacher_requests: answers.len() as u64,
            teacher_cost_usd: cost,
        }))
    }
}
