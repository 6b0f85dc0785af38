//! `x·Wᵀ` for a weight that is not trained.
//!
//! candle's matmul backward computes both operands' gradients. For a frozen base weight the
//! second is a third of a training step's arithmetic thrown away, and autograd holds it until
//! the backward pass ends: a full f32 copy of every base weight in memory at once. This op's
//! backward returns `x`'s gradient only.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

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
