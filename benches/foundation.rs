//! Foundation benchmarks, each side by side with its peer in one run (figures in the README).
//!
//! 1. No-op rebuild of a project with a 1 GiB base and 10,000 corpus files, each run a fresh
//!    process, against `make` and `dvc repro` on a pipeline of the same shape.
//! 2. Sealing the 1 GiB model into a `.kolm`, against `cp` and `sha256sum` of the same file.
//! 3. `kolm verify` of that artifact, against `sha256sum` of it.
//!
//! Run with `make bench` (it installs DVC in a venv). The build runs the real stages; a no-op
//! build measures the build system itself: parsing, planning, listing and fingerprinting the
//! corpus, keys, the cache and the artifact check.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kolm::executor::{ExecOptions, NodeStatus};

// The no-op child stands for the `kolm` binary: same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MODEL_BYTES: u64 = 1 << 30;
const CORPUS_FILES: usize = 10_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    f(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// Medians of two writers measured in alternation, each run starting with no dirty pages
/// (`sync` first, untimed): a writer measured right after another would otherwise pay for the
/// other's gigabyte of writeback, which is what these figures moved with before.
fn time_writers<A: FnMut(), B: FnMut()>(runs: usize, mut a: A, mut b: B) -> (Duration, Duration) {
    let sync = || run(&mut Command::new("sync"));
    let timed = |f: &mut dyn FnMut()| {
        sync();
        let t = Instant::now();
        f();
        t.elapsed()
    };
    timed(&mut a); // warm-up
    timed(&mut b);
    let (mut ta, mut tb) = (vec![], vec![]);
    for _ in 0..runs {
        ta.push(timed(&mut a));
        tb.push(timed(&mut b));
    }
    (median(ta), median(tb))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A full build with the real stages.
fn child_build(dir: &Path, home: &Path) {
    support::init_env();
    let k = kolm::Kolmfile::load(&dir.join("Kolmfile.toml")).unwrap();
    let stages = support::test_stages();
    let hidden = kolm::progress::Progress::hidden();
    kolm::executor::build(
        k,
        kolm::home::Home::at(home),
        stages,
        Default::default(),
        ExecOptions::default(),
        hidden,
    )
    .map_err(|f| f.error)
    .unwrap();
}

/// One no-op build, as its own process would do it; asserts that nothing ran.
fn child_noop(dir: &Path, home: &Path) {
    support::init_env();
    let k = kolm::Kolmfile::load(&dir.join("Kolmfile.toml")).unwrap();
    let r = kolm::executor::build(
        k,
        kolm::home::Home::at(home),
        support::test_stages(),
        Default::default(),
        ExecOptions::default(),
        kolm::progress::Progress::hidden(),
    )
    .map_err(|f| f.error)
    .unwrap();
    assert!(
        r.nodes.iter().all(|n| n.status == NodeStatus::Fresh),
        "a no-op build ran something"
    );
    assert_eq!(r.hashed_bytes, 0);
}

fn setup(dir: &Path) {
    let mut model = kolm::gguf::tiny::tiny_model("llama", 1, kolm::gguf::tiny::Quant::F32);
    let mut rng = kolm::rng::SplitMix64::new(1);
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("model.gguf")).unwrap());
    std::io::Write::write_all(&mut f, &model).unwrap();
    let mut left = MODEL_BYTES - model.len() as u64;
    model.clear();
    let mut block = vec![0u8; 1 << 20];
    while left > 0 {
        for c in block.chunks_mut(8) {
            c.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        std::io::Write::write_all(&mut f, &block[..n]).unwrap();
        left -= n as u64;
    }
    drop(f);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    for i in 0..CORPUS_FILES {
        std::fs::write(
            dir.join(format!("docs/d{i:05}.md")),
            format!("# Document {i}\nPolicy text {i}.\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/seeds.jsonl"),
        "{\"input\": \"a\", \"output\": {\"label\": \"account\"}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("data/evals.jsonl"),
        "{\"vars\": {\"input\": \"a\"}, \"assert\": []}\n",
    )
    .unwrap();
    let kolmfile = support::kolmfile_text("")
        .replace(
            "tiny = { arch = \"llama\", seed = 3 }",
            "path = \"model.gguf\"",
        )
        .replace("min_k = 0.5", "min_k = 0.0");
    std::fs::write(dir.join("Kolmfile.toml"), kolmfile).unwrap();
    // Make: the same seven stages, the same inputs.
    std::fs::write(
        dir.join("Makefile"),
        "CORPUS := $(wildcard docs/*.md)\n\
         out/seal: out/base out/recall out/label out/train out/decompose out/score ; @touch $@\n\
         out/base: model.gguf | out ; @touch $@\n\
         out/recall: $(CORPUS) | out ; @touch $@\n\
         out/label: data/seeds.jsonl out/recall ; @touch $@\n\
         out/train: out/base out/label ; @touch $@\n\
         out/decompose: out/label ; @touch $@\n\
         out/score: data/evals.jsonl out/base out/recall out/train out/decompose ; @touch $@\n\
         out: ; @mkdir -p out\n",
    )
    .unwrap();
    let dvc = r#"stages:
  base: {cmd: echo b > dvcout/base, deps: [model.gguf], outs: [{dvcout/base: {cache: false}}]}
  recall: {cmd: echo r > dvcout/recall, deps: [docs], outs: [{dvcout/recall: {cache: false}}]}
  label: {cmd: echo l > dvcout/label, deps: [data/seeds.jsonl, dvcout/recall], outs: [{dvcout/label: {cache: false}}]}
  train: {cmd: echo t > dvcout/train, deps: [dvcout/base, dvcout/label], outs: [{dvcout/train: {cache: false}}]}
  decompose: {cmd: echo d > dvcout/decompose, deps: [dvcout/label], outs: [{dvcout/decompose: {cache: false}}]}
  score: {cmd: echo s > dvcout/score, deps: [data/evals.jsonl, dvcout/base, dvcout/recall, dvcout/train, dvcout/decompose], outs: [{dvcout/score: {cache: false}}]}
  seal: {cmd: echo k > dvcout/seal, deps: [dvcout/base, dvcout/recall, dvcout/label, dvcout/train, dvcout/decompose, dvcout/score], outs: [{dvcout/seal: {cache: false}}]}
"#;
    std::fs::write(dir.join("dvc.yaml"), dvc).unwrap();
    std::fs::create_dir_all(dir.join("dvcout")).unwrap();
    // Date everything in the past, as a checkout that has sat for a while would be.
    for e in support::walk(dir) {
        support::set_old(&e);
    }
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    kolm::process::init();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-noop") {
        child_noop(Path::new(&args[i + 1]), Path::new(&args[i + 2]));
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--setup-only") {
        // For profiling by hand: a project and a home, built once, left in place.
        let dir = Path::new(&args[i + 1]);
        std::fs::create_dir_all(dir.join("project")).unwrap();
        setup(&dir.join("project"));
        child_build(&dir.join("project"), &dir.join("home"));
        return;
    }
    let scratch = std::env::var_os("KOLM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::tempdir_in(&scratch).unwrap();
    let dir = work.path().join("project");
    let home = work.path().join("home");
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!(
        "setting up: 1 GiB model, {CORPUS_FILES} corpus files in {}",
        dir.display()
    );
    setup(&dir);
    let me = std::env::current_exe().unwrap();
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. No-op rebuild.
    support::init_env();
    let cold = Instant::now();
    child_build(&dir, &home);
    let cold = cold.elapsed();
    let kolm_noop = time(15, || {
        run(Command::new(&me).arg("--child-noop").arg(&dir).arg(&home))
    });
    let spawn = time(15, || run(Command::new(&me).arg("--list")));
    run(Command::new("make").arg("-s").current_dir(&dir));
    let make_noop = time(15, || run(Command::new("make").arg("-s").current_dir(&dir)));
    let dvc = std::env::var("DVC").unwrap_or_else(|_| "dvc".into());
    let dvc_ok = Command::new(&dvc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let dvc_noop = if dvc_ok {
        run(Command::new(&dvc)
            .args(["init", "--no-scm", "-q"])
            .current_dir(&dir));
        run(Command::new(&dvc)
            .args(["config", "core.analytics", "false"])
            .current_dir(&dir));
        run(Command::new(&dvc).arg("repro").current_dir(&dir));
        Some(time(5, || {
            run(Command::new(&dvc).args(["repro", "-q"]).current_dir(&dir))
        }))
    } else {
        eprintln!("dvc not found (set DVC=path): skipping the DVC column");
        None
    };
    rows.push((
        "cold build (hashes 1 GiB + 10k files)".into(),
        format!("{:.0} ms", ms(cold)),
    ));
    rows.push((
        "no-op rebuild, kolm (median of 15, fresh process each)".into(),
        format!("{:.1} ms", ms(kolm_noop)),
    ));
    rows.push((
        "  of which process start".into(),
        format!("{:.1} ms", ms(spawn)),
    ));
    rows.push((
        "no-op rebuild, make (median of 15)".into(),
        format!(
            "{:.1} ms  (kolm/make = {:.2}x)",
            ms(make_noop),
            ms(kolm_noop) / ms(make_noop)
        ),
    ));
    if let Some(d) = dvc_noop {
        rows.push((
            "no-op rebuild, dvc repro (median of 5)".into(),
            format!(
                "{:.0} ms  (dvc/kolm = {:.1}x)",
                ms(d),
                ms(d) / ms(kolm_noop)
            ),
        ));
    }

    // 2. Sealing the 1 GiB model.
    let model = dir.join("model.gguf");
    let out = work.path().join("sealed.kolm");
    let lora = kolm::gguf::tiny::zero_lora(
        &kolm::gguf::read_header(&model).unwrap(),
        &["attn_q".into()],
        8,
        16.0,
        0,
    )
    .unwrap();
    let index = kolm::recall::index::build(&[], 1200, 200, None).unwrap().0;
    let payload = kolm::artifact::Payload {
        model: &model,
        // What the base stage hands the seal: computed once, when the base is fingerprinted.
        model_crc32: Some(kolm::digest::crc32_file(&model).unwrap()),
        model_sha256: &kolm::digest::sha256_file(&model, None).unwrap().0,
        lora: &lora,
        recipes: b"{}",
        index: &index,
        tests: b"{}\n",
    };
    let copy_to = work.path().join("copy.gguf");
    let (seal, cp) = time_writers(
        5,
        || {
            // As the seal stage does (and as `cp` is timed): the old file goes first. Renaming
            // over an existing file makes ext4 flush the new one first (auto_da_alloc).
            let _ = std::fs::remove_file(&out);
            kolm::artifact::write(&out, &payload, b"{}", b"{}", None, &|_| {}).unwrap();
        },
        || {
            let _ = std::fs::remove_file(&copy_to);
            run(Command::new("cp").arg(&model).arg(&copy_to));
        },
    );
    let sha_model = time(5, || run(Command::new("sha256sum").arg(&model)));
    rows.push((
        "seal 1 GiB model → .kolm (median of 5, alternating with cp, each after `sync`)".into(),
        format!("{:.2} GB/s", gbps(MODEL_BYTES, seal)),
    ));
    rows.push((
        "cp of the model".into(),
        format!(
            "{:.2} GB/s  (seal/cp = {:.0}%)",
            gbps(MODEL_BYTES, cp),
            100.0 * ms(cp) / ms(seal)
        ),
    ));
    rows.push((
        "sha256sum of the model".into(),
        format!(
            "{:.2} GB/s  (seal/sha256sum = {:.0}%)",
            gbps(MODEL_BYTES, sha_model),
            100.0 * ms(sha_model) / ms(seal)
        ),
    ));

    // 3. Verifying the sealed artifact built above (a real, signed one).
    let art = dir.join("dist/demo.kolm");
    let size = std::fs::metadata(&art).unwrap().len();
    let verify = time(5, || {
        kolm::artifact::verify::verify(&art, &Default::default(), &|_| {}).unwrap();
    });
    let sha_art = time(5, || run(Command::new("sha256sum").arg(&art)));
    rows.push((
        "kolm verify of the 1 GiB artifact (median of 5)".into(),
        format!("{:.2} GB/s", gbps(size, verify)),
    ));
    rows.push((
        "sha256sum of the artifact".into(),
        format!(
            "{:.2} GB/s  (verify/sha256sum = {:.0}%)",
            gbps(size, sha_art),
            100.0 * ms(sha_art) / ms(verify)
        ),
    ));

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mut md = format!("Machine: {} cores, {cpu}. Page cache warm for every tool.\n\n| measure | result |\n|---|---|\n", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    for (k, v) in &rows {
        md.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{md}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("foundation.md"), md).unwrap();
}
