//! The support-triage example's artifact, as the recipe and serving benchmarks open it: built
//! by `make demo`, or `KOLM_BENCH_ARTIFACT`; its key from `KOLM_SIGNING_KEY` (default: the
//! demo's). Included by path.

use std::path::PathBuf;

/// The artifact's path, the repository root, and the artifact opened (verified, extracted)
/// with its tests.
pub fn open() -> (
    PathBuf,
    PathBuf,
    kolm::home::Home,
    kolm::runtime::open::Opened,
    Vec<kolm::evals::Test>,
) {
    if std::env::var_os("KOLM_SIGNING_KEY").is_none() {
        std::env::set_var("KOLM_SIGNING_KEY", "demo-key-not-secret");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let art = std::env::var_os("KOLM_BENCH_ARTIFACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("examples/support-triage/dist/support-triage.kolm"));
    assert!(
        art.is_file(),
        "no artifact at {} (run `make demo`, or set KOLM_BENCH_ARTIFACT)",
        art.display()
    );
    let home = kolm::home::Home::from_env();
    let opened = kolm::runtime::open::open(&art, &home, &Default::default(), true).unwrap();
    let tests = kolm::evals::parse("tests.jsonl", &opened.tests).unwrap();
    (art, root, home, opened, tests)
}

/// The `p` quantile of `v` (nearest rank).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}
