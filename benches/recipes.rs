//! Recipe benchmarks on the support-triage example's artifact (figures in the README and
//! `benches/results/recipes.md`), each side by side in one run:
//!
//! 1. **Recipe call latency**: the example's recipe (`recipes/charged-twice.js`) called on
//!    every eval input as the runtime calls it (a fresh sandbox context per call, the output
//!    checked against the schema), p50 and p99, against the model answering the same inputs.
//! 2. **Decoding the example's structured outputs** with the real student (SmolLM2-135M and
//!    the trained adapter), on the eval inputs no exact recipe takes, the decoders taking
//!    turns input by input on one session: plain greedy decoding; recipe speculative decoding
//!    (the pack's drafts, runtime.md §5); and prompt-lookup decoding, the n-gram drafting of
//!    llama.cpp's `lookup` example (drafts are what followed the longest recent n-gram of the
//!    output in the prompt and the output so far; llama-cpp-sys-2 builds no `common/`
//!    n-gram cache to call, so the lookup is reproduced here over the same linked library and
//!    verified by the same engine); and, as the bound, the plain answer itself drafted (every
//!    token guessed right). Reported: decode tokens/s, forward passes per output token, draft
//!    acceptance, and outputs equal to plain decoding.
//!
//!    The example's artifact carries its base requantised (`[base] quantize = "q8_0"`); the
//!    base as named (the Q4_1 file in `examples/support-triage/models/`) runs plain and recipe
//!    speculative decoding in the same turns, with the same adapter and drafts, to show what
//!    the quantisation buys.
//! 3. **What a verifying pass costs by its rows**: one pass of n tokens (1 to 16) after the
//!    example's prompt, timed n by n in turns, for each model. Priced from that table, the
//!    passes each decoder made predict its speed (a check of the model), and the best any
//!    draft could do: a whole output of L tokens verified in one pass of L − 1 rows (its last
//!    token needs no row) against L − 1 one-row passes. That bounds every draft-and-verify
//!    speed-up on this machine and model.
//!
//! `KOLM_BENCH_ONLY=calls` runs the first part alone (and writes no results). Needs the example
//! built (`make demo`); `KOLM_BENCH_ARTIFACT` names another copy, and its
//! signing key comes from `KOLM_SIGNING_KEY` (default: the demo's key).

use std::time::Instant;

use kolm::recall::ground::ground;
use kolm::runtime::engine::DraftFn;
use kolm::runtime::{prompt, recipes, GenOptions};

#[path = "support/example.rs"]
mod example;
use example::percentile;

const THREADS: u32 = 2;
/// Recipe calls per input.
const CALL_ROUNDS: usize = 20;
/// Longest n-gram prompt lookup matches, and the shortest, in bytes of output (about four
/// tokens and one, as llama.cpp's lookup matches 1- to 4-grams).
const LOOKUP_MAX: usize = 16;
const LOOKUP_MIN: usize = 4;
/// Bytes prompt lookup drafts after a match: about five tokens, llama.cpp lookup's classic
/// `--draft 5` (longer drafts only add rejected rows here).
const LOOKUP_DRAFT: usize = 20;

/// Prompt lookup: the longest suffix of the output (LOOKUP_MAX down to LOOKUP_MIN bytes) found
/// earlier in the prompt followed by the output, latest occurrence first; the draft is what
/// followed it.
fn lookup<'a>(prompt: &'a [u8]) -> impl Fn(&[u8]) -> Option<Vec<u8>> + 'a {
    move |out: &[u8]| {
        let mut hay = prompt.to_vec();
        hay.extend_from_slice(out);
        let end = hay.len();
        for n in (LOOKUP_MIN..=LOOKUP_MAX.min(out.len())).rev() {
            let tail = &hay[end - n..];
            if let Some(at) = hay[..end - 1].windows(n).rposition(|w| w == tail) {
                let from = at + n;
                if from < end {
                    return Some(hay[from..(from + LOOKUP_DRAFT).min(end)].to_vec());
                }
            }
        }
        None
    }
}

#[derive(Default)]
struct Tally {
    tokens: u64,
    decode_us: u64,
    /// Tokens decoded by each pass (a pass verifying drafts decodes several).
    passes_rows: Vec<u64>,
    drafted: u64,
    accepted: u64,
    equal: u64,
    runs: u64,
}

impl Tally {
    fn add(&mut self, g: &kolm::runtime::Generation, plain: &str) {
        self.tokens += g.output_tokens;
        self.decode_us += g.micros - g.prefill_micros;
        let single = g.decode_passes - g.verify_rows.len() as u64;
        self.passes_rows
            .extend(std::iter::repeat_n(1, single as usize));
        self.passes_rows.extend(&g.verify_rows);
        self.drafted += g.drafted_tokens;
        self.accepted += g.draft_tokens;
        self.equal += (g.text == plain) as u64;
        self.runs += 1;
    }
    fn rate(&self) -> f64 {
        self.tokens as f64 * 1e6 / self.decode_us.max(1) as f64
    }
    fn passes_per_token(&self) -> f64 {
        self.passes_rows.len() as f64 / self.tokens.max(1) as f64
    }
    /// Milliseconds a token, pricing each pass by `cost`.
    fn priced(&self, cost: &dyn Fn(f64) -> f64) -> f64 {
        self.passes_rows
            .iter()
            .map(|r| cost(*r as f64))
            .sum::<f64>()
            / self.tokens.max(1) as f64
    }
    fn acceptance(&self) -> String {
        if self.drafted == 0 {
            "—".into()
        } else {
            format!(
                "{:.0}% ({} of {})",
                self.accepted as f64 * 100.0 / self.drafted as f64,
                self.accepted,
                self.drafted
            )
        }
    }
}

fn main() {
    let (_, root, home, opened, tests) = example::open();
    let inputs: Vec<String> = tests.iter().map(|t| t.input()).collect();
    let mut pack = recipes::of_artifact(&opened).unwrap();
    let grounding = opened.grounding(&home, None).unwrap();
    let student = opened.student().unwrap();
    let m = &opened.manifest;
    let system = prompt::system_prompt(&m.task.description, Some(&m.task.output_schema));
    let opts = GenOptions {
        threads: THREADS,
        ..GenOptions::default()
    };
    let mut session = student.session(&opts).unwrap();
    let served = &m.base_model.quantization;
    // The base as the Kolmfile names it, when the artifact carries a requantised copy.
    let named = root.join("examples/support-triage/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let named = named
        .is_file()
        .then(|| kolm::digest::sha256_file(&named, None).unwrap().0)
        .filter(|sha| *sha != m.base_model.sha256)
        .map(|_| named);
    let adapter = kolm::runtime::open::adapter_file(&home, &opened.lora).unwrap();
    let named_student = named.as_ref().map(|path| {
        kolm::runtime::Student::load(path, Some(&adapter), Some(&m.task.output_schema)).unwrap()
    });
    let mut named_session = named_student.as_ref().map(|s| s.session(&opts).unwrap());

    // 1. Recipe calls, and the model on the same inputs.
    let schema = jsonschema::validator_for(&m.task.output_schema).unwrap();
    let sandbox = kolm::recipes::Sandbox::new(pack.pack().limits).unwrap();
    let recipe = pack
        .pack()
        .recipes
        .first()
        .expect("the example has a recipe")
        .clone();
    // In turns: a call that makes its context, and one whose context was prepared (untimed)
    // before it, as a caller with idle time between inputs does.
    let (mut calls, mut prepared) = (Vec::new(), Vec::new());
    let mut answered = 0;
    for _ in 0..CALL_ROUNDS {
        for input in &inputs {
            let arg = serde_json::Value::String(input.clone());
            let t = Instant::now();
            let out = recipe.run(&sandbox, &arg, None, &schema).unwrap();
            calls.push(t.elapsed().as_secs_f64() * 1e6);
            answered += out.is_some() as usize;
            sandbox.prepare();
            let t = Instant::now();
            recipe.run(&sandbox, &arg, None, &schema).unwrap();
            prepared.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut model = Vec::new();
    for input in &inputs {
        let g = ground(grounding.as_ref(), input).unwrap();
        let t = Instant::now();
        session.generate(&system, &g.text).unwrap();
        model.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (c50, c99) = (percentile(&calls, 0.5), percentile(&calls, 0.99));
    let (p50, p99) = (percentile(&prepared, 0.5), percentile(&prepared, 0.99));
    let (m50, m99) = (percentile(&model, 0.5), percentile(&model, 0.99));

    // 2. Decoding: plain, RSD, prompt lookup, in turns (`KOLM_BENCH_ONLY=calls` skips it).
    pack.speculate = true;
    let calls_only = std::env::var("KOLM_BENCH_ONLY").is_ok_and(|v| v == "calls");
    let (mut plain_t, mut rsd_t, mut pld_t, mut oracle_t) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
    );
    let (mut named_plain_t, mut named_rsd_t) = (Tally::default(), Tally::default());
    let mut exact = 0;
    for input in inputs.iter().filter(|_| !calls_only) {
        let consulted = pack.consult(input);
        if consulted.exact.is_some() {
            exact += 1;
            continue;
        }
        let g = ground(grounding.as_ref(), input).unwrap();
        let plain = session.generate(&system, &g.text).unwrap();
        plain_t.add(&plain, &plain.text);
        let drafts = pack.drafts(&consulted).unwrap();
        let rsd = session
            .generate_with(&system, &g.text, Some(&drafts as &DraftFn<'_>))
            .unwrap();
        rsd_t.add(&rsd, &plain.text);
        if rsd.text != plain.text {
            eprintln!("\nRSD differs: plain {} / drafted {}", plain.text, rsd.text);
        }
        let rendered = student_prompt(&system, &g.text);
        let pld_fn = lookup(rendered.as_bytes());
        let pld = session
            .generate_with(&system, &g.text, Some(&pld_fn as &DraftFn<'_>))
            .unwrap();
        pld_t.add(&pld, &plain.text);
        // The answer itself drafted: what a draft that guessed every token right would do.
        let right = [plain.text.as_bytes()];
        let oracle = |so_far: &[u8]| recipes::continuing(&right, so_far);
        let known = session
            .generate_with(&system, &g.text, Some(&oracle as &DraftFn<'_>))
            .unwrap();
        oracle_t.add(&known, &plain.text);
        if let Some(named) = named_session.as_mut() {
            let plain = named.generate(&system, &g.text).unwrap();
            named_plain_t.add(&plain, &plain.text);
            let rsd = named
                .generate_with(&system, &g.text, Some(&drafts as &DraftFn<'_>))
                .unwrap();
            named_rsd_t.add(&rsd, &plain.text);
        }
        eprint!(".");
    }
    eprintln!();

    let mut rows = vec![
        format!(
            "Machine: {} cores. Threads: {THREADS}. Artifact: the support-triage example (SmolLM2-135M-Instruct {served} + its trained adapter, {} evals).",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            inputs.len()
        ),
        String::new(),
        "| measure | recipe | model | ratio |".into(),
        "|---|---|---|---|".into(),
        format!(
            "| answer latency p50, `{}` on every eval input ×{CALL_ROUNDS} (fresh context per call; {} of {} calls answered) | {c50:.1} µs | {:.1} ms | {:.5}× |",
            recipe.name,
            answered,
            calls.len(),
            m50 / 1e3,
            c50 / m50
        ),
        format!(
            "| answer latency p99 | {c99:.1} µs | {:.1} ms | {:.5}× |",
            m99 / 1e3,
            c99 / m99
        ),
        format!(
            "| the same with the context prepared ahead (`Sandbox::prepare`), p50 / p99 | {p50:.1} / {p99:.1} µs | {:.1} / {:.1} ms | {:.5}× |",
            m50 / 1e3,
            m99 / 1e3,
            p50 / m50
        ),
        String::new(),
        format!(
            "Decoding the {} eval inputs no exact recipe takes ({exact} are answered by `{}`), the decoders in turns on one session:",
            plain_t.runs, recipe.name
        ),
        String::new(),
        "| decoder | decode tokens/s | vs plain | passes per output token | draft acceptance | outputs equal to plain |".into(),
        "|---|---|---|---|---|---|".into(),
    ];
    let mut decoders = vec![
        (format!("plain greedy ({served})"), &plain_t, &plain_t),
        (
            format!("recipe speculative decoding ({served})"),
            &rsd_t,
            &plain_t,
        ),
        ("prompt lookup (n-gram)".into(), &pld_t, &plain_t),
        (
            "the plain answer itself drafted (no real draft can do better)".into(),
            &oracle_t,
            &plain_t,
        ),
    ];
    if named.is_some() {
        decoders.extend([
            (
                "plain greedy, the base as named (Q4_1)".into(),
                &named_plain_t,
                &named_plain_t,
            ),
            (
                "recipe speculative decoding, the base as named (Q4_1)".into(),
                &named_rsd_t,
                &named_plain_t,
            ),
        ]);
    }
    for (name, t, plain) in decoders {
        rows.push(format!(
            "| {name} | {:.1} | {:.2}× | {:.3} | {} | {} of {} |",
            t.rate(),
            t.rate() / plain.rate(),
            t.passes_per_token(),
            t.acceptance(),
            t.equal,
            t.runs
        ));
    }
    if !calls_only {
        let mut models = vec![(
            served.clone(),
            opened.model_file(&home).unwrap(),
            &plain_t,
            &rsd_t,
        )];
        if let Some(path) = &named {
            models.push((
                "Q4_1, as named".into(),
                path.clone(),
                &named_plain_t,
                &named_rsd_t,
            ));
        }
        let paths: Vec<&std::path::Path> = models.iter().map(|m| m.1.as_path()).collect();
        let costs = pass_costs(&paths, &adapter, &system, &inputs[0]);
        rows.push(String::new());
        rows.push(format!(
            "One verifying pass by the tokens it decodes (rows), after the example's prompt ({PASS_ROUNDS} rounds, the models in turns, median ms):"
        ));
        rows.push(String::new());
        rows.push(format!(
            "| rows | {} |",
            costs[0]
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        ));
        rows.push(format!("|---|{}", "---|".repeat(costs[0].len())));
        for ((name, ..), c) in models.iter().zip(&costs) {
            rows.push(format!(
                "| {name} | {} |",
                c.iter()
                    .map(|(_, t)| format!("{t:.1}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        rows.push(String::new());
        for ((name, _, plain, rsd), c) in models.iter().zip(&costs) {
            let cost = |n: f64| interpolate(c, n);
            let length = plain.tokens as f64 / plain.runs.max(1) as f64;
            let (plain_ms, rsd_ms) = (plain.priced(&cost), rsd.priced(&cost));
            let whole = (length - 1.0) * cost(1.0) / cost(length - 1.0);
            rows.push(format!(
                "{name}: each decoder's passes priced from this table: plain {plain_ms:.1} ms a token, recipe speculative decoding {rsd_ms:.1} ms a token, a predicted {:.2}× (measured above: {:.2}×). The best any draft can do, a whole output ({length:.1} tokens on average) verified in one pass of {:.1} rows against {:.1} one-row passes: {whole:.2}×.",
                plain_ms / rsd_ms,
                rsd.rate() / plain.rate(),
                length - 1.0,
                length - 1.0
            ));
            rows.push(String::new());
        }
    }
    let text = rows.join("\n") + "\n";
    print!("{text}");
    if calls_only {
        return;
    }
    let out = root.join("benches/results/recipes.md");
    std::fs::write(&out, text).unwrap();
    eprintln!("wrote {}", out.display());
}

/// Rounds of the pass-cost measurement.
const PASS_ROUNDS: usize = 20;

/// The median time of one forward pass decoding n tokens (logits for each, as a verifying pass
/// asks) after `input`'s prompt, for n from 1 to 16: the artifact's model and adapter on a
/// context made as a session makes it, the passes in turns, the cache trimmed back after each.
fn pass_costs(
    models: &[&std::path::Path],
    adapter: &std::path::Path,
    system: &str,
    input: &str,
) -> Vec<Vec<(usize, f64)>> {
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;
    let backend = kolm::runtime::engine::backend().unwrap();
    let opts = GenOptions {
        threads: THREADS,
        ..GenOptions::default()
    };
    let (mut loaded, mut loras) = (Vec::new(), Vec::new());
    for path in models {
        let mut m =
            LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).unwrap();
        loras.push(m.lora_adapter_init(adapter).unwrap());
        loaded.push(m);
    }
    let sizes = [1usize, 2, 4, 8, 12, 16];
    let mut runs: Vec<_> = loaded
        .iter()
        .map(|m| {
            let (n_ctx, params) = kolm::runtime::engine::context_params(m, &opts);
            let ctx = m.new_context(backend, params).unwrap();
            (n_ctx, ctx, vec![Vec::new(); sizes.len()])
        })
        .collect();
    let mut at = Vec::new();
    let mut answers = Vec::new();
    for ((m, lora), (n_ctx, ctx, _)) in loaded.iter().zip(loras.iter_mut()).zip(runs.iter_mut()) {
        ctx.lora_adapter_set(lora, 1.0).unwrap();
        let prompt = prompt::Template::of(m).render(m, system, input).unwrap();
        let vocab = m.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        answers.push(vocab.tokenize(br#"{"label":"billing","severity":"high"}"#, false, false));
        let mut batch = LlamaBatch::new(*n_ctx as usize, 1);
        let last = tokens.len() - 1;
        for (i, t) in tokens.iter().enumerate() {
            batch.add(*t, i as i32, &[0], i == last).unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        at.push(tokens.len() as i32);
    }
    let mut batch = LlamaBatch::new(64, 1);
    for _ in 0..PASS_ROUNDS {
        for (i, &n) in sizes.iter().enumerate() {
            for (k, (_, ctx, times)) in runs.iter_mut().enumerate() {
                batch.clear();
                for j in 0..n {
                    let answer = &answers[k];
                    batch
                        .add(answer[j % answer.len()], at[k] + j as i32, &[0], true)
                        .unwrap();
                }
                let t = Instant::now();
                ctx.decode(&mut batch).unwrap();
                ctx.synchronize();
                times[i].push(t.elapsed().as_secs_f64() * 1e3);
                assert!(ctx
                    .clear_kv_cache_seq(Some(0), Some(at[k] as u32), None)
                    .unwrap());
            }
        }
    }
    runs.iter()
        .map(|(_, _, times)| {
            sizes
                .iter()
                .zip(times)
                .map(|(n, t)| (*n, percentile(t, 0.5)))
                .collect()
        })
        .collect()
}

/// The cost of a pass of `n` rows, linear between the measured sizes (and beyond the last two).
fn interpolate(costs: &[(usize, f64)], n: f64) -> f64 {
    let i = costs
        .windows(2)
        .position(|w| n <= w[1].0 as f64)
        .unwrap_or(costs.len() - 2);
    let ((n0, t0), (n1, t1)) = (costs[i], costs[i + 1]);
    t0 + (t1 - t0) * (n - n0 as f64) / (n1 - n0) as f64
}

/// The prompt as the session renders it, for prompt lookup to search.
fn student_prompt(system: &str, input: &str) -> String {
    // The lookup needs only the text the model saw; the chat template's markers add nothing
    // a JSON answer could copy.
    format!("{system}\n{input}")
}
