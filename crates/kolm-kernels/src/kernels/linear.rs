//! `x·Wᵀ` for a weight that is not trained, alone ([`Frozen`]) or with a LoRA pair that is
//! ([`Adapted`]).
//!
//! candle's matmul backward computes both operands' gradients. For a frozen base weight the
//! second is a third of a training step's arithmetic thrown away, and autograd holds it until
//! the backward pass ends: a full f32 copy of every base weight in memory at once. This op's
//! backward returns `x`'s gradient only.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp3, Device, Layout, Result, Shape, Storage, Tensor,
};

use super::{f32s, gemm, with_f32s, View};

/// `dst[m×n] = (dst +) scale · a·b` into a whole row-major `dst`, on the current pool.
fn product(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    scale: f32,
    (a, av): (&[f32], View),
    (b, bv): (&[f32], View),
) {
    gemm(
        (m, n, k),
        dst,
        View::rows(0, n),
        accumulate,
        scale,
        a,
        av,
        b,
        bv,
        true,
    );
}

/// `x` `[m, k]` times the frozen `w` `[n, k]` transposed: `[m, n]`.
pub struct Frozen(pub Tensor);

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "kolm-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[m, k] = l.dims() else {
            bail!(
                "frozen linear: x must be [rows, features], not {:?}",
                l.dims()
            );
        };
        let (n, wk) = self.0.dims2()?;
        if wk != k {
            bail!("frozen linear: x has {k} features, the weight {wk}");
        }
        let (w, wl) = self.0.storage_and_layout();
        let Storage::Cpu(w) = &*w else {
            bail!("frozen linear: CPU tensors only");
        };
        let out = s.matmul(w, (1, m, n, k), l, &wl.transpose(0, 1)?)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.0)?))
    }
}

/// `x·Wᵀ + s·(x·Aᵀ)·Bᵀ`: a frozen base weight `W` `[n, k]` with the LoRA pair being trained,
/// `A` `[r, k]` and `B` `[n, r]`, for `x` `[m, k]` (all contiguous).
///
/// Composed, this was five ops: two products, a scale, a sum, and in the backward pass the sum
/// of `x`'s two gradients, each a pass over a `[rows, n]` tensor and a fresh allocation; with
/// seven adapted weights a layer they were a tenth of a training step. Here the low-rank term
/// is accumulated into the product's output and the low-rank gradient into `x`'s. The backward
/// pass recomputes `x·Aᵀ` (`[m, r]`, cheap) instead of keeping it.
pub struct Adapted {
    pub w: Tensor,
    pub scale: f32,
}

/// The shapes `(m, k, n, r)` of an [`Adapted`] call.
fn adapted_dims(
    x: &[usize],
    a: &[usize],
    b: &[usize],
    w: &[usize],
) -> Result<(usize, usize, usize, usize)> {
    let (&[m, k], &[r, ak], &[n, br], &[wn, wk]) = (x, a, b, w) else {
        bail!("adapted linear: x {x:?}, A {a:?}, B {b:?}, W {w:?} are not matrices");
    };
    if ak != k || wk != k || wn != n || br != r {
        bail!("adapted linear: x {x:?}, A {a:?}, B {b:?} and W {w:?} do not fit");
    }
    Ok((m, k, n, r))
}

impl CustomOp3 for Adapted {
    fn name(&self) -> &'static str {
        "kolm-adapted-linear"
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
        let op = "adapted linear";
        let (m, k, n, r) = adapted_dims(l1.dims(), l2.dims(), l3.dims(), self.w.dims())?;
        let (x, a, b) = (f32s(s1, l1, op)?, f32s(s2, l2, op)?, f32s(s3, l3, op)?);
        let mut y = vec![0f32; m * n];
        with_f32s(&self.w, op, |w| {
            let mut xa = vec![0f32; m * r];
            product(
                (m, r, k),
                &mut xa,
                false,
                1.0,
                (x, View::rows(0, k)),
                (a, View::cols(0, k)),
            );
            product(
                (m, n, k),
                &mut y,
                false,
                1.0,
                (x, View::rows(0, k)),
                (w, View::cols(0, k)),
            );
            product(
                (m, n, r),
                &mut y,
                true,
                self.scale,
                (&xa, View::rows(0, r)),
                (b, View::cols(0, r)),
            );
            Ok(())
        })?;
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = "adapted linear back";
        let (m, k, n, r) = adapted_dims(x.dims(), a.dims(), b.dims(), self.w.dims())?;
        let g = grad.contiguous()?;
        let s = self.scale;
        let (dx, da, db) = with_f32s(x, op, |x| {
            with_f32s(a, op, |a| {
                with_f32s(b, op, |b| {
                    with_f32s(&g, op, |g| {
                        with_f32s(&self.w, op, |w| {
                            // g·B, then dx = g·W + s·(g·B)·A.
                            let mut gb = vec![0f32; m * r];
                            product(
                                (m, r, n),
                                &mut gb,
                                false,
                                1.0,
                                (g, View::rows(0, n)),
                                (b, View::rows(0, r)),
                            );
                            let mut dx = vec![0f32; m * k];
                            product(
                                (m, k, n),
                                &mut dx,
                                false,
                                1.0,
                                (g, View::rows(0, n)),
                                (w, View::rows(0, k)),
                            );
                            product(
                                (m, k, r),
                                &mut dx,
                                true,
                                s,
                                (&gb, View::rows(0, r)),
                                (a, View::rows(0, k)),
                            );
                            // dA = s·(g·B)ᵀ·x; dB = s·gᵀ·(x·Aᵀ).
                            let mut da = vec![0f32; r * k];
                            product(
                                (r, k, m),
                                &mut da,
                                false,
                                s,
                                (&gb, View::cols(0, r)),
                                (x, View::rows(0, k)),
                            );
                            let mut xa = vec![0f32; m * r];
                            product(
                                (m, r, k),
                                &mut xa,
                                false,
                                1.0,
                                (x, View::rows(0, k)),
                                (a, View::cols(0, k)),
                            );
                            let mut db = vec![0f32; n * r];
                            product(
                                (n, r, m),
                                &mut db,
                                false,
                                s,
                                (g, View::cols(0, n)),
                                (&xa, View::rows(0, r)),
                            );
                            Ok((dx, da, db))
                        })
                    })
                })
            })
        })?;
        let t = |v: Vec<f32>, like: &Tensor| Tensor::from_vec(v, like.shape(), &Device::Cpu);
        Ok((Some(t(dx, x)?), Some(t(da, a)?), Some(t(db, b)?)))
    }
}
