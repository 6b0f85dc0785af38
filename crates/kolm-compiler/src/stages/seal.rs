//! The `seal` stage: apply the gate, write the manifest, sign it, and zip the seven entries into
//! `dist/<task>.kolm`.
//!
//! Below the gate nothing is written and nothing is signed. The signing key is not part of the
//! cache key (a key must never reach the cache); instead a cached seal counts as fresh only if
//! the artifact on disk is the one recorded and its signature checks out under the key in use
//! now, so changing the key re-signs.

use super::{BuildOptions, Cx, Inputs, SealOut, Stage, StageKind, StageOutput};
use crate::artifact::manifest::*;
use crate::artifact::{self, sign, Payload};
use crate::cache::Fingerprints;
use crate::kolmfile::TaskConfig;
use crate::versions::runtime;
use crate::{kscore, Error, Result};

pub struct SealStage;

/// The gate in force for a task: `--gate` wins over the Kolmfile.
pub fn gate(task: &TaskConfig, options: &BuildOptions) -> f64 {
    options.gate.unwrap_or(task.gate.min_k)
}

/// Project-relative path of a task's report.
pub fn report_path(cx: &Cx) -> String {
    format!(
        "{}/{}.report.json",
        cx.kolmfile.project.dist.trim_end_matches('/'),
        cx.task.name
    )
}

/// Project-relative path of a task's artifact.
pub fn artifact_path(cx: &Cx) -> String {
    format!(
        "{}/{}.kolm",
        cx.kolmfile.project.dist.trim_end_matches('/'),
        cx.task.name
    )
}

impl Stage for SealStage {
    fn kind(&self) -> StageKind {
        StageKind::Seal
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, options: &BuildOptions) -> serde_json::Value {
        serde_json::json!({
            "task": task.name,
            "teacher_seed": task.teacher.seed,
            "description": task.description,
            "output_schema": task.output_schema,
            "weights": task.score.weights,
            "device": task.score.device,
            "gate": gate(task, options),
            "unsigned": options.unsigned,
            "source_date_epoch": options.source_date_epoch,
            "format": SPEC_VERSION,
            "runtime": runtime(),
        })
    }
    fn run(&self, cx: &Cx, inputs: &Inputs) -> Result<StageOutput> {
        // The seal reruns only when its inputs changed, so an artifact already at the path
        // describes other inputs: never leave it where a deploy step could pick it up, whether
        // this run then seals, stops at the gate, or fails; and say so when it does not seal.
        let rel = artifact_path(cx);
        let stale = cx.project_path(&rel);
        let removed = stale.exists();
        if removed {
            std::fs::remove_file(&stale)
                .map_err(|e| Error::io(&stale, "remove the stale artifact", e))?;
        }
        let sealed = seal(cx, inputs);
        if removed && sealed.is_err() {
            cx.progress.println(&format!(
                "note: removed `{rel}`: it was an earlier build's, and this build did not seal"
            ));
        }
        sealed.map(StageOutput::Seal)
    }
    fn written(&self, cx: &Cx, out: &StageOutput) -> Vec<(std::path::PathBuf, String)> {
        match out {
            StageOutput::Seal(s) => vec![(cx.project_path(&s.artifact), s.sha256.clone())],
            _ => vec![],
        }
    }
    fn still_valid(&self, cx: &Cx, out: &StageOutput, fp: &mut Fingerprints) -> bool {
        let StageOutput::Seal(s) = out else {
            return false;
        };
        if s.artifact != artifact_path(cx) || !cx.project_path(&report_path(cx)).is_file() {
            return false;
        }
        let path = cx.project_path(&s.artifact);
        if !matches!(fp.digest(&path, None), Ok((sha, _)) if sha == s.sha256) {
            return false;
        }
        if !s.signed {
            return true;
        }
        // Signed: fresh only if the key in use now verifies it.
        let Ok(o) = artifact::verify::open(&path) else {
            return false;
        };
        matches!(
            artifact::verify::signature_state(&o, &key_choice(cx)),
            Ok(artifact::verify::SignatureState::Verified)
        )
    }
}

/// The Kolmfile's key file (relative to the Kolmfile); `KOLM_SIGNING_KEY` wins.
fn key_choice<'a>(cx: &'a Cx) -> sign::KeyChoice<'a> {
    sign::KeyChoice {
        file: cx.task.sign.key_file.as_deref(),
        dir: &cx.kolmfile.dir,
        file_wins: false,
    }
}

fn load_key(cx: &Cx) -> Result<sign::Key> {
    match sign::load_key(&key_choice(cx))? {
        Some((k, _)) => Ok(k),
        None => Err(crate::artifact::NoSigningKey.into()),
    }
}

/// The rest of a seal, after the stale artifact is gone: the report, the gate, the manifest,
/// the signed file.
fn seal(cx: &Cx, inputs: &Inputs) -> Result<SealOut> {
    let score = inputs.score()?;
    let components = kscore::components(&score.measured, &score.baseline);
    let k = kscore::k_score(&components, &cx.task.score.weights);
    let gate = gate(cx.task, cx.options);
    let report = cx.store.blob(&score.report)?;
    crate::fsutil::write_atomic(&cx.project_path(&report_path(cx)), &report)?;
    if !kscore::passes(k, gate) {
        return Err(Error::from(crate::stages::seal::BelowGate {
            task: cx.task.name.clone(),
            k,
            gate,
            components: serde_json::to_value(components).expect("serialises"),
        }));
    }
    let key = if cx.options.unsigned {
        None
    } else {
        Some(load_key(cx)?)
    };
    let blobs = Blobs {
        lora: cx.store.blob(&inputs.train()?.adapter)?,
        recipes: cx.store.blob(&inputs.decompose()?.recipes)?,
        index: cx.store.blob(&inputs.recall()?.index)?,
        tests: cx.store.blob(&score.tests)?,
    };
    let manifest = manifest(cx, inputs, &blobs, k, components, gate)?.to_bytes();
    let signature = match &key {
        Some(k) => sign::sign(k, &manifest),
        None => sign::unsigned(),
    };
    let (sha256, size) = write(cx, inputs.base()?, &blobs, &manifest, &signature)?;
    Ok(SealOut {
        artifact: artifact_path(cx),
        sha256,
        size,
        k_score: k,
        signed: key.is_some(),
    })
}

/// The four entries made by earlier stages, read from the store.
struct Blobs {
    lora: Vec<u8>,
    recipes: Vec<u8>,
    index: Vec<u8>,
    tests: Vec<u8>,
}

/// What the artifact says of itself (format.md §3).
fn manifest(
    cx: &Cx,
    inputs: &Inputs,
    blobs: &Blobs,
    k: f64,
    components: kscore::Components,
    gate: f64,
) -> Result<Manifest> {
    let (recall, label, train, decompose, score) = (
        inputs.recall()?,
        inputs.label()?,
        inputs.train()?,
        inputs.decompose()?,
        inputs.score()?,
    );
    // What the artifact carries: with `[base] quantize`, the requantised copy.
    let base = inputs.base()?.served();
    let digest = |name: &str, bytes: &[u8]| EntryDigest {
        name: name.into(),
        sha256: crate::digest::sha256(bytes),
        size: bytes.len() as u64,
    };
    let entries = vec![
        EntryDigest {
            name: "model.gguf".into(),
            sha256: base.sha256.clone(),
            size: base.size,
        },
        digest("lora.bin", &blobs.lora),
        digest("recipes.json", &blobs.recipes),
        digest("index.sqlite-vec", &blobs.index),
        digest("tests.jsonl", &blobs.tests),
    ];
    let test_count = crate::jsonl::parse("tests.jsonl", &blobs.tests)?.len() as u64;
    let model = &base.model;
    Ok(Manifest {
        spec: SPEC.into(),
        spec_version: SPEC_VERSION,
        task: TaskInfo {
            name: cx.task.name.clone(),
            description: cx.task.description.clone(),
            output_schema: cx.task.output_schema.clone(),
        },
        base_model: BaseInfo {
            id: model
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", model.architecture, &base.sha256[..12])),
            sha256: base.sha256.clone(),
            size: base.size,
            architecture: model.architecture.clone(),
            quantization: model.quantization.clone(),
            parameters: model.parameters,
            context_length: model.context_length,
        },
        lora: LoraInfo {
            rank: train.rank,
            alpha: train.alpha,
            targets: train.targets.clone(),
            trained: train.trained,
        },
        recall: RecallInfo {
            embedder: recall.embedder.clone(),
            embedder_sha256: recall.embedder_sha256.clone(),
            dimensions: recall.dimensions,
            documents: recall.documents,
            chunks: recall.chunks,
            top_k: recall.top_k,
        },
        recipe_registry: decompose.registry.clone(),
        recipes: RecipeInfo {
            count: decompose.recipe_count,
            drafts: decompose.draft_count,
        },
        tests: TestInfo { count: test_count },
        k_score: k,
        k_components: components,
        k_weights: cx.task.score.weights,
        k_measured: score.measured,
        baseline: BaselineInfo {
            values: score.baseline,
            source: score.baseline_source.clone(),
        },
        device: cx.task.score.device.clone(),
        gate,
        training: TrainingInfo {
            distilled_pairs: label.kept,
            dropped_pairs: label.dropped.values().sum(),
            teacher_requests: label.teacher_requests,
            epochs: train.epochs,
            tokens: train.tokens,
            final_loss: train.final_loss,
        },
        seeds: SeedInfo {
            distill: train.seed,
            teacher: cx.task.teacher.seed,
        },
        runtime: runtime(),
        created_at: cx.options.source_date_epoch.and_then(crate::dates::rfc3339),
        entries,
    })
}

/// Zips the seven entries into `dist/<task>.kolm`; the file's sha256 and size.
fn write(
    cx: &Cx,
    stage_base: &super::BaseOut,
    blobs: &Blobs,
    manifest: &[u8],
    signature: &sign::Signature,
) -> Result<(String, u64)> {
    let base = stage_base.served();
    let dest = cx.project_path(&artifact_path(cx));
    let bar = cx
        .progress
        .bytes(base.size, &format!("sealing {}", cx.task.name));
    let payload = Payload {
        model: &cx.served_path(stage_base),
        model_crc32: Some(base.crc32),
        model_sha256: &base.sha256,
        lora: &blobs.lora,
        recipes: &blobs.recipes,
        index: &blobs.index,
        tests: &blobs.tests,
    };
    let written = artifact::write(
        &dest,
        &payload,
        manifest,
        &sign::to_bytes(signature),
        cx.options.source_date_epoch,
        &|n| bar.inc(n),
    );
    bar.finish_and_clear();
    if let Err(e) = written {
        // A damaged copy in the model store is removed, so the next build's base stage
        // fetches or makes it again; a file of the user's is theirs to fix.
        let model = cx.served_path(stage_base);
        if model.starts_with(cx.home.models()) && matches!(e, Error::Invalid { .. }) {
            let _ = std::fs::remove_file(&model);
        }
        return Err(e);
    }
    crate::digest::sha256_file(&dest, None)
}

/// K below the gate: nothing is sealed. Exit code 2, `--json` code `K_GATE`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("K = {k:.4} is below the gate {gate:.2} for task `{task}`: no artifact written")]
#[diagnostic(
    code(K_GATE),
    help("improve the components below, or lower the gate with `--gate` (it is sealed into the manifest)")
)]
pub struct BelowGate {
    pub task: String,
    pub k: f64,
    pub gate: f64,
    pub components: serde_json::Value,
}

impl crate::error::Domain for BelowGate {
    fn stable_code(&self) -> &'static str {
        "K_GATE"
    }
    fn exit_code(&self) -> i32 {
        2
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "task": self.task, "k_score": self.k, "gate": self.gate,
            "k_components": self.components,
        })
    }
}
