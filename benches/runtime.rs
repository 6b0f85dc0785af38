//! Runtime benchmarks, side by side with llama.cpp in one run (figures in the README).
//!
//! 1. Decode tokens/s: kolm's engine as `kolm run` drives it (adapter applied, one token per
//!    forward pass, our sampling loop) against llama.cpp's own decode loop exactly as
//!    `llama-bench` runs its tg128 test (one `llama_decode` of a one-token batch per token,
//!    `llama_synchronize`, no sampling), on the same GGUF with the same threads and through
//!    the very llama.cpp library kolm links. (llama-cpp-sys-2 vendors llama.cpp without its
//!    `tools/`, so `llama-bench` itself cannot be built from the same sources; its tg loop is
//!    twenty lines, reproduced in [`decode_pair`], which runs the two in turns.) The tiny model, a model with Qwen2.5-0.5B's
//!    shape (random weights, q8_0), and the real student, SmolLM2-135M-Instruct (Q4_1).
//! 2. Cold start: a fresh process that opens the `.kolm` (verify, load the model in place from
//!    the verified handle) and produces its first token, against a fresh process doing
//!    llama.cpp's own model load from the GGUF as a plain file, context and first token; and
//!    the bytes a first run writes under a fresh `KOLM_HOME` (the goal: no byte of model).
//!
//! Run with `make bench`, or `cargo bench --bench runtime`. Scratch files go to
//! `$KOLM_BENCH_DIR` (default /var/tmp).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kolm::gguf::tiny::{self, Quant, Shape};
use kolm::runtime::{GenOptions, Student};

#[path = "../tests/support/student.rs"]
mod student;

const THREADS: u32 = 2;
const DESCRIPTION: &str = "Label the message.";
const SCHEMA: &str = r#"{"type":"object","properties":{"label":{"type":"string","enum":["a","b"]}},"required":["label"]}"#;
const GEN: u32 = 128;
/// Generations per measurement (the median is reported).
const RUNS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn scratch() -> PathBuf {
    let d = PathBuf::from(std::env::var("KOLM_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .join("kolm-bench-runtime");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a model once (the 0.5B-shaped one takes a while).
fn model(dir: &Path, name: &str, arch: &str, shape: &Shape, quant: Quant) -> PathBuf {
    let p = dir.join(format!("{name}.gguf"));
    if !p.is_file() {
        eprintln!("writing {name} …");
        kolm::fsutil::write_atomic(&p, &tiny::model(arch, shape, 11, quant)).unwrap();
    }
    p
}

/// A trained-size adapter (rank 8 on q, k, v, o) that really changes the model.
fn adapter(model: &Path) -> PathBuf {
    let h = kolm::gguf::read_header(model).unwrap();
    let targets: Vec<String> = ["attn_q", "attn_k", "attn_v", "attn_output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = model.with_extension("lora.gguf");
    std::fs::write(&p, tiny::lora(&h, &targets, 8, 16.0, 1, 0.01).unwrap()).unwrap();
    p
}

/// Decode tokens/s of kolm and of llama.cpp on the same model, medians of `RUNS` generations of
/// exactly `GEN` tokens each, the two taking turns run by run so that a slow stretch of the
/// machine (at 13 ms a token on 2 cores, runs move by ±15%) falls on both.
///
/// kolm's side is its generation loop (`generate_raw`: its forward pass and sampling).
/// llama.cpp's is llama-bench's tg test: after a warm-up token, one `llama_decode` per token on
/// a one-token batch, `llama_synchronize`, the next token drawn at random (no sampling).
fn decode_pair(model: &Path, adapter: Option<&Path>) -> (f64, f64) {
    let student = Student::load(model, adapter, None).unwrap();
    let opts = GenOptions {
        threads: THREADS,
        max_tokens: GEN,
        ignore_eos: true,
        n_ctx: 512,
        ..GenOptions::default()
    };
    let mut s = student.session(&opts).unwrap();
    let _ = s.generate_raw("warm up").unwrap();
    let mut kolm = || {
        let g = s.generate_raw("Once upon a time").unwrap();
        assert_eq!(g.output_tokens, GEN as u64);
        g.output_tokens as f64 * 1e6 / (g.micros - g.prefill_micros) as f64
    };
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::token::LlamaToken;
    let backend = kolm::runtime::engine::backend().unwrap();
    let mut m = LlamaModel::load_from_file(backend, model, &LlamaModelParams::default()).unwrap();
    let mut lora = adapter.map(|a| m.lora_adapter_init(a).unwrap());
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = m.new_context(backend, params).unwrap();
    if let Some(l) = lora.as_mut() {
        ctx.lora_adapter_set(l, 1.0).unwrap();
    }
    let n_vocab = m.n_vocab() as u64;
    let mut rng = kolm::rng::SplitMix64::new(1);
    let mut batch = LlamaBatch::new(1, 1);
    let mut step = |ctx: &mut llama_cpp_2::context::LlamaContext, pos: i32, tok: i32| {
        batch.clear();
        batch.add(LlamaToken(tok), pos, &[0], true).unwrap();
        ctx.decode(&mut batch).unwrap();
        ctx.synchronize();
    };
    step(&mut ctx, 0, 0); // warm-up, as llama-bench does
    let mut peer = || {
        ctx.clear_kv_cache();
        let t = Instant::now();
        let mut tok = 0i32;
        for pos in 0..GEN as i32 {
            step(&mut ctx, pos, tok);
            tok = (rng.next_u64() % n_vocab) as i32;
        }
        GEN as f64 / t.elapsed().as_secs_f64()
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ours.push(kolm());
        theirs.push(peer());
    }
    (median(ours), median(theirs))
}

/// A sealed artifact around `model` (built once, through the real pipeline).
fn artifact(dir: &Path, name: &str, model: &Path) -> PathBuf {
    let proj = dir.join(format!("proj-{name}"));
    let art = proj.join(format!("dist/{name}.kolm"));
    if art.is_file() {
        return art;
    }
    std::fs::create_dir_all(proj.join("data")).unwrap();
    std::fs::write(
        proj.join("Kolmfile.toml"),
        format!(
            "[project]\nname = \"{name}\"\n[base]\npath = \"{}\"\n[distill]\ntrain = false\n[gate]\nmin_k = 0.0\n[[task]]\nname = \"{name}\"\ndescription = \"{DESCRIPTION}\"\noutput_schema_file = \"schema.json\"\nseeds = \"data/seeds.jsonl\"\nevals = \"data/evals.jsonl\"\n",
            model.display()
        ),
    )
    .unwrap();
    std::fs::write(proj.join("schema.json"), SCHEMA).unwrap();
    std::fs::write(
        proj.join("data/seeds.jsonl"),
        "{\"input\": \"x\", \"output\": {\"label\": \"a\"}}\n",
    )
    .unwrap();
    std::fs::write(
        proj.join("data/evals.jsonl"),
        "{\"vars\": {\"input\": \"hello\"}, \"assert\": [{\"type\": \"is-json\"}]}\n",
    )
    .unwrap();
    let k = kolm::Kolmfile::load(&proj.join("Kolmfile.toml")).unwrap();
    kolm::executor::build(
        k,
        kolm::home::Home::at(dir.join("home")),
        kolm::stages::Stages::default(),
        Default::default(),
        Default::default(),
        kolm::progress::Progress::hidden(),
    )
    .map_err(|f| f.error)
    .unwrap();
    art
}

/// Child: open the artifact as `kolm run` does and produce the first token.
fn child_kolm_first_token(art: &Path, home: &Path) {
    let mut r = kolm::runtime::Runner::open(
        art,
        &kolm::home::Home::at(home),
        &Default::default(),
        GenOptions {
            threads: THREADS,
            ..GenOptions::default()
        },
        None,
    )
    .unwrap();
    let g = r.generate("hello", 1).unwrap();
    assert_eq!(g.output_tokens, 1);
}

/// Child: llama.cpp's own load of the GGUF, a context, and the first token of the very prompt
/// the kolm child processes (rendered by the same code; no verification, grammar or adapter).
fn child_llama_first_token(model: &Path) {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    let backend = kolm::runtime::engine::backend().unwrap();
    let m = LlamaModel::load_from_file(backend, model, &LlamaModelParams::default()).unwrap();
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let system = kolm::runtime::prompt::system_prompt(DESCRIPTION, Some(&schema));
    let prompt = kolm::runtime::prompt::Template::of(&m)
        .render(&m, &system, "hello")
        .unwrap();
    let toks = m.vocab().tokenize(prompt.as_bytes(), false, true);
    // The context kolm would size for this prompt and one token.
    let n_ctx = (toks.len() as u32 + 1).next_multiple_of(256);
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = m.new_context(backend, params).unwrap();
    let mut batch = LlamaBatch::new(2048, 1);
    let last = toks.len() - 1;
    for (i, t) in toks.iter().enumerate() {
        batch.add(*t, i as i32, &[0], i == last).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    let _ = ctx.token_data_array_ith(last as i32).sample_token_greedy();
}

/// Median wall time of `runs` fresh processes of this bench binary in a child mode.
fn spawn_time(args: &[&str], runs: usize) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let once = || {
        let t = Instant::now();
        let out = Command::new(&exe).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let first = ms(once()); // warms the page cache
    if runs == 0 {
        return first;
    }
    median((0..runs).map(|_| ms(once())).collect())
}

/// Bytes of every file under `dir` (0 when it does not exist).
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--child-kolm") => {
            std::env::set_var("KOLM_SIGNING_KEY", "bench-key");
            return child_kolm_first_token(Path::new(&args[2]), Path::new(&args[3]));
        }
        Some("--child-llama") => return child_llama_first_token(Path::new(&args[2])),
        _ => {}
    }
    std::env::set_var("KOLM_SIGNING_KEY", "bench-key");
    let dir = scratch();
    // `KOLM_BENCH_ONLY=smollm2` (a part of a name) measures only the models it names.
    let only = std::env::var("KOLM_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| name.contains(only.as_str());
    let mut models = Vec::new();
    if wanted("tiny-llama-f32") {
        models.push((
            "tiny-llama-f32",
            model(&dir, "tiny-llama-f32", "llama", &Shape::TINY, Quant::F32),
        ));
    }
    if wanted("qwen2.5-0.5b-shape-q8_0") {
        models.push((
            "qwen2.5-0.5b-shape-q8_0",
            model(
                &dir,
                "qwen2.5-0.5b-shape-q8_0",
                "qwen2",
                &Shape::QWEN2_5_0_5B,
                Quant::Q8_0,
            ),
        ));
    }
    if wanted("smollm2-135m-instruct-q4_1") {
        // The real student (Q4_1, Q8_0 embedding), as the examples use it.
        models.push(("smollm2-135m-instruct-q4_1", student::path()));
    }
    let mut rows = vec![format!(
        "Machine: {} cores. Threads: {THREADS}. llama.cpp: the library kolm links (llama-cpp-sys-2 0.1.160), decode loop as llama-bench's tg{GEN}.",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )];
    rows.push(String::new());
    rows.push("| model | measure | kolm | llama.cpp | ratio |".into());
    rows.push("|---|---|---|---|---|".into());
    for (name, m) in &models {
        let a = adapter(m);
        for (what, lora) in [("base", None), ("base + rank-8 adapter", Some(a.as_path()))] {
            let (ours, peer) = decode_pair(m, lora);
            rows.push(format!(
                "| {name} | decode, {what} ({GEN} tokens, median of {RUNS}) | {ours:.1} tok/s | {peer:.1} tok/s | {:.0}% |",
                ours / peer * 100.0
            ));
            eprintln!("{}", rows[rows.len() - 1]);
        }
        let art = artifact(&dir, name, m);
        let home = dir.join("home");
        let k = spawn_time(
            &[
                "--child-kolm",
                art.to_str().unwrap(),
                home.to_str().unwrap(),
            ],
            5,
        );
        let l = spawn_time(&["--child-llama", m.to_str().unwrap()], 5);
        rows.push(format!(
            "| {name} | cold start to first token (fresh process, median of 5) | {k:.0} ms | {l:.0} ms | {:.2}× |",
            k / l
        ));
        eprintln!("{}", rows[rows.len() - 1]);
        // What a first run writes: a fresh KOLM_HOME, one run.
        let fresh = dir.join(format!("home-first-{name}"));
        let _ = std::fs::remove_dir_all(&fresh);
        spawn_time(
            &[
                "--child-kolm",
                art.to_str().unwrap(),
                fresh.to_str().unwrap(),
            ],
            0,
        );
        let (models, all) = (bytes_under(&fresh.join("models")), bytes_under(&fresh));
        rows.push(format!(
            "| {name} | bytes a first run writes under a fresh KOLM_HOME (a {:.1} MB model; kolm before this release: a copy of it) | {models} B of model, {:.1} KB in all (index, stamp, receipt) | 0 B (reads the GGUF where it lies) | — |",
            std::fs::metadata(m).unwrap().len() as f64 / 1e6,
            all as f64 / 1e3,
        ));
        eprintln!("{}", rows[rows.len() - 1]);
    }
    let table = rows.join("\n") + "\n";
    println!("{table}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/runtime.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("written to {}", out.display());
}
