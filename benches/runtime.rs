//! Runtime benchmarks, side by side with llama.cpp in one run (figures in the README).
//!
//! 1. Decode tokens/s: kolm's engine as `kolm run` drives it (adapter applied, one token per
//!    forward pass, our sampling loop) against `llama-bench` (tg128) built from the very
//!    llama.cpp sources llama-cpp-sys-2 vendors, on the same GGUF with the same threads. Both
//!    the tiny model and a model with Qwen2.5-0.5B's shape (random weights, q8_0).
//! 2. Cold start: a fresh process that opens the `.kolm` (verify, extract-or-reuse, load) and
//!    produces its first token, against a fresh process doing llama.cpp's own model load,
//!    context and first token on the same GGUF.
//!
//! Run with `make bench` (benches/run.sh builds llama-bench and passes it as `LLAMA_BENCH`).
//! Scratch files go to `$KOLM_BENCH_DIR` (default /var/tmp).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kolm::gguf::tiny::{self, Quant, Shape};
use kolm::runtime::{GenOptions, Student};

const THREADS: u32 = 2;
const GEN: u32 = 128;

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

fn zero_adapter(model: &Path) -> PathBuf {
    let h = kolm::gguf::read_header(model).unwrap();
    let targets: Vec<String> = ["attn_q", "attn_k", "attn_v", "attn_output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = model.with_extension("lora.gguf");
    std::fs::write(&p, tiny::zero_lora(&h, &targets, 8, 16.0, 1).unwrap()).unwrap();
    p
}

/// kolm's decode tokens/s: median of 3 generations of exactly `GEN` tokens.
fn kolm_decode(model: &Path) -> f64 {
    let adapter = zero_adapter(model);
    let mut student = Student::load(model, Some(&adapter), None).unwrap();
    let opts = GenOptions {
        threads: THREADS,
        max_tokens: GEN,
        ignore_eos: true,
        n_ctx: 512,
        ..GenOptions::default()
    };
    let mut s = student.session(&opts).unwrap();
    let _ = s.generate_raw("warm up").unwrap();
    median(
        (0..3)
            .map(|_| {
                let g = s.generate_raw("Once upon a time").unwrap();
                assert_eq!(g.output_tokens, GEN as u64);
                g.output_tokens as f64 * 1e6 / (g.micros - g.prefill_micros) as f64
            })
            .collect(),
    )
}

/// llama-bench's tg128 tokens/s on the same file and threads.
fn llama_bench(bin: &Path, model: &Path) -> f64 {
    let out = Command::new(bin)
        .args(["-m"])
        .arg(model)
        .args([
            "-p",
            "0",
            "-n",
            &GEN.to_string(),
            "-t",
            &THREADS.to_string(),
        ])
        .args(["-r", "3", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "llama-bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["avg_ts"].as_f64().unwrap()
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
            "[project]\nname = \"{name}\"\n[base]\npath = \"{}\"\n[distill]\ntrain = false\n[gate]\nmin_k = 0.0\n[[task]]\nname = \"{name}\"\ndescription = \"Label the message.\"\noutput_schema = {{ type = \"object\", properties = {{ label = {{ type = \"string\", enum = [\"a\", \"b\"] }} }}, required = [\"label\"] }}\nseeds = \"data/seeds.jsonl\"\nevals = \"data/evals.jsonl\"\n",
            model.display()
        ),
    )
    .unwrap();
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
    )
    .unwrap();
    let system = r.system().to_string();
    let opts = GenOptions {
        threads: THREADS,
        max_tokens: 1,
        ..GenOptions::default()
    };
    let mut s = r.student_mut().session(&opts).unwrap();
    let g = s.generate(&system, "hello").unwrap();
    assert_eq!(g.output_tokens, 1);
}

/// Child: llama.cpp's own load of the GGUF, a context, and the first token.
fn child_llama_first_token(model: &Path) {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    let backend = kolm::runtime::engine::backend().unwrap();
    let m = LlamaModel::load_from_file(backend, model, &LlamaModelParams::default()).unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(2048))
        .with_n_threads(THREADS as i32)
        .with_n_threads_batch(THREADS as i32);
    let mut ctx = m.new_context(backend, params).unwrap();
    let toks = m.vocab().tokenize(b"hello", false, true);
    let mut batch = LlamaBatch::new(512, 1);
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
    once(); // warm the page cache and the extracted model
    median((0..runs).map(|_| ms(once())).collect())
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
    let bench_bin = std::env::var_os("LLAMA_BENCH").map(PathBuf::from);
    let models = [
        (
            "tiny-llama-f32",
            model(&dir, "tiny-llama-f32", "llama", &Shape::TINY, Quant::F32),
        ),
        (
            "qwen2.5-0.5b-shape-q8_0",
            model(
                &dir,
                "qwen2.5-0.5b-shape-q8_0",
                "qwen2",
                &Shape::QWEN2_5_0_5B,
                Quant::Q8_0,
            ),
        ),
    ];
    let mut rows = vec![format!(
        "Machine: {} cores. Threads: {THREADS}. Decode: {GEN} tokens, median of 3 (llama-bench: -p 0 -n {GEN} -r 3).",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )];
    rows.push(String::new());
    rows.push("| model | measure | kolm | llama.cpp | ratio |".into());
    rows.push("|---|---|---|---|---|".into());
    for (name, m) in &models {
        let ours = kolm_decode(m);
        let (peer, ratio) = match &bench_bin {
            Some(b) => {
                let p = llama_bench(b, m);
                (format!("{p:.1} tok/s"), format!("{:.0}%", ours / p * 100.0))
            }
            None => ("(set LLAMA_BENCH)".into(), "—".into()),
        };
        rows.push(format!(
            "| {name} | decode | {ours:.1} tok/s | {peer} | {ratio} |"
        ));
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
        eprintln!("{}", rows[rows.len() - 2]);
        eprintln!("{}", rows[rows.len() - 1]);
    }
    let table = rows.join("\n") + "\n";
    println!("{table}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results/runtime.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("written to {}", out.display());
}
