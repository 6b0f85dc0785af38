//! Every key and table a Kolmfile may hold, as a tree: what kolm recognises.
//!
//! An error must never show a value kolm does not recognise (it may be a pasted credential,
//! kolmfile.md §5.2), and it must name the table a stray key sits in. Both need the tree of
//! known keys while the file is still refused, so before the serde types in [`super::raw`]
//! have read anything; a test checks the two agree, table by table.

/// One key: a value kolm reads, or a table of further keys.
pub(super) enum Node {
    /// A value (for `output_schema` and `assert`, a free-form one kolm reads whole).
    Leaf,
    /// A table: its keys, written in parts so the top level and a task share the sections.
    Table(&'static [Keys]),
}

/// Some keys of a table, in the order the serde types declare them.
pub(super) type Keys = &'static [(&'static str, Node)];

use Node::{Leaf, Table};

/// The sections a task may override (kolmfile.md §4): the same keys at the top and in a task.
const BASE: Keys = &[
    ("path", Leaf),
    ("url", Leaf),
    ("sha256", Leaf),
    ("tiny", Table(&[&[("arch", Leaf), ("seed", Leaf)]])),
    ("quantize", Leaf),
];
const TEACHER: Keys = &[
    ("provider", Leaf),
    ("model", Leaf),
    ("endpoint", Leaf),
    ("api_key_env", Leaf),
    ("cassette", Leaf),
    ("samples", Leaf),
    ("temperature", Leaf),
    ("seed", Leaf),
    ("concurrency", Leaf),
    ("timeout_secs", Leaf),
    ("max_retries", Leaf),
    ("synthesize", Leaf),
    ("verify_seeds", Leaf),
    (
        "price",
        Table(&[&[("input_per_mtok", Leaf), ("output_per_mtok", Leaf)]]),
    ),
];
const RECALL: Keys = &[
    ("corpus", Leaf),
    ("chunk_chars", Leaf),
    ("overlap_chars", Leaf),
    ("embedder", Leaf),
    ("top_k", Leaf),
];
const DISTILL: Keys = &[
    ("train", Leaf),
    ("rank", Leaf),
    ("alpha", Leaf),
    ("targets", Leaf),
    ("epochs", Leaf),
    ("learning_rate", Leaf),
    ("batch_size", Leaf),
    ("max_seq_len", Leaf),
    ("seed", Leaf),
    ("threads", Leaf),
];
const DECOMPOSE: Keys = &[
    ("enabled", Leaf),
    ("recipes", Leaf),
    ("drafts", Leaf),
    ("time_limit_ms", Leaf),
    ("memory_limit_mb", Leaf),
    ("recipes_dir", Leaf),
];
const SCORE: Keys = &[
    ("device", Leaf),
    (
        "weights",
        Table(&[&[
            ("accuracy", Leaf),
            ("size", Leaf),
            ("latency", Leaf),
            ("cost", Leaf),
            ("coverage", Leaf),
        ]]),
    ),
    (
        "baseline",
        Table(&[&[
            ("accuracy", Leaf),
            ("latency_ms", Leaf),
            ("cost_per_1k", Leaf),
            ("size_bytes", Leaf),
        ]]),
    ),
];
const GATE: Keys = &[("min_k", Leaf)];
const SIGN: Keys = &[("key_file", Leaf)];

/// The sections (kolmfile.md §4), at the top level and in a task.
const SECTIONS: Keys = &[
    ("base", Table(&[BASE])),
    ("teacher", Table(&[TEACHER])),
    ("recall", Table(&[RECALL])),
    ("distill", Table(&[DISTILL])),
    ("decompose", Table(&[DECOMPOSE])),
    ("score", Table(&[SCORE])),
    ("gate", Table(&[GATE])),
    ("sign", Table(&[SIGN])),
];

const TASK: Keys = &[
    ("name", Leaf),
    ("description", Leaf),
    ("output_schema", Leaf),
    ("output_schema_file", Leaf),
    ("seeds", Leaf),
    ("evals", Leaf),
    ("assert", Leaf),
];

/// The whole file.
pub(super) const ROOT: &[Keys] = &[
    &[
        ("project", Table(&[&[("name", Leaf), ("dist", Leaf)]])),
        ("task", Table(&[TASK, SECTIONS])),
    ],
    SECTIONS,
    &[("cache", Table(&[&[("remote", Leaf), ("read_only", Leaf)]]))],
];

/// The key `name` in a table's keys, if kolm knows it.
pub(super) fn child(table: &[Keys], name: &str) -> Option<&'static Node> {
    table
        .iter()
        .flat_map(|part| part.iter())
        .find(|(k, _)| *k == name)
        .map(|(_, n)| n)
}

/// A table path as a TOML header: `[teacher.price]`, `[[task]]`, `[task.base]`, and "the top
/// level" for the root.
pub(super) fn header(path: &[String]) -> String {
    match path {
        [] => "the top level".to_string(),
        [one] if one == "task" => "[[task]]".to_string(),
        _ => format!("[{}]", path.join(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table path of the tree, with its keys.
    fn tables(
        path: Vec<&'static str>,
        t: &'static [Keys],
        out: &mut Vec<(Vec<&'static str>, Vec<&'static str>)>,
    ) {
        let t = || t.iter().flat_map(|part| part.iter());
        out.push((path.clone(), t().map(|(k, _)| *k).collect()));
        for (k, n) in t() {
            if let Table(sub) = n {
                let mut p = path.clone();
                p.push(k);
                tables(p, sub, out);
            }
        }
    }

    /// The keys serde expects in the table at `path`, read from its unknown-key error.
    fn serde_keys(path: &[&str]) -> Vec<String> {
        let stray = "zz_not_a_key = 1\n";
        let text = match path {
            [] => stray.to_string(),
            ["task"] => format!("[[task]]\n{stray}"),
            ["task", rest @ ..] => format!("[[task]]\n[task.{}]\n{stray}", rest.join(".")),
            _ => format!("[{}]\n{stray}", path.join(".")),
        };
        let e = toml_edit::de::from_str::<super::super::raw::RawKolmfile>(&text)
            .expect_err("a stray key is refused");
        let msg = e.message().to_string();
        let (_, expected) = msg
            .split_once("expected")
            .unwrap_or_else(|| panic!("{path:?}: {msg}"));
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_tree_is_what_the_serde_types_read() {
        let mut all = Vec::new();
        tables(Vec::new(), ROOT, &mut all);
        assert!(all.len() > 20, "{}", all.len());
        for (path, keys) in all {
            assert_eq!(serde_keys(&path), keys, "the keys of {path:?}");
        }
    }
}
