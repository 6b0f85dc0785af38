//! Recall benchmarks, side by side with their peers in one run (figures in the README).
//!
//! 1. Index build over a 10,000-document corpus: chunks/s with BM25 only, and with dense
//!    vectors (all-MiniLM-L6-v2, as `scripts/embedder.sh` fetches it; the embedding cache is
//!    empty, so every chunk is embedded) over its first [`DENSE_DOCS`] documents; query latency
//!    p50 and p99, BM25 (all 10,000) and hybrid.
//! 2. BM25 query latency against tantivy on the same chunks and queries (top 5 with their
//!    text, one thread). The peer is `benches/peers/tantivy-bm25`, a crate of its own so that
//!    `cargo test` never builds tantivy; this binary builds and runs it and reads its JSON.
//!    The two take turns for [`ROUNDS`] rounds and the medians of the rounds are reported, so
//!    a noisy moment on the machine lands on both sides rather than on one.
//! 3. Embedding throughput against sentence-transformers on the same texts, threads and batch
//!    size (`benches/peers/st_embed.py`, run with `$KOLM_BENCH_PYTHON`, the bench venv).
//!
//! The corpus is synthetic and deterministic: Zipf-distributed pseudo-words, so BM25 sees a
//! realistic spread of term frequencies. Run with `make bench` (which prepares the venv and the
//! embedder) or `cargo bench --bench recall`. Scratch files go to `$KOLM_BENCH_DIR`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kolm::recall::{self, embed, embedders, index, rank};

// As in kolm's binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use kolm::rng::SplitMix64;

const DOCS: usize = 10_000;
const QUERIES: usize = 500;
const K: usize = 5;
const EMBED_TEXTS: usize = 256;
/// Alternating rounds of the BM25 latency comparison.
const ROUNDS: usize = 5;
/// Documents embedded for the dense build: a slice of the corpus, because embedding runs at
/// tens of chunks per second on 2 cores (all 10,000 would take half an hour); the rate is
/// what is reported.
const DENSE_DOCS: usize = 1_000;

fn scratch() -> PathBuf {
    let d = PathBuf::from(std::env::var("KOLM_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .join("kolm-bench-recall");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A vocabulary of pseudo-words made of syllables, drawn with Zipf's law.
struct Words {
    vocab: Vec<String>,
    cdf: Vec<f64>,
    rng: SplitMix64,
}

impl Words {
    fn new(seed: u64) -> Words {
        const SYL: [&str; 24] = [
            "ka", "ro", "mi", "te", "su", "la", "no", "vi", "da", "pe", "zu", "ri", "mo", "sa",
            "ne", "to", "ga", "li", "fu", "be", "ko", "ma", "di", "re",
        ];
        let mut rng = SplitMix64::new(seed);
        let vocab: Vec<String> = (0..5000)
            .map(|_| {
                let n = 2 + (rng.next_u64() % 3) as usize;
                (0..n)
                    .map(|_| SYL[(rng.next_u64() % SYL.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let mut acc = 0.0;
        let cdf = (1..=vocab.len())
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        Words { vocab, cdf, rng }
    }
    fn word(&mut self) -> &str {
        let total = *self.cdf.last().unwrap();
        let u = self.rng.uniform() as f64 * total;
        let i = self
            .cdf
            .partition_point(|c| *c < u)
            .min(self.vocab.len() - 1);
        &self.vocab[i]
    }
    fn text(&mut self, words: usize) -> String {
        let mut s = String::new();
        for i in 0..words {
            if i > 0 {
                s.push(if i % 12 == 0 { '\n' } else { ' ' });
            }
            let w = self.word().to_string();
            s.push_str(&w);
        }
        s
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

/// The p50 and p99 of each round of queries.
#[derive(Default)]
struct Rounds(Vec<f64>, Vec<f64>);

impl Rounds {
    fn push(&mut self, mut latencies: Vec<f64>) {
        self.0.push(percentile(&mut latencies, 0.5));
        self.1.push(percentile(&mut latencies, 0.99));
    }
    /// The median round's p50 and p99.
    fn medians(&mut self) -> (f64, f64) {
        (percentile(&mut self.0, 0.5), percentile(&mut self.1, 0.5))
    }
}

/// Latencies (µs) of `f` over every query, after one warm-up pass.
fn latencies(queries: &[String], mut f: impl FnMut(&str)) -> Vec<f64> {
    for q in queries.iter().take(50) {
        f(q);
    }
    queries
        .iter()
        .map(|q| {
            let t = Instant::now();
            f(q);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn embedder_dir() -> PathBuf {
    let d = std::env::var_os("KOLM_TEST_EMBEDDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kolm-test/all-minilm-l6-v2")
        });
    assert!(
        d.join("model.safetensors").is_file(),
        "run `bash scripts/embedder.sh` first (make bench does)"
    );
    d
}

fn peer_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn main() {
    kolm::process::init();
    let dir = scratch();
    eprintln!(
        "recall bench: writing {DOCS} documents to {}",
        dir.display()
    );
    let mut words = Words::new(42);
    let mut files = BTreeMap::new();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    for i in 0..DOCS {
        // 50 to 400 words: one to three chunks of 1,200 characters.
        let n = 50 + (words.rng.next_u64() % 350) as usize;
        let text = words.text(n);
        let rel = format!("docs/d{i:05}.md");
        std::fs::write(dir.join(&rel), &text).unwrap();
        files.insert(rel, kolm::digest::sha256(text.as_bytes()));
    }
    let queries: Vec<String> = (0..QUERIES).map(|i| words.text(2 + i % 3)).collect();

    // 1a. BM25-only build.
    let t = Instant::now();
    let bm25 = recall::index_files(&dir, &files, 1200, 200, None).unwrap();
    let bm25_s = t.elapsed().as_secs_f64();
    let chunks = bm25.built.chunks;
    let bm25_path = dir.join("bm25.sqlite");
    std::fs::write(&bm25_path, &bm25.bytes).unwrap();
    eprintln!("BM25 build: {chunks} chunks in {bm25_s:.2} s");

    // 1b. With embeddings, through the (empty) cache, as the recall stage does.
    let home = kolm::home::Home::at(dir.join("home"));
    let edir = embedder_dir();
    let e = embed::Embedder::load(&edir, embed::identity_of(&edir).unwrap()).unwrap();
    let cache = embedders::Cache::open(&home).unwrap();
    let mut embed_fn = |texts: &[&str]| Ok(cache.embed(&e, texts, &|_| {})?.0);
    let dense_files: BTreeMap<String, String> = files
        .iter()
        .take(DENSE_DOCS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let t = Instant::now();
    let dense = recall::index_files(
        &dir,
        &dense_files,
        1200,
        200,
        Some(index::Dense {
            embedder: "all-MiniLM-L6-v2",
            sha256: &e.sha256,
            dimensions: e.dimensions,
            embed: &mut embed_fn,
        }),
    )
    .unwrap();
    let dense_s = t.elapsed().as_secs_f64();
    let dense_path = dir.join("dense.sqlite");
    std::fs::write(&dense_path, &dense.bytes).unwrap();
    let dense_chunks = dense.built.chunks;
    eprintln!("dense build: {dense_chunks} chunks in {dense_s:.1} s");

    let db = index::open(&bm25_path).unwrap();
    let ddb = index::open(&dense_path).unwrap();
    let mut hybrid = latencies(&queries, |q| {
        std::hint::black_box(rank::query(&ddb, Some(&e), q, K).unwrap());
    });

    // 2. tantivy on the same chunks and queries.
    let chunks_file = dir.join("chunks.jsonl");
    {
        let mut s = db
            .prepare("SELECT id, text FROM chunks ORDER BY id")
            .unwrap();
        let rows: Vec<String> = s
            .query_map([], |r| {
                Ok(
                    serde_json::json!({"id": r.get::<_, i64>(0)?, "text": r.get::<_, String>(1)?})
                        .to_string(),
                )
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        std::fs::write(&chunks_file, rows.join("\n") + "\n").unwrap();
    }
    let queries_file = dir.join("queries.json");
    std::fs::write(&queries_file, serde_json::to_vec(&queries).unwrap()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let peer_target = PathBuf::from(
        std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| root.join("target").display().to_string()),
    )
    .join("peers");
    eprintln!("building the tantivy peer (benches/peers/tantivy-bm25)");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("benches/peers/tantivy-bm25/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &peer_target)
        .status()
        .unwrap();
    assert!(status.success());
    // Query latency, ours and tantivy's, in turns: (p50, p99) of each round.
    let (mut ours, mut tv) = (Rounds::default(), Rounds::default());
    let mut tantivy = serde_json::Value::Null;
    for _ in 0..ROUNDS {
        ours.push(latencies(&queries, |q| {
            std::hint::black_box(recall::search(&db, q, K).unwrap());
        }));
        tantivy = peer_json(
            Command::new(peer_target.join("release/tantivy-bm25"))
                .arg(&chunks_file)
                .arg(&queries_file)
                .arg(K.to_string()),
        );
        tv.push(serde_json::from_value(tantivy["latencies_us"].clone()).unwrap());
    }
    // Do the two rank alike? The share of queries whose best chunk is the same.
    let top1: Vec<Option<i64>> = serde_json::from_value(tantivy["top1"].clone()).unwrap();
    let same = queries
        .iter()
        .zip(&top1)
        .filter(|(q, t)| index::bm25_ids(&db, q, 1).unwrap().first().map(|h| h.0) == **t)
        .count();

    // 3. Embedding throughput, the same texts both sides (the corpus's first chunks).
    let texts: Vec<String> = {
        let mut s = db
            .prepare("SELECT text FROM chunks ORDER BY id LIMIT ?1")
            .unwrap();
        s.query_map([EMBED_TEXTS as i64], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    e.embed(&refs[..32]).unwrap();
    let t = Instant::now();
    e.embed(&refs).unwrap();
    let ours_tps = texts.len() as f64 / t.elapsed().as_secs_f64();
    let texts_file = dir.join("texts.json");
    std::fs::write(&texts_file, serde_json::to_vec(&texts).unwrap()).unwrap();
    let python = std::env::var("KOLM_BENCH_PYTHON").unwrap_or("python3".into());
    let st = peer_json(
        Command::new(&python)
            .arg(root.join("benches/peers/st_embed.py"))
            .arg(&edir)
            .arg(&texts_file),
    );
    let st_tps = st["texts_per_s"].as_f64().unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (p50, p99) = ours.medians();
    let (tp50, tp99) = tv.medians();
    let (hp50, hp99) = (percentile(&mut hybrid, 0.5), percentile(&mut hybrid, 0.99));
    let table = format!(
        "Machine: {threads} cores. Corpus: {DOCS} synthetic documents, {chunks} chunks of at most 1,200 characters; {QUERIES} queries of 2 to 4 words, top {K} with their text, one thread; BM25 latencies are the medians of {ROUNDS} rounds taken in turns with tantivy.\n\n\
| measure | kolm | peer | ratio |\n|---|---|---|---|\n\
| index build, BM25 only | {:.0} chunks/s ({bm25_s:.2} s) | | |\n\
| index build, BM25 + all-MiniLM-L6-v2 vectors (nothing cached; first {DENSE_DOCS} documents, {dense_chunks} chunks) | {:.1} chunks/s ({dense_s:.0} s) | | |\n\
| BM25 query p50 (peer: tantivy {}) | {p50:.0} µs | {tp50:.0} µs | {:.2}× |\n\
| BM25 query p99 | {p99:.0} µs | {tp99:.0} µs | {:.2}× |\n\
| hybrid query over the dense index (embed the query, BM25 + vectors, RRF) p50 / p99 | {hp50:.0} / {hp99:.0} µs | | |\n\
| embedding throughput, {} chunks, batch 32, {threads} threads (peer: sentence-transformers {}) | {ours_tps:.1} texts/s | {st_tps:.1} texts/s | {:.2}× |\n\n\
Same best chunk as tantivy for {same} of {QUERIES} queries (the two score BM25 with different stemmers and length norms). Ratios: kolm ÷ peer for latency (lower is better), kolm ÷ peer for throughput (higher is better).\n",
        chunks as f64 / bm25_s,
        dense_chunks as f64 / dense_s,
        tantivy["version"].as_str().unwrap_or("?"),
        p50 / tp50,
        p99 / tp99,
        texts.len(),
        st["version"].as_str().unwrap_or("?"),
        ours_tps / st_tps,
    );
    print!("{table}");
    let out = root.join("benches/results/recall.md");
    std::fs::write(&out, table).unwrap();
    eprintln!("written to {}", out.display());
}
