//! From the Kolmfile as written to the checked configuration of every task.
//!
//! Two passes. Serde (over `toml_edit`) does the shape: unknown keys and wrong types, each
//! error re-worded here with a suggestion. Then every value is checked against its meaning
//! (ranges, enums, files that must exist, weights that must sum to 1) while its span is still
//! at hand, and the task-level sections are laid over the top-level defaults.

// A KolmfileError is large (it carries the source for rendering) but is built once, on the
// way out; boxing it at every `?` would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::ops::Range;

use serde_spanned::Spanned;

use super::check::{existing_file, in_range, relative_path, Cx, R};
use super::config::*;
use super::raw::*;
use super::sections::{base, decompose, distill, recall, score, teacher};
use crate::diagnostic::KolmfileError;

/// Everything resolve produces: the project and its tasks.
pub(super) fn resolve(cx: &Cx, raw: RawKolmfile) -> R<(Project, Vec<TaskConfig>)> {
    let project = match raw.project {
        None => {
            return Err(KolmfileError::whole_file(
                cx.path,
                cx.src,
                "missing [project] table",
                Some("add:\n[project]\nname = \"my-project\"".into()),
            ))
        }
        Some(p) => {
            let span = p.span();
            let p = p.into_inner();
            let name = required(cx, p.name, span.clone(), "project", "name")?;
            check_slug(cx, &name, "project name")?;
            let dist = p
                .dist
                .map(|d| relative_path(cx, d))
                .transpose()?
                .unwrap_or_else(|| "dist".into());
            Project {
                name: name.into_inner(),
                dist,
                cache: cache(cx, raw.cache)?,
            }
        }
    };
    if raw.task.is_empty() {
        return Err(KolmfileError::whole_file(
            cx.path,
            cx.src,
            "no tasks: a Kolmfile needs at least one [[task]]",
            Some("add:\n[[task]]\nname = \"triage\"\ndescription = \"...\"\nseeds = \"data/seeds.jsonl\"\nevals = \"data/evals.jsonl\"".into()),
        ));
    }
    let d = Defaults {
        base: raw.base,
        teacher: raw.teacher.map(Spanned::into_inner).unwrap_or_default(),
        recall: raw.recall.map(Spanned::into_inner).unwrap_or_default(),
        distill: raw.distill.map(Spanned::into_inner).unwrap_or_default(),
        decompose: raw.decompose.map(Spanned::into_inner).unwrap_or_default(),
        score: raw.score.map(Spanned::into_inner).unwrap_or_default(),
        gate: raw.gate.map(Spanned::into_inner).unwrap_or_default(),
        sign: raw.sign.map(Spanned::into_inner).unwrap_or_default(),
    };
    let mut seen = HashSet::new();
    let mut tasks = Vec::new();
    for t in raw.task {
        let span = t.span();
        // The `name` value's own place: the table's span is its header only. (A task without
        // a name is refused by `resolve_task` first.)
        let name_span = t.get_ref().name.as_ref().map_or(span.clone(), |n| n.span());
        let task = resolve_task(cx, t.into_inner(), span, &d)?;
        if !seen.insert(task.name.clone()) {
            return Err(cx.err(
                name_span,
                format!("duplicate task name `{}`", task.name),
                "second task with this name",
                Some(
                    "every task yields one artifact named after it: give each task its own name"
                        .into(),
                ),
            ));
        }
        tasks.push(task);
    }
    Ok((project, tasks))
}

/// `[cache]`: an http(s) address without credentials (a secret never lives in the Kolmfile).
fn cache(cx: &Cx, raw: Option<Spanned<super::raw::RawCache>>) -> R<CacheConfig> {
    let Some(c) = raw.map(Spanned::into_inner) else {
        return Ok(CacheConfig::default());
    };
    let remote = match c.remote {
        None => None,
        Some(r) => {
            let text = r.get_ref().clone();
            let scheme_ok = text.starts_with("http://") || text.starts_with("https://");
            let authority = text
                .split("://")
                .nth(1)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("");
            if !scheme_ok || authority.is_empty() {
                return Err(cx.err(
                    r.span(),
                    format!("`{text}` is not an http:// or https:// address"),
                    "this address",
                    Some("kolm speaks the Bazel HTTP cache protocol: remote = \"http://cache.internal:8080/kolm\"".into()),
                ));
            }
            if authority.contains('@') {
                return Err(cx.err(
                    r.span(),
                    "the remote cache address carries credentials",
                    "user and password here",
                    Some("a Kolmfile holds no secrets: set KOLM_REMOTE_CACHE=http://user:password@host/… in the environment instead".into()),
                ));
            }
            Some(text)
        }
    };
    Ok(CacheConfig {
        remote,
        read_only: c.read_only.map(Spanned::into_inner).unwrap_or(false),
    })
}

struct Defaults {
    base: Option<Spanned<RawBase>>,
    teacher: RawTeacher,
    recall: RawRecall,
    distill: RawDistill,
    decompose: RawDecompose,
    score: RawScore,
    gate: RawGate,
    sign: RawSign,
}

fn resolve_task(cx: &Cx, t: RawTask, span: Range<usize>, d: &Defaults) -> R<TaskConfig> {
    let name = required(cx, t.name, span.clone(), "[[task]]", "name")?;
    check_slug(cx, &name, "task name")?;
    let description =
        required(cx, t.description, span.clone(), "[[task]]", "description")?.into_inner();
    let schema_file = t.output_schema_file.as_ref().map(|f| f.get_ref().clone());
    let output_schema = match (t.output_schema, t.output_schema_file) {
        (Some(_), Some(f)) => {
            return Err(cx.err(
                f.span(),
                "both `output_schema` and `output_schema_file` are set",
                "second schema",
                Some("keep one: an inline table, or a path to a JSON file".into()),
            ))
        }
        (Some(s), None) => check_schema(cx, s.span(), s.into_inner())?,
        (None, Some(f)) => {
            let fspan = f.span();
            let rel = existing_file(cx, f, "output schema file")?;
            let text = std::fs::read_to_string(cx.dir.join(&rel)).map_err(|e| {
                cx.err(fspan.clone(), format!("cannot read `{rel}`: {e}"), "this file", None)
            })?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                cx.err(fspan.clone(), format!("`{rel}` is not valid JSON: {e}"), "this file", None)
            })?;
            check_schema(cx, fspan, v)?
        }
        (None, None) => {
            return Err(cx.err(
                cx.key_span(span.clone(), "name"),
                format!("task `{}` has no output schema", name.get_ref()),
                "this task",
                Some("add `output_schema = { type = \"object\", ... }` or `output_schema_file = \"schema.json\"`".into()),
            ))
        }
    };
    let seeds = existing_file(
        cx,
        required(cx, t.seeds, span.clone(), "[[task]]", "seeds")?,
        "seeds file",
    )?;
    let evals = existing_file(
        cx,
        required(cx, t.evals, span.clone(), "[[task]]", "evals")?,
        "evals file",
    )?;

    // The base's keys are alternatives, so a task's [task.base] replaces the default whole.
    let base = match t.base.or_else(|| d.base.clone()) {
        Some(b) => base(cx, b)?,
        None => {
            return Err(cx.err(
                cx.key_span(span, "name"),
                format!("task `{}` has no base model", name.get_ref()),
                "this task",
                Some("add a [base] table with `path = \"model.gguf\"` or `url = \"hf://owner/repo/file.gguf\"` and `sha256`".into()),
            ))
        }
    };
    let assert = match t.assert {
        Some(a) => {
            let aspan = a.span();
            let list = a.into_inner();
            for v in &list {
                let parsed = crate::evals::Assertion::parse(v).map_err(|e| {
                    cx.err(
                        aspan.clone(),
                        format!("a task assertion is invalid: {e}"),
                        "here",
                        None,
                    )
                })?;
                if !parsed.kind.checks_text() {
                    return Err(cx.err(
                        aspan.clone(),
                        format!("`{}` cannot check a teacher's answer", parsed.label()),
                        "here",
                        Some("task assertions check the answer's text: use equals, contains, regex, is-json and the like".into()),
                    ));
                }
            }
            list
        }
        None => Vec::new(),
    };
    let over = |s: Option<Spanned<RawTeacher>>| s.map(Spanned::into_inner).unwrap_or_default();
    Ok(TaskConfig {
        name: name.into_inner(),
        description,
        output_schema,
        schema_file,
        seeds,
        evals,
        assert,
        base,
        teacher: teacher(cx, over(t.teacher).overlay(&d.teacher))?,
        recall: recall(
            cx,
            t.recall
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.recall),
        )?,
        distill: distill(
            cx,
            t.distill
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.distill),
        )?,
        decompose: decompose(
            cx,
            t.decompose
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.decompose),
        )?,
        score: score(
            cx,
            t.score
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.score),
        )?,
        gate: GateConfig {
            min_k: t
                .gate
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.gate)
                .min_k
                .map(|k| in_range(cx, k, 0.0, 1.0, "gate.min_k"))
                .transpose()?
                .unwrap_or(super::defaults::MIN_K),
        },
        sign: SignConfig {
            key_file: t
                .sign
                .map(Spanned::into_inner)
                .unwrap_or_default()
                .overlay(&d.sign)
                .key_file
                .map(Spanned::into_inner),
        },
    })
}

fn required<T>(cx: &Cx, v: S<T>, table: Range<usize>, section: &str, key: &str) -> R<Spanned<T>> {
    v.ok_or_else(|| {
        let header = table.start
            ..cx.src[table.start..table.end]
                .find('\n')
                .map(|i| table.start + i)
                .unwrap_or(table.end);
        cx.err(
            header,
            format!("missing required key `{key}` in {section}"),
            "in this table",
            Some(format!("add `{key} = ...` to {section}")),
        )
    })
}

fn check_slug(cx: &Cx, v: &Spanned<String>, what: &str) -> R<()> {
    let s = v.get_ref();
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        });
    if ok {
        Ok(())
    } else {
        Err(cx.err(v.span(), format!("invalid {what} `{s}`"), "not a valid name", Some("use lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit (it names files)".into())))
    }
}

fn check_schema(cx: &Cx, span: Range<usize>, v: serde_json::Value) -> R<serde_json::Value> {
    if !v.is_object() || v.get("type").is_none() {
        return Err(cx.err(span, "the output schema must be a JSON-schema object with a `type`", "this schema", Some("for example: { type = \"object\", properties = { label = { type = \"string\" } } }".into())));
    }
    // A schema the runtime and the evals could not compile would fail a build minutes later.
    if let Err(e) = jsonschema::validator_for(&v) {
        return Err(cx.err(
            span,
            format!("the output schema is not a valid JSON schema: {e}"),
            "this schema",
            Some("write the schema in JSON Schema (draft 2020-12): `type` is one of object, array, string, number, integer, boolean, null".into()),
        ));
    }
    Ok(v)
}
