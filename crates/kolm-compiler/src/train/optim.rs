//! AdamW with decoupled weight decay, global-norm gradient clipping and a warmup-then-linear
//! learning-rate schedule.
//!
//! Written out rather than taken from candle-nn so that its state (the moment estimates and
//! the step) can be saved in a checkpoint and restored exactly: a resumed run must take the
//! very steps an uninterrupted one would have.

use candle_core::{Tensor, Var};

use crate::{Error, Result};

fn c(e: candle_core::Error) -> Error {
    Error::failed("the optimiser failed", e)
}

pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;
/// Adapter weights are few and start at zero; a light decay keeps them from drifting.
pub const WEIGHT_DECAY: f64 = 0.01;
/// Gradients are scaled down to this global L2 norm when larger.
pub const CLIP_NORM: f64 = 1.0;

pub struct AdamW {
    /// Steps taken so far.
    pub step: u64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(vars: &[&Var]) -> Result<AdamW> {
        let zeros = || -> Result<Vec<Tensor>> {
            vars.iter()
                .map(|v| v.as_tensor().zeros_like().map_err(c))
                .collect()
        };
        Ok(AdamW {
            step: 0,
            m: zeros()?,
            v: zeros()?,
        })
    }

    /// One update of `vars` by `grads` (same order), at learning rate `lr`.
    pub fn step(&mut self, vars: &[&Var], grads: &[Tensor], lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let m =
                ((&self.m[i] * BETA1).map_err(c)? + (g * (1.0 - BETA1)).map_err(c)?).map_err(c)?;
            let v = ((&self.v[i] * BETA2).map_err(c)?
                + (g.sqr().map_err(c)? * (1.0 - BETA2)).map_err(c)?)
            .map_err(c)?;
            let update = (m.affine(1.0 / bc1, 0.0).map_err(c)?)
                .div(
                    &(v.affine(1.0 / bc2, 0.0)
                        .and_then(|x| x.sqrt())
                        .and_then(|x| x + EPS))
                    .map_err(c)?,
                )
                .map_err(c)?;
            let w = var.as_tensor();
            let next = ((w * (1.0 - lr * WEIGHT_DECAY)).map_err(c)? - (update * lr).map_err(c)?)
                .map_err(c)?;
            var.set(&next).map_err(c)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Scales `grads` down so their global L2 norm is at most [`CLIP_NORM`]; returns the norm
/// before clipping.
pub fn clip(grads: &mut [Tensor]) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter() {
        sq += g
            .sqr()
            .and_then(|s| s.sum_all())
            .and_then(|s| s.to_scalar::<f32>())
            .map_err(c)? as f64;
    }
    let norm = sq.sqrt();
    if norm > CLIP_NORM {
        let k = CLIP_NORM / norm;
        for g in grads.iter_mut() {
            *g = (&*g * k).map_err(c)?;
        }
    }
    Ok(norm)
}

/// The learning rate at `step` (0-based) of `total`: linear warmup over the first tenth, then
/// linear decay to a tenth of the peak.
pub fn schedule(peak: f64, step: u64, total: u64) -> f64 {
    let warm = (total / 10).max(1);
    if step < warm {
        peak * (step + 1) as f64 / warm as f64
    } else {
        let left = (total - step) as f64 / (total - warm).max(1) as f64;
        peak * (0.1 + 0.9 * left)
    }
}
