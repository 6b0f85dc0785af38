//! tantivy answering benches/recall.rs's queries over the same chunks: indexes
//! `chunks.jsonl` ({"id", "text"} per line) in RAM with English stemming (as kolm's FTS5 index
//! uses Porter stems), then times each query (the words, any of them; top K by BM25 with their
//! stored text) on one thread, after one warm-up pass like kolm's side. Prints JSON.
//!
//! Usage: tantivy-bm25 CHUNKS.jsonl QUERIES.json K

use std::time::Instant;

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{
    IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, INDEXED, STORED,
};
use tantivy::{doc, Index, TantivyDocument};

fn main() -> tantivy::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let chunks = std::fs::read_to_string(&args[1])?;
    let queries: Vec<String> = serde_json::from_slice(&std::fs::read(&args[2])?).unwrap();
    let k: usize = args[3].parse().unwrap();

    let mut sb = Schema::builder();
    let id = sb.add_i64_field("id", INDEXED | STORED);
    let text_opts = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let text = sb.add_text_field("text", text_opts);
    let index = Index::create_in_ram(sb.build());
    let t = Instant::now();
    let mut w = index.writer_with_num_threads(1, 200_000_000)?;
    for line in chunks.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        w.add_document(doc!(id => v["id"].as_i64().unwrap(), text => v["text"].as_str().unwrap()))?;
    }
    w.commit()?;
    let build_s = t.elapsed().as_secs_f64();
    let reader = index.reader()?;
    let searcher = reader.searcher();
    let qp = QueryParser::for_index(&index, vec![text]);

    let run = |q: &str| -> tantivy::Result<Option<i64>> {
        let query = qp.parse_query_lenient(q).0;
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut first = None;
        for (_, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let n = d.get_first(id).and_then(|v| v.as_i64());
            std::hint::black_box(d.get_first(text).and_then(|v| v.as_str().map(str::len)));
            first = first.or(n);
        }
        Ok(first)
    };
    for q in queries.iter().take(50) {
        run(q)?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut top1 = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let first = run(q)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        top1.push(first);
    }
    println!(
        "{}",
        serde_json::json!({
            "version": "0.27",
            "build_s": build_s,
            "latencies_us": latencies,
            "top1": top1,
        })
    );
    Ok(())
}
