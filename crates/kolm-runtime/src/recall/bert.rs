//! The BERT encoder of a sentence-transformers model, on candle.
//!
//! kolm runs its own forward pass rather than candle-transformers' `BertModel`, for speed on a
//! CPU: that one computes attention's softmax with five separate tensor passes and GELU with a
//! scalar `erf` per element, which made it take 1.7× as long as sentence-transformers. Here the
//! softmax is candle's fused one, the attention scale is folded into the queries, and GELU is a
//! custom op with a polynomial `erf` the compiler vectorises ([`crate::kernels::gelu`]). The numbers are BERT's (exact
//! GELU, post-norm layers, absolute positions); tests hold them to sentence-transformers'.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: usize,
    #[serde(default = "gelu")]
    pub hidden_act: String,
}

fn eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A loaded encoder.
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
}

impl Bert {
    /// Loads the weights (names as Hugging Face's `BertModel` saves them, with or without a
    /// `bert.` prefix).
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
        if c.hidden_act != "gelu" {
            candle_core::bail!("hidden_act `{}` is not supported (gelu is)", c.hidden_act);
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!("hidden_size is not a multiple of num_attention_heads");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: linear(h, h, a.pp("self.query"))?,
                    key: linear(h, h, a.pp("self.key"))?,
                    value: linear(h, h, a.pp("self.value"))?,
                    attn_out: linear(h, h, a.pp("output.dense"))?,
                    attn_norm: layer_norm(h, c.layer_norm_eps, a.pp("output.LayerNorm"))?,
                    inter: linear(h, c.intermediate_size, l.pp("intermediate.dense"))?,
                    out: linear(c.intermediate_size, h, l.pp("output.dense"))?,
                    out_norm: layer_norm(h, c.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            words: embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(c.max_position_embeddings, h, e.pp("position_embeddings"))?,
            types: embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
        })
    }

    /// The last hidden states `[batch, tokens, hidden]` for `ids` `[batch, tokens]` (u32),
    /// `mask` `[batch, tokens]` (1 for a real token, 0 for padding).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = Tensor::arange(0u32, t as u32, ids.device())?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&pos)?)?
            .broadcast_add(&self.types.forward(&ids.zeros_like()?)?)?;
        let mut x = self.norm.forward(&x)?;
        let h = x.dim(2)?;
        let (heads, d) = (self.heads, h / self.heads);
        // Padding gets a large negative score, so softmax gives it no weight.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e30)?.reshape((b, 1, 1, t))?;
        let split = |x: Tensor| -> Result<Tensor> {
            x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous()
        };
        for l in &self.layers {
            let q = split((l.query.forward(&x)? * (1.0 / (d as f64).sqrt()))?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, h))?;
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let i = l
                .inter
                .forward(&a)?
                .apply_op1_no_bwd(&crate::kernels::gelu::Gelu)?;
            x = l.out_norm.forward(&(l.out.forward(&i)? + &a)?)?;
        }
        Ok(x)
    }
}
