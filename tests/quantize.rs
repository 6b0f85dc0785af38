//! `[base] quantize`: the base requantised by llama.cpp's quantiser into the model store, sealed
//! and run in that type, the adapter learnt on the base as named; the lock pins the file the
//! Kolmfile names; rebuilds reuse it.

mod support;

use serde_json::Value;
use support::*;

const TINY: &str = "tiny = { arch = \"llama\", seed = 3 }\n";

fn quantized(q: &str) -> Project {
    let text = kolmfile_text("").replace(TINY, &format!("{TINY}quantize = \"{q}\"\n"));
    assert!(text.contains("quantize"), "the base section moved");
    Project::new(&text)
}

fn kolm(p: &Project) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", p.home.path())
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

/// The sealed manifest's `base_model`.
fn base_model(p: &Project) -> Value {
    let out = kolm(p)
        .args(["inspect", "--json"])
        .arg(p.artifact())
        .output()
        .unwrap();
    ok_json(&out)["manifest"]["base_model"].clone()
}

/// `kolm run` on the artifact answers `input` with the schema's JSON.
fn runs(p: &Project, input: &str) {
    let out = kolm(p)
        .arg("run")
        .arg(p.artifact())
        .arg(input)
        .output()
        .unwrap();
    let v = ok_json(&out);
    assert!(v["label"].is_string(), "{v}");
}

/// An entry of the artifact.
fn entry(p: &Project, name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(p.artifact()).unwrap()).unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name(name).unwrap(), &mut bytes).unwrap();
    bytes
}

fn sealed_model(p: &Project) -> Vec<u8> {
    entry(p, "model.gguf")
}

#[test]
fn the_base_is_requantised_sealed_and_run_in_the_new_type() {
    let plain = Project::new(&kolmfile_text(""));
    plain.build();
    let p = quantized("q8_0");
    p.build();
    let base = base_model(&p);
    let sha = base["sha256"].as_str().unwrap().to_string();
    assert!(
        base["quantization"].as_str().unwrap().contains("Q8_0"),
        "{base}"
    );
    assert!(
        base_model(&plain)["quantization"]
            .as_str()
            .unwrap()
            .contains("F32"),
        "the tiny base is F32"
    );

    // The sealed model is the stored requantised file, and another type than the tiny F32.
    let model = sealed_model(&p);
    assert_eq!(kolm::digest::sha256(&model), sha);
    assert!(p.home().model(&sha).is_file());
    let f32 = sealed_model(&plain);
    assert!(
        model.len() < f32.len() / 2,
        "{} vs {}",
        model.len(),
        f32.len()
    );

    // The adapter is the one the base as named gives.
    assert_eq!(entry(&p, "lora.bin"), entry(&plain, "lora.bin"));

    // The lock pins the file the Kolmfile names (the generated F32 model), not its copy.
    let lock = std::fs::read_to_string(p.path("Kolmfile.lock")).unwrap();
    let source = base_model(&plain)["sha256"].as_str().unwrap().to_string();
    assert!(lock.contains(&source), "{lock}");
    assert!(!lock.contains(&sha), "{lock}");

    // It runs.
    runs(&p, "reset my password");

    // A rebuild runs nothing; a build from a clean store quantises to the same bytes.
    let again = p.build();
    assert!(ran(&again).is_empty(), "{:?}", statuses(&again));
    let fresh = quantized("q8_0");
    fresh.build();
    assert_eq!(sealed_model(&fresh), model, "requantising is deterministic");
}

#[test]
fn a_type_whose_blocks_do_not_fit_the_rows_falls_back_as_llama_cpp_does() {
    // K-quants pack rows in blocks of 256 values; the tiny model's rows are 64 wide, so
    // llama.cpp's quantiser gives those tensors a fallback type (as `llama-quantize` does),
    // the file keeps the type asked for, and the model runs.
    let p = quantized("q4_k_m");
    p.build();
    let q = base_model(&p)["quantization"].as_str().unwrap().to_string();
    assert!(q.contains("Q4_K_M"), "{q}");
    runs(&p, "app crashes");
}
