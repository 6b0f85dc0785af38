//! The checks and defaults of each table: `[base]`, `[teacher]`, `[recall]`, `[distill]`,
//! `[decompose]`, `[score]`. Each takes the table as written (already overlaid on the
//! defaults) and returns its checked configuration, or an error pointing at the value.

#![allow(clippy::result_large_err)]

use std::path::Path;

use serde_spanned::Spanned;

use super::check::{
    existing_file, float, in_range, int, must_be_file, one_of, relative_path, Cx, R,
};
use super::config::*;
use super::defaults::distill as default;
use super::raw::*;
use crate::diagnostic::did_you_mean;

pub(super) fn base(cx: &Cx, b: Spanned<RawBase>) -> R<BaseConfig> {
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
        let abs = cx.dir.join(&rel);
        must_be_file(cx, pspan.clone(), &rel, &abs, "base model")?;
        if !crate::gguf::has_magic(&abs) {
            return Err(cx.err(
                pspan,
                format!("base model `{rel}` is not a GGUF file (it does not start with `GGUF`)"),
                "not GGUF",
                Some("the base must be a GGUF model (llama.cpp's format): convert it with llama.cpp's convert_hf_to_gguf.py".into()),
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
    let quantize = match b.quantize {
        Some(q) => {
            one_of(
                cx,
                &q,
                &Quantize::ALL.map(Quantize::name),
                "base quantisation",
            )?;
            Quantize::from_name(q.get_ref())
        }
        None => None,
    };
    Ok(BaseConfig {
        source,
        sha256,
        quantize,
    })
}

pub(super) fn teacher(cx: &Cx, t: RawTeacher) -> R<TeacherConfig> {
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
    // Replay reads the cassette, so it must be there now; a network provider records into it.
    let cassette = match t.cassette {
        Some(c) if provider == Provider::Replay => Some(existing_file(cx, c, "cassette")?),
        c => c.map(|c| relative_path(cx, c)).transpose()?,
    };
    let price = t.price.map(Spanned::into_inner).unwrap_or_default();
    Ok(TeacherConfig {
        provider,
        model: t.model.map(Spanned::into_inner),
        endpoint: t.endpoint.map(Spanned::into_inner),
        api_key_env: t.api_key_env.map(Spanned::into_inner),
        cassette,
        samples: int(
            cx,
            t.samples,
            RawTeacher::bounds("samples"),
            "teacher.samples",
        )?,
        temperature: float(
            cx,
            t.temperature,
            RawTeacher::bounds("temperature"),
            "teacher.temperature",
        )?,
        seed: t.seed.map(Spanned::into_inner).unwrap_or(0),
        concurrency: int(
            cx,
            t.concurrency,
            RawTeacher::bounds("concurrency"),
            "teacher.concurrency",
        )?,
        timeout_secs: int(
            cx,
            t.timeout_secs,
            RawTeacher::bounds("timeout_secs"),
            "teacher.timeout_secs",
        )?,
        max_retries: int(
            cx,
            t.max_retries,
            RawTeacher::bounds("max_retries"),
            "teacher.max_retries",
        )?,
        synthesize: int(
            cx,
            t.synthesize,
            RawTeacher::bounds("synthesize"),
            "teacher.synthesize",
        )?,
        verify_seeds: t.verify_seeds.map(Spanned::into_inner).unwrap_or(false),
        price: Price {
            input_per_mtok: float(
                cx,
                price.input_per_mtok,
                RawPrice::bounds("input_per_mtok"),
                "teacher.price.input_per_mtok",
            )?,
            output_per_mtok: float(
                cx,
                price.output_per_mtok,
                RawPrice::bounds("output_per_mtok"),
                "teacher.price.output_per_mtok",
            )?,
        },
    })
}

pub(super) fn recall(cx: &Cx, r: RawRecall) -> R<RecallConfig> {
    let chunk_chars = int(
        cx,
        r.chunk_chars,
        RawRecall::bounds("chunk_chars"),
        "recall.chunk_chars",
    )?;
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
        top_k: int(cx, r.top_k, RawRecall::bounds("top_k"), "recall.top_k")?,
    })
}

pub(super) fn distill(cx: &Cx, d: RawDistill) -> R<DistillConfig> {
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
        None => default::TARGETS.map(String::from).to_vec(),
    };
    Ok(DistillConfig {
        train: d.train.map(Spanned::into_inner).unwrap_or(true),
        rank: int(cx, d.rank, RawDistill::bounds("rank"), "distill.rank")?,
        alpha: float(cx, d.alpha, RawDistill::bounds("alpha"), "distill.alpha")?,
        targets,
        epochs: int(cx, d.epochs, RawDistill::bounds("epochs"), "distill.epochs")?,
        learning_rate: float(
            cx,
            d.learning_rate,
            RawDistill::bounds("learning_rate"),
            "distill.learning_rate",
        )?,
        batch_size: int(
            cx,
            d.batch_size,
            RawDistill::bounds("batch_size"),
            "distill.batch_size",
        )?,
        max_seq_len: int(
            cx,
            d.max_seq_len,
            RawDistill::bounds("max_seq_len"),
            "distill.max_seq_len",
        )?,
        seed: d.seed.map(Spanned::into_inner).unwrap_or(default::SEED),
        threads: int(
            cx,
            d.threads,
            RawDistill::bounds("threads"),
            "distill.threads",
        )?,
    })
}

pub(super) fn decompose(cx: &Cx, d: RawDecompose) -> R<DecomposeConfig> {
    Ok(DecomposeConfig {
        enabled: d.enabled.map(Spanned::into_inner).unwrap_or(false),
        recipes: d.recipes.map(Spanned::into_inner).unwrap_or(true),
        drafts: d.drafts.map(Spanned::into_inner).unwrap_or(true),
        time_limit_ms: int(
            cx,
            d.time_limit_ms,
            RawDecompose::bounds("time_limit_ms"),
            "decompose.time_limit_ms",
        )?,
        memory_limit_mb: int(
            cx,
            d.memory_limit_mb,
            RawDecompose::bounds("memory_limit_mb"),
            "decompose.memory_limit_mb",
        )?,
        recipes_dir: d.recipes_dir.map(|v| relative_path(cx, v)).transpose()?,
    })
}

pub(super) fn score(cx: &Cx, s: RawScore) -> R<ScoreConfig> {
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
