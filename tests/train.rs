//! LoRA training against the real llama.cpp: gradients reach every adapter parameter, candle's
//! forward pass gives llama.cpp's logits, the exported adapter loads, and training really
//! teaches a tiny model a structured task (measured by the runtime, exact match).

use std::path::{Path, PathBuf};

use kolm::gguf::tiny::{self, Quant};
use kolm::kolmfile::DistillConfig;
use kolm::runtime::{prompt, GenOptions, Student};
use kolm::train::{self, data, model::Forward, weights::Base};
use serde_json::{json, Value};

const ALL: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

fn targets() -> Vec<String> {
    ALL.iter().map(|s| s.to_string()).collect()
}

fn write_model(dir: &Path, arch: &str) -> PathBuf {
    let p = dir.join(format!("{arch}.gguf"));
    std::fs::write(&p, tiny::tiny_model(arch, 11, Quant::F32)).unwrap();
    p
}

fn settings(epochs: u32) -> DistillConfig {
    DistillConfig {
        train: true,
        max_seq_len: 1024,
        threads: 2,
        rank: 8,
        alpha: 16.0,
        targets: targets(),
        epochs,
        learning_rate: 1e-2,
        batch_size: 4,
        seed: 5,
    }
}

const DESCRIPTION: &str = "Read the item and give its colour and size.";
const COLORS: [&str; 6] = ["red", "green", "blue", "yellow", "purple", "orange"];
const SIZES: [&str; 3] = ["small", "medium", "large"];

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "color": {"type": "string", "enum": COLORS},
        "size": {"type": "string", "enum": SIZES}},
        "required": ["color", "size"], "additionalProperties": false})
}

/// The synthetic task: the colour and size named in a short phrase. Pair `i` of 72 distinct
/// phrases (6 colours × 3 sizes × 4 things), in a fixed shuffled order, so training and
/// held-out pairs never share a phrase.
fn pairs(from: usize, n: usize) -> Vec<Value> {
    const THINGS: [&str; 4] = ["box", "ball", "cup", "hat"];
    (from..from + n)
        .map(|i| {
            let j = (i * 29) % 72;
            let (c, s, t) = (COLORS[j % 6], SIZES[(j / 6) % 3], THINGS[j / 18]);
            json!({"input": format!("a {s} {c} {t}"), "output": {"color": c, "size": s}})
        })
        .collect()
}

fn examples(model: &Path, pairs: &[Value]) -> Vec<data::Example> {
    let s = schema();
    let task = data::Task {
        description: DESCRIPTION,
        schema: &s,
        grounding: None,
    };
    data::examples(model, &task, pairs, 1024).unwrap()
}

#[test]
fn every_lora_parameter_gets_a_finite_gradient_and_a_nonzero_one_after_a_step() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let model = write_model(dir.path(), arch);
        let header = kolm::gguf::read_header(&model).unwrap();
        let base = Base::load(&model).unwrap();
        let lora = train::init_lora(&header, &settings(1)).unwrap();
        let ex = examples(&model, &pairs(0, 2));
        let batch: Vec<&data::Example> = ex.iter().collect();
        let vars: Vec<_> = lora.vars().into_iter().cloned().collect();
        let refs: Vec<_> = vars.iter().collect();
        let mut opt = train::optim::AdamW::new(&refs).unwrap();
        let grads = |fwd: &Forward| {
            let loss = train::batch_loss(fwd, &batch).unwrap();
            train::gradients(&loss, &lora).unwrap()
        };
        let fwd = Forward::new(&base, &lora);
        let g0 = grads(&fwd);
        let norm = |g: &candle_core::Tensor| {
            g.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        for (i, g) in g0.iter().enumerate() {
            let n = norm(g);
            assert!(n.is_finite(), "{arch}: gradient {i} is not finite");
            // B (odd positions) gets a gradient at once; A's is zero while B is zero.
            if i % 2 == 1 {
                assert!(n > 0.0, "{arch}: B gradient {i} is zero");
            }
        }
        assert_eq!(
            g0.len(),
            2 * 2 * ALL.len(),
            "two layers, seven targets, A and B"
        );
        opt.step(&refs, &g0, 1e-2).unwrap();
        for (i, g) in grads(&fwd).iter().enumerate() {
            let n = norm(g);
            assert!(
                n.is_finite() && n > 0.0,
                "{arch}: gradient {i} after a step: {n}"
            );
        }
    }
}

#[test]
fn candle_logits_match_llama_cpp_with_a_real_adapter() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let model = write_model(dir.path(), arch);
        let header = kolm::gguf::read_header(&model).unwrap();
        // An adapter that really changes the model.
        let bytes = tiny::lora(&header, &targets(), 8, 16.0, 3, 0.05).unwrap();
        let adapter = dir.path().join(format!("{arch}.lora.gguf"));
        std::fs::write(&adapter, &bytes).unwrap();
        let lora = train::lora_from_adapter(bytes, &header, &targets(), 8, 16.0).unwrap();
        let base = Base::load(&model).unwrap();
        let fwd = Forward::new(&base, &lora);

        let mut student = Student::load(&model, Some(&adapter), None).unwrap();
        let text = student
            .render(
                &prompt::system_prompt(DESCRIPTION, Some(&schema())),
                "item 3: a small red box",
            )
            .unwrap();
        let tokens = student.tokenize(&text);
        let ids: Vec<u32> = tokens.iter().map(|t| t.0 as u32).collect();
        let theirs = student
            .session(&GenOptions {
                n_ctx: 1024,
                threads: 2,
                ..GenOptions::default()
            })
            .unwrap()
            .logits(&tokens)
            .unwrap();
        let ours = fwd
            .logits(&fwd.hidden(&ids).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(ours.len(), theirs.len());
        let mut worst = 0f32;
        for (o, t) in ours.iter().zip(&theirs) {
            let (lo, hi) = t
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            for (a, b) in o.iter().zip(t) {
                worst = worst.max((a - b).abs() / (hi - lo));
            }
        }
        eprintln!("{arch}: largest logit difference {worst:e} of the logit range");
        assert!(worst <= 1e-3, "{arch}: {worst}");
    }
}

/// Exact-match accuracy of `model` + `adapter` on `pairs`, through the runtime.
fn accuracy(model: &Path, adapter: &Path, pairs: &[Value]) -> f64 {
    let s = schema();
    let mut st = Student::load(model, Some(adapter), Some(&s)).unwrap();
    let system = prompt::system_prompt(DESCRIPTION, Some(&s));
    let mut session = st
        .session(&GenOptions {
            max_tokens: 48,
            threads: 2,
            ..GenOptions::default()
        })
        .unwrap();
    let right = pairs
        .iter()
        .filter(|p| {
            let g = session
                .generate(&system, p["input"].as_str().unwrap())
                .unwrap();
            serde_json::from_str::<Value>(g.text.trim()).ok().as_ref() == Some(&p["output"])
        })
        .count();
    right as f64 / pairs.len() as f64
}

#[test]
fn training_teaches_a_structured_task_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), "llama");
    let header = kolm::gguf::read_header(&model).unwrap();
    let (train_pairs, held_out) = (pairs(0, 48), pairs(48, 24));
    let zero = dir.path().join("zero.gguf");
    std::fs::write(
        &zero,
        tiny::zero_lora(&header, &targets(), 8, 16.0, 5).unwrap(),
    )
    .unwrap();
    let before = (
        accuracy(&model, &zero, &train_pairs),
        accuracy(&model, &zero, &held_out),
    );

    let ex = examples(&model, &train_pairs);
    let s = settings(20);
    let trained = train::train(&model, &ex, &s, None, &|_| {}).unwrap();
    let adapter = dir.path().join("trained.gguf");
    std::fs::write(&adapter, &trained.adapter).unwrap();
    let after = (
        accuracy(&model, &adapter, &train_pairs),
        accuracy(&model, &adapter, &held_out),
    );
    eprintln!(
        "exact match before {before:?}, after {after:?}; final loss {:.4}, {} steps",
        trained.final_loss, trained.steps
    );
    assert!(before.0 <= 0.2, "the base is near zero: {before:?}");
    assert!(after.0 >= 0.9, "training pairs: {after:?}");
    assert!(
        after.1 >= before.1 + 0.3,
        "held-out: {before:?} -> {after:?}"
    );

    // The same inputs give the same bytes (two short runs).
    let short = settings(2);
    let one = train::train(&model, &ex, &short, None, &|_| {}).unwrap();
    let two = train::train(&model, &ex, &short, None, &|_| {}).unwrap();
    assert!(one.adapter == two.adapter, "byte-identical adapter");
    assert!(one.adapter != trained.adapter);
}

#[test]
fn the_exported_adapter_loads_in_llama_cpp_and_python_gguf_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), "qwen2");
    let ex = examples(&model, &pairs(0, 4));
    let trained = train::train(&model, &ex, &settings(1), None, &|_| {}).unwrap();
    let adapter = dir.path().join("a.gguf");
    std::fs::write(&adapter, &trained.adapter).unwrap();
    // llama.cpp takes it (kolm checks the shapes first, then llama.cpp loads it), and it is
    // not the identity.
    let mut st = Student::load(&model, Some(&adapter), None).unwrap();
    let ids = st.tokenize("a small red box");
    let with = st
        .session(&GenOptions::default())
        .unwrap()
        .logits(&ids)
        .unwrap();
    let mut base = Student::load(&model, None, None).unwrap();
    let without = base
        .session(&GenOptions::default())
        .unwrap()
        .logits(&ids)
        .unwrap();
    assert_ne!(with, without, "a trained adapter changes the logits");

    // The gguf package llama.cpp's project publishes reads the keys and shapes llama.cpp
    // checks.
    let venv = std::env::var_os("KOLM_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/kolm-test/venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "run `bash scripts/pyenv.sh` (`make test` does)"
    );
    let script = r#"
import json, sys, gguf
r = gguf.GGUFReader(sys.argv[1])
def val(k):
    f = r.fields[k]
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else float(v[0])
print(json.dumps({"keys": {k: val(k) for k in ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]},
                  "tensors": {t.name: [int(x) for x in t.shape] for t in r.tensors}}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&adapter)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["keys"]["general.architecture"], "qwen2");
    assert_eq!(v["keys"]["general.type"], "adapter");
    assert_eq!(v["keys"]["adapter.type"], "lora");
    assert_eq!(v["keys"]["adapter.lora.alpha"], 16.0);
    // GGUF order: A is [n_embd, r], B is [r, n_out]; 2 layers × 7 targets × (A, B).
    assert_eq!(v["tensors"]["blk.0.attn_q.weight.lora_a"], json!([64, 8]));
    assert_eq!(v["tensors"]["blk.0.attn_q.weight.lora_b"], json!([8, 64]));
    assert_eq!(
        v["tensors"]["blk.1.ffn_down.weight.lora_a"],
        json!([128, 8])
    );
    assert_eq!(v["tensors"]["blk.1.attn_k.weight.lora_b"], json!([8, 32]));
    assert_eq!(v["tensors"].as_object().unwrap().len(), 28);
}
