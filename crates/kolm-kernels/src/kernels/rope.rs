//! Rotary position embeddings over `[heads, T, head_dim]`: each pair of a head's dimensions
//! at position `p` is turned by the angle `p · base^(−2i/d)`. llama pairs neighbours
//! `(2i, 2i+1)` ([`Pairs::Adjacent`]); qwen2 (GPT-NeoX's convention) pairs `(i, i + d/2)`
//! ([`Pairs::Halves`]).
//!
//! A rotation's transpose is the rotation the other way, so the backward pass is this op on
//! the gradient with the angles negated, and keeps nothing. (The composed version kept the
//! halves, their products and the concatenation: eight tensors per call.)

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::map_rows;

/// Which dimensions rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairs {
    Adjacent,
    Halves,
}

/// The rotation for each row's position: `cos` and `sin` `[rows, head_dim / 2]`. Rows need not
/// be in order: a packed batch repeats positions (each sequence after a shared prefix starts
/// again where the prefix ends).
#[derive(Clone)]
pub struct Rope {
    pub cos: Arc<[f32]>,
    pub sin: Arc<[f32]>,
    pub pairs: Pairs,
    /// The backward pass turns the other way.
    reverse: bool,
}

impl Rope {
    /// The angles for rows at `positions`, of `head_dim` dimensions.
    pub fn new(positions: &[usize], head_dim: usize, base: f64, pairs: Pairs) -> Rope {
        let half = head_dim / 2;
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for &p in positions {
            for i in 0..half {
                let inv = base.powf(-2.0 * i as f64 / head_dim as f64) as f32;
                let a = p as f32 * inv;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope {
            cos: cos.into(),
            sin: sin.into(),
            pairs,
            reverse: false,
        }
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "kolm-rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[_, t, d] = l.dims() else {
            bail!("rope: x must be [heads, T, head_dim], not {:?}", l.dims());
        };
        let half = d / 2;
        if d % 2 != 0 || self.cos.len() != t * half {
            bail!(
                "rope: {t} rows of {d} dimensions, angles for {}",
                self.cos.len() / half.max(1)
            );
        }
        let sign = if self.reverse { -1.0 } else { 1.0 };
        map_rows(s, l, "rope", |r, x, y| {
            let p = r % t;
            let (cos, sin) = (&self.cos[p * half..], &self.sin[p * half..]);
            for i in 0..half {
                let (a, b) = match self.pairs {
                    Pairs::Adjacent => (2 * i, 2 * i + 1),
                    Pairs::Halves => (i, i + half),
                };
                let (c, s) = (cos[i], sign * sin[i]);
                y[a] = x[a] * c - x[b] * s;
                y[b] = x[a] * s + x[b] * c;
            }
        })
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = Rope {
            reverse: !self.reverse,
            ..self.clone()
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}
