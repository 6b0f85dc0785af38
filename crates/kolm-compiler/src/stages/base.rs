//! The `base` stage: find the student model, make sure it is the one the Kolmfile pins, read
//! what it is (architecture, quantisation, size) from its GGUF header, and with
//! `[base] quantize` requantise it into the model store.
//!
//! The output identifies the model by content only. Where the file lives is recomputed from the
//! configuration ([`model_path`]), so moving a local model, or downloading it again into a
//! fresh `KOLM_HOME`, changes nothing downstream.

use std::path::PathBuf;

use super::{BaseOut, BuildOptions, Cx, Inputs, Stage, StageKind, StageOutput};
use crate::cache::Fingerprints;
use crate::gguf::{self, tiny};
use crate::home::Home;
use crate::kolmfile::{BaseConfig, BaseSource, Kolmfile, Quantize, TaskConfig};
use crate::{Error, Result};

pub struct BaseStage;

/// Where the base model file of a task is.
pub fn model_path(kolmfile: &Kolmfile, home: &Home, base: &BaseConfig, sha256: &str) -> PathBuf {
    match &base.source {
        BaseSource::Path { path } => kolmfile.abs(path),
        BaseSource::Url { .. } | BaseSource::Tiny { .. } => home.model(sha256),
    }
}

impl Stage for BaseStage {
    fn kind(&self) -> StageKind {
        StageKind::Base
    }
    fn version(&self) -> u32 {
        2
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        // A local path is keyed by its content (see `files`), not by where it is.
        let mut config = match &task.base.source {
            BaseSource::Path { .. } => {
                serde_json::json!({ "source": "path", "sha256": task.base.sha256 })
            }
            other => serde_json::json!({ "source": other, "sha256": task.base.sha256 }),
        };
        // Only when set: a base without it keeps the key it always had. The quantiser is
        // llama.cpp's, so its version is part of what a requantised file is.
        if let Some(q) = task.base.quantize {
            config["quantize"] = serde_json::json!({
                "type": q.name(),
                "llama_cpp": crate::versions::LLAMA_CPP_2,
            });
        }
        config
    }
    fn files(&self, _: &Kolmfile, task: &TaskConfig) -> Result<Vec<String>> {
        Ok(match &task.base.source {
            BaseSource::Path { path } => vec![path.clone()],
            _ => vec![],
        })
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        let base = &cx.task.base;
        let (path, sha256, size, crc32) = match &base.source {
            BaseSource::Path { path } => {
                let sha = cx
                    .files
                    .get(path)
                    .cloned()
                    .ok_or_else(|| Error::Internal("the base digest is missing".into()))?;
                let abs = cx.project_path(path);
                let size = std::fs::metadata(&abs)
                    .map_err(|e| Error::io(&abs, "read", e))?
                    .len();
                let crc = crate::digest::crc32_file(&abs)?;
                (abs, sha, size, crc)
            }
            BaseSource::Tiny { arch, seed } => {
                let bytes = tiny::tiny_model(arch, *seed, tiny::Quant::F32);
                let sha = crate::digest::sha256(&bytes);
                let dest = cx.home.model(&sha);
                if !holds(&dest, &sha) {
                    crate::fsutil::write_atomic(&dest, &bytes)?;
                }
                (dest, sha, bytes.len() as u64, crc32fast::hash(&bytes))
            }
            BaseSource::Url { url } => {
                if cx.options.airgap {
                    return Err(Error::Refused {
                        what: format!("--airgap: the base `{url}` would be downloaded"),
                        help: "download it once outside the air gap and set `[base] path` to the local file".into(),
                    });
                }
                let pin = base.sha256.clone().expect("a url base is always pinned");
                let dest = cx.home.model(&pin);
                if !holds(&dest, &pin) {
                    crate::download::fetch_pinned(url, &pin, &dest, cx.progress)?;
                }
                let size = std::fs::metadata(&dest)
                    .map_err(|e| Error::io(&dest, "read", e))?
                    .len();
                let crc = crate::digest::crc32_file(&dest)?;
                (dest, pin, size, crc)
            }
        };
        if let Some(pin) = &base.sha256 {
            if *pin != sha256 {
                return Err(Error::invalid(
                    format!("the base model `{}` has sha256 {sha256}, but the Kolmfile pins {pin}", path.display()),
                    "if the new model is intended, update `[base] sha256`; otherwise restore the pinned file",
                ));
            }
        }
        let header = gguf::read_header(&path).map_err(|e| {
            Error::invalid_because(
                format!("base model `{}`", path.display()),
                e,
                "the base must be a GGUF model file (llama.cpp's format)",
            )
        })?;
        let model = header.summary();
        if model.kind == "adapter" {
            return Err(Error::invalid(
                format!("`{}` is a LoRA adapter, not a model", path.display()),
                "point `[base]` at the model the adapter was made for",
            ));
        }
        if header.architecture().is_none() {
            return Err(Error::invalid(
                format!(
                    "base model `{}` has no general.architecture",
                    path.display()
                ),
                "re-convert it with llama.cpp's convert script",
            ));
        }
        let served = match base.quantize {
            None => None,
            Some(q) => {
                let (out, sha256, size, crc32) = requantize(cx, &path, q)?;
                let model = gguf::read_header(&out)
                    .map_err(|e| {
                        Error::failed(format!("the requantised base `{}`", out.display()), e)
                    })?
                    .summary();
                Some(Box::new(BaseOut {
                    sha256,
                    size,
                    crc32,
                    model,
                    served: None,
                }))
            }
        };
        Ok(StageOutput::Base(BaseOut {
            sha256,
            size,
            crc32,
            model,
            served,
        }))
    }
    fn written(&self, cx: &Cx, out: &StageOutput) -> Vec<(PathBuf, String)> {
        // A stored base was just written or checked whole: the next build need not rehash it.
        let StageOutput::Base(b) = out else {
            return vec![];
        };
        let mut files = match &cx.task.base.source {
            BaseSource::Url { .. } | BaseSource::Tiny { .. } => {
                vec![(cx.base_path(b), b.sha256.clone())]
            }
            BaseSource::Path { .. } => vec![],
        };
        if let Some(s) = &b.served {
            files.push((cx.served_path(b), s.sha256.clone()));
        }
        files
    }
    fn still_valid(&self, cx: &Cx, out: &StageOutput, fp: &mut Fingerprints) -> bool {
        // A downloaded, generated or requantised model may have been removed from KOLM_HOME, or
        // changed: its content must still be the digest the result declares (the fingerprint
        // rehashes it whenever its size or times moved). The seal checks the bytes it copies
        // too, so even damage that keeps every time is never signed.
        let intact = |fp: &mut Fingerprints, path: PathBuf, sha256: &str| matches!(fp.digest(&path, None), Ok((sha, _)) if sha == sha256);
        match out {
            StageOutput::Base(b) => {
                intact(fp, cx.base_path(b), &b.sha256)
                    && b.served
                        .as_ref()
                        .is_none_or(|s| intact(fp, cx.served_path(b), &s.sha256))
            }
            _ => false,
        }
    }
}

/// Requantises the checked base at `src` into the model store; returns the stored file, its
/// sha256, size and zip CRC-32.
fn requantize(cx: &Cx, src: &std::path::Path, q: Quantize) -> Result<(PathBuf, String, u64, u32)> {
    // Written beside the store's files, so the finished one is renamed into place.
    let tmp = crate::fsutil::temp_beside(&cx.home.models().join("requantised.gguf"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // llama.cpp reports no progress while it quantises (seconds for a small model, minutes for
    // a large one): a line with the time elapsed says the build is alive.
    let bar = cx.progress.measured(
        1,
        &format!("requantising the base of {} to {}", cx.task.name, q.name()),
    );
    let done = crate::runtime::quantize::quantize(src, tmp.path(), q.file_type(), threads);
    bar.finish_and_clear();
    done?;
    let (sha, size) = crate::digest::sha256_file(tmp.path(), None)?;
    let dest = cx.home.model(&sha);
    if !holds(&dest, &sha) {
        crate::fsutil::persist(tmp, &dest)?;
    }
    let crc = crate::digest::crc32_file(&dest)?;
    Ok((dest, sha, size, crc))
}

/// Whether the store's copy at `path` is there with these bytes (read whole: this runs only when
/// the stage runs, never on a no-op build).
fn holds(path: &std::path::Path, sha256: &str) -> bool {
    path.is_file() && crate::digest::sha256_file(path, None).is_ok_and(|(s, _)| s == sha256)
}
