//! `kolm inspect`: what is in a `.kolm`, read in place (nothing is extracted, the model's
//! weights are never read; only the headers and the small entries).

use serde::Serialize;

use super::verify::{self, Opened, SignatureState};
use crate::gguf::Value;
use crate::Result;

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: String,
    pub size: u64,
    pub entries: Vec<EntryRow>,
    pub manifest: super::Manifest,
    pub signature: SignatureState,
    pub gate_passed: bool,
    pub model_metadata: Vec<(String, String)>,
    pub lora_metadata: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct EntryRow {
    pub name: String,
    pub size: u64,
    pub stored_size: u64,
    pub compression: &'static str,
    /// From the manifest for the payload entries; None for manifest and signature.
    pub sha256: Option<String>,
}

/// Reads an artifact's structure, manifest, signature state and GGUF headers.
pub fn inspect(path: &std::path::Path, key_file: Option<&str>) -> Result<Inspection> {
    let o: Opened = verify::open(path)?;
    let key = crate::artifact::sign::KeyChoice {
        file: key_file,
        dir: std::path::Path::new("."),
        file_wins: true,
    };
    let signature = verify::signature_state(&o, &key)?;
    let mut f = std::fs::File::open(path).map_err(|e| crate::Error::io(path, "open", e))?;
    let meta = |h: crate::gguf::Header| -> Vec<(String, String)> {
        h.metadata
            .iter()
            .filter(|(k, _)| !k.starts_with("tokenizer.ggml.") || k == "tokenizer.ggml.model")
            .map(|(k, v): &(String, Value)| (k.clone(), v.summary()))
            .collect()
    };
    let model_metadata = meta(super::payload::entry_header(&mut f, &o, 0)?);
    let lora_metadata = meta(super::payload::entry_header(&mut f, &o, 1)?);
    let entries = o
        .entries
        .iter()
        .map(|e| EntryRow {
            name: e.name.clone(),
            size: e.size,
            stored_size: e.compressed,
            compression: match e.method {
                super::zipwrite::Method::Stored => "stored",
                super::zipwrite::Method::Deflated => "deflate",
            },
            sha256: o
                .manifest
                .entries
                .iter()
                .find(|d| d.name == e.name)
                .map(|d| d.sha256.clone()),
        })
        .collect();
    Ok(Inspection {
        path: path.display().to_string(),
        size: o.len,
        entries,
        gate_passed: crate::kscore::passes(o.manifest.k_score, o.manifest.gate),
        manifest: o.manifest,
        signature,
        model_metadata,
        lora_metadata,
    })
}

/// Human-readable size.
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// The table `kolm inspect` prints.
pub fn render(i: &Inspection) -> String {
    use std::fmt::Write;
    let m = &i.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "  {:<17} {:>9}  {:<8} sha256", "layer", "size", "stored");
    let _ = writeln!(s, "  {:─<17} {:─>9}  {:─<8} {:─<17}", "", "", "", "");
    for e in &i.entries {
        let sha = match (&e.sha256, e.name.as_str()) {
            (Some(h), _) => format!("{}…{}", &h[..6], &h[h.len() - 2..]),
            (None, "signature.sig") => i.signature_word().to_string(),
            (None, _) => "(signed)".to_string(),
        };
        let _ = writeln!(
            s,
            "  {:<17} {:>9}  {:<8} {sha}",
            e.name,
            human(e.size),
            e.compression
        );
    }
    let _ = writeln!(s, "\n  total            {:>9}", human(i.size));
    let c = &m.k_components;
    let k = &m.k_measured;
    let _ = writeln!(s, "\n  task            : {:?}", m.task.name);
    let _ = writeln!(s, "  description     : {}", m.task.description);
    let _ = writeln!(
        s,
        "  base_model      : {} ({}, {}, {} params, sha256 {}…)",
        m.base_model.id,
        m.base_model.architecture,
        m.base_model.quantization,
        m.base_model.parameters,
        &m.base_model.sha256[..12]
    );
    let _ = writeln!(
        s,
        "  lora            : rank {}, alpha {}, {} ({})",
        m.lora.rank,
        m.lora.alpha,
        m.lora.targets.join(","),
        if m.lora.trained {
            "trained"
        } else {
            "zero-init"
        }
    );
    let _ = writeln!(
        s,
        "  k_score         : {:.4}   gate {:.2} {}",
        m.k_score,
        m.gate,
        if i.gate_passed { "passed" } else { "FAILED" }
    );
    let _ = writeln!(
        s,
        "  k.accuracy      : {:.3}   ({} / {} tests)",
        c.accuracy, k.tests_passed, k.tests_total
    );
    let _ = writeln!(
        s,
        "  k.size          : {:.3}   ({} vs {} baseline)",
        c.size,
        human(k.size_bytes),
        human(m.baseline.values.size_bytes as u64)
    );
    let _ = writeln!(
        s,
        "  k.latency       : {:.3}   ({:.1} ms est. on {} vs {:.0} ms)",
        c.latency, k.latency_ms, m.device.name, m.baseline.values.latency_ms
    );
    let _ = writeln!(
        s,
        "  k.cost          : {:.3}   (${:.4} vs ${:.4} per 1k runs)",
        c.cost, k.cost_per_1k, m.baseline.values.cost_per_1k
    );
    let _ = writeln!(
        s,
        "  k.coverage      : {:.3}   ({} recipes, {} drafts)",
        c.coverage, m.recipes.count, m.recipes.drafts
    );
    let _ = writeln!(s, "  signature       : {}", i.signature.describe());
    let _ = writeln!(
        s,
        "  runtime         : {}   registry {}",
        m.runtime, m.recipe_registry
    );
    let _ = writeln!(s, "\n  model.gguf metadata:");
    for (k, v) in &i.model_metadata {
        let _ = writeln!(s, "    {k:<40} {v}");
    }
    let _ = writeln!(s, "  lora.bin metadata:");
    for (k, v) in &i.lora_metadata {
        let _ = writeln!(s, "    {k:<40} {v}");
    }
    s
}

impl Inspection {
    fn signature_word(&self) -> &'static str {
        match self.signature {
            SignatureState::Verified => "verified",
            SignatureState::Unsigned => "unsigned",
            SignatureState::NoKey => "unchecked",
            SignatureState::Bad => "BAD",
        }
    }
}
