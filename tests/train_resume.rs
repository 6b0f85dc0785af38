//! Ctrl-C during training keeps the work: the state is saved, and the rerun resumes from it and
//! ends with exactly the adapter an uninterrupted run makes. (Its own test binary: it raises
//! the process-wide interrupt flag.)

use kolm::gguf::tiny::{self, Quant};
use kolm::kolmfile::DistillConfig;
use kolm::train::{self, data};
use serde_json::json;

#[test]
fn an_interrupted_training_resumes_to_the_same_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    std::fs::write(&model, tiny::tiny_model("qwen2", 4, Quant::F32)).unwrap();
    let schema = json!({"type": "object", "properties": {"a": {"type": "string", "enum": ["x", "y"]}}, "required": ["a"]});
    let pairs: Vec<_> = (0..12)
        .map(|i| json!({"input": format!("case {i}"), "output": {"a": if i % 2 == 0 { "x" } else { "y" }}}))
        .collect();
    let task = data::Task {
        description: "Pick.",
        schema: &schema,
        grounding: None,
    };
    let ex = data::examples(&model, &task, &pairs, 1024).unwrap();
    let s = DistillConfig {
        train: true,
        max_seq_len: 1024,
        threads: 2,
        rank: 4,
        alpha: 8.0,
        targets: vec!["attn_q".into(), "attn_v".into()],
        epochs: 3,
        learning_rate: 1e-2,
        batch_size: 4,
        seed: 1,
    };
    let whole = train::train(&model, &ex, &s, None, &|_| {}).unwrap();

    let ckpt = dir.path().join("ckpt");
    let err = train::train(&model, &ex, &s, Some(&ckpt), &|st| {
        if st.step == 4 {
            kolm::interrupt::request();
        }
    })
    .err()
    .unwrap();
    assert!(matches!(err, kolm::Error::Interrupted), "{err}");
    assert!(ckpt.join("state.json").is_file(), "a checkpoint was saved");
    kolm::interrupt::reset();
    let steps = std::sync::atomic::AtomicU64::new(0);
    let resumed = train::train(&model, &ex, &s, Some(&ckpt), &|_| {
        steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(
        steps.into_inner(),
        whole.steps - 4,
        "only the steps that were left"
    );
    assert!(
        resumed.adapter == whole.adapter,
        "the same adapter as without the interrupt"
    );
    assert!(
        !ckpt.exists(),
        "the checkpoint is gone once training is done"
    );
    // `distill.threads` sizes the pool; the adapter is the same on one thread.
    let one = DistillConfig { threads: 1, ..s };
    let single = train::train(&model, &ex, &one, None, &|_| {}).unwrap();
    assert!(
        single.adapter == whole.adapter,
        "one thread makes the adapter two threads make"
    );
}
