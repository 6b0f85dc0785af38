//! An artifact is a function (runtime.md §7): the same input gets the same output bytes from the
//! score stage, `kolm run`, and every server, in any order and at any concurrency.

mod support;

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::http::*;
use support::*;

/// An artifact is a function (runtime.md §7): every eval input answered by the score stage (the
/// sealed report), by `kolm run`, and by one server in two orders, at once from many clients,
/// and over MCP gives the same bytes. The inputs share long prefixes beyond the system message,
/// so a session that reused whatever the last prompt shared would decode them in other batches.
#[test]
fn every_path_answers_every_input_with_the_same_bytes() {
    let schema = r#"{ type = "object", properties = { label = { type = "string", enum = ["account", "bug", "billing", "other"] }, severity = { type = "string", enum = ["low", "medium", "high"] }, team = { type = "string", enum = ["web", "mobile", "payments", "support"] }, note = { type = "string", maxLength = 40 } }, required = ["label", "severity", "team", "note"], additionalProperties = false }"#;
    let kolmfile = kolmfile_text("").replace(
        r#"output_schema = { type = "object", properties = { label = { type = "string", enum = ["account", "bug", "other"] } }, required = ["label"] }"#,
        &format!("output_schema = {schema}"),
    );
    // Quantised: the kernels for a batch and for one row round differently, so a near tie (a
    // random tiny model has many) flips when a token is decoded in another batch.
    let kolmfile = kolmfile.replace(
        "tiny = { arch = \"llama\", seed = 3 }",
        "tiny = { arch = \"llama\", seed = 3 }\nquantize = \"q4_0\"",
    );
    assert!(
        kolmfile.contains("team") && kolmfile.contains("q4_0"),
        "{kolmfile}"
    );
    let p = Project::new(&kolmfile);
    p.write(
        "data/seeds.jsonl",
        "{\"input\": \"reset my password\", \"output\": {\"label\": \"account\", \"severity\": \"low\", \"team\": \"support\", \"note\": \"reset\"}}\n",
    );
    let inputs: Vec<String> = (0..24)
        .map(|i| {
            let subject = ["Charged twice", "Charged twice again", "App crashes"][i % 3];
            format!(
                "Subject: {subject}. Ticket {i}: the customer writes that {}",
                "it happened again ".repeat(i % 4 + 1)
            )
        })
        .collect();
    let evals: String = inputs
        .iter()
        .map(|i| {
            format!(
                "{}\n",
                json!({"vars": {"input": i}, "assert": [{"type": "is-json"}]})
            )
        })
        .collect();
    p.write("data/evals.jsonl", &evals);
    p.age_all();
    p.build();
    let report: Value =
        serde_json::from_slice(&std::fs::read(p.path("dist/demo.report.json")).unwrap()).unwrap();
    let sealed: Vec<String> = report["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["output"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sealed.len(), inputs.len());
    let home = tempfile::tempdir().unwrap();
    let art = p.artifact();

    // `kolm run`, one process per input.
    for (input, want) in inputs.iter().zip(&sealed) {
        let out = Command::new(env!("CARGO_BIN_EXE_kolm"))
            .arg("run")
            .arg(&art)
            .arg(input)
            .env("KOLM_HOME", home.path())
            .env("KOLM_SIGNING_KEY", KEY)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "kolm run {input:?}"
        );
    }

    // One server: in several orders, then from eight clients at once.
    let s = Http::start(home.path(), &["--artifact", art.to_str().unwrap()], None);
    let answer = |s: &Http, input: &str| -> String {
        let (status, r) = s.chat(&ask("demo", input));
        assert_eq!(status, 200, "{r}");
        r["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // In order, in reverse, and each input twice in a row (a session that reused all it
    // could would decode the repeat's last prompt token alone, in another kernel).
    let twice = (0..inputs.len()).flat_map(|i| [i, i]);
    for i in (0..inputs.len())
        .chain((0..inputs.len()).rev())
        .chain(twice)
    {
        assert_eq!(answer(&s, &inputs[i]), sealed[i], "served, input {i}");
    }
    let s = std::sync::Arc::new(s);
    let handles: Vec<_> = (0..8)
        .map(|c| {
            let (s, inputs, sealed) = (s.clone(), inputs.clone(), sealed.clone());
            std::thread::spawn(move || {
                for k in 0..inputs.len() {
                    let i = (k * 7 + c) % inputs.len();
                    let (status, r) = s.chat(&ask("demo", &inputs[i]));
                    assert_eq!(status, 200, "{r}");
                    assert_eq!(
                        r["choices"][0]["message"]["content"],
                        sealed[i].as_str(),
                        "client {c}, input {i}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    std::sync::Arc::into_inner(s).unwrap().stop();

    // MCP on stdio, in reverse.
    let mut mcp = Command::new(env!("CARGO_BIN_EXE_kolm"))
        .args(["serve", "--mcp", "--artifact"])
        .arg(&art)
        .env("KOLM_HOME", home.path())
        .env("KOLM_SIGNING_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = String::new();
    for (id, i) in (0..inputs.len()).rev().enumerate() {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "demo", "arguments": {"input": inputs[i]}}});
        lines.push_str(&format!("{call}\n"));
    }
    use std::io::Write;
    mcp.stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = mcp.wait_with_output().unwrap();
    let replies: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), inputs.len());
    for (id, i) in (0..inputs.len()).rev().enumerate() {
        assert_eq!(
            replies[id]["result"]["content"][0]["text"],
            sealed[i].as_str(),
            "mcp, input {i}"
        );
    }
}
