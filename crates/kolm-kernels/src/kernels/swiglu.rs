//! The SwiGLU feed-forward activation, `silu(gate) · up` with `silu(a) = a·σ(a)`.
//!
//! Backward, with `s = σ(gate)`: `d_gate = g · up · s · (1 + gate · (1 − s))` and
//! `d_up = g · gate · s`, from the two inputs autograd holds anyway. The composed version
//! also kept `silu(gate)`, the width of the feed-forward layer again.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::{exp, f32s, map_rows2};
use rayon::prelude::*;

/// `silu(gate) · up`, both the same shape.
pub struct SwiGlu;

fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + exp(-a))
}

/// The backward pass splits its elements into blocks of this many, in parallel.
const BLOCK: usize = 1 << 14;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "kolm-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        map_rows2((s1, l1), (s2, l2), "swiglu", |_, gate, up, y| {
            for ((y, &a), &u) in y.iter_mut().zip(gate).zip(up) {
                *y = a * sigmoid(a) * u;
            }
        })
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = gate.apply_op3_no_bwd(up, &grad.contiguous()?, self)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// The backward pass: `[d_gate, d_up]` stacked, from `(gate, up, g)`.
impl CustomOp3 for SwiGlu {
    fn name(&self) -> &'static str {
        "kolm-swiglu-back"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gate = f32s(s1, l1, "swiglu back")?;
        let (up, g) = (f32s(s2, l2, "swiglu back")?, f32s(s3, l3, "swiglu back")?);
        let n = gate.len();
        if up.len() != n || g.len() != n {
            bail!("swiglu back: gate, up and gradient differ in size");
        }
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(BLOCK)
            .zip(du.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(b, (dg, du))| {
                let at = b * BLOCK;
                let it = gate[at..].iter().zip(&up[at..]).zip(&g[at..]);
                for ((dg, du), ((&a, &u), &g)) in dg.iter_mut().zip(du.iter_mut()).zip(it) {
                    let s = sigmoid(a);
                    *dg = g * u * s * (1.0 + a * (1.0 - s));
                    *du = g * a * s;
                }
            });
        let mut dims = vec![2];
        dims.extend_from_slice(l1.dims());
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}
