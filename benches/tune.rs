//! `kolm tune` on the support-triage example's artifact (figures in the README and
//! `benches/results/tune.md`), in a scratch KOLM_HOME:
//!
//! - 200 runs of the eval inputs with capture on (the model and the recipes answering, as in
//!   production), and the capture append's own cost against a run's;
//! - one `kolm tune step` on those 200 captures with the real base (SmolLM2-135M-Instruct):
//!   wall time and training tokens/s, beside PyTorch + peft (the train benchmark's peer,
//!   `benches/peers/peft_train.py`) on the first batches of the very same token ids.
//!
//! Needs `make demo` (or `KOLM_BENCH_ARTIFACT`) and `KOLM_BENCH_PYTHON` with the peer's
//! packages (benches/run.sh); `KOLM_BENCH_PEER=0` skips the peer.

use std::time::Instant;

use kolm::runtime::{GenOptions, Runner};
use kolm::train::data;
use kolm::tune::{self, StepOptions, Tuned};
use kolm::tune_state::{Capture, TuneDir};

#[path = "support/example.rs"]
mod example;
use example::percentile;

#[path = "support/peft.rs"]
mod peft;

const RUNS: usize = 200;
/// Batches the peer trains (the first is its warm-up).
const PEER_BATCHES: usize = 5;

fn main() {
    kolm::process::init();
    let scratch = tempfile::tempdir().unwrap();
    std::env::set_var("KOLM_HOME", scratch.path());
    let (art, root, home, opened, tests) = example::open();
    let verify = Default::default();
    let opts = GenOptions {
        threads: 2,
        ..GenOptions::default()
    };

    let t = Tuned::open(&home, art.to_str().unwrap(), &verify).unwrap();
    tune::init(&t, None).unwrap();
    tune::capture(&t, true).unwrap();
    let mut runner = Runner::open(&art, &home, &verify, opts, None).unwrap();
    runner.run(&tests[0].input()).unwrap(); // warm: the model loads
    let (mut model_ms, mut recipe_ms) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let input = tests[i % tests.len()].input();
        let t0 = Instant::now();
        let out = runner.run(&input).unwrap();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if out.receipt.facts.path.starts_with("recipe:") {
            recipe_ms.push(ms);
        } else {
            model_ms.push(ms);
        }
    }
    let captured = tune::step::read_captures(&t.dir).unwrap();
    assert_eq!(captured.len(), RUNS + 1, "every run was captured");

    // The append alone, on a scratch log, with a capture like the ones above.
    let probe = TuneDir {
        root: scratch.path().join("append-probe"),
    };
    std::fs::create_dir_all(&probe.root).unwrap();
    let row: Capture = captured[1].clone();
    let mut append_us = Vec::new();
    for _ in 0..2000 {
        let t0 = Instant::now();
        probe.capture(&row).unwrap();
        append_us.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let (a50, a99) = (percentile(&append_us, 0.5), percentile(&append_us, 0.99));
    let (m50, r50) = (percentile(&model_ms, 0.5), percentile(&recipe_ms, 0.5));

    // The step.
    let o = StepOptions {
        threads: 2,
        ..StepOptions::default()
    };
    let t0 = Instant::now();
    let rev = tune::step(&t, &o, &|s| {
        if s.step % 5 == 0 || s.step == s.total {
            eprintln!("tune step {}/{}, loss {:.3}", s.step, s.total, s.loss);
        }
    })
    .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let ours = rev.tokens as f64 / wall;

    let peer = if std::env::var("KOLM_BENCH_PEER").as_deref() == Ok("0") {
        None
    } else {
        Some(peer(&opened, &home, &captured, &root, o.learning_rate))
    };
    let (peer_col, ratio) = match &peer {
        Some((rate, label)) => (
            format!("{rate:.1} ({label}, first {} batches)", PEER_BATCHES - 1),
            format!("{:.2}×", ours / rate),
        ),
        None => ("not run".to_string(), "-".to_string()),
    };
    let text = format!(
        "Machine: {} cores. Artifact: the support-triage example (SmolLM2-135M-Instruct Q4_1 + its trained adapter), tuned in a scratch KOLM_HOME.\n\n\
Capture: {RUNS} runs of the eval inputs with capture on ({} answered by the model, p50 {m50:.1} ms; {} by a recipe, p50 {r50:.2} ms). One capture append (one O_APPEND write of a {}-byte line): p50 {a50:.1} µs, p99 {a99:.1} µs, that is **{:.3}%** of a model run and {:.1}% of a recipe run (the recipe run's own time is mostly its receipt's fsync).\n\n\
| tune step on {} captures | kolm | PyTorch + peft | ratio |\n|---|---|---|---|\n\
| wall time (load, render, train {} steps of 8, write) | {wall:.1} s | | |\n\
| training tokens/s | {ours:.1} ({} tokens over the whole step) | {peer_col} | {ratio} |\n\
| final loss | {:.4} | | |\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        model_ms.len(),
        recipe_ms.len(),
        serde_json::to_vec(&row).unwrap().len() + 1,
        100.0 * a50 / 1e3 / m50,
        100.0 * a50 / 1e3 / r50,
        rev.captures,
        rev.steps,
        rev.tokens,
        rev.final_loss.unwrap_or(f64::NAN),
    );
    print!("{text}");
    std::fs::write(root.join("benches/results/tune.md"), text).unwrap();
}

/// PyTorch + peft on the first batches of the step's own examples: tokens/s, and a label.
fn peer(
    opened: &kolm::runtime::open::Opened,
    home: &kolm::home::Home,
    captured: &[Capture],
    root: &std::path::Path,
    learning_rate: f64,
) -> (f64, String) {
    let m = &opened.manifest;
    let base = opened.model_file(home).unwrap();
    let rows: Vec<serde_json::Value> = captured
        .iter()
        .take(8 * PEER_BATCHES)
        .map(|c| serde_json::json!({"input": c.input, "output": c.output}))
        .collect();
    let examples = data::examples(
        &base,
        &data::Task {
            description: &m.task.description,
            schema: &m.task.output_schema,
            grounding: None,
        },
        &rows,
        1024,
    )
    .unwrap();
    let v = peft::train(
        root,
        "kolm-bench-tune",
        &peft::Job {
            model: &base,
            rank: m.lora.rank,
            alpha: m.lora.alpha,
            targets: &m.lora.targets,
            learning_rate,
            batches: examples.chunks(8).map(|b| b.iter().collect()).collect(),
        },
    );
    (
        v["tokens_per_s"].as_f64().unwrap(),
        format!(
            "PyTorch {} + peft {}",
            v["torch"].as_str().unwrap_or("?"),
            v["peft"].as_str().unwrap_or("?")
        ),
    )
}
