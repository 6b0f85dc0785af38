//! The GGUF LoRA adapter llama.cpp loads: which base tensors an adapter adapts, and the file.
//!
//! For a base tensor `T` of GGUF dimensions `[n_in, n_out]` the adapter holds `T.lora_a`
//! `[n_in, r]` and `T.lora_b` `[r, n_out]` (so, row-major, A is `r × n_in` and B is
//! `n_out × r`), with `general.architecture` of the base, `general.type = adapter`,
//! `adapter.type = lora` and `adapter.lora.alpha` (rs-1.md §2). Written in the base's tensor
//! order, so the same values always give the same bytes.

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
