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
        let mut y = x.apply_op1(Frozen(w.clone()))?;
        if let Some((a, b)) = self.lora.pairs.get(name) {
            // The scale goes on the rank-r middle, not on the [rows, n_out] result.
            let d = (x.matmul(&a.as_tensor().t()?)? * self.lora.scale())?
                .matmul(&b.as_tensor().t()?)?;
            y = (y + d)?;
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
        let softmax = || CausalSoftmax {
            scale: 1.0 / (hd as f32).sqrt(),
        };
        // Queries `[nh, q, hd]` over keys and values `[nh, k, hd]` (k ≥ q): the last q of the
        // k positions, each seeing the keys up to its own.
        let attend = |q: &Tensor, k: &Tensor, v: &Tensor| -> candle_core::Result<Tensor> {
            q.matmul(&k.t()?)?.apply_op1(softmax())?.matmul(v)
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
            let ctx = if p.rests.is_empty() {
                attend(&q, &k, &v)?
            } else {
                // The prefix attends to itself; each rest to the prefix and itself.
                let pre = p.prefix;
                let (kp, vp) = (k.narrow(1, 0, pre)?, v.narrow(1, 0, pre)?);
                let mut parts = Vec::with_capacity(p.rests.len() + 1);
                if pre > 0 {
                    parts.push(attend(&q.narrow(1, 0, pre)?, &kp, &vp)?);
                }
                for r in p.rests.iter().filter(|r| !r.is_empty()) {
                    let own = |y: &Tensor| y.narrow(1, r.start, r.len());
                    let (kr, vr) = if pre > 0 {
                        (
                            Tensor::cat(&[&kp, &own(&k)?], 1)?,
                            Tensor::cat(&[&vp, &own(&v)?], 1)?,
                        )
                    } else {
                        (own(&k)?, own(&v)?)
                    };
                    parts.push(attend(&own(&q)?, &kr, &vr)?);
                }
                Tensor::cat(&parts, 1)?
            };
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
