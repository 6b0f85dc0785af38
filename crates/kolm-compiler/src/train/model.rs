//! The training forward pass: a llama-family model plus LoRA, computing what llama.cpp
//! computes, from ops that carry gradients.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` have no backward pass (a gradient
//! would silently stop at them), and composing them from differentiable primitives kept every
//! intermediate alive for the backward pass. So the norms, the attention, RoPE, SwiGLU
//! and the loss are [`crate::kernels`] ops with backward passes of their own, and the base's
//! weights enter through [`Frozen`], which computes no gradient for them. The LoRA terms are
//! llama.cpp's: for an adapted weight `W` (`[n_out, n_in]`), `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` with
//! `A` `[r, n_in]` and `B` `[n_out, r]`, then the bias if the base has one (qwen2's q, k, v).
//! Rotary embeddings follow each architecture's convention ([`Rope`]), and grouped-query
//! attention maps query head `h` to key/value head `h / (n_head / n_head_kv)`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};

use super::weights::{Base, Rope};
use crate::kernels::attention::PackedAttention;
use crate::kernels::linear::{Adapted, Frozen};
use crate::kernels::norm::RmsNorm;
use crate::kernels::rope::{self, Pairs};
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

/// Sequences that begin alike (every prompt starts with the same system message), laid out as
/// one: the shared prefix once, then each sequence's own rest. Under causal attention a
/// prefix's hidden states do not depend on what follows it, so computing it once per batch
/// instead of once per sequence is exact, and it is most of a short prompt. Each rest attends
/// to the prefix and to itself, at the positions it would have alone; the prefix's keys and
/// values gather gradient from every rest. Packing also makes each matrix product one tall
/// product over the batch instead of one short product per sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Every row's token: the prefix's, then each rest's.
    pub tokens: Vec<u32>,
    /// Every row's position in its own sequence.
    pub positions: Vec<usize>,
    /// Rows `0..prefix` are the shared prefix.
    pub prefix: usize,
    /// Each sequence's rows after the prefix (empty when it is all prefix).
    pub rests: Vec<std::ops::Range<usize>>,
}

impl Packed {
    /// Packs `seqs` (none empty) by their longest common prefix.
    pub fn new(seqs: &[&[u32]]) -> Packed {
        let first = seqs.first().copied().unwrap_or_default();
        let prefix = seqs.iter().fold(first.len(), |n, s| {
            n.min(first.iter().zip(*s).take_while(|(a, b)| a == b).count())
        });
        let mut tokens = first[..prefix].to_vec();
        let mut positions: Vec<usize> = (0..prefix).collect();
        let mut rests = Vec::new();
        if seqs.len() > 1 || prefix < first.len() {
            for s in seqs {
                let start = tokens.len();
                tokens.extend_from_slice(&s[prefix..]);
                positions.extend(prefix..s.len());
                rests.push(start..tokens.len());
            }
        }
        Packed {
            tokens,
            positions,
            prefix,
            rests,
        }
    }

    /// The row holding token `k` of sequence `i`.
    pub fn row(&self, i: usize, k: usize) -> usize {
        if k < self.prefix {
            k
        } else {
            self.rests[i].start + k - self.prefix
        }
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
        let mut y = match self.lora.pairs.get(name) {
            Some((a, b)) => x.apply_op3(
                a.as_tensor(),
                b.as_tensor(),
                Adapted {
                    w: w.clone(),
                    scale: self.lora.scale() as f32,
                },
            )?,
            None => x.apply_op1(Frozen(w.clone()))?,
        };
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

    /// The final hidden states (after the output norm), `[T, n_embd]`, for one sequence.
    pub fn hidden(&self, tokens: &[u32]) -> Result<Tensor> {
        self.hidden_packed(&Packed::new(&[tokens]))
    }

    /// The final hidden states of a packed batch, `[rows, n_embd]` in [`Packed`]'s row order.
    pub fn hidden_packed(&self, p: &Packed) -> Result<Tensor> {
        self.hidden_inner(p).map_err(c)
    }

    fn hidden_inner(&self, p: &Packed) -> candle_core::Result<Tensor> {
        let hp = &self.base.hp;
        let dev = Device::Cpu;
        let t = p.tokens.len();
        let (nh, nkv, hd) = (hp.n_head, hp.n_head_kv, hp.head_dim());
        let get = |n: &str| self.base.get(n).map_err(candle_core::Error::wrap);
        let ids = Tensor::new(p.tokens.as_slice(), &dev)?;
        let mut x = get("token_embd.weight")?.index_select(&ids, 0)?;
        let pairs = match hp.rope {
            Rope::Norm => Pairs::Adjacent,
            Rope::Neox => Pairs::Halves,
        };
        let rope = rope::Rope::new(&p.positions, hd, hp.rope_base, pairs);
        let attention = PackedAttention {
            prefix: p.prefix,
            rests: p.rests.clone(),
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
            let ctx = q.apply_op3(&k, &v, attention.clone())?;
            let ctx = ctx.transpose(0, 1)?.contiguous()?.reshape((t, nh * hd))?;
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
