//! The recall stage on a real corpus: text and HTML indexed with BM25, non-text skipped and
//! counted, deterministic bytes, clear errors.

mod support;

use kolm::stages::StageOutput;
use support::*;

fn recall_out(r: &kolm::executor::BuildReport, p: &Project) -> kolm::stages::RecallOut {
    let n = r.nodes.iter().find(|n| n.stage.name() == "recall").unwrap();
    let store = kolm::cache::Store::new(p.home().cache());
    let entry = store.get_action(n.key.as_deref().unwrap()).unwrap();
    match serde_json::from_value(entry.output).unwrap() {
        StageOutput::Recall(o) => o,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corpus_is_indexed_and_searchable_and_non_text_is_skipped() {
    let p = Project::new(&kolmfile_text("").replace("docs/*.md", "docs/**/*"));
    p.write(
        "docs/policies/refunds.html",
        "<html><body><h1>Refunds</h1><p>Refunds are issued within 30 days of purchase.</p><script>var x=1</script></body></html>",
    );
    std::fs::write(p.path("docs/logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    std::fs::write(p.path("docs/legacy.txt"), b"r\xe9sum\xe9 in latin-1").unwrap();
    p.write(
        "docs/long.md",
        &"Shipping takes five business days. ".repeat(200),
    );
    p.age_all();
    let r = p.build();
    let out = recall_out(&r, &p);
    assert_eq!(
        out.documents, 5,
        "three docs, the HTML page and the long one"
    );
    assert!(out.chunks > 5, "the long document is several chunks");
    assert_eq!(out.skipped.get("binary"), Some(&1));
    assert_eq!(out.skipped.get("not UTF-8"), Some(&1));

    let store = kolm::cache::Store::new(p.home().cache());
    let bytes = store.blob(&out.index).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("i.sqlite");
    std::fs::write(&db_path, &bytes).unwrap();
    let db = kolm::recall::index::open(&db_path).unwrap();
    let hits = kolm::recall::search(&db, "how many days until my refund?", 3).unwrap();
    assert_eq!(hits[0].path, "docs/policies/refunds.html", "{hits:?}");
    assert!(hits[0].text.contains("within 30 days"));
    assert!(
        !hits[0].text.contains("var x"),
        "script bodies are not text"
    );
    assert_eq!(hits[0].id, "docs/policies/refunds.html#0");
    // Free text never breaks the query syntax.
    for q in ["\"unbalanced", "AND OR NOT", "*", "", "(x"] {
        kolm::recall::search(&db, q, 3).unwrap();
    }

    // The same corpus in another folder and home: the same bytes.
    let q = Project::new(&kolmfile_text("").replace("docs/*.md", "docs/**/*"));
    for f in [
        "docs/policies/refunds.html",
        "docs/long.md",
        "docs/logo.png",
        "docs/legacy.txt",
    ] {
        std::fs::create_dir_all(q.path(f).parent().unwrap()).unwrap();
        std::fs::copy(p.path(f), q.path(f)).unwrap();
    }
    q.age_all();
    let r2 = q.build();
    let out2 = recall_out(&r2, &q);
    assert_eq!(out2.index, out.index, "byte-identical index");
}

#[test]
fn an_empty_corpus_and_a_missing_embedder_are_clear_errors() {
    let p = Project::new(&kolmfile_text("").replace("docs/*.md", "nothing/*.md"));
    let e = p
        .build_with(Default::default(), Default::default())
        .unwrap_err()
        .error
        .to_string();
    assert!(e.contains("the corpus of task `demo` is empty"), "{e}");

    let p = Project::new(&kolmfile_text("").replace(
        "corpus = [\"docs/*.md\"]",
        "corpus = [\"docs/*.md\"]\nembedder = \"models/minilm\"",
    ));
    let e = p
        .build_with(Default::default(), Default::default())
        .unwrap_err()
        .error
        .to_string();
    assert!(e.contains("embedder `"), "{e}");
    assert!(e.contains("`config.json` is missing"), "{e}");
}

#[test]
fn a_huge_file_is_a_counted_skip_not_a_failure() {
    let p = Project::new(&kolmfile_text(""));
    // 1 GiB, sparse: costs no disk, and is never read.
    std::fs::File::create(p.path("docs/dump.md"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    p.age_all();
    let r = p.build();
    let out = recall_out(&r, &p);
    assert_eq!(out.skipped.get("too large"), Some(&1), "{:?}", out.skipped);
    assert_eq!(out.documents, 3);
}

#[test]
fn a_query_is_split_by_the_index_tokenizer() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    let terms = kolm::recall::tokenize::terms(&db, "Refunding, refunds; CAFÉ \"AND\" (x").unwrap();
    assert_eq!(
        terms,
        vec![
            ("and".to_string(), 1),
            ("cafe".to_string(), 1),
            ("refund".to_string(), 2),
            ("x".to_string(), 1)
        ]
    );
    assert!(kolm::recall::tokenize::terms(&db, "").unwrap().is_empty());
}
