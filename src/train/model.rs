//! The training forward pass: a llama-family model plus LoRA, built only from candle ops that
//! carry gradients, computing what llama.cpp computes.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` have no backward pass: a gradient
//! would silently stop at them. So RMSNorm, softmax and RoPE are written out here from
//! differentiable primitives (`sqr`, `mean`, `exp`, `narrow`, `cat`, ...). The LoRA terms are
//! llama.cpp's: for an adapted weight `W` (`[n_out, n_in]`), `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` with
//! `A` `[r, n_in]` and `B` `[n_out, r]`, then the bias if the base has one (qwen2's q, k, v).
//! Rotary embeddings follow each architecture's convention ([`Rope`]), and grouped-query
//! attention maps query head `h` to key/value head `h / (n_head / n_head_kv)`.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};

use super::weights::{Base, Rope};
use crate::{Error, Result};

/// The adapter being trained: an (A, B) pair per adapted base tensor, by its GGUF name.
pub struct Lora {
    pub rank: usize,
    pub alpha: f64,
    pub pairs: BTreeMap<String, (Var, Var)>,
}

impl Lora {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
    /// Every trainable tensor, in a fixed order (A then B, by name).
    pub fn vars(&self) -> Vec<&Var> {
        self.pairs.values().flat_map(|(a, b)| [a, b]).collect()
    }
}

fn c(e: candle_core::Error) -> Error {
    Error::Other(format!("training forward pass: {e}"))
}

/// RMSNorm as llama.cpp computes it: `x / sqrt(mean(x²) + eps) · w`.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// Softmax over the last dimension, from differentiable parts.
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// The forward pass over one sequence.
pub struct Forward<'a> {
    base: &'a Base,
    lora: &'a Lora,
}

impl<'a> Forward<'a> {
    pub fn new(base: &'a Base, lora: &'a Lora) -> Self {
        Forward { base, lora }
    }

    /// `x·Wᵀ` for the base tensor `name`, plus its LoRA term and bias.
    fn linear(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let w = self.base.get(name).map_err(candle_core::Error::wrap)?;
        let mut y = x.matmul(&w.t()?)?;
        if let Some((a, b)) = self.lora.pairs.get(name) {
            let d = x.matmul(&a.as_tensor().t()?)?.matmul(&b.as_tensor().t()?)?;
            y = (y + (d * self.lora.scale())?)?;
        }
        let bias = name.replace(".weight", ".bias");
        if let Some(b) = self.base.maybe(&bias) {
            y = y.broadcast_add(b)?;
        }
        Ok(y)
    }

    /// Rotates `x` (`[heads, T, head_dim]`) by position.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (h, t, d) = x.dims3()?;
        match self.base.hp.rope {
            Rope::Norm => {
                let x = x.reshape((h, t, d / 2, 2))?;
                let x0 = x.narrow(3, 0, 1)?.squeeze(3)?;
                let x1 = x.narrow(3, 1, 1)?.squeeze(3)?;
                let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
                let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
                Tensor::stack(&[o0, o1], 3)?.reshape((h, t, d))
            }
            Rope::Neox => {
                let x0 = x.narrow(2, 0, d / 2)?;
                let x1 = x.narrow(2, d / 2, d / 2)?;
                let o0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
                let o1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
                Tensor::cat(&[o0, o1], 2)
            }
        }
    }

    /// The final hidden states (after the output norm), `[T, n_embd]`, for `tokens`.
    pub fn hidden(&self, tokens: &[u32]) -> Result<Tensor> {
        self.hidden_inner(tokens).map_err(c)
    }

    fn hidden_inner(&self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let hp = &self.base.hp;
        let dev = Device::Cpu;
        let t = tokens.len();
        let (nh, nkv, hd) = (hp.n_head, hp.n_head_kv, hp.head_dim());
        let get = |n: &str| self.base.get(n).map_err(candle_core::Error::wrap);
        let ids = Tensor::new(tokens, &dev)?;
        let mut x = get("token_embd.weight")?.index_select(&ids, 0)?;
        // Rotary angles: position p, pair i: p · base^(-2i/d).
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| (hp.rope_base.powf(-2.0 * i as f64 / hd as f64)) as f32)
            .collect();
        let pos = Tensor::arange(0u32, t as u32, &dev)?.to_dtype(DType::F32)?;
        let ang = pos
            .reshape((t, 1))?
            .broadcast_mul(&Tensor::new(inv.as_slice(), &dev)?.reshape((1, hd / 2))?)?;
        let (cos, sin) = (ang.cos()?, ang.sin()?);
        let mask: Vec<f32> = (0..t * t)
            .map(|i| if i % t > i / t { -1e30 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}");
            let h = rms_norm(&x, get(&n("attn_norm.weight"))?, hp.eps)?;
            let heads = |y: Tensor, k: usize| y.reshape((t, k, hd))?.transpose(0, 1)?.contiguous();
            let q = heads(self.linear(&h, &n("attn_q.weight"))?, nh)?;
            let k = heads(self.linear(&h, &n("attn_k.weight"))?, nkv)?;
            let v = heads(self.linear(&h, &n("attn_v.weight"))?, nkv)?;
            let q = self.rope(&q, &cos, &sin)?;
            let k = self.rope(&k, &cos, &sin)?;
            let group = |y: Tensor| -> candle_core::Result<Tensor> {
                if nh == nkv {
                    return Ok(y);
                }
                y.unsqueeze(1)?
                    .broadcast_as((nkv, nh / nkv, t, hd))?
                    .contiguous()?
                    .reshape((nh, t, hd))
            };
            let (k, v) = (group(k)?, group(v)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let ctx = softmax(&scores)?
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, nh * hd))?;
            x = (x + self.linear(&ctx, &n("attn_output.weight"))?)?;
            let h = rms_norm(&x, get(&n("ffn_norm.weight"))?, hp.eps)?;
            let gate = self.linear(&h, &n("ffn_gate.weight"))?;
            let up = self.linear(&h, &n("ffn_up.weight"))?;
            x = (x + self.linear(&(gate.silu()? * up)?, &n("ffn_down.weight"))?)?;
        }
        rms_norm(&x, get("output_norm.weight")?, hp.eps)
    }

    /// Logits `[rows, n_vocab]` for hidden states `[rows, n_embd]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let out = self
            .base
            .maybe("output.weight")
            .map(Ok)
            .unwrap_or_else(|| self.base.get("token_embd.weight"))?;
        hidden.matmul(&out.t().map_err(c)?).map_err(c)
    }
}
