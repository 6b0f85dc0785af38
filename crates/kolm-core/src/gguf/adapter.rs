//! The GGUF LoRA adapter llama.cpp loads: which base tensors an adapter adapts, and the file.
//!
//! For a base tensor `T` of GGUF dimensions `[n_in, n_out]` the adapter holds `T.lora_a`
//! `[n_in, r]` and `T.lora_b` `[r, n_out]` (so, row-major, A is `r × n_in` and B is
//! `n_out × r`), with `general.architecture` of the base, `general.type = adapter`,
//! `adapter.type = lora` and `adapter.lora.alpha` (rs-1.md §2). Written in the base's tensor
//! order, so the same values always give the same bytes.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{GgufWriter, Header, TensorData, Value};

/// A base tensor an adapter adapts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    pub n_in: u64,
    pub n_out: u64,
}

/// The 2-D `blk.*.<kind>.weight` tensors of `base` for the LoRA target kinds (`attn_q`, ...),
/// in the base's order; an error if there are none.
pub fn targets(base: &Header, kinds: &[String]) -> Result<Vec<Target>, String> {
    let found: Vec<Target> = base
        .tensors
        .iter()
        .filter(|t| t.dims.len() == 2)
        .filter(|t| {
            t.name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(_, leaf)| leaf.strip_suffix(".weight"))
                .is_some_and(|kind| kinds.iter().any(|k| k == kind))
        })
        .map(|t| Target {
            name: t.name.clone(),
            n_in: t.dims[0],
            n_out: t.dims[1],
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "the base has no tensors for the LoRA targets {kinds:?}"
        ));
    }
    Ok(found)
}

/// The adapter file: for each target, A (`r × n_in`, row-major) and B (`n_out × r`).
pub fn write(
    arch: &str,
    alpha: f64,
    rank: u64,
    tensors: &[(Target, Vec<f32>, Vec<f32>)],
) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::Str(arch.into()))
        .meta("general.type", Value::Str("adapter".into()))
        .meta("adapter.type", Value::Str("lora".into()))
        .meta("adapter.lora.alpha", Value::F32(alpha as f32));
    for (t, a, b) in tensors {
        w.tensor(TensorData::f32(
            format!("{}.lora_a", t.name),
            vec![t.n_in, rank],
            a,
        ));
        w.tensor(TensorData::f32(
            format!("{}.lora_b", t.name),
            vec![rank, t.n_out],
            b,
        ));
    }
    w.to_bytes()
}

/// Whether an adapter fits a base, by llama.cpp's own checks: the adapter's architecture is the
/// base's, and every LoRA tensor pair matches the base tensor it adapts. The reason when not.
pub fn fits(base: &Header, lora: &Header) -> Result<(), String> {
    if lora.get("general.type").and_then(|v| v.as_str()) != Some("adapter") {
        return Err("it is not a GGUF adapter (general.type)".into());
    }
    if lora.architecture() != base.architecture() {
        return Err(format!(
            "architecture {:?} vs {:?}",
            lora.architecture(),
            base.architecture()
        ));
    }
    for a in lora.tensors.iter().filter(|t| t.name.ends_with(".lora_a")) {
        let target = a.name.trim_end_matches(".lora_a");
        let b = lora
            .tensor(&format!("{target}.lora_b"))
            .ok_or_else(|| format!("`{target}` has lora_a but no lora_b"))?;
        let w = base
            .tensor(target)
            .ok_or_else(|| format!("the base has no tensor `{target}`"))?;
        if a.dims.len() != 2
            || b.dims.len() != 2
            || w.dims.len() < 2
            || a.dims[0] != w.dims[0]
            || b.dims[1] != w.dims[1]
            || a.dims[1] != b.dims[0]
        {
            return Err(format!(
                "`{target}` is {:?} but the adapter has A {:?} and B {:?}",
                w.dims, a.dims, b.dims
            ));
        }
    }
    Ok(())
}

/// Whether every `lora_b` tensor of an adapter is all zeros: the adapter changes nothing, and
/// a runtime can skip it (and `kolm tune init`'s v0 is exactly this).
pub fn is_identity(path: &Path, h: &Header) -> std::io::Result<bool> {
    is_identity_in(&mut std::fs::File::open(path)?, h)
}

/// [`is_identity`] of the adapter GGUF `f` reads (a file, or an entry of an artifact).
pub fn is_identity_in<R: Read + Seek>(f: &mut R, h: &Header) -> std::io::Result<bool> {
    let mut any = false;
    for t in h.tensors.iter().filter(|t| t.name.ends_with(".lora_b")) {
        any = true;
        let Some(len) = t.ty.bytes_for(t.elements()) else {
            return Ok(false);
        };
        let mut buf = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(h.data_offset + t.offset))?;
        f.read_exact(&mut buf)?;
        // +0.0 and -0.0 alike: for f32/f16 a zero is its sign bit at most.
        let zero = match t.ty.name().as_str() {
            "F32" => buf
                .chunks_exact(4)
                .all(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) << 1 == 0),
            "F16" | "BF16" => buf
                .chunks_exact(2)
                .all(|c| u16::from_le_bytes([c[0], c[1]]) << 1 == 0),
            _ => false,
        };
        if !zero {
            return Ok(false);
        }
    }
    Ok(any)
}
