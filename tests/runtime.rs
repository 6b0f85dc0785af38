//! The student runtime on real llama.cpp with the tiny models kolm writes itself: constrained
//! output, adapters, errors that never abort, `kolm run`, receipts, and `verify --rescore`.

mod support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use kolm::gguf::tiny::{self, Quant};
use kolm::runtime::{prompt, GenOptions, Stop, Student};
use serde_json::Value;
use support::*;

fn schema() -> Value {
    triage_schema()
}

fn write_model(dir: &Path, arch: &str, seed: u64, quant: Quant) -> PathBuf {
    let p = dir.join(format!("{arch}-{seed}-{quant:?}.gguf"));
    // k-quants need rows of 256: those models are the 256-wide tiny shape.
    let shape = match quant.fits(&tiny::Shape::TINY) {
        Ok(()) => tiny::Shape::TINY,
        Err(_) => tiny::Shape::TINY_256,
    };
    std::fs::write(&p, tiny::model(arch, &shape, seed, quant)).unwrap();
    p
}

/// A rank-4 adapter on the attention projections with B ~ N(0, b_std²) (0: zero-init).
fn adapter(dir: &Path, model: &Path, b_std: f32) -> PathBuf {
    let h = kolm::gguf::read_header(model).unwrap();
    let targets: Vec<String> = ["attn_q", "attn_k", "attn_v", "attn_output"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = dir.join(format!("lora-{b_std}.gguf"));
    std::fs::write(&p, tiny::lora(&h, &targets, 4, 8.0, 1, b_std).unwrap()).unwrap();
    p
}

fn zero_adapter(dir: &Path, model: &Path) -> PathBuf {
    adapter(dir, model, 0.0)
}

/// An adapter far from the identity.
fn strong_adapter(dir: &Path, model: &Path) -> PathBuf {
    adapter(dir, model, 0.5)
}

fn generate(student: &mut Student, input: &str) -> kolm::runtime::Generation {
    let system = prompt::system_prompt("Triage the message.", Some(&schema()));
    let mut s = student.session(&GenOptions::default()).unwrap();
    s.generate(&system, input).unwrap()
}

fn valid(v: &Value) -> bool {
    jsonschema::validator_for(&schema()).unwrap().is_valid(v)
}

#[test]
fn every_tiny_model_answers_with_schema_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        for quant in [
            Quant::F32,
            Quant::Q8_0,
            Quant::Q4KM,
            Quant::Q5KM,
            Quant::Q6K,
        ] {
            let m = write_model(dir.path(), arch, 5, quant);
            let mut st = Student::load(&m, None, Some(&schema())).unwrap();
            for input in [
                "my invoice is wrong",
                "the app crashes",
                "¿dónde está mi cuenta? 🙂",
            ] {
                let g = generate(&mut st, input);
                assert_eq!(g.stop, Stop::EndOfText, "{arch} {quant:?}: {}", g.text);
                let v: Value = serde_json::from_str(&g.text)
                    .unwrap_or_else(|e| panic!("{arch} {quant:?}: {e}: {}", g.text));
                assert!(valid(&v), "{arch} {quant:?}: {v}");
                // Compact JSON, the form training teaches: no whitespace anywhere.
                assert_eq!(g.text, v.to_string(), "{arch} {quant:?}");
                assert!(g.prompt_tokens > 0 && g.output_tokens > 0);
                // One pass per token but the last: a whole JSON value can only end.
                assert_eq!(g.decode_passes, g.output_tokens - 1);
            }
        }
    }
}

#[test]
fn greedy_decoding_is_deterministic_and_thread_count_free() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "llama", 9, Quant::F32);
    let st = Student::load(&m, None, Some(&schema())).unwrap();
    let system = prompt::system_prompt("Triage.", Some(&schema()));
    let mut outs = vec![];
    for threads in [1, 2, 1] {
        let opts = GenOptions {
            threads,
            ..GenOptions::default()
        };
        let mut s = st.session(&opts).unwrap();
        outs.push(s.generate(&system, "refund please").unwrap().text);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

/// A session decodes only what follows the prefix a prompt shares with what it decoded last;
/// the answers are those of a fresh session for every input, in any order.
#[test]
fn a_session_reusing_the_shared_prefix_answers_as_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "qwen2", 4, Quant::F32);
    let a = strong_adapter(dir.path(), &m);
    let st = Student::load(&m, Some(&a), Some(&schema())).unwrap();
    let system = prompt::system_prompt("Triage the message.", Some(&schema()));
    let some_tokens = st.tokenize("a few tokens");
    let inputs = [
        "my invoice is wrong",
        "the app crashes on start",
        "my invoice is wrong",
        "my invoice",
        "locked out of my account since monday",
    ];
    let fresh: Vec<String> = inputs
        .iter()
        .map(|i| {
            let mut s = st.session(&GenOptions::default()).unwrap();
            s.generate(&system, i).unwrap().text
        })
        .collect();
    let mut s = st.session(&GenOptions::default()).unwrap();
    let reused: Vec<String> = inputs
        .iter()
        .map(|i| s.generate(&system, i).unwrap().text)
        .collect();
    assert_eq!(reused, fresh);
    // The logits call in between starts from an empty cache, and so does what follows it.
    assert!(!s.logits(&some_tokens).unwrap().is_empty());
    assert_eq!(s.generate(&system, inputs[1]).unwrap().text, fresh[1]);
}

#[test]
fn a_zero_init_adapter_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2"] {
        let m = write_model(dir.path(), arch, 2, Quant::F32);
        let a = zero_adapter(dir.path(), &m);
        let mut plain = Student::load(&m, None, Some(&schema())).unwrap();
        let mut adapted = Student::load(&m, Some(&a), Some(&schema())).unwrap();
        for input in ["hello", "charge twice on my card"] {
            assert_eq!(
                generate(&mut plain, input).text,
                generate(&mut adapted, input).text,
                "{arch}"
            );
        }
    }
}

#[test]
fn a_trained_adapter_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "llama", 2, Quant::F32);
    let a = strong_adapter(dir.path(), &m);
    let plain = Student::load(&m, None, None).unwrap();
    let adapted = Student::load(&m, Some(&a), None).unwrap();
    let opts = GenOptions {
        max_tokens: 12,
        ignore_eos: true,
        ..GenOptions::default()
    };
    let differ = ["hello", "charge twice on my card", "where is my parcel"]
        .iter()
        .filter(|input| {
            let x = plain.session(&opts).unwrap().generate_raw(input).unwrap();
            let y = adapted.session(&opts).unwrap().generate_raw(input).unwrap();
            x.text != y.text
        })
        .count();
    assert!(differ > 0, "the adapter changed no output");
}

#[test]
fn stop_strings_and_max_tokens_end_generation() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "llama", 4, Quant::F32);
    let st = Student::load(&m, None, Some(&schema())).unwrap();
    let system = prompt::system_prompt("Triage.", Some(&schema()));
    let opts = GenOptions {
        max_tokens: 3,
        ..GenOptions::default()
    };
    let g = st.session(&opts).unwrap().generate(&system, "x").unwrap();
    assert_eq!(g.stop, Stop::MaxTokens);
    assert_eq!(g.output_tokens, 3);
    let err = kolm::runtime::parse_output(&g, 3).unwrap_err().to_string();
    assert!(err.contains("cut at --max-tokens 3"), "{err}");
    let opts = GenOptions {
        stop: vec!["\"label\"".into()],
        ..GenOptions::default()
    };
    let g = st.session(&opts).unwrap().generate(&system, "x").unwrap();
    assert_eq!(g.stop, Stop::StopString);
    assert!(!g.text.contains("\"label\""), "{}", g.text);
}

#[test]
fn bad_models_adapters_and_inputs_are_clear_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_model(dir.path(), "llama", 1, Quant::F32);
    let bytes = std::fs::read(&m).unwrap();

    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = Student::load(&truncated, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("damaged") || e.contains("not a valid GGUF"),
        "{e}"
    );

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"not a model at all").unwrap();
    let e = Student::load(&garbage, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a valid GGUF"), "{e}");

    let missing = dir.path().join("missing.gguf");
    let e = Student::load(&missing, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("could not open"), "{e}");

    // An adapter made for the other architecture.
    let q = write_model(dir.path(), "qwen2", 1, Quant::F32);
    let qa = zero_adapter(dir.path(), &q);
    let e = Student::load(&m, Some(&qa), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not fit the model"), "{e}");
    // An adapter passed as the model.
    let e = Student::load(&qa, None, None).err().unwrap().to_string();
    assert!(e.contains("is a LoRA adapter, not a model"), "{e}");

    // An input longer than the context.
    let mut st = Student::load(&m, None, Some(&schema())).unwrap();
    let long = "word ".repeat(3000);
    let e = st
        .session(&GenOptions::default())
        .unwrap()
        .generate("Triage.", &long)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the input is too long"), "{e}");
    assert!(e.contains("exceeds the context of 2048 tokens"), "{e}");
    // The session is still usable afterwards.
    let g = generate(&mut st, "short");
    assert!(valid(&serde_json::from_str(&g.text).unwrap()));
}

fn kolm_cmd(home: &Path) -> Command {
    let mut c = Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

/// A project built end to end with the real score stage.
fn built() -> Project {
    let p = Project::new(&kolmfile_text(""));
    p.build();
    p
}

#[test]
fn kolm_run_prints_schema_valid_json_and_chains_receipts() {
    let p = built();
    let art = p.artifact();
    let schema = p.kolmfile().tasks[0].output_schema.clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for (i, input) in ["I was charged twice", "-", "from a file"]
        .iter()
        .enumerate()
    {
        let mut c = kolm_cmd(p.home.path());
        c.arg("run").arg(&art);
        match *input {
            "-" => {
                c.arg("-").write_stdin("piped input");
            }
            "from a file" => {
                let f = p.path("input.txt");
                std::fs::write(&f, "text from a file").unwrap();
                c.arg("--input-file").arg(&f);
            }
            text => {
                c.arg(text);
            }
        }
        let v = ok_json(&c.output().unwrap());
        assert!(validator.is_valid(&v), "{v}");
        let log = std::fs::read_to_string(p.home.path().join("logs/receipts.jsonl")).unwrap();
        assert_eq!(log.lines().count(), i + 1);
    }
    // The model is read in place: the store holds the base the build wrote and nothing a run
    // extracted (an extraction leaves a `.b3` record of its content beside its copy).
    let models: Vec<_> = std::fs::read_dir(p.home.path().join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(models.len(), 1, "{models:?}");
    assert!(!models[0].ends_with(".b3"), "{models:?}");

    let r = ok_json(
        &kolm_cmd(p.home.path())
            .args(["receipts", "verify", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r["chain"]["receipts"], 3);
    assert_eq!(r["chain"]["macs_checked"], true);

    // A receipt edited after the fact: the chain breaks at that very line (its MAC).
    let path = p.home.path().join("logs/receipts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let first: Value = serde_json::from_str(&lines[1]).unwrap();
    let edited = lines[1].replace(
        &format!("\"tokens_out\":{}", first["tokens_out"]),
        &format!(
            "\"tokens_out\":{}",
            first["tokens_out"].as_u64().unwrap() + 1
        ),
    );
    assert_ne!(edited, lines[1]);
    std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], edited, lines[2])).unwrap();
    let bad = kolm_cmd(p.home.path())
        .args(["receipts", "verify"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("breaks at line 2"), "{err}");
    assert!(err.contains("MAC does not match"), "{err}");
    // Without the key, the same edit is caught one line later, by the hash chain.
    let nokey = kolm_cmd(p.home.path())
        .env_remove("KOLM_SIGNING_KEY")
        .args(["receipts", "verify"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&nokey.stderr).contains("breaks at line 3"));
    // A removed line too.
    std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let gone = kolm_cmd(p.home.path())
        .args(["receipts", "verify"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&gone.stderr).contains("breaks at line 2"));
}

#[test]
fn kolm_run_refuses_bad_artifacts_and_bad_input() {
    let p = built();
    let art = p.artifact();
    // Non-UTF-8 input.
    let f = p.path("latin1.txt");
    std::fs::write(&f, b"caf\xe9").unwrap();
    let out = kolm_cmd(p.home.path())
        .arg("run")
        .arg(&art)
        .arg("--input-file")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8 (invalid byte at offset 3)"));
    // Empty input, from a pipe.
    let out = kolm_cmd(p.home.path())
        .arg("run")
        .arg(&art)
        .arg("-")
        .write_stdin("  \n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the input is empty"));

    // A tampered artifact is refused before anything is loaded or extracted.
    let home = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    let o = kolm::artifact::verify::open(&art).unwrap();
    let at = o.entries[0].data_offset as usize + 1000;
    bytes[at] ^= 1;
    let bad = p.path("bad.kolm");
    std::fs::write(&bad, &bytes).unwrap();
    let out = kolm_cmd(home.path())
        .arg("run")
        .arg(&bad)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed verification"));
    let extracted: Vec<String> = std::fs::read_dir(home.path().join("models"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        extracted.is_empty(),
        "nothing extracted from a tampered artifact: {extracted:?}"
    );
    assert!(
        !home.path().join("logs/receipts.jsonl").exists(),
        "no receipt"
    );

    // Signed with another key.
    let out = kolm_cmd(home.path())
        .env("KOLM_SIGNING_KEY", "another key")
        .arg("run")
        .arg(&art)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad signature"));
}

#[test]
fn verify_rescore_recomputes_the_sealed_k_exactly() {
    let p = built();
    let out = kolm_cmd(p.home.path())
        .args([
            "verify",
            "--rescore",
            "--bench",
            "--bench-runs",
            "3",
            "--json",
        ])
        .arg(p.artifact())
        .output()
        .unwrap();
    let v: Value = ok_json(&out);
    assert_eq!(v["rescore"]["equal"], true, "{v}");
    assert_eq!(v["rescore"]["sealed_k"], v["rescore"]["rescored_k"]);
    assert_eq!(v["bench"]["runs"], 3);
    assert!(v["bench"]["p50_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_library_runs_an_artifact_and_returns_output_and_receipt() {
    let p = built();
    let home = kolm::home::Home::at(p.home.path());
    init_env();
    let mut r = kolm::runtime::Runner::open(
        &p.artifact(),
        &home,
        &kolm::artifact::verify::VerifyOptions::default(),
        GenOptions::default(),
        None,
    )
    .unwrap();
    let a = r.run("my parcel never arrived").unwrap();
    let b = r.run("my parcel never arrived").unwrap();
    assert_eq!(a.output, b.output, "same input, same output");
    assert_eq!(b.receipt.seq, a.receipt.seq + 1);
    assert_eq!(a.receipt.facts.path, "model");
    assert_eq!(a.receipt.facts.tokens_out, a.generation.output_tokens);
    assert_eq!(
        a.receipt.facts.artifact_sha256,
        kolm::digest::sha256(&std::fs::read(p.artifact()).unwrap())
    );
    assert!(a.receipt.mac.is_some(), "signed with KOLM_SIGNING_KEY");
}

#[test]
fn a_verified_artifact_is_not_rehashed_until_it_changes() {
    let p = built();
    let home = kolm::home::Home::at(p.home.path());
    init_env();
    let open =
        |stamps| kolm::runtime::open::open(&p.artifact(), &home, &Default::default(), stamps);
    assert!(
        !open(true).unwrap().stamped,
        "first open: full verification"
    );
    // A stamp is trusted only once the file is older than the racy-clean window.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(
        !open(true).unwrap().stamped,
        "the stamp was written too close to the change"
    );
    let third = open(true).unwrap();
    assert!(
        third.stamped,
        "unchanged since a trusted stamp: the model is not rehashed"
    );
    assert_eq!(
        third.sha256,
        kolm::digest::sha256(&std::fs::read(p.artifact()).unwrap())
    );
    assert!(
        !open(false).unwrap().stamped,
        "`kolm verify` paths never use stamps"
    );

    // Flip one model byte in place (same size, same name): the ctime moves, the stamp no
    // longer holds, and the full verification catches it.
    let o = kolm::artifact::verify::open(&p.artifact()).unwrap();
    let at = o.entries[0].data_offset + 4000;
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .open(p.artifact())
            .unwrap();
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[b[0] ^ 0x40]).unwrap();
    }
    let e = open(true).expect_err("tampering is caught").to_string();
    assert!(e.contains("model.gguf"), "{e}");

    // And a damaged extracted copy (what training reads) is not trusted either: it is
    // extracted again.
    let p2 = built();
    let home2 = kolm::home::Home::at(p2.home.path());
    let first =
        kolm::runtime::open::open(&p2.artifact(), &home2, &Default::default(), true).unwrap();
    let copy = first.model_file(&home2).unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&copy, &bytes).unwrap();
    let again =
        kolm::runtime::open::open(&p2.artifact(), &home2, &Default::default(), true).unwrap();
    assert_eq!(
        kolm::digest::sha256(&std::fs::read(again.model_file(&home2).unwrap()).unwrap()),
        again.manifest.entries[0].sha256
    );
}

#[test]
fn model_graded_assertions_are_skipped_with_a_warning() {
    // The real stages (a real process): no corpus, since indexing one is not built yet.
    let p = Project::new(&kolmfile_text("").replace("corpus = [\"docs/*.md\"]", "corpus = []"));
    p.edit(
        "data/evals.jsonl",
        "{\"vars\": {\"input\": \"x\"}, \"assert\": [{\"type\": \"is-json\"}, {\"type\": \"llm-rubric\", \"value\": \"polite\"}]}\n",
    );
    let out = Command::cargo_bin("kolmbuild")
        .unwrap()
        .current_dir(p.dir.path())
        .env("KOLM_HOME", p.home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: 1 model-graded assertion(s) (similar, llm-rubric) were skipped"),
        "{err}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(p.path("dist/demo.report.json")).unwrap()).unwrap();
    assert_eq!(report["skipped_assertions"], 1);
    assert_eq!(
        report["tests"][0]["pass"], true,
        "the graded assertion decides"
    );
}
