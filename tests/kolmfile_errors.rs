//! Malformed Kolmfiles: each gets its own precise message, at the right line and column.

use kolm::kolmfile::{Kolmfile, KolmfileError};

const GOOD: &str = r#"[project]
name = "demo"

[base]
tiny = { arch = "llama", seed = 1 }

[teacher]
provider = "none"
samples = 3

[distill]
rank = 8
targets = ["attn_q", "attn_v"]

[score.weights]
accuracy = 0.4

[[task]]
name = "demo"
description = "d"
output_schema = { type = "object" }
seeds = "seeds.jsonl"
evals = "evals.jsonl"
"#;

#[allow(clippy::result_large_err)]
fn parse(text: &str) -> Result<Kolmfile, KolmfileError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seeds.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("evals.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("model.gguf"), "").unwrap();
    std::fs::write(dir.path().join("schema.json"), "{\"type\":\"object\"}").unwrap();
    std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
    let path = dir.path().join("Kolmfile.toml");
    std::fs::write(&path, text).unwrap();
    Kolmfile::parse(&path, text)
}

/// Asserts the error's message contains `msg`, it points at `line`, and (if given) the help
/// contains `help`.
fn expect(text: &str, line: usize, msg: &str, help: Option<&str>) {
    let e = parse(text).expect_err("must be rejected");
    assert!(
        e.message.contains(msg),
        "message {:?} lacks {:?}",
        e.message,
        msg
    );
    assert_eq!(e.line, line, "line of {:?}", e.message);
    if let Some(h) = help {
        let got = e.help.clone().unwrap_or_default();
        assert!(got.contains(h), "help {got:?} lacks {h:?}");
    }
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("Kolmfile.toml:{}:{}: ", e.line, e.col)),
        "{shown}"
    );
}

fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn the_good_kolmfile_parses() {
    let k = parse(GOOD).unwrap();
    assert_eq!(k.tasks.len(), 1);
    assert_eq!(k.tasks[0].distill.rank, 8);
    assert_eq!(k.tasks[0].teacher.samples, 3);
    assert_eq!(k.tasks[0].gate.min_k, 0.70);
}

#[test]
fn misspelt_key_suggests_the_right_one() {
    expect(
        &edit("samples = 3", "sampels = 3"),
        9,
        "unknown key `sampels` in [teacher]",
        Some("did you mean `samples`?"),
    );
}

#[test]
fn misspelt_table_suggests_the_right_one() {
    expect(
        &edit("[distill]", "[distil]"),
        11,
        "unknown key `distil`",
        Some("did you mean `distill`?"),
    );
}

#[test]
fn misspelt_task_key() {
    expect(
        &edit("evals = ", "eval = "),
        23,
        "unknown key `eval` in [[task]]",
        Some("did you mean `evals`?"),
    );
}

#[test]
fn wrong_type_for_an_integer() {
    expect(
        &edit("samples = 3", "samples = \"three\""),
        9,
        "wrong type for `samples`: expected an integer",
        None,
    );
}

#[test]
fn wrong_type_for_a_list() {
    expect(
        &edit("targets = [\"attn_q\", \"attn_v\"]", "targets = \"attn_q\""),
        13,
        "wrong type for `targets`",
        None,
    );
}

#[test]
fn invalid_toml_syntax() {
    expect(&edit("rank = 8", "rank = = 8"), 12, "invalid TOML", None);
}

#[test]
fn unclosed_array() {
    expect(
        &edit(
            "targets = [\"attn_q\", \"attn_v\"]",
            "targets = [\"attn_q\", \"attn_v\"",
        ),
        15,
        "invalid TOML",
        None,
    );
}

#[test]
fn missing_project() {
    expect(
        &GOOD.replace("[project]\nname = \"demo\"\n", ""),
        1,
        "missing [project] table",
        Some("[project]"),
    );
}

#[test]
fn missing_project_name() {
    expect(
        &GOOD.replace("name = \"demo\"\n\n[base]", "\n[base]"),
        1,
        "missing required key `name` in project",
        None,
    );
}

#[test]
fn invalid_project_name() {
    expect(
        &edit("name = \"demo\"", "name = \"My Demo!\""),
        2,
        "invalid project name `My Demo!`",
        Some("lowercase"),
    );
}

#[test]
fn no_tasks() {
    let text = &GOOD[..GOOD.find("[[task]]").unwrap()];
    expect(text, 1, "no tasks", Some("[[task]]"));
}

#[test]
fn missing_seeds_file() {
    expect(
        &edit("seeds = \"seeds.jsonl\"", "seeds = \"nope.jsonl\""),
        22,
        "seeds file `nope.jsonl` does not exist",
        Some("relative"),
    );
}

#[test]
fn path_escaping_the_project() {
    expect(
        &edit("seeds = \"seeds.jsonl\"", "seeds = \"../seeds.jsonl\""),
        22,
        "must stay inside the project",
        None,
    );
}

#[test]
fn unknown_provider_suggests() {
    expect(
        &edit("provider = \"none\"", "provider = \"anthropc\""),
        8,
        "unknown teacher provider `anthropc`",
        Some("did you mean `anthropic`?"),
    );
}

#[test]
fn network_provider_needs_model_and_key_env() {
    expect(
        &edit("provider = \"none\"", "provider = \"openai\""),
        8,
        "teacher provider `openai` needs `teacher.model`",
        None,
    );
}

#[test]
fn api_key_value_is_refused_and_never_echoed() {
    let text = edit(
        "provider = \"none\"",
        "provider = \"openai\"\nmodel = \"gpt\"\napi_key_env = \"sk-live-abc123\"",
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.message
            .contains("must be the NAME of an environment variable"),
        "{}",
        e.message
    );
    assert_eq!(e.line, 10);
    let rendered = format!("{:?}", miette::Report::new(e));
    assert!(
        !rendered.contains("sk-live-abc123"),
        "the secret leaked:\n{rendered}"
    );
}

#[test]
fn replay_needs_a_cassette() {
    expect(
        &edit("provider = \"none\"", "provider = \"replay\""),
        8,
        "needs `teacher.cassette`",
        None,
    );
}

/// kolmfile.md §21, closed: a replay build with no cassette failed in `label`, long after the
/// Kolmfile was read.
#[test]
fn a_replay_cassette_must_exist() {
    expect(
        &edit(
            "provider = \"none\"",
            "provider = \"replay\"\ncassette = \"recorded.jsonl\"",
        ),
        9,
        "cassette `recorded.jsonl` does not exist",
        Some("paths are relative to"),
    );
}

#[test]
fn out_of_range_samples() {
    expect(
        &edit("samples = 3", "samples = 0"),
        9,
        "`teacher.samples` = 0 is out of range",
        Some("from 1 to 64"),
    );
}

#[test]
fn out_of_range_temperature() {
    expect(
        &edit("samples = 3", "temperature = 3.5"),
        9,
        "`teacher.temperature` = 3.5 is out of range",
        None,
    );
}

#[test]
fn unknown_lora_target_suggests() {
    expect(
        &edit("\"attn_v\"]", "\"attn_vv\"]"),
        13,
        "unknown LoRA target `attn_vv`",
        Some("did you mean `attn_v`?"),
    );
}

#[test]
fn weights_must_sum_to_one() {
    expect(
        &edit("accuracy = 0.4", "accuracy = 0.5"),
        15,
        "the K-score weights sum to 1.100000, not 1",
        Some("Σw must be 1"),
    );
}

#[test]
fn gate_out_of_range() {
    expect(
        &format!("{GOOD}\n[task.gate]\nmin_k = 1.5\n"),
        26,
        "`gate.min_k` = 1.5 is out of range",
        None,
    );
}

#[test]
fn base_needs_exactly_one_source() {
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            "path = \"model.gguf\"\ntiny = { arch = \"llama\" }",
        ),
        4,
        "sets more than one of `path`, `url` and `tiny`",
        None,
    );
}

#[test]
fn base_url_must_be_pinned() {
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            "url = \"hf://owner/repo/model.gguf\"",
        ),
        5,
        "must be pinned by `sha256`",
        None,
    );
}

#[test]
fn base_url_must_be_hf() {
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            "url = \"https://example.com/m.gguf\"\nsha256 = \"00\"",
        ),
        6,
        "must be 64 hex digits",
        None,
    );
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            &format!(
                "url = \"https://example.com/m.gguf\"\nsha256 = \"{}\"",
                "a".repeat(64)
            ),
        ),
        5,
        "is not an hf:// model address",
        Some("hf://owner/repo"),
    );
}

#[test]
fn base_path_must_exist() {
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            "path = \"models/missing.gguf\"",
        ),
        5,
        "base model `models/missing.gguf` does not exist",
        None,
    );
}

#[test]
fn tiny_arch_is_checked() {
    expect(
        &edit("arch = \"llama\"", "arch = \"lama\""),
        5,
        "unknown tiny model architecture `lama`",
        Some("did you mean `llama`?"),
    );
}

#[test]
fn base_quantisation_is_checked() {
    expect(
        &edit(
            "tiny = { arch = \"llama\", seed = 1 }",
            "tiny = { arch = \"llama\", seed = 1 }\nquantize = \"q8\"",
        ),
        6,
        "unknown base quantisation `q8`",
        Some("did you mean `q8_0`?"),
    );
    let ok = parse(&edit(
        "tiny = { arch = \"llama\", seed = 1 }",
        "tiny = { arch = \"llama\", seed = 1 }\nquantize = \"q4_k_m\"",
    ))
    .unwrap();
    assert_eq!(
        ok.tasks[0].base.quantize,
        Some(kolm::kolmfile::Quantize::Q4KM)
    );
}

#[test]
fn unknown_device_profile() {
    expect(
        &format!("{GOOD}\n[task.score]\ndevice = \"cpu-2cores\"\n"),
        26,
        "unknown device profile `cpu-2cores`",
        Some("did you mean `cpu-2core`?"),
    );
}

#[test]
fn duplicate_task_names() {
    let second = "\n[[task]]\nname = \"demo\"\ndescription = \"d\"\noutput_schema = { type = \"object\" }\nseeds = \"seeds.jsonl\"\nevals = \"evals.jsonl\"\n";
    expect(
        &format!("{GOOD}{second}"),
        26,
        "duplicate task name `demo`",
        None,
    );
}

/// The error points at the second task's `name`, not at the last `"demo"` in the file, which
/// may be another key's value (kolmfile.md §21 listed this).
#[test]
fn duplicate_task_name_points_at_the_second_name() {
    let second = "\n[[task]]\nname = \"demo\"\ndescription = \"demo\"\noutput_schema = { type = \"object\" }\nseeds = \"seeds.jsonl\"\nevals = \"evals.jsonl\"\n";
    expect(
        &format!("{GOOD}{second}"),
        26,
        "duplicate task name `demo`",
        None,
    );
}

#[test]
fn task_without_schema() {
    expect(
        &GOOD.replace("output_schema = { type = \"object\" }\n", ""),
        18,
        "task `demo` has no output schema",
        Some("output_schema"),
    );
}

#[test]
fn schema_must_be_a_schema() {
    expect(
        &edit(
            "output_schema = { type = \"object\" }",
            "output_schema = { kind = \"object\" }",
        ),
        21,
        "must be a JSON-schema object with a `type`",
        None,
    );
}

#[test]
fn schema_file_must_be_json() {
    expect(
        &edit(
            "output_schema = { type = \"object\" }",
            "output_schema_file = \"bad.json\"",
        ),
        21,
        "`bad.json` is not valid JSON",
        None,
    );
    let k = parse(&edit(
        "output_schema = { type = \"object\" }",
        "output_schema_file = \"schema.json\"",
    ))
    .unwrap();
    assert_eq!(k.tasks[0].output_schema["type"], "object");
}

#[test]
fn task_sections_override_defaults_field_by_field() {
    let k = parse(&format!("{GOOD}\n[task.distill]\nrank = 16\n")).unwrap();
    assert_eq!(k.tasks[0].distill.rank, 16);
    assert_eq!(
        k.tasks[0].distill.targets,
        ["attn_q", "attn_v"],
        "the default's other fields remain"
    );
}

#[test]
fn cli_reports_file_line_col_and_exits_1_writing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seeds.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("evals.jsonl"), "").unwrap();
    std::fs::write(
        dir.path().join("Kolmfile.toml"),
        edit("samples = 3", "sampels = 3"),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("kolmbuild")
        .unwrap()
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Kolmfile.toml:9:1: unknown key `sampels` in [teacher]"),
        "{err}"
    );
    assert!(err.contains("did you mean `samples`?"), "{err}");
    assert!(!dir.path().join("dist").exists());
    assert!(!dir.path().join("Kolmfile.lock").exists());
    assert!(
        std::fs::read_dir(home.path()).unwrap().next().is_none(),
        "nothing written to KOLM_HOME"
    );
    let json = assert_cmd::Command::cargo_bin("kolmbuild")
        .unwrap()
        .arg("--json")
        .current_dir(dir.path())
        .env("KOLM_HOME", home.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["code"], "KOLMFILE");
    assert_eq!(v["line"], 9);
    assert_eq!(v["col"], 1);
}

#[test]
fn a_pasted_secret_under_an_unknown_key_is_never_echoed() {
    let text = edit(
        "provider = \"none\"",
        "provider = \"none\"\napi_key = \"sk-live-zzz999\"",
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.message.contains("unknown key `api_key` in [teacher]"),
        "{}",
        e.message
    );
    assert!(e
        .help
        .as_deref()
        .unwrap_or("")
        .contains("did you mean `api_key_env`?"));
    let rendered = format!("{:?} {}", miette::Report::new(e), "");
    assert!(
        !rendered.contains("sk-live-zzz999"),
        "the secret leaked:\n{rendered}"
    );
}

#[test]
fn nan_is_out_of_every_range() {
    expect(
        &edit("samples = 3", "temperature = nan"),
        9,
        "`teacher.temperature` = NaN is out of range",
        None,
    );
}

#[test]
fn dist_must_name_a_folder_inside_the_project() {
    expect(
        &edit("name = \"demo\"", "name = \"demo\"\ndist = \"./\""),
        3,
        "must stay inside the project",
        None,
    );
}

#[test]
fn kolmfile_example_parses_with_its_defaults() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Kolmfile.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/seeds.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("data/evals.jsonl"), "").unwrap();
    let k = Kolmfile::parse(&dir.path().join("Kolmfile.toml"), &text).unwrap();
    let t = &k.tasks[0];
    // Every value written in the example is the default: parsing without them gives the same.
    assert_eq!(
        t.distill,
        kolm::kolmfile::DistillConfig {
            train: true,
            rank: 8,
            alpha: 16.0,
            targets: ["attn_q", "attn_k", "attn_v", "attn_output"]
                .map(String::from)
                .to_vec(),
            epochs: 3,
            learning_rate: 0.001,
            batch_size: 8,
            max_seq_len: 512,
            seed: 0,
            threads: 2
        }
    );
    assert_eq!(t.score.weights, kolm::kolmfile::Weights::default());
    assert_eq!(t.score.baseline, kolm::kolmfile::Baseline::default());
    assert_eq!(t.gate.min_k, 0.70);
    assert_eq!(t.recall.chunk_chars, 1200);
}

// What the adversarial run found (issue: hardening). Each of these was wrong before.

#[test]
fn a_negative_seed_says_the_allowed_range_not_invalid_toml() {
    let text = edit("seed = 1 }", "seed = -1 }");
    let e = parse(&text).expect_err("out of range");
    assert!(
        e.message.contains("`seed` = -1 is out of range"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("invalid TOML"), "{}", e.message);
    let help = e.help.unwrap_or_default();
    assert!(help.contains("from 0 to 18446744073709551615"), "{help}");
    assert_eq!(e.line, 5);
}

#[test]
fn a_folder_named_as_a_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("evals.jsonl"), "").unwrap();
    let text = GOOD.replace("seeds = \"seeds.jsonl\"", "seeds = \"data\"");
    let path = dir.path().join("Kolmfile.toml");
    std::fs::write(&path, &text).unwrap();
    let e = Kolmfile::parse(&path, &text).expect_err("a folder");
    assert!(
        e.message.contains("`data` is a folder, not a file"),
        "{}",
        e.message
    );
    assert_eq!(e.line, 22);
}

#[test]
fn cr_only_line_endings_number_lines_right() {
    // TOML refuses lone carriage returns: the first one is pointed at, on line 1, and named.
    let text = edit("samples = 3", "samples = 0").replace('\n', "\r");
    let e = parse(&text).expect_err("lone CRs");
    assert_eq!((e.line, e.col), (1, 10), "{}", e.message);
    assert!(
        e.message.contains("carriage returns alone"),
        "{}",
        e.message
    );
    // And CRLF the same.
    let text = edit("samples = 3", "samples = 0").replace('\n', "\r\n");
    assert_eq!(parse(&text).expect_err("out of range").line, 9);
}

#[test]
fn an_output_schema_that_is_not_a_schema_fails_at_once() {
    expect(
        &edit(
            "output_schema = { type = \"object\" }",
            "output_schema = { type = 42 }",
        ),
        21,
        "not a valid JSON schema",
        None,
    );
}

#[test]
fn a_base_path_that_is_not_gguf_points_at_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["seeds.jsonl", "evals.jsonl"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    std::fs::write(dir.path().join("model.bin"), "PK\u{3}\u{4} not a model").unwrap();
    let text = GOOD.replace(
        "tiny = { arch = \"llama\", seed = 1 }",
        "path = \"model.bin\"",
    );
    let path = dir.path().join("Kolmfile.toml");
    std::fs::write(&path, &text).unwrap();
    let e = Kolmfile::parse(&path, &text).expect_err("not GGUF");
    assert!(e.message.contains("is not a GGUF file"), "{}", e.message);
    assert_eq!(e.line, 5);
}

#[test]
fn a_non_utf8_byte_is_given_as_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Kolmfile.toml");
    let mut bytes = GOOD.as_bytes().to_vec();
    let at = GOOD.find("description = \"d\"").unwrap() + "description = \"".len();
    bytes[at] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = match Kolmfile::load(&path).expect_err("not UTF-8") {
        kolm::Error::Kolmfile(k) => k,
        other => panic!("{other}"),
    };
    assert_eq!((e.line, e.col), (20, 16), "{}", e.message);
    assert!(e.message.contains("is not UTF-8"), "{}", e.message);
}

#[test]
fn a_huge_offending_line_is_not_echoed_whole() {
    let huge = format!("bogus_key = \"{}\"", "x".repeat(5 << 20));
    let text = edit("samples = 3", &format!("samples = 3\n{huge}"));
    let e = parse(&text).expect_err("unknown key");
    let shown = format!("{:?}", miette::Report::new(e));
    assert!(shown.len() < 16 << 10, "{} bytes shown", shown.len());
    assert!(shown.contains("bogus_key"));
}
