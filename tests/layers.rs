//! The layer rules of `src/lib.rs`, enforced where the crate graph cannot reach: inside each
//! crate, a module imports only modules of its own layer or below, the modules' import graph
//! has no cycle, and no two files of one module import each other. (Between crates the
//! compiler enforces the rule: a crate cannot name one it does not depend on.) The table below
//! is the one in `lib.rs`'s opening comment; every module of every crate must be in it, in its
//! own crate, so a new module is placed on purpose. No exceptions are listed, and none may be.
//!
//! Imports are read from the tokens of each file (comments and doc links are not imports):
//! every `crate::x` path, `crate::{x, y::z}` groups included, also inside macro bodies; and,
//! between sibling files, `super::x` and `crate::m::x`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// Lowest first, with the crate (its folder) each layer lives in. A module may import its own
/// layer and every layer before it; the crates are in dependency order.
const LAYERS: &[(&str, &str, &[&str])] = &[
    (
        "crates/kolm-core",
        "foundation",
        &[
            "error",
            "diagnostic",
            "digest",
            "dates",
            "fsutil",
            "interrupt",
            "jsonl",
            "rng",
            "progress",
            "home",
            "untrusted",
        ],
    ),
    ("crates/kolm-core", "formats", &["gguf", "kscore"]),
    ("crates/kolm-kernels", "kernels", &["kernels"]),
    (
        "crates/kolm-runtime",
        "formats and measures",
        &["recipes", "evals", "versions"],
    ),
    (
        "crates/kolm-runtime",
        "containers and engines",
        &["artifact", "recall", "tune_state"],
    ),
    (
        "crates/kolm-runtime",
        "the runtime",
        &["runtime", "rag", "receipts"],
    ),
    (
        "crates/kolm-compiler",
        "build shared",
        &["download", "cache"],
    ),
    ("crates/kolm-compiler", "the description", &["kolmfile"]),
    ("crates/kolm-compiler", "the teacher wire", &["teacher"]),
    (
        "crates/kolm-compiler",
        "build engines",
        &["label", "train", "propose", "tune"],
    ),
    ("crates/kolm-compiler", "stages", &["stages"]),
    (
        "crates/kolm-compiler",
        "the graph",
        &["graph", "executor", "explain", "inputs", "watch"],
    ),
    ("crates/kolm-serve", "serving", &["serve"]),
    (".", "surfaces", &["cli", "process"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, _, ms)| ms.contains(&module))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first path segment after each `<head>::` in the tokens (`crate::a::b` gives `a`;
/// `crate::{a, b::c}` gives `a` and `b`).
fn paths_after(tokens: TokenStream, head: &str, out: &mut BTreeSet<String>) {
    let toks: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, t) in toks.iter().enumerate() {
        match t {
            TokenTree::Group(g) => paths_after(g.stream(), head, out),
            TokenTree::Ident(id) if id == head => {
                let colons = matches!(
                    (toks.get(i + 1), toks.get(i + 2)),
                    (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                        if a.as_char() == ':' && b.as_char() == ':'
                );
                if !colons {
                    continue;
                }
                match toks.get(i + 3) {
                    Some(TokenTree::Ident(m)) => {
                        out.insert(m.to_string());
                    }
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                        group_heads(g.stream(), out)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The first identifier of each comma-separated item of a `use` group.
fn group_heads(tokens: TokenStream, out: &mut BTreeSet<String>) {
    let mut at_start = true;
    for t in tokens {
        match t {
            TokenTree::Punct(p) if p.as_char() == ',' => at_start = true,
            TokenTree::Ident(id) if at_start => {
                out.insert(id.to_string());
                at_start = false;
            }
            _ => at_start = false,
        }
    }
}

struct File {
    /// The crate's folder, e.g. `crates/kolm-compiler`.
    krate: String,
    /// Repository-relative, e.g. `crates/kolm-compiler/src/kolmfile/resolve.rs`.
    rel: String,
    /// The top-level module, e.g. `kolmfile`.
    module: String,
    tokens: TokenStream,
}

/// Every crate's folder: the root package and `crates/*`.
fn crates() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![".".to_string()];
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        out.push(format!("crates/{name}"));
    }
    out.sort();
    out
}

fn files() -> Vec<File> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for krate in crates() {
        let src = root.join(&krate).join("src");
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        paths.sort();
        for p in paths {
            let in_src = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let first = in_src.split('/').next().unwrap();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "bin" {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let tokens = TokenStream::from_str(&text)
                .unwrap_or_else(|e| panic!("{rel} does not tokenize: {e}"));
            out.push(File {
                krate: krate.clone(),
                rel,
                module,
                tokens,
            });
        }
    }
    out
}

#[test]
fn every_module_is_placed_in_a_layer() {
    let mut unplaced: BTreeSet<String> = BTreeSet::new();
    for f in files() {
        match layer_of(&f.module) {
            None => {
                unplaced.insert(f.module);
            }
            Some(l) if LAYERS[l].0 != f.krate => {
                panic!(
                    "`{}` is in {}, but LAYERS places it in {}",
                    f.module, f.krate, LAYERS[l].0
                )
            }
            Some(_) => {}
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add each to LAYERS here and in lib.rs): {unplaced:?}"
    );
}

#[test]
fn no_module_imports_a_higher_layer() {
    let mut wrong = Vec::new();
    for f in files() {
        let Some(own) = layer_of(&f.module) else {
            continue;
        };
        let mut deps = BTreeSet::new();
        paths_after(f.tokens.clone(), "crate", &mut deps);
        for d in deps {
            if let Some(theirs) = layer_of(&d) {
                if theirs > own {
                    wrong.push(format!(
                        "{} ({}) imports `{d}` ({})",
                        f.rel, LAYERS[own].1, LAYERS[theirs].1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports:\n{}", wrong.join("\n"));
}

/// Depth-first search for a cycle; returns it as a path if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_modules_import_graph_has_no_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files() {
        let mut deps = BTreeSet::new();
        paths_after(f.tokens.clone(), "crate", &mut deps);
        let entry = graph.entry(f.module.clone()).or_default();
        for d in deps {
            if d != f.module && layer_of(&d).is_some() {
                entry.insert(d);
            }
        }
    }
    if let Some(c) = find_cycle(&graph) {
        panic!("the modules import each other: {}", c.join(" -> "));
    }
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    // Per folder: its files other than mod.rs, and which of their siblings each one names.
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let all = files();
    for f in &all {
        let Some((folder, file)) = f.rel.rsplit_once('/') else {
            continue;
        };
        if file == "mod.rs" {
            continue;
        }
        let own = file.trim_end_matches(".rs").to_string();
        let mut named = BTreeSet::new();
        paths_after(f.tokens.clone(), "super", &mut named);
        let mut via_crate = BTreeSet::new();
        paths_after(f.tokens.clone(), "crate", &mut via_crate);
        if via_crate.contains(&f.module) {
            // `crate::module::sibling`: read the segment after the module.
            let mut deeper = BTreeSet::new();
            paths_after(f.tokens.clone(), &f.module, &mut deeper);
            named.extend(deeper);
        }
        named.remove(&own);
        folders
            .entry(folder.to_string())
            .or_default()
            .insert(own, named);
    }
    for (folder, graph) in folders {
        let siblings: BTreeSet<String> = graph.keys().cloned().collect();
        let graph: BTreeMap<String, BTreeSet<String>> = graph
            .into_iter()
            .map(|(k, v)| (k, v.intersection(&siblings).cloned().collect()))
            .collect();
        if let Some(c) = find_cycle(&graph) {
            panic!("files of `{folder}` import each other: {}", c.join(" -> "));
        }
    }
}
