//! BERT's GELU for recall's encoder: exact (erf-based), as sentence-transformers computes it,
//! with an `erf` that vectorises instead of a scalar call per element.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};

/// Exact GELU, `x · (1 + erf(x/√2)) / 2`, over f32, with [`erf`].
pub struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "kolm-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        super::map_rows(s, l, "gelu", |_, x, y| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }
        })
    }
}

/// erf for f32 as a rational polynomial on [-4, 4] (beyond, ±1 to f32 precision): no branch
/// and no call, so it vectorises. (The approximation Eigen and XLA use for f32.)
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    for c in [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_5e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ] {
        p = p * x2 + c;
    }
    let mut q = -1.456_607_2e-5_f32;
    for c in [-2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2] {
        q = q * x2 + c;
    }
    x * p / q
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_the_series_to_f32_precision() {
        // erf by its Taylor series in f64, good to 1e-15 for |x| <= 3.
        fn reference(x: f64) -> f64 {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0.0f64;
        for i in -3000..=3000 {
            let x = i as f64 / 1000.0;
            worst = worst.max((super::erf(x as f32) as f64 - reference(x)).abs());
        }
        assert!(worst < 5e-7, "max error {worst}");
        assert!((super::erf(10.0) - 1.0).abs() < 1e-6);
        assert!((super::erf(-10.0) + 1.0).abs() < 1e-6);
    }
}
