//! Decompose end to end on real llama.cpp with tiny models: recipes verified and kept or
//! dropped, exact answers with their receipts, and recipe speculative decoding that changes
//! the number of passes but never the output.

mod support;

use std::path::Path;

use assert_cmd::Command;
use kolm::gguf::tiny::{self, Quant};
use kolm::runtime::recipes::continuing;
use kolm::runtime::{prompt, GenOptions, Student};
use serde_json::{json, Value};
use support::*;

fn schema() -> Value {
    triage_schema()
}

#[test]
fn drafts_change_the_passes_never_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let system = prompt::system_prompt("Triage the message.", Some(&schema()));
    // F32 only: on a random tiny model every logit is a near tie, and a quantised model's
    // batched product (llama.cpp multiplies a batch of rows with other kernels than one row)
    // rounds differently enough to flip them (seen on Q8_0: a different label). On the real
    // student the example's 100 evals give the same outputs with and without drafts
    // (runtime.md §5).
    for (arch, quant) in [("llama", Quant::F32), ("qwen2", Quant::F32)] {
        let path = dir.path().join(format!("{arch}-{quant:?}.gguf"));
        std::fs::write(&path, tiny::model(arch, &tiny::Shape::TINY, 5, quant)).unwrap();
        let student = Student::load(&path, None, Some(&schema())).unwrap();
        for input in ["I was charged twice", "the app crashes on start", "hello"] {
            for max_tokens in [64, 5] {
                let opts = GenOptions {
                    max_tokens,
                    ..GenOptions::default()
                };
                let mut s = student.session(&opts).unwrap();
                let plain = s.generate(&system, input).unwrap();
                let right = [plain.text.as_bytes()];
                let perfect = |so_far: &[u8]| continuing(&right, so_far);
                let wrong = |_: &[u8]| Some(br#"{"label":"account","severity":"high"}zz"#.to_vec());
                let drafted = s.generate_with(&system, input, Some(&perfect)).unwrap();
                assert_eq!(drafted.text, plain.text, "{arch} {quant:?} {input}");
                assert_eq!(drafted.output_tokens, plain.output_tokens);
                assert_eq!(drafted.stop, plain.stop);
                // The right draft is verified in a pass or two instead of a pass per token.
                if plain.output_tokens > 4 {
                    assert!(
                        drafted.decode_passes < plain.decode_passes,
                        "{} vs {} passes",
                        drafted.decode_passes,
                        plain.decode_passes
                    );
                    assert!(drafted.draft_tokens > 0);
                }
                // Every token is decoded once but the last, whose row would only choose the
                // end of generation: a whole JSON value can only end.
                if plain.stop == kolm::runtime::Stop::EndOfText {
                    assert_eq!(plain.decode_passes, plain.output_tokens - 1);
                }
                let missed = s.generate_with(&system, input, Some(&wrong)).unwrap();
                assert_eq!(
                    missed.text, plain.text,
                    "{arch} {quant:?} {input}: wrong drafts"
                );
                assert_eq!(missed.output_tokens, plain.output_tokens);
                // And once more plain: the session's cache was left sound by the trimming.
                assert_eq!(s.generate(&system, input).unwrap().text, plain.text);
            }
        }
    }
}

#[test]
fn sampling_is_seeded_and_drafts_do_not_change_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let system = prompt::system_prompt("Triage the message.", Some(&schema()));
    let path = dir.path().join("llama.gguf");
    std::fs::write(
        &path,
        tiny::model("llama", &tiny::Shape::TINY, 5, Quant::F32),
    )
    .unwrap();
    let student = Student::load(&path, None, Some(&schema())).unwrap();
    let sampled = |seed: u64| GenOptions {
        max_tokens: 64,
        sample: Some(kolm::runtime::engine::Sampling {
            temperature: 1.5,
            // The whole tiny vocabulary: a random model's top 40 often hold one allowed token.
            top_k: 100_000,
            seed,
        }),
        ..GenOptions::default()
    };
    let mut texts = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let mut s = student.session(&sampled(seed)).unwrap();
        let a = s.generate(&system, "I was charged twice").unwrap();
        let b = s.generate(&system, "I was charged twice").unwrap();
        assert_eq!(a.text, b.text, "seed {seed}: one seed, one sample");
        // A draft of the sample itself, and a wrong one: one draw per token either way.
        let right = [a.text.as_bytes()];
        let perfect = |so_far: &[u8]| continuing(&right, so_far);
        let wrong = |_: &[u8]| Some(br#"{"label":"account","severity":"high"}"#.to_vec());
        let drafted = s
            .generate_with(&system, "I was charged twice", Some(&perfect))
            .unwrap();
        assert_eq!(drafted.text, a.text, "seed {seed}: right drafts");
        let missed = s
            .generate_with(&system, "I was charged twice", Some(&wrong))
            .unwrap();
        assert_eq!(missed.text, a.text, "seed {seed}: wrong drafts");
        // Under the grammar, always the schema's JSON.
        let v: Value = serde_json::from_str(&a.text).unwrap();
        assert!(v["label"].is_string(), "{v}");
        texts.insert(a.text);
    }
    // A random model at temperature 1.5: eight seeds do not all draw the greedy answer.
    assert!(texts.len() > 1, "every seed drew {texts:?}");
}

fn kolm_cmd(home: &Path) -> Command {
    let mut c = Command::cargo_bin("kolm").unwrap();
    c.env("KOLM_HOME", home)
        .env("NO_COLOR", "1")
        .env("KOLM_SIGNING_KEY", KEY);
    c
}

const DECOMPOSE: &str = "[decompose]\nenabled = true\nrecipes_dir = \"recipes\"\n";

fn project() -> Project {
    let p = Project::new(&kolmfile_text(DECOMPOSE));
    let seeds: String = [
        ("reset my password", "account"),
        ("forgot my password again", "account"),
        ("password does not work", "account"),
        ("new password please", "account"),
        ("my password expired", "account"),
        ("app crashes", "bug"),
        ("the page is blank", "bug"),
        ("locked out", "account"),
    ]
    .iter()
    .map(|(i, l)| format!("{}\n", json!({"input": i, "output": {"label": l}})))
    .collect();
    p.write("data/seeds.jsonl", &seeds);
    p.write(
        "data/evals.jsonl",
        "{\"description\": \"a\", \"vars\": {\"input\": \"my password is wrong\"}, \"assert\": [{\"type\": \"equals\", \"value\": {\"label\": \"account\"}}, {\"type\": \"javascript\", \"value\": \"output.label === 'account'\"}]}\n{\"description\": \"b\", \"vars\": {\"input\": \"it crashed\"}, \"assert\": [{\"type\": \"is-json\"}]}\n",
    );
    // Exact: right on all five pairs it answers.
    p.write(
        "recipes/password.js",
        "function recipe(input) { return /password/.test(input) ? {label: 'account'} : null; }",
    );
    // Right on some, wrong on others: kept only as a draft source.
    p.write(
        "recipes/guess.js",
        "function recipe(input) { return input.length > 15 ? {label: 'account'} : {label: 'bug'}; }",
    );
    // Hangs on everything: dropped.
    p.write("recipes/hang.js", "function recipe(input) { for (;;) {} }");
    // Declines everything: dropped.
    p.write("recipes/shy.js", "function recipe(input) { return null; }");
    p.age_all();
    p
}

#[test]
fn decompose_keeps_verified_recipes_and_an_exact_one_answers() {
    let p = project();
    p.build();
    let art = p.artifact();
    let inspect = ok_json(
        &kolm_cmd(p.home.path())
            .args(["inspect", "--json"])
            .arg(&art)
            .output()
            .unwrap(),
    );
    let m = &inspect["manifest"];
    assert_eq!(m["recipes"]["count"], 2, "{inspect}");
    // Every pair is a neighbour: its input's terms (no text) and its output's place in the
    // table (recipes.md §4).
    let mut z = zip::ZipArchive::new(std::fs::File::open(&art).unwrap()).unwrap();
    let mut pack = String::new();
    std::io::Read::read_to_string(&mut z.by_name("recipes.json").unwrap(), &mut pack).unwrap();
    assert!(!pack.contains("forgot my"), "the pack carries input text");
    let pack: Value = serde_json::from_str(&pack).unwrap();
    let drafts = &pack["drafts"];
    let neighbours = drafts["neighbours"].as_array().unwrap();
    assert_eq!(neighbours.len(), 8, "{drafts}");
    let first = &drafts["table"][neighbours[0]["output"].as_u64().unwrap() as usize];
    assert_eq!(first["text"], r#"{"label":"account"}"#);
    // "reset my password": three words and two word pairs.
    assert_eq!(neighbours[0]["terms"].as_array().unwrap().len(), 5);
    // The eval the exact recipe answers is covered whole.
    let coverage = m["k_measured"]["coverage"].as_f64().unwrap();
    assert!(coverage > 0.0 && coverage <= 1.0, "{coverage}");

    let out = kolm_cmd(p.home.path())
        .arg("run")
        .arg(&art)
        .arg("what is my password")
        .output()
        .unwrap();
    assert_eq!(ok_json(&out), json!({"label": "account"}));
    let log = std::fs::read_to_string(p.home.path().join("logs/receipts.jsonl")).unwrap();
    let receipt: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(
        receipt["path"]
            .as_str()
            .unwrap()
            .starts_with("recipe:sha256:"),
        "{receipt}"
    );
    assert_eq!(receipt["tokens_in"], 0);

    // Input no exact recipe takes goes to the model.
    let out = kolm_cmd(p.home.path())
        .arg("run")
        .arg(&art)
        .arg("it crashed")
        .output()
        .unwrap();
    ok_json(&out);
    let log = std::fs::read_to_string(p.home.path().join("logs/receipts.jsonl")).unwrap();
    let receipt: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(receipt["path"], "model");

    // The rescored K equals the sealed one: the recipes and drafts run the same way.
    let v = ok_json(
        &kolm_cmd(p.home.path())
            .args(["verify", "--rescore", "--json"])
            .arg(&art)
            .output()
            .unwrap(),
    );
    assert_eq!(v["rescore"]["equal"], true, "{v}");
}

#[test]
fn a_missing_recipe_folder_is_a_clear_error() {
    let p = Project::new(&kolmfile_text(DECOMPOSE));
    let err = p
        .build_with(Default::default(), Default::default())
        .map(|_| ())
        .unwrap_err();
    let msg = err.error.to_string();
    assert!(
        msg.contains("decompose.recipes_dir `recipes` cannot be read"),
        "{msg}"
    );
}

#[test]
fn the_teacher_writes_recipes_verified_on_pairs_it_was_not_shown() {
    use support::teacher_server::{system_text, user_text, Server};
    let server = Server::start(Box::new(|body, _| {
        if system_text(body).starts_with("You write recipes") {
            return json!({"recipes": [
                {"name": "Passwords", "source": "function recipe(i) { return /password/.test(i) ? {label: 'account'} : null; }"},
                {"name": "always account", "source": "function recipe(i) { return {label: 'account'}; }"},
                {"name": "hang", "source": "function recipe(i) { for (;;) {} }"},
            ]})
            .to_string();
        }
        let label = if user_text(body).contains("password") {
            "account"
        } else {
            "bug"
        };
        json!({ "label": label }).to_string()
    }));
    let k = format!(
        "[teacher]\nprovider = \"openai\"\nmodel = \"teach-1\"\nendpoint = \"{}\"\napi_key_env = \"{TEACHER_KEY_ENV}\"\n{}",
        server.endpoint(),
        kolmfile_text("[decompose]\nenabled = true\n")
    );
    let p = Project::new(&k);
    // 20 pairs the teacher is shown, then 10 held out: 8 about passwords.
    let seeds: String = (0..30)
        .map(|i| {
            let (input, label) = if i % 2 == 0 || i >= 24 {
                (format!("password problem number {i}"), "account")
            } else {
                (format!("crash report number {i}"), "bug")
            };
            format!("{}\n", json!({"input": input, "output": {"label": label}}))
        })
        .collect();
    p.edit("data/seeds.jsonl", &seeds);
    let r = p
        .build_with(
            kolm::stages::BuildOptions {
                gate: Some(0.0),
                ..Default::default()
            },
            Default::default(),
        )
        .map_err(|f| f.error)
        .expect("builds");
    let n = r
        .nodes
        .iter()
        .find(|n| n.stage.name() == "decompose")
        .unwrap();
    let store = kolm::cache::Store::new(p.home().cache());
    let out: kolm::stages::StageOutput =
        serde_json::from_value(store.get_action(n.key.as_deref().unwrap()).unwrap().output)
            .unwrap();
    let kolm::stages::StageOutput::Decompose(d) = out else {
        panic!()
    };
    let fate: Vec<(String, String, u64)> = d
        .verdicts
        .iter()
        .map(|v| (v.name.clone(), v.kept.clone(), v.measured.pairs))
        .collect();
    assert_eq!(
        fate,
        [
            ("passwords".to_string(), "exact".to_string(), 10),
            ("always-account".into(), "draft".into(), 10),
            ("hang".into(), "dropped".into(), 10),
        ],
        "{:?}",
        d.verdicts
    );
    assert_eq!(d.recipe_count, 2);
    // The request showed the first 20 pairs and none of the held-out ones.
    let asked: Vec<String> = server
        .seen()
        .iter()
        .filter(|s| system_text(&s.body).starts_with("You write recipes"))
        .map(|s| user_text(&s.body))
        .collect();
    assert_eq!(asked.len(), 1);
    assert!(asked[0].contains("number 19") && !asked[0].contains("number 20"));
}
