//! The negative log-likelihood of target tokens, straight from logits:
//! `nll_r = logsumexp(x_r) − x_r[t_r]` for each row `r` of `[rows, vocab]`.
//!
//! With a vocabulary of 150,000 the logits are the largest tensor of a step, and composing
//! `log_softmax` then `gather` kept three more of them for the backward pass. Here backward
//! recomputes the softmax from the logits and the output (`logsumexp = nll + x[t]`):
//! `dx = g_r · (softmax(x_r) − onehot(t_r))`.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};

use super::{exp, f32s, row_len, rows_mut};

/// Per-row loss for `targets` (one per row).
pub struct Nll {
    pub targets: Arc<[u32]>,
}

/// `Σ exp(x − max)` in 16 lanes (so it vectorises; the order is fixed, so the bits are too).
fn sum_exp(x: &[f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    for c in x.chunks(16) {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += exp(x - max);
        }
    }
    acc.iter().sum()
}

/// The vocabulary size, once `targets` are checked against the logits.
fn vocab(targets: &[u32], l: &Layout, op: &str) -> Result<usize> {
    let v = row_len(l, op)?;
    let rows = l.shape().elem_count() / v;
    if rows != targets.len() {
        bail!("{op}: {rows} rows of logits, {} targets", targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= v) {
        bail!("{op}: target token {t} is outside the vocabulary of {v}");
    }
    Ok(v)
}

impl CustomOp1 for Nll {
    fn name(&self) -> &'static str {
        "kolm-nll"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32s(s, l, "nll")?;
        let v = vocab(&self.targets, l, "nll")?;
        let mut out = vec![0f32; self.targets.len()];
        rows_mut(&mut out, 1, |r, y| {
            let x = &x[r * v..(r + 1) * v];
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            y[0] = max + sum_exp(x, max).ln() - x[self.targets[r] as usize];
        });
        Ok((CpuStorage::F32(out), Shape::from(self.targets.len())))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op3_no_bwd(y, &grad.contiguous()?, self)?))
    }
}

/// The backward pass: `dx` from `(x, nll, g)`.
impl CustomOp3 for Nll {
    fn name(&self) -> &'static str {
        "kolm-nll-back"
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
        let x = f32s(s1, l1, "nll back")?;
        let (nll, g) = (f32s(s2, l2, "nll back")?, f32s(s3, l3, "nll back")?);
        let v = vocab(&self.targets, l1, "nll back")?;
        let mut out = vec![0f32; x.len()];
        rows_mut(&mut out, v, |r, dx| {
            let (x, t) = (&x[r * v..(r + 1) * v], self.targets[r] as usize);
            let lse = nll[r] + x[t];
            for (dx, &x) in dx.iter_mut().zip(x) {
                *dx = g[r] * exp(x - lse);
            }
            dx[t] -= g[r];
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
