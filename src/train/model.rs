//! The training forward pass: a llama-family model plus LoRA, computing what llama.cpp
//! computes, from ops that carry gradients.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` have no backward pass (a gradient
//! would silently stop at them), and composing them from differentiable primitives kept every
//! intermediate alive for the backward pass. So the norms, the attention softmax, RoPE, SwiGLU
//! and the loss are [`crate::kernels`] ops with backward passes of their own, and the base's
//! weights enter through [`Frozen`], which computes no gradient for them. The LoRA terms are
//! llama.cpp's: for an adapted weight `W` (`[n_out, n_in]`), `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` with
//! `A` `[r, n_in]` and `B` `[n_out, r]`, then the bias if the base has one (qwen2's q, k, v).
//! Rotary embeddings follow each architecture's convention ([`Rope`]), and grouped-query
//! attention maps query head `h` to key/value head `h / (n_head / n_head_kv)`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};

use super::weights::{Base, Rope};
use crate::kernels::linear::Frozen;
use crate::kernels::norm::RmsNorm;
use crate::kernels::rope::{self, Pairs};
use crate::kernels::softmax::CausalSoftmax;
use crate::kernels::swiglu::SwiGlu;
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
    Error::failed("the training forward pass failed", e)
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
        let mut y = x.apply_op1(Frozen(w.clone()))?;
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

    /// RMSNorm with the base's weight `name`.
    fn norm(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let w = self.base.get(name).map_err(candle_core::Error::wrap)?;
        x.apply_op1(RmsNorm {
            w: w.clone(),
            eps: self.base.hp.eps,
        })
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
        let pairs = match hp.rope {
            Rope::Norm => Pairs::Adjacent,
            Rope::Neox => Pairs::Halves,
        };
        let rope = rope::Rope::new(t, hd, hp.rope_base, pairs);
        let softmax = || CausalSoftmax {
            scale: 1.0 / (hd as f32).sqrt(),
        };
        for l in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}");
            let h = self.norm(&x, &n("attn_norm.weight"))?;
            let heads = |y: Tensor, k: usize| y.reshape((t, k, hd))?.transpose(0, 1)?.contiguous();
            let q = heads(self.linear(&h, &n("attn_q.weight"))?, nh)?;
            let k = heads(self.linear(&h, &n("attn_k.weight"))?, nkv)?;
            let v = heads(self.linear(&h, &n("attn_v.weight"))?, nkv)?;
            let q = q.apply_op1(rope.clone())?;
            let k = k.apply_op1(rope.clone())?;
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
            let ctx = q
                .matmul(&k.t()?)?
                .apply_op1(softmax())?
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, nh * hd))?;
            x = (x + self.linear(&ctx, &n("attn_output.weight"))?)?;
            let h = self.norm(&x, &n("ffn_norm.weight"))?;
            let gate = self.linear(&h, &n("ffn_gate.weight"))?;
            let up = self.linear(&h, &n("ffn_up.weight"))?;
            x = (x + self.linear(&gate.apply_op2(&up, SwiGlu)?, &n("ffn_down.weight"))?)?;
        }
        self.norm(&x, "output_norm.weight")
    }

    /// Logits `[rows, n_vocab]` for hidden states `[rows, n_embd]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let out = self
            .base
            .maybe("output.weight")
            .map(Ok)
            .unwrap_or_else(|| self.base.get("token_embd.weight"))?;
        hidden.apply_op1(Frozen(out.clone())).map_err(c)
    }
}
