//! The sandbox against hostile and broken recipes: each is contained with its own reason, and
//! the sandbox keeps working after it.

use serde_json::{json, Value};

use super::sandbox::{Fault, Limits, RagQuery, Sandbox};

fn sandbox() -> Sandbox {
    Sandbox::new(Limits {
        time_ms: 50,
        memory_mb: 16,
    })
    .unwrap()
}

fn run(sb: &Sandbox, src: &str, input: Value) -> Result<Value, Fault> {
    sb.call(src, "recipe", &[&input], Some(None))
}

const GOOD: &str = r#"function recipe(input, lib) {
    return /charged twice/i.test(input) ? {label: "billing", severity: "high"} : null;
}"#;

#[test]
fn a_recipe_answers_or_declines() {
    let sb = sandbox();
    assert_eq!(
        run(&sb, GOOD, json!("I was Charged twice!")).unwrap(),
        json!({"label": "billing", "severity": "high"})
    );
    assert_eq!(run(&sb, GOOD, json!("hello")).unwrap(), Value::Null);
}

#[test]
fn hostile_recipes_are_contained_each_with_its_reason() {
    let sb = sandbox();
    let cases: &[(&str, &str)] = &[
        ("function recipe(i) { while (true) {} }", "time"),
        (
            "function recipe(i) { for (;;) { try { while (true) {} } catch (e) {} } }",
            "time",
        ),
        (
            "function recipe(i) { let s = 'x'; for (;;) s = s + s; }",
            "memory",
        ),
        (
            "function recipe(i) { let a = []; for (;;) a.push(new Array(1e5).fill(i)); }",
            "memory",
        ),
        (
            "function recipe(i) { return 'ab'.repeat(1e8).length; }",
            "memory",
        ),
        ("function recipe(i) { return recipe(i) + 1; }", "stack"),
        ("function recipe(i) { throw new TypeError('no'); }", "threw"),
        ("function recipe(i) { throw 'a string'; }", "threw"),
        ("function recipe(i) { return undefined; }", "not_json"),
        ("function recipe(i) { return () => 1; }", "not_json"),
        ("function recipe(i) { return 10n; }", "not_json"),
        (
            "function recipe(i) { const a = {}; a.a = a; return a; }",
            "not_json",
        ),
        (
            "function recipe(i) { return fetch('http://127.0.0.1/'); }",
            "io",
        ),
        (
            "function recipe(i) { return require('fs').readFileSync('/etc/passwd'); }",
            "io",
        ),
        (
            "function recipe(i) { return std.loadFile('/etc/passwd'); }",
            "io",
        ),
        (
            "function recipe(i) { setTimeout(() => 1, 0); return 1; }",
            "io",
        ),
        (
            "function recipe(i) { return /(a+)+$/.test('a'.repeat(40) + 'b'); }",
            "time",
        ),
        ("function recipe(i) { return Math.random(); }", "threw"),
        ("function recipe(i) { return Date.now(); }", "threw"),
        ("function recipe(i) {", "load"),
        ("const x = 1;", "missing"),
        ("import fs from 'fs'; function recipe(i) {}", "load"),
    ];
    // A memory bomb on a loaded machine can be slow enough to reach 50 ms before 16 MiB: with
    // time to spare, memory is the only limit it can hit.
    let roomy = Sandbox::new(Limits {
        time_ms: 10_000,
        memory_mb: 16,
    })
    .unwrap();
    for (src, kind) in cases {
        let got = run(
            if *kind == "memory" { &roomy } else { &sb },
            src,
            json!("x"),
        );
        match &got {
            Err(f) if f.kind() == *kind => {}
            other => panic!("{src}: expected a `{kind}` fault, got {other:?}"),
        }
        // The sandbox is whole after every fault.
        assert_eq!(
            run(&sb, GOOD, json!("charged twice")).unwrap()["label"],
            "billing",
            "after {src}"
        );
    }
}

#[test]
fn a_native_builtin_that_ignores_the_interrupt_is_still_a_time_fault() {
    // `join` over a sparse array runs natively without polling the interrupt handler; the
    // memory limit ends it, and the time it took past the limit is still reported as time.
    let sb = Sandbox::new(Limits {
        time_ms: 1,
        memory_mb: 64,
    })
    .unwrap();
    let got = run(
        &sb,
        "function recipe(i) { return new Array(3e6).join('abcdefgh').length; }",
        json!("x"),
    );
    assert!(
        matches!(got, Err(Fault::Time { .. }) | Err(Fault::Memory { .. })),
        "{got:?}"
    );
}

#[test]
fn nothing_leaks_from_one_call_to_the_next() {
    let sb = sandbox();
    let src = "function recipe(i) { globalThis.n = (globalThis.n || 0) + 1; Array.prototype.x = 1; return [globalThis.n, [].x === 1]; }";
    for i in 0..4 {
        // A context prepared ahead is as fresh as one made in the call.
        if i % 2 == 1 {
            sb.prepare();
        }
        assert_eq!(run(&sb, src, json!(null)).unwrap(), json!([1, true]));
    }
    sb.prepare();
    assert!(matches!(
        run(
            &sb,
            "function recipe(i) { return Math.random(); }",
            json!(null)
        ),
        Err(Fault::Threw(_))
    ));
    let probe = "function recipe(i) { return [typeof n, [].x === undefined]; }";
    assert_eq!(
        run(&sb, probe, json!(null)).unwrap(),
        json!(["undefined", true])
    );
}

#[test]
fn lib_rag_query_reaches_the_index_when_there_is_one() {
    let sb = sandbox();
    let src = "function recipe(i, lib) { return lib.rag === null ? 'none' : lib.rag.query(i, 2); }";
    assert_eq!(run(&sb, src, json!("q")).unwrap(), json!("none"));
    let rag: RagQuery = std::sync::Arc::new(|q: &str, k: usize| Ok(json!([{"text": q, "k": k}])));
    assert_eq!(
        sb.call(src, "recipe", &[&json!("refunds")], Some(Some(&rag)))
            .unwrap(),
        json!([{"text": "refunds", "k": 2}])
    );
    let failing: RagQuery = std::sync::Arc::new(|_: &str, _: usize| Err("index gone".into()));
    let got = sb.call(src, "recipe", &[&json!("x")], Some(Some(&failing)));
    assert!(
        matches!(&got, Err(Fault::Threw(m)) if m.contains("index gone")),
        "{got:?}"
    );
}
