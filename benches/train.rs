//! Training benchmark, side by side with PyTorch + peft in one run (figures in the README).
//!
//! The real student: SmolLM2-135M-Instruct (`make base` fetches it; `$KOLM_STUDENT`
//! names another copy), LoRA rank 8, alpha 16 on the support-triage example's seven targets,
//! batches of 8 of the example's seeds rendered exactly as the `train` stage renders them
//! (system prompt, chat template, target JSON, end-of-turn token). One warm-up step, then
//! `STEPS` timed steps: training tokens per second (every real token of every sequence,
//! prompt and target, as the stage reports them) and this process's peak resident memory.
//!
//! The peer (`benches/peers/peft_train.py`, run with `$KOLM_BENCH_PYTHON`) loads the same GGUF
//! with transformers (dequantised to f32), wraps it with peft's LoRA on the same targets, rank
//! and alpha, and trains on the very token ids (written to a JSON file), batch by batch in the
//! same order, padded as Hugging Face training pads (to the batch's longest sequence, with an
//! attention mask, the loss masked to the target tokens), with AdamW on the same thread count.
//!
//! `KOLM_BENCH_PEER=0` skips the peer (for profiling); `KOLM_BENCH_STEPS` sets the number of
//! timed steps (4 by default; more steady the figure, for comparing two builds). Run with `make bench` or
//! `cargo bench --bench train`.

use std::time::Instant;

use kolm::kolmfile::{DistillConfig, Kolmfile};
use kolm::train::{self, data, model::Forward, weights::Base};

#[path = "../tests/support/student.rs"]
mod student;

#[path = "support/peft.rs"]
mod peft;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 8;
const STEPS: usize = 4;

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

/// The timed steps: `KOLM_BENCH_STEPS`, or [`STEPS`].
fn steps() -> usize {
    std::env::var("KOLM_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STEPS)
}

fn main() {
    kolm::process::init();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = student::path();
    let kf = Kolmfile::load(&root.join("examples/support-triage/Kolmfile.toml")).unwrap();
    let task = &kf.tasks[0];
    let s = DistillConfig {
        threads: 2,
        ..task.distill.clone()
    };
    let seeds: Vec<serde_json::Value> = std::fs::read_to_string(kf.abs(&task.seeds))
        .unwrap()
        .lines()
        .take(BATCH * (steps() + 1))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let examples = data::examples(
        &model,
        &data::Task {
            description: &task.description,
            schema: &task.output_schema,
            grounding: None,
        },
        &seeds,
        s.max_seq_len as usize,
    )
    .unwrap();
    let batches: Vec<Vec<&data::Example>> =
        examples.chunks(BATCH).map(|c| c.iter().collect()).collect();

    let header = kolm::gguf::read_header(&model).unwrap();
    let base = Base::load(&model).unwrap();
    let lora = train::init_lora(&header, &s).unwrap();
    let vars: Vec<_> = lora.vars().into_iter().cloned().collect();
    let refs: Vec<_> = vars.iter().collect();
    let mut opt = train::optim::AdamW::new(&refs).unwrap();
    let fwd = Forward::new(&base, &lora);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut step = |batch: &[&data::Example]| {
        pool.install(|| {
            let loss = train::batch_loss(&fwd, batch).unwrap();
            let mut g = train::gradients(&loss, &lora).unwrap();
            train::optim::clip(&mut g).unwrap();
            opt.step(&refs, &g, s.learning_rate).unwrap();
        })
    };
    eprintln!("kolm: warm-up step");
    step(&batches[0]);
    let t = Instant::now();
    let mut tokens = 0;
    for (i, b) in batches[1..].iter().enumerate() {
        let ins: Vec<&[u32]> = b.iter().map(|e| &e.tokens[..e.tokens.len() - 1]).collect();
        let p = kolm::train::model::Packed::new(&ins);
        eprintln!(
            "kolm: step {} (prefix {} of {} rows)",
            i + 1,
            p.prefix,
            p.tokens.len()
        );
        step(b);
        tokens += b.iter().map(|e| e.tokens.len()).sum::<usize>();
    }
    let ours = tokens as f64 / t.elapsed().as_secs_f64();
    let rss = peak_rss_bytes();
    eprintln!("kolm: {ours:.1} tokens/s, peak RSS {rss} bytes");
    if std::env::var("KOLM_BENCH_PEER").as_deref() == Ok("0") {
        return;
    }

    let peer = peft::train(
        root,
        "kolm-bench-train",
        &peft::Job {
            model: &model,
            rank: s.rank,
            alpha: s.alpha,
            targets: &s.targets,
            learning_rate: s.learning_rate,
            batches: batches.clone(),
        },
    );
    let theirs = peer["tokens_per_s"].as_f64().unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let table = format!(
        "Machine: {threads} cores. Model: SmolLM2-135M-Instruct (`{}`; kolm trains on it dequantised to f32, PyTorch loads the same GGUF through transformers, also f32). LoRA rank {}, alpha {}, on {}; batches of {BATCH} support-triage seeds as the train stage renders them ({tokens} tokens in the {STEPS} timed steps, after one warm-up step), loss on the target tokens; AdamW. Tokens/s counts every real token (prompt and target; not the peer's padding).\n\n\
| measure | kolm (candle) | PyTorch {} + peft {} | ratio |\n|---|---|---|---|\n\
| training tokens/s | {ours:.1} | {theirs:.1} | {:.2}× |\n\
| peak resident memory | {:.2} GiB | {:.2} GiB | {:.2}× |\n",
        model.file_name().unwrap().to_string_lossy(),
        s.rank,
        s.alpha,
        s.targets.join(", "),
        peer["torch"].as_str().unwrap_or("?"),
        peer["peft"].as_str().unwrap_or("?"),
        ours / theirs,
        gib(rss as f64),
        gib(peer["peak_rss_bytes"].as_f64().unwrap_or(0.0)),
        rss as f64 / peer["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN),
    );
    print!("{table}");
    let out = root.join("benches/results/train.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("written to {}", out.display());
}
