//! RMSNorm as llama.cpp computes it: `x / sqrt(mean(x²) + eps) · w`, the sum of squares in
//! f64, over the last dimension. The weight is the base's and is not trained.
//!
//! Backward, with `r = 1/sqrt(mean(x²) + eps)` and `u = g·w`:
//! `dx = r·u − x · r³ · Σ(u·x) / n`. It needs `x`, which autograd holds anyway (it is the
//! residual stream), and nothing else: the composed version kept four tensors per norm.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{map_rows, map_rows2, with_f32s};

/// RMSNorm with the (frozen) weight `w` `[n]`.
pub struct RmsNorm {
    pub w: Tensor,
    pub eps: f64,
}

/// `1/sqrt(mean(x²) + eps)` for one row.
fn inv_rms(x: &[f32], eps: f64) -> f32 {
    let ss: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    1.0 / ((ss / x.len() as f64) as f32 + eps as f32).sqrt()
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "kolm-rms-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        with_f32s(&self.w, "rms_norm weight", |w| {
            if Some(&w.len()) != l.dims().last() {
                candle_core::bail!("rms_norm: weight of {} for rows of {:?}", w.len(), l.dims());
            }
            map_rows(s, l, "rms_norm", |_, x, y| {
                let inv = inv_rms(x, self.eps);
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = (x * inv) * w;
                }
            })
        })
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, self)?))
    }
}

/// The backward pass: `dx` from `(x, g)`.
impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "kolm-rms-norm-back"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        with_f32s(&self.w, "rms_norm weight", |w| {
            map_rows2((s1, l1), (s2, l2), "rms_norm back", |_, x, g, dx| {
                let inv = inv_rms(x, self.eps);
                let dot: f32 = x.iter().zip(g).zip(w).map(|((&x, &g), &w)| g * w * x).sum();
                let c = inv * inv * inv * dot / x.len() as f32;
                for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                    *dx = inv * g * w - x * c;
                }
            })
        })
    }
}
