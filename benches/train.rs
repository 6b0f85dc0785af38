//! Training benchmark, side by side with PyTorch + peft in one run (figures in the README).
//!
//! A model with Qwen2.5-0.5B's shape (random weights; kolm writes it), LoRA rank 8 on the
//! attention projections q, k, v, o, one sequence of 512 tokens per step (the loss on its last
//! 256), a few optimiser steps after one warm-up step: training tokens per second, and this
//! process's peak resident memory (the bound: 8 GiB). The peer
//! (`benches/peers/peft_train.py`, run with `$KOLM_BENCH_PYTHON`) builds the same shape with
//! transformers' `Qwen2ForCausalLM` (random init), wraps it with peft's LoRA on the same
//! targets, rank and alpha, and times the same steps with AdamW on the same thread count.
//!
//! Run with `make bench` or `cargo bench --bench train`. Scratch files go to `$KOLM_BENCH_DIR`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kolm::gguf::tiny::{self, Quant, Shape};
use kolm::kolmfile::DistillConfig;
use kolm::train::{self, data::Example, model::Forward, weights::Base};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEQ: usize = 512;
const STEPS: usize = 3;

fn peak_rss_bytes() -> u64 {
    // VmHWM: the resident high-water mark of this process.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        * 1024
}

fn main() {
    kolm::process::init();
    let dir = PathBuf::from(std::env::var("KOLM_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .join("kolm-bench-train");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("qwen2.5-0.5b-shape-q8_0.gguf");
    if !model.is_file() {
        eprintln!(
            "writing a model with Qwen2.5-0.5B's shape to {}",
            model.display()
        );
        std::fs::write(
            &model,
            tiny::model("qwen2", &Shape::QWEN2_5_0_5B, 1, Quant::Q8_0),
        )
        .unwrap();
    }
    let header = kolm::gguf::read_header(&model).unwrap();
    let s = DistillConfig {
        train: true,
        max_seq_len: 1024,
        threads: 2,
        rank: 8,
        alpha: 16.0,
        targets: ["attn_q", "attn_k", "attn_v", "attn_output"]
            .map(String::from)
            .to_vec(),
        epochs: 1,
        learning_rate: 1e-4,
        batch_size: 1,
        seed: 0,
    };
    let base = Base::load(&model).unwrap();
    let lora = train::init_lora(&header, &s).unwrap();
    let vars: Vec<_> = lora.vars().into_iter().cloned().collect();
    let refs: Vec<_> = vars.iter().collect();
    let mut opt = train::optim::AdamW::new(&refs).unwrap();
    let mut rng = kolm::rng::SplitMix64::new(9);
    let ex = Example {
        tokens: (0..SEQ).map(|_| (rng.next_u64() % 50_000) as u32).collect(),
        prompt_len: SEQ / 2,
    };
    let fwd = Forward::new(&base, &lora);
    let step = |opt: &mut train::optim::AdamW| {
        let loss = train::batch_loss(&fwd, &[&ex]).unwrap();
        let mut g = train::gradients(&loss, &lora).unwrap();
        train::optim::clip(&mut g).unwrap();
        opt.step(&refs, &g, 1e-4).unwrap();
    };
    eprintln!("kolm: warm-up step");
    step(&mut opt);
    let t = Instant::now();
    for i in 0..STEPS {
        eprintln!("kolm: step {}", i + 1);
        step(&mut opt);
    }
    let ours = (STEPS * SEQ) as f64 / t.elapsed().as_secs_f64();
    let rss = peak_rss_bytes();

    let python = std::env::var("KOLM_BENCH_PYTHON").unwrap_or("python3".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    eprintln!("peer: PyTorch + peft");
    let out = Command::new(&python)
        .arg(root.join("benches/peers/peft_train.py"))
        .args([SEQ.to_string(), STEPS.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = peer["tokens_per_s"].as_f64().unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let table = format!(
        "Machine: {threads} cores. Model: Qwen2.5-0.5B's shape (494M parameters, random weights; kolm reads a q8_0 GGUF and trains in f32, PyTorch builds it in f32). LoRA rank 8, alpha 16, on q, k, v, o; one {SEQ}-token sequence per step, loss on the last {}; AdamW; {STEPS} timed steps after one warm-up.\n\n\
| measure | kolm (candle) | PyTorch {} + peft {} | ratio |\n|---|---|---|---|\n\
| training tokens/s | {ours:.1} | {theirs:.1} | {:.2}× |\n\
| peak resident memory | {:.2} GiB | {:.2} GiB | |\n",
        SEQ / 2,
        peer["torch"].as_str().unwrap_or("?"),
        peer["peft"].as_str().unwrap_or("?"),
        ours / theirs,
        gib(rss as f64),
        gib(peer["peak_rss_bytes"].as_f64().unwrap_or(0.0)),
    );
    print!("{table}");
    let out = root.join("benches/results/train.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("written to {}", out.display());
}
