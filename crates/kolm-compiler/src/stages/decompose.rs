//! The `decompose` stage: the recipe pack (`recipes.json`): the user's recipes, each verified
//! on the labelled pairs in the sandbox, and the drafts read off the schema and the pairs.
//!
//! A recipe from `recipes_dir` was not written from the pairs, so every pair is held out for
//! it. With a teacher, the teacher is shown the first [`propose::SHOWN`] pairs and asked for
//! recipes, which are verified on the others.

use std::path::Path;

use serde_json::Value;

use super::{BuildOptions, Cx, DecomposeOut, Inputs, Stage, StageKind, StageOutput};
use crate::kolmfile::{Kolmfile, TaskConfig};
use crate::propose;
use crate::recipes::verify::{self, Verdict};
use crate::recipes::{Drafts, Limits, Pack, Recipe, Sandbox};
use crate::{Error, Result};

pub struct DecomposeStage;

impl Stage for DecomposeStage {
    fn kind(&self) -> StageKind {
        StageKind::Decompose
    }
    fn version(&self) -> u32 {
        4
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> Value {
        serde_json::json!({
            "decompose": task.decompose,
            "output_schema": task.output_schema,
            // The engine decides what a recipe can do within its limits.
            "sandbox": "rquickjs 0.14",
            // Who is asked for recipes, and how (only when one is).
            "teacher": asks_teacher(task).then(|| serde_json::json!({
                "teacher": task.teacher,
                "description": task.description,
                "request": crate::teacher::request::REQUEST_FORMAT,
            })),
        })
    }
    fn deterministic(&self, task: &TaskConfig) -> bool {
        !(asks_teacher(task) && task.teacher.provider.uses_network())
    }
    fn files(&self, k: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        let d = &task.decompose;
        match &d.recipes_dir {
            Some(dir) if d.enabled && d.recipes => recipe_files(&k.dir, dir),
            _ => Ok(Vec::new()),
        }
    }
    fn dirs(&self, _: &Kolmfile, task: &TaskConfig) -> Vec<String> {
        let d = &task.decompose;
        match &d.recipes_dir {
            Some(dir) if d.enabled && d.recipes => vec![dir.clone()],
            _ => Vec::new(),
        }
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        let d = &cx.task.decompose;
        if !d.enabled {
            return out(cx, &Pack::empty(), Vec::new());
        }
        let label = inputs.label()?;
        let pairs: Vec<(Value, Value)> =
            crate::jsonl::parse("pairs.jsonl", &cx.store.blob(&label.pairs)?)?
                .into_iter()
                .filter_map(|(_, v)| Some((v.get("input")?.clone(), v.get("output")?.clone())))
                .collect();
        let mut pack = Pack::empty();
        pack.limits = Limits {
            time_ms: d.time_limit_ms,
            memory_mb: d.memory_limit_mb,
        };
        if d.drafts {
            pack.drafts = Drafts::build(&cx.task.output_schema, &pairs);
        }
        let mut verdicts = Vec::new();
        if d.recipes {
            let sandbox = Sandbox::new(pack.limits)
                .map_err(|e| Error::failed("the recipe sandbox could not start", e.to_string()))?;
            let schema = jsonschema::validator_for(&cx.task.output_schema).map_err(|e| {
                Error::invalid_because(
                    format!(
                        "the output schema of task `{}` does not compile",
                        cx.task.name
                    ),
                    e,
                    "fix output_schema",
                )
            })?;
            let input_schema = input_schema(&pairs);
            // Recipes query the index they will query at run time: the artifact's own.
            let recall = inputs.recall()?;
            let rag = if recall.chunks > 0 {
                let index =
                    crate::runtime::open::index_file(cx.home, &cx.store.blob(&recall.index)?)?;
                Some(crate::runtime::recipes::rag_over(
                    crate::recall::index::open(&index)?,
                ))
            } else {
                None
            };
            for rel in cx.files.keys() {
                let source =
                    String::from_utf8(super::read_project_file(cx, rel)?).map_err(|_| {
                        Error::invalid(
                            format!("recipe `{rel}` is not UTF-8 text"),
                            "save it as UTF-8 JavaScript",
                        )
                    })?;
                let name = Path::new(rel)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| rel.clone());
                let mut recipe = Recipe::new(
                    &name,
                    &format!("file:{rel}"),
                    &source,
                    &input_schema,
                    &cx.task.output_schema,
                );
                crate::interrupt::check()?;
                let measured = verify::measure(&sandbox, &recipe, &pairs, rag.as_ref(), &schema);
                let verdict = verify::judge(&mut recipe, measured);
                if verdict.kept != "dropped" {
                    pack.recipes.push(recipe);
                }
                verdicts.push(verdict);
            }
            if asks_teacher(cx.task) {
                teacher_recipes(
                    cx,
                    &pairs,
                    &input_schema,
                    &sandbox,
                    rag.as_ref(),
                    &schema,
                    &mut pack,
                    &mut verdicts,
                )?;
            }
            pack.recipes.sort_by(|a, b| {
                b.exact
                    .cmp(&a.exact)
                    .then_with(|| a.name.cmp(&b.name))
                    .then_with(|| a.id.cmp(&b.id))
            });
        }
        if !cx.options.quiet {
            cx.progress
                .println(&summary(&cx.task.name, &pack, &verdicts));
        }
        out(cx, &pack, verdicts)
    }
}

/// Whether the build asks the task's teacher for recipes.
fn asks_teacher(task: &TaskConfig) -> bool {
    let d = &task.decompose;
    d.enabled && d.recipes && task.teacher.provider != crate::kolmfile::Provider::None
}

/// Asks the teacher for recipes, showing it the first pairs, and verifies each on the rest.
#[allow(clippy::too_many_arguments)]
fn teacher_recipes(
    cx: &Cx,
    pairs: &[(Value, Value)],
    input_schema: &Value,
    sandbox: &Sandbox,
    rag: Option<&crate::recipes::RagQuery>,
    schema: &jsonschema::Validator,
    pack: &mut Pack,
    verdicts: &mut Vec<Verdict>,
) -> Result<()> {
    let Some(t) = crate::teacher::Teacher::for_task(cx.kolmfile, &cx.task.teacher)? else {
        return Ok(());
    };
    let shown = pairs.len().min(propose::SHOWN);
    let (shown, held_out) = pairs.split_at(shown);
    let request = propose::request(cx.task, &t.model, shown);
    let answers = super::label::ask(cx, &t, &[request], "proposing recipes for")?;
    t.finish()?;
    let dropped = |why: String| Verdict {
        name: "teacher".into(),
        origin: "teacher".into(),
        kept: "dropped".into(),
        why,
        measured: Default::default(),
    };
    let proposed = match answers.first().map(propose::parse) {
        Some(Ok(p)) => p,
        Some(Err(why)) => {
            verdicts.push(dropped(why));
            return Ok(());
        }
        None => return Ok(()),
    };
    if held_out.is_empty() {
        verdicts.push(dropped(format!(
            "{} recipe(s) proposed, but every pair was shown to the teacher: none is held out to verify them on",
            proposed.len()
        )));
        return Ok(());
    }
    for p in proposed {
        let mut recipe = Recipe::new(
            &p.name,
            "teacher",
            &p.source,
            input_schema,
            &cx.task.output_schema,
        );
        crate::interrupt::check()?;
        let measured = verify::measure(sandbox, &recipe, held_out, rag, schema);
        let verdict = verify::judge(&mut recipe, measured);
        if verdict.kept != "dropped" && !pack.recipes.iter().any(|r| r.id == recipe.id) {
            pack.recipes.push(recipe);
        }
        verdicts.push(verdict);
    }
    Ok(())
}

fn out(cx: &Cx, pack: &Pack, verdicts: Vec<Verdict>) -> Result<StageOutput> {
    let recipes = cx.store.put_blob(&pack.to_bytes())?;
    Ok(StageOutput::Decompose(DecomposeOut {
        recipes,
        recipe_count: pack.recipes.len() as u64,
        draft_count: pack.drafts.count(),
        registry: pack.registry.clone(),
        verdicts,
    }))
}

/// The lines the build prints: each candidate's fate and why.
fn summary(task: &str, pack: &Pack, verdicts: &[Verdict]) -> String {
    let exact = pack.recipes.iter().filter(|r| r.exact).count();
    let mut s = format!(
        "    decompose {task}: {} recipe(s) kept ({exact} exact), {} dropped; {} draft(s) ({} outputs, {} skeleton pieces); {} neighbours",
        pack.recipes.len(),
        verdicts.iter().filter(|v| v.kept == "dropped").count(),
        pack.drafts.count(),
        pack.drafts.table.len(),
        pack.drafts.skeleton.len(),
        pack.drafts.neighbours.len(),
    );
    for v in verdicts {
        s.push_str(&format!(
            "\n      {} ({}): {}: {}",
            v.name, v.origin, v.kept, v.why
        ));
    }
    s
}

/// The `*.js` files of the recipe folder, project-relative and sorted.
fn recipe_files(project: &Path, dir: &str) -> Result<Vec<String>> {
    let abs = project.join(dir);
    let entries = std::fs::read_dir(&abs).map_err(|e| {
        Error::invalid_because(
            format!("decompose.recipes_dir `{dir}` cannot be read"),
            e,
            "create the folder (its *.js files are the recipes), or remove recipes_dir",
        )
    })?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(&abs, "list", e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".js") && e.path().is_file() {
            files.push(format!("{dir}/{name}"));
        }
    }
    files.sort();
    Ok(files)
}

/// The input contract recipes are verified against: what every labelled input is.
fn input_schema(pairs: &[(Value, Value)]) -> Value {
    let ty = |v: &Value| match v {
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    };
    let mut types: Vec<&str> = pairs.iter().map(|(i, _)| ty(i)).collect();
    types.sort();
    types.dedup();
    match types.as_slice() {
        [one] => serde_json::json!({ "type": one }),
        _ => serde_json::json!({}),
    }
}
