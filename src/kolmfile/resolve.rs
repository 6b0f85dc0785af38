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
use std::path::Path;

use serde_spanned::Spanned;

use super::config::*;
use super::diagnostic::{did_you_mean, KolmfileError};
use super::raw::*;

type R<T> = Result<T, KolmfileError>;

/// Reading context: the file and its text, for pointing at mistakes.
pub(super) struct Cx<'a> {
    pub path: &'a Path,
    pub src: &'a str,
    pub dir: &'a Path,
}

impl Cx<'_> {
    fn err(
        &self,
        span: Range<usize>,
        msg: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) -> KolmfileError {
        KolmfileError::at(self.path, self.src, span, msg, label, help)
    }

    /// An error about text that may be a secret: the bytes in `mask` are starred out of the
    /// source the error renders (offsets kept), and the snippet is withheld.
    fn secret_err(
        &self,
        mask: Range<usize>,
        span: Range<usize>,
        msg: impl Into<String>,
        label: &str,
        help: Option<String>,
    ) -> KolmfileError {
        let mut masked = self.src.to_string();
        masked.replace_range(mask.clone(), &"*".repeat(mask.len()));
        let mut e = KolmfileError::at(self.path, &masked, span, msg, label, help);
        e.snippet = "<redacted>".into();
        e
    }

    /// The span of `key = ...` inside a table's span, to point at a key that is missing a
    /// partner or conflicts with one.
    fn key_span(&self, table: Range<usize>, key: &str) -> Range<usize> {
        let text = &self.src[table.clone()];
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let t = line.trim_start();
            if t.starts_with(key) && t[key.len()..].trim_start().starts_with('=') {
                let start = table.start + offset + (line.len() - t.len());
                return start..start + t.trim_end().len();
            }
            offset += line.len();
        }
        table
    }
}

/// Turns a serde error from the TOML deserializer into our error, with a suggestion.
pub(super) fn shape_error(cx: &Cx, e: &toml_edit::de::Error) -> KolmfileError {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim().to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let word = rest.split('`').next().unwrap_or_default().to_string();
        let expected: Vec<&str> = rest
            .split_once("expected")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let help = match did_you_mean(&word, expected.iter().copied()) {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None if !expected.is_empty() => {
                Some(format!("expected one of: {}", expected.join(", ")))
            }
            None => None,
        };
        let section = enclosing_table(cx.src, span.start);
        let lower = word.to_ascii_lowercase();
        if ["key", "token", "secret", "password"]
            .iter()
            .any(|s| lower.contains(s))
        {
            // The value may be a credential pasted by mistake: never echo its line.
            let line_start = cx.src[..span.start.min(cx.src.len())]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let line_end = cx.src[line_start..]
                .find('\n')
                .map(|i| line_start + i)
                .unwrap_or(cx.src.len());
            let value = cx.src[line_start..line_end]
                .find('=')
                .map(|eq| line_start + eq + 1..line_end)
                .unwrap_or(span.clone());
            let help = help.map(|h| {
                format!("{h} (secrets never go in the Kolmfile: name an env var instead)")
            });
            return cx.secret_err(
                value,
                span,
                format!("unknown key `{word}` in {section}"),
                "unknown key",
                help,
            );
        }
        return cx.err(
            span,
            format!("unknown key `{word}` in {section}"),
            "unknown key",
            help,
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let key = key_at(cx.src, span.start);
        let what = key.map(|k| format!(" for `{k}`")).unwrap_or_default();
        return cx.err(
            span,
            format!(
                "wrong type{what}: expected {}, found {found}",
                plain_type(expected)
            ),
            "wrong type",
            None,
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default();
        return cx.err(
            span,
            format!("missing key `{field}`"),
            "in this table",
            None,
        );
    }
    if msg.contains("duplicate key") || msg.contains("invalid") || msg.contains("expected") {
        return cx.err(
            span,
            format!("invalid TOML: {}", first_line(&msg)),
            "here",
            None,
        );
    }
    cx.err(span, first_line(&msg).to_string(), "here", None)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Serde's type names, in words a TOML writer uses.
fn plain_type(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "i64" | "u64" | "u32" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" => "a string".into(),
        "a sequence" => "an array".into(),
        _ => e.to_string(),
    }
}

/// The `[table]` header that encloses an offset, for messages like "in [teacher]".
fn enclosing_table(src: &str, offset: usize) -> String {
    let before = &src[..offset.min(src.len())];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            let name = l
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or(l)
                .trim();
            if l.starts_with("[[") {
                format!("[[{name}]]")
            } else {
                format!("[{name}]")
            }
        })
        .unwrap_or_else(|| "the top level".to_string())
}

/// The key on the line of an offset (`key = value`).
fn key_at(src: &str, offset: usize) -> Option<String> {
    let start = src[..offset.min(src.len())]
        .rfind('\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let line = src[start..].lines().next()?;
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.starts_with('[')).then(|| k.to_string())
}

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
        let task = resolve_task(cx, t.into_inner(), span, &d)?;
        if !seen.insert(task.name.clone()) {
            return Err(cx.err(
                cx.key_span(span_of_task(cx, &task.name), "name"),
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

/// The span of the last `name = "<task>"` line, for duplicate-name errors.
fn span_of_task(cx: &Cx, name: &str) -> Range<usize> {
    let needle = format!("\"{name}\"");
    let at = cx.src.rfind(&needle).unwrap_or(0);
    let start = cx.src[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    start..at + needle.len()
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
    let over = |s: Option<Spanned<RawTeacher>>| s.map(Spanned::into_inner).unwrap_or_default();
    Ok(TaskConfig {
        name: name.into_inner(),
        description,
        output_schema,
        seeds,
        evals,
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
                .unwrap_or(DEFAULT_MIN_K),
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
    Ok(v)
}

/// A path relative to the Kolmfile, normalised to forward slashes, that must not escape it.
fn relative_path(cx: &Cx, v: Spanned<String>) -> R<String> {
    let s = v.get_ref().replace('\\', "/");
    let s = s.trim_start_matches("./").trim_end_matches('/').to_string();
    if s.is_empty() || s == "." || s.starts_with('/') || s.split('/').any(|c| c == "..") {
        return Err(cx.err(v.span(), format!("path `{s}` must stay inside the project"), "this path", Some("paths are relative to the Kolmfile's folder and may not start with `/` or contain `..`".into())));
    }
    Ok(s)
}

fn existing_file(cx: &Cx, v: Spanned<String>, what: &str) -> R<String> {
    let span = v.span();
    let rel = relative_path(cx, v)?;
    if !cx.dir.join(&rel).is_file() {
        return Err(cx.err(
            span,
            format!("{what} `{rel}` does not exist"),
            "no such file",
            Some(format!("paths are relative to {}", display_dir(cx.dir))),
        ));
    }
    Ok(rel)
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        "the current folder".into()
    } else {
        format!("`{}`", dir.display())
    }
}

fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    cx: &Cx,
    v: Spanned<T>,
    lo: T,
    hi: T,
    key: &str,
) -> R<T> {
    let x = *v.get_ref();
    // Written so that NaN is out of every range.
    if !(x >= lo && x <= hi) {
        return Err(cx.err(
            v.span(),
            format!("`{key}` = {x} is out of range"),
            "out of range",
            Some(format!("expected a value from {lo} to {hi}")),
        ));
    }
    Ok(x)
}

fn int(cx: &Cx, v: S<i64>, lo: i64, hi: i64, key: &str, default: i64) -> R<u32> {
    Ok(v.map(|v| in_range(cx, v, lo, hi, key))
        .transpose()?
        .unwrap_or(default) as u32)
}

fn one_of(cx: &Cx, v: &Spanned<String>, names: &[&str], key: &str) -> R<()> {
    if names.contains(&v.get_ref().as_str()) {
        return Ok(());
    }
    let help = did_you_mean(v.get_ref(), names.iter().copied())
        .map(|s| format!("did you mean `{s}`?"))
        .unwrap_or_else(|| format!("expected one of: {}", names.join(", ")));
    Err(cx.err(
        v.span(),
        format!("unknown {key} `{}`", v.get_ref()),
        "unknown value",
        Some(help),
    ))
}

fn base(cx: &Cx, b: Spanned<RawBase>) -> R<BaseConfig> {
    let span = b.span();
    let b = b.into_inner();
    let sha256 = match b.sha256 {
        Some(h) => {
            let s = h
                .get_ref()
                .trim_start_matches("sha256:")
                .to_ascii_lowercase();
            if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(cx.err(
                    h.span(),
                    "`base.sha256` must be 64 hex digits",
                    "not a sha256",
                    Some("run `sha256sum model.gguf` to get it".into()),
                ));
            }
            Some(s)
        }
        None => None,
    };
    let set = [b.path.is_some(), b.url.is_some(), b.tiny.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if set != 1 {
        let msg = if set == 0 {
            "[base] needs one of `path`, `url` or `tiny`"
        } else {
            "[base] sets more than one of `path`, `url` and `tiny`"
        };
        return Err(cx.err(span, msg, "this base", Some("a local GGUF: `path = \"models/base.gguf\"`; a download: `url = \"hf://owner/repo/file.gguf\"` with `sha256`".into())));
    }
    let source = if let Some(p) = b.path {
        let pspan = p.span();
        let raw = p.get_ref().clone();
        let rel = if Path::new(&raw).is_absolute() {
            raw
        } else {
            relative_path(cx, p)?
        };
        if !cx.dir.join(&rel).is_file() {
            return Err(cx.err(
                pspan,
                format!("base model `{rel}` does not exist"),
                "no such file",
                Some(format!("paths are relative to {}", display_dir(cx.dir))),
            ));
        }
        BaseSource::Path { path: rel }
    } else if let Some(u) = b.url {
        let url = u.get_ref().clone();
        let parts: Vec<&str> = url
            .strip_prefix("hf://")
            .map(|r| r.split('/').collect())
            .unwrap_or_default();
        if parts.len() < 3 || parts.iter().any(|p| p.is_empty() || *p == "..") {
            return Err(cx.err(
                u.span(),
                format!("`{url}` is not an hf:// model address"),
                "bad address",
                Some("expected `hf://owner/repo/path/to/file.gguf`".into()),
            ));
        }
        if sha256.is_none() {
            return Err(cx.err(u.span(), "a downloaded base must be pinned by `sha256`", "unpinned download", Some("add `sha256 = \"...\"` to [base]; a download that does not match it is refused".into())));
        }
        BaseSource::Url { url }
    } else {
        let t = b.tiny.expect("counted above");
        let tspan = t.span();
        let t = t.into_inner();
        let arch = t.arch.ok_or_else(|| {
            cx.err(
                tspan.clone(),
                "`base.tiny` needs `arch`",
                "here",
                Some("arch = \"llama\" or \"qwen2\"".into()),
            )
        })?;
        one_of(cx, &arch, &["llama", "qwen2"], "tiny model architecture")?;
        BaseSource::Tiny {
            arch: arch.into_inner(),
            seed: t.seed.map(Spanned::into_inner).unwrap_or(0),
        }
    };
    Ok(BaseConfig { source, sha256 })
}

fn teacher(cx: &Cx, t: RawTeacher) -> R<TeacherConfig> {
    let provider = match &t.provider {
        None => Provider::None,
        Some(p) => {
            one_of(cx, p, &Provider::NAMES, "teacher provider")?;
            match p.get_ref().as_str() {
                "openai" => Provider::Openai,
                "anthropic" => Provider::Anthropic,
                "replay" => Provider::Replay,
                _ => Provider::None,
            }
        }
    };
    let pspan = t.provider.as_ref().map(|p| p.span()).unwrap_or(0..0);
    if let Some(k) = &t.api_key_env {
        let s = k.get_ref();
        let looks_like_name = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !looks_like_name {
            // Do not echo the value: it may be a key pasted by mistake.
            // It may be a key pasted by mistake.
            return Err(cx.secret_err(k.span(), k.span(), "`teacher.api_key_env` must be the NAME of an environment variable", "not an env var name", Some("write `api_key_env = \"OPENAI_API_KEY\"` and export the key in that variable; keys never go in the Kolmfile".into())));
        }
    }
    if provider.uses_network() {
        for (v, key) in [(&t.model, "model"), (&t.api_key_env, "api_key_env")] {
            if v.is_none() {
                return Err(cx.err(
                    pspan.clone(),
                    format!(
                        "teacher provider `{}` needs `teacher.{key}`",
                        t.provider.as_ref().unwrap().get_ref()
                    ),
                    "this provider",
                    None,
                ));
            }
        }
    }
    if provider == Provider::Replay && t.cassette.is_none() {
        return Err(cx.err(
            pspan,
            "teacher provider `replay` needs `teacher.cassette`",
            "this provider",
            Some(
                "name the recorded cassette file, e.g. `cassette = \"teacher.cassette.jsonl\"`"
                    .into(),
            ),
        ));
    }
    let cassette = t.cassette.map(|c| relative_path(cx, c)).transpose()?;
    let price = t.price.map(Spanned::into_inner).unwrap_or_default();
    Ok(TeacherConfig {
        provider,
        model: t.model.map(Spanned::into_inner),
        endpoint: t.endpoint.map(Spanned::into_inner),
        api_key_env: t.api_key_env.map(Spanned::into_inner),
        cassette,
        samples: int(cx, t.samples, 1, 64, "teacher.samples", 3)?,
        temperature: t
            .temperature
            .map(|v| in_range(cx, v, 0.0, 2.0, "teacher.temperature"))
            .transpose()?
            .unwrap_or(0.7),
        seed: t.seed.map(Spanned::into_inner).unwrap_or(0),
        concurrency: int(cx, t.concurrency, 1, 1024, "teacher.concurrency", 8)?,
        timeout_secs: int(cx, t.timeout_secs, 1, 3600, "teacher.timeout_secs", 120)?,
        max_retries: int(cx, t.max_retries, 0, 100, "teacher.max_retries", 5)?,
        synthesize: int(cx, t.synthesize, 0, 1_000_000, "teacher.synthesize", 0)?,
        verify_seeds: t.verify_seeds.map(Spanned::into_inner).unwrap_or(false),
        price: Price {
            input_per_mtok: price
                .input_per_mtok
                .map(|v| in_range(cx, v, 0.0, 1e6, "teacher.price.input_per_mtok"))
                .transpose()?
                .unwrap_or(0.0),
            output_per_mtok: price
                .output_per_mtok
                .map(|v| in_range(cx, v, 0.0, 1e6, "teacher.price.output_per_mtok"))
                .transpose()?
                .unwrap_or(0.0),
        },
    })
}

fn recall(cx: &Cx, r: RawRecall) -> R<RecallConfig> {
    let chunk_chars = int(cx, r.chunk_chars, 64, 1_000_000, "recall.chunk_chars", 1200)?;
    let overlap_chars = match r.overlap_chars {
        Some(o) => in_range(cx, o, 0, chunk_chars as i64 - 1, "recall.overlap_chars")? as u32,
        None => 200.min(chunk_chars / 2),
    };
    let corpus = match r.corpus {
        Some(c) => {
            let span = c.span();
            let globs = c.into_inner();
            for g in &globs {
                if g.starts_with('/') || g.split('/').any(|p| p == "..") {
                    return Err(cx.err(
                        span,
                        format!("corpus glob `{g}` must stay inside the project"),
                        "this glob",
                        None,
                    ));
                }
                if let Err(e) = globset::Glob::new(g) {
                    return Err(cx.err(
                        span,
                        format!("invalid corpus glob `{g}`: {e}"),
                        "this glob",
                        None,
                    ));
                }
            }
            globs
        }
        None => Vec::new(),
    };
    Ok(RecallConfig {
        corpus,
        chunk_chars,
        overlap_chars,
        embedder: r.embedder.map(Spanned::into_inner),
        top_k: int(cx, r.top_k, 1, 100, "recall.top_k", 4)?,
    })
}

fn distill(cx: &Cx, d: RawDistill) -> R<DistillConfig> {
    let targets = match d.targets {
        Some(t) => {
            let span = t.span();
            let list = t.into_inner();
            if list.is_empty() {
                return Err(cx.err(
                    span,
                    "`distill.targets` is empty",
                    "no targets",
                    Some(format!("choose from: {}", LORA_TARGETS.join(", "))),
                ));
            }
            for (i, name) in list.iter().enumerate() {
                if list[..i].contains(name) {
                    return Err(cx.err(
                        span,
                        format!("LoRA target `{name}` is listed twice"),
                        "in this list",
                        None,
                    ));
                }
                if !LORA_TARGETS.contains(&name.as_str()) {
                    let help = did_you_mean(name, LORA_TARGETS)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("choose from: {}", LORA_TARGETS.join(", ")));
                    return Err(cx.err(
                        span,
                        format!("unknown LoRA target `{name}`"),
                        "in this list",
                        Some(help),
                    ));
                }
            }
            list
        }
        None => ["attn_q", "attn_k", "attn_v", "attn_output"]
            .map(String::from)
            .to_vec(),
    };
    Ok(DistillConfig {
        train: d.train.map(Spanned::into_inner).unwrap_or(true),
        rank: int(cx, d.rank, 1, 1024, "distill.rank", 8)?,
        alpha: d
            .alpha
            .map(|v| in_range(cx, v, 1e-6, 1e6, "distill.alpha"))
            .transpose()?
            .unwrap_or(16.0),
        targets,
        epochs: int(cx, d.epochs, 1, 10_000, "distill.epochs", 3)?,
        learning_rate: d
            .learning_rate
            .map(|v| in_range(cx, v, 1e-9, 10.0, "distill.learning_rate"))
            .transpose()?
            .unwrap_or(1e-3),
        batch_size: int(cx, d.batch_size, 1, 4096, "distill.batch_size", 8)?,
        max_seq_len: int(cx, d.max_seq_len, 16, 131_072, "distill.max_seq_len", 512)?,
        seed: d.seed.map(Spanned::into_inner).unwrap_or(0),
        threads: int(cx, d.threads, 1, 1024, "distill.threads", 2)?,
    })
}

fn decompose(cx: &Cx, d: RawDecompose) -> R<DecomposeConfig> {
    Ok(DecomposeConfig {
        enabled: d.enabled.map(Spanned::into_inner).unwrap_or(false),
        recipes: d.recipes.map(Spanned::into_inner).unwrap_or(true),
        drafts: d.drafts.map(Spanned::into_inner).unwrap_or(true),
        time_limit_ms: int(
            cx,
            d.time_limit_ms,
            1,
            60_000,
            "decompose.time_limit_ms",
            50,
        )?,
        memory_limit_mb: int(
            cx,
            d.memory_limit_mb,
            1,
            4096,
            "decompose.memory_limit_mb",
            16,
        )?,
    })
}

fn score(cx: &Cx, s: RawScore) -> R<ScoreConfig> {
    let device = match s.device {
        Some(d) => {
            one_of(cx, &d, &DeviceProfile::BUILTIN, "device profile")?;
            DeviceProfile::builtin(d.get_ref()).expect("checked above")
        }
        None => DeviceProfile::builtin("cpu-2core").expect("built in"),
    };
    let weights = match s.weights {
        Some(w) => {
            let span = w.span();
            let w = w.into_inner();
            let d = Weights::default();
            let f = |v: S<f64>, key: &str, def: f64| -> R<f64> {
                Ok(v.map(|v| in_range(cx, v, 0.0, 1.0, key))
                    .transpose()?
                    .unwrap_or(def))
            };
            let weights = Weights {
                accuracy: f(w.accuracy, "score.weights.accuracy", d.accuracy)?,
                size: f(w.size, "score.weights.size", d.size)?,
                latency: f(w.latency, "score.weights.latency", d.latency)?,
                cost: f(w.cost, "score.weights.cost", d.cost)?,
                coverage: f(w.coverage, "score.weights.coverage", d.coverage)?,
            };
            if (weights.sum() - 1.0).abs() > 1e-9 {
                return Err(cx.err(span, format!("the K-score weights sum to {:.6}, not 1", weights.sum()), "these weights", Some("Σw must be 1: adjust one weight (unset ones take their defaults 0.40/0.15/0.15/0.15/0.15)".into())));
            }
            weights
        }
        None => Weights::default(),
    };
    let baseline = match s.baseline {
        Some(b) => {
            let b = b.into_inner();
            let d = Baseline::default();
            let pos = |v: S<f64>, key: &str, def: f64| -> R<f64> {
                Ok(v.map(|v| in_range(cx, v, 1e-12, 1e18, key))
                    .transpose()?
                    .unwrap_or(def))
            };
            Baseline {
                accuracy: b
                    .accuracy
                    .map(|v| in_range(cx, v, 0.0, 1.0, "score.baseline.accuracy"))
                    .transpose()?
                    .unwrap_or(d.accuracy),
                latency_ms: pos(b.latency_ms, "score.baseline.latency_ms", d.latency_ms)?,
                cost_per_1k: b
                    .cost_per_1k
                    .map(|v| in_range(cx, v, 0.0, 1e12, "score.baseline.cost_per_1k"))
                    .transpose()?
                    .unwrap_or(d.cost_per_1k),
                size_bytes: pos(b.size_bytes, "score.baseline.size_bytes", d.size_bytes)?,
            }
        }
        None => Baseline::default(),
    };
    Ok(ScoreConfig {
        device,
        weights,
        baseline,
    })
}
