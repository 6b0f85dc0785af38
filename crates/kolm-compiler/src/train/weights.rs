//! The base model's weights as f32 candle tensors, and the hyperparameters that shape its
//! forward pass, read from its GGUF.
//!
//! Every tensor is dequantised (f16, q8_0, k-quants: whatever candle reads) to f32, because the
//! training forward pass must be differentiable, and candle's quantised matmul carries no
//! gradient. Shapes come out as candle reads them, `[n_out, n_in]` for a weight, the transpose
//! of GGUF's dimension order.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Which rotary embedding an architecture uses, as llama.cpp applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// Rotates adjacent pairs `(x[2i], x[2i+1])` (`llama`: its converter permutes q and k to
    /// fit).
    Norm,
    /// Rotates `(x[i], x[i + d/2])` (`qwen2`).
    Neox,
}

/// The hyperparameters of a llama-family model.
#[derive(Debug, Clone, PartialEq)]
pub struct Hparams {
    pub arch: String,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub eps: f64,
    pub rope_base: f64,
    pub rope: Rope,
}

impl Hparams {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// A base model loaded for training.
pub struct Base {
    pub hp: Hparams,
    tensors: HashMap<String, Tensor>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(
        format!("base `{}`: {what}", path.display()),
        "training supports GGUF bases of architecture `llama` or `qwen2`",
    )
}

impl Base {
    /// Reads and dequantises every tensor of the GGUF at `path`.
    pub fn load(path: &Path) -> Result<Base> {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?;
        let content = gguf_file::Content::read(&mut f).map_err(|e| bad(path, e))?;
        let meta = |k: &str| content.metadata.get(k);
        let arch = meta("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| bad(path, "no general.architecture"))?;
        let rope = match arch.as_str() {
            "llama" => Rope::Norm,
            "qwen2" => Rope::Neox,
            other => {
                return Err(bad(
                    path,
                    format_args!("architecture `{other}` is not supported"),
                ))
            }
        };
        let int = |k: &str| -> Result<usize> {
            meta(&format!("{arch}.{k}"))
                .and_then(|v| {
                    v.to_u32()
                        .ok()
                        .or_else(|| v.to_u64().ok().map(|x| x as u32))
                })
                .map(|x| x as usize)
                .ok_or_else(|| bad(path, format_args!("no `{arch}.{k}`")))
        };
        let float = |k: &str, default: f32| -> f64 {
            meta(&format!("{arch}.{k}"))
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(default) as f64
        };
        let n_head = int("attention.head_count")?;
        let mut tensors = HashMap::new();
        for name in content.tensor_infos.keys() {
            let t = content
                .tensor(&mut f, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .map_err(|e| bad(path, format_args!("tensor `{name}`: {e}")))?;
            tensors.insert(name.clone(), t);
        }
        let n_vocab = tensors
            .get("token_embd.weight")
            .ok_or_else(|| bad(path, "no token_embd.weight"))?
            .dim(0)
            .map_err(|e| bad(path, e))?;
        let hp = Hparams {
            n_embd: int("embedding_length")?,
            n_layer: int("block_count")?,
            n_head,
            n_head_kv: int("attention.head_count_kv").unwrap_or(n_head),
            n_ff: int("feed_forward_length")?,
            n_vocab,
            eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: float("rope.freq_base", 10000.0),
            rope,
            arch,
        };
        if !hp.n_embd.is_multiple_of(hp.n_head) || !hp.n_head.is_multiple_of(hp.n_head_kv) {
            return Err(bad(path, "head counts do not divide the embedding"));
        }
        Ok(Base { hp, tensors })
    }

    /// A tensor by its GGUF name.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| {
            Error::invalid(
                format!("the base has no tensor `{name}`"),
                "the base is not a llama or qwen2 model kolm can train",
            )
        })
    }

    /// A tensor if the base has it (biases, an untied output).
    pub fn maybe(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }
}
