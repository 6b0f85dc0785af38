//! The K-score: one number that decides whether an artifact ships.
//!
//! K = w_a·A + w_s·S + w_l·L + w_c·C + w_v·V, Σw = 1 (default 0.40 and four times 0.15), each
//! component in [0, 1] and measured against the frontier baseline:
//!
//! - A, accuracy: weighted pass rate on `tests.jsonl`.
//! - S, size: 1 − artifact bytes / baseline bytes.
//! - L, latency: 1 − student ms / frontier ms per run, the student's time being the
//!   deterministic roofline estimate of [`estimate_latency_ms`], never a wall-clock reading.
//! - C, cost: 1 − student $/1k runs / frontier $/1k runs (a local artifact costs 0).
//! - V, coverage: share of output tokens the recipe pack covers.
//!
//! Every input is a pure function of the artifact and its configuration, so recomputing K
//! from the artifact alone (`kolm verify --rescore`, with the runtime) gives the sealed number
//! on any machine. The normative text, with the seed's
//! worked example checked, is `kolmfile-spec/k-score.md`.

use serde::{Deserialize, Serialize};

/// The weight of each component in K; they sum to 1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Weights {
    pub accuracy: f64,
    pub size: f64,
    pub latency: f64,
    pub cost: f64,
    pub coverage: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            accuracy: 0.40,
            size: 0.15,
            latency: 0.15,
            cost: 0.15,
            coverage: 0.15,
        }
    }
}

impl Weights {
    pub fn sum(&self) -> f64 {
        self.accuracy + self.size + self.latency + self.cost + self.coverage
    }
}

/// What the artifact is measured against when no teacher measurement exists.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub accuracy: f64,
    /// Frontier p50 latency of one run, milliseconds.
    pub latency_ms: f64,
    /// Frontier cost of 1,000 runs, dollars.
    pub cost_per_1k: f64,
    /// Size the artifact is compared with (the frontier's weights), bytes.
    pub size_bytes: f64,
}

impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            accuracy: 0.95,
            latency_ms: 1240.0,
            cost_per_1k: 18.0,
            size_bytes: 80e9,
        }
    }
}

/// The reference device the latency estimate is computed for (a roofline).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeviceProfile {
    pub name: String,
    /// Sustained memory bandwidth, GB/s: bounds decode.
    pub mem_bandwidth_gbs: f64,
    /// Sustained matmul throughput, GFLOP/s: bounds prefill.
    pub compute_gflops: f64,
}

impl DeviceProfile {
    /// The built-in profiles, by name.
    pub fn builtin(name: &str) -> Option<DeviceProfile> {
        let (bw, fl) = match name {
            "cpu-2core" => (20.0, 100.0),
            "laptop" => (60.0, 1000.0),
            "phone" => (40.0, 500.0),
            "server-gpu" => (900.0, 50000.0),
            _ => return None,
        };
        Some(DeviceProfile {
            name: name.to_string(),
            mem_bandwidth_gbs: bw,
            compute_gflops: fl,
        })
    }
    pub const BUILTIN: [&'static str; 4] = ["cpu-2core", "laptop", "phone", "server-gpu"];
}

/// What the score stage measured: deterministic quantities only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Weighted pass rate in [0, 1].
    pub accuracy: f64,
    pub tests_passed: u64,
    pub tests_total: u64,
    /// Artifact size: the five payload entries, uncompressed, in bytes (manifest and signature
    /// do not exist yet when scoring, and are a few KB).
    pub size_bytes: u64,
    /// Estimated p50 latency of one run on the reference device, ms.
    pub latency_ms: f64,
    /// Dollars per 1,000 runs (0 for a local artifact).
    pub cost_per_1k: f64,
    /// Share of output tokens covered by recipes and drafts.
    pub coverage: f64,
}

/// The five normalised components.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Components {
    pub accuracy: f64,
    pub size: f64,
    pub latency: f64,
    pub cost: f64,
    pub coverage: f64,
}

fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// 1 − ours/theirs, clamped; a zero baseline is matched only by zero.
fn inverse_ratio(ours: f64, theirs: f64) -> f64 {
    if theirs <= 0.0 {
        if ours <= 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        unit(1.0 - ours / theirs)
    }
}

/// Normalises measurements against the baseline.
pub fn components(m: &Measured, b: &Baseline) -> Components {
    Components {
        accuracy: unit(m.accuracy),
        size: inverse_ratio(m.size_bytes as f64, b.size_bytes),
        latency: inverse_ratio(m.latency_ms, b.latency_ms),
        cost: inverse_ratio(m.cost_per_1k, b.cost_per_1k),
        coverage: unit(m.coverage),
    }
}

/// K from components and weights.
pub fn k_score(c: &Components, w: &Weights) -> f64 {
    w.accuracy * c.accuracy
        + w.size * c.size
        + w.latency * c.latency
        + w.cost * c.cost
        + w.coverage * c.coverage
}

/// Whether K clears the gate (ties ship).
pub fn passes(k: f64, gate: f64) -> bool {
    k >= gate
}

/// Work counted while running one test: the inputs of the latency estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Work {
    pub prompt_tokens: u64,
    /// Decode forward passes (one per generated token but the last, fewer when drafts are
    /// accepted: runtime.md §4).
    pub decode_passes: u64,
    /// For each of those passes that verified drafted tokens, how many tokens it decoded (the
    /// chosen token and the drafts): such a pass does that many tokens' arithmetic.
    pub verify_rows: Vec<u64>,
}

/// Roofline estimate of one run on `device`: prefill is compute-bound (2·params FLOPs per
/// prompt token), each decode pass is bound by the larger of reading the weights once and its
/// FLOPs, which a pass verifying drafts multiplies by the tokens it decodes. Same counts, same
/// model, same device: same milliseconds, on any machine.
pub fn estimate_latency_ms(
    work: &Work,
    params: u64,
    model_bytes: u64,
    device: &DeviceProfile,
) -> f64 {
    let flops_per_token = 2.0 * params as f64;
    let compute = device.compute_gflops * 1e9;
    let bandwidth = device.mem_bandwidth_gbs * 1e9;
    let prefill = work.prompt_tokens as f64 * flops_per_token / compute;
    let pass =
        |rows: u64| (model_bytes as f64 / bandwidth).max(rows as f64 * flops_per_token / compute);
    let plain = work
        .decode_passes
        .saturating_sub(work.verify_rows.len() as u64);
    let verifying: f64 = work.verify_rows.iter().map(|n| pass(*n)).sum();
    (prefill + plain as f64 * pass(1) + verifying) * 1e3
}

/// Median of values (the p50 the K-score uses); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile (0 for none).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_estimate_follows_k_score_md() {
        // §4's worked example: 1.5e9 parameters, 1e9 bytes, `laptop`, 200 prompt tokens and
        // 20 decode passes: 933.3 ms.
        let laptop = DeviceProfile::builtin("laptop").unwrap();
        let plain = Work {
            prompt_tokens: 200,
            decode_passes: 20,
            verify_rows: Vec::new(),
        };
        let ms = estimate_latency_ms(&plain, 1_500_000_000, 1_000_000_000, &laptop);
        assert!((ms - 933.333).abs() < 1e-2, "{ms}");
        // Two of the passes verified drafts, decoding 8 and 20 tokens: each is bound by its
        // arithmetic (8 · 3 GFLOP / 1 TFLOP/s = 24 ms and 60 ms, over the 16.7 ms of reading
        // the weights); the other 18 stay at 16.7 ms.
        let drafted = Work {
            verify_rows: vec![8, 20],
            ..plain
        };
        let ms2 = estimate_latency_ms(&drafted, 1_500_000_000, 1_000_000_000, &laptop);
        let want = 600.0 + 18.0 * 1e9 / 6e10 * 1e3 + 24.0 + 60.0;
        assert!((ms2 - want).abs() < 1e-6, "{ms2} vs {want}");
    }
}
