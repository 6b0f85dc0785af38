//! The training peer, PyTorch + peft (`benches/peers/peft_train.py`, run with
//! `$KOLM_BENCH_PYTHON`), on the very token ids kolm trains on. Included by path.

use std::path::{Path, PathBuf};
use std::process::Command;

use kolm::train::data::Example;

/// What the peer was asked to train: the adapter's shape and the batches.
pub struct Job<'a> {
    pub model: &'a Path,
    pub rank: u32,
    pub alpha: f64,
    pub targets: &'a [String],
    pub learning_rate: f64,
    /// The first batch is the peer's warm-up; the rest are timed.
    pub batches: Vec<Vec<&'a Example>>,
}

/// Runs the peer on `job` (written under `$KOLM_BENCH_DIR/<name>`) and returns its JSON:
/// `tokens_per_s`, `peak_rss_bytes`, `torch`, `peft`.
pub fn train(root: &Path, name: &str, job: &Job) -> serde_json::Value {
    let dir =
        PathBuf::from(std::env::var("KOLM_BENCH_DIR").unwrap_or("/var/tmp".into())).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("batches.json");
    let json = serde_json::json!({
        "model": job.model,
        "rank": job.rank, "alpha": job.alpha, "targets": job.targets,
        "learning_rate": job.learning_rate,
        "batches": job.batches.iter().map(|b| b.iter().map(|e| serde_json::json!({
            "tokens": e.tokens, "prompt_len": e.prompt_len,
        })).collect::<Vec<_>>()).collect::<Vec<_>>(),
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let python = std::env::var("KOLM_BENCH_PYTHON").unwrap_or("python3".into());
    eprintln!("peer: PyTorch + peft");
    let out = Command::new(&python)
        .arg(root.join("benches/peers/peft_train.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
