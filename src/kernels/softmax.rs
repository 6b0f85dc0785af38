//! Causal, scaled softmax over attention scores: `softmax(scale · s)` over keys `j ≤ i` for
//! query `i`, zero beyond, in one pass over each row.
//!
//! Backward needs only the output `y`: `ds = scale · y · (g − Σ g·y)`. The composed version
//! (scale, add a mask, max, subtract, exp, sum, divide) kept six copies of a layer's whole
//! `[heads, T, T]` score tensor for the backward pass; this keeps one.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{exp, map_rows, map_rows2};

/// Over scores `[.., queries, keys]`, the last `queries` of `keys` positions.
pub struct CausalSoftmax {
    pub scale: f32,
}

/// How many keys query row `r` sees.
fn visible(l: &Layout, r: usize) -> Result<usize> {
    let d = l.dims();
    let (q, k) = match d {
        [.., q, k] => (*q, *k),
        _ => bail!("causal softmax: scores must be [.., queries, keys], not {d:?}"),
    };
    if q > k {
        bail!("causal softmax: {q} queries over {k} keys");
    }
    Ok(r % q + 1 + (k - q))
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "kolm-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        visible(l, 0)?;
        map_rows(s, l, "causal softmax", |r, x, y| {
            let v = visible(l, r).unwrap_or(x.len());
            let x = &x[..v];
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * self.scale;
            let mut sum = 0f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = exp(x * self.scale - max);
                sum += *y;
            }
            let inv = 1.0 / sum;
            y[..v].iter_mut().for_each(|y| *y *= inv);
        })
    }

    fn bwd(&self, _s: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, self)?))
    }
}

/// The backward pass: `ds` from `(y, g)`; masked entries have `y = 0` and get 0.
impl CustomOp2 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "kolm-causal-softmax-back"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        map_rows2((s1, l1), (s2, l2), "softmax back", |_, y, g, ds| {
            let dot: f32 = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
            for ((ds, &y), &g) in ds.iter_mut().zip(y).zip(g) {
                *ds = self.scale * y * (g - dot);
            }
        })
    }
}
