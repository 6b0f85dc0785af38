//! The student runtime: what runs a task, at build time (the `score` stage) and at run time
//! (`kolm run`, the library's [`Runner`]), through the same code so the two cannot disagree.
//!
//! - [`engine`]: llama.cpp. Loads the base and the LoRA adapter; [`decode`] generates under the
//!   grammar llama.cpp derives from the task's JSON schema ([`grammar`]), greedy or sampled,
//!   verifying drafts; [`kept`] keeps a session between runs.
//! - [`prompt`]: how (task, input) becomes the prompt the student sees.
//! - [`open`]: a `.kolm` made runnable: verified and kept open; [`in_place`]: llama.cpp reads
//!   its model and adapter from that handle.
//! - [`measure`]: the K components of a student on an eval suite (the score stage and
//!   `--rescore` both measure with it).
//! - [`verified`]: k samples of one answer through the verifier (`/v1/wrap/verified`).
//! - [`quantize`]: llama.cpp's quantiser, for a build that requantises its base.
//!
//! [`Runner`] ties them together for one artifact and writes a receipt for every run.

pub mod decode;
pub mod engine;
pub mod grammar;
pub mod in_place;
pub mod kept;
pub mod measure;
pub mod model_copy;
pub mod open;
mod output;
pub mod prompt;
pub mod quantize;
pub mod recipes;
pub mod rescore;
pub mod verified;

use std::path::Path;

pub use engine::{GenOptions, Generation, Gguf, Stop, Student};

use crate::artifact::verify::VerifyOptions;
use crate::home::Home;
use crate::recall::ground::{ground, Grounded, Grounding};
use crate::receipts::{self, Receipt, RunFacts};
use crate::tune_state;
use crate::{Error, Result};

/// An artifact, verified and loaded, ready to answer.
pub struct Runner {
    pub artifact: open::Opened,
    /// The student and the session it keeps between runs (the prompt's shared prefix is
    /// decoded once, not per run).
    kept: kept::Kept,
    system: String,
    opts: GenOptions,
    home: Home,
    /// The index attached by `kolm rag attach`, if any (for recipes).
    rag: Option<(crate::rag::Sidecar, rusqlite::Connection)>,
    /// The artifact's own index, when it has chunks: every input is grounded in it.
    grounding: Option<Grounding>,
    /// The recipe pack: exact answers, and drafts for the model.
    pub recipes: recipes::Recipes,
    /// The artifact's tune state, and the revision whose adapter the student runs with.
    tune: tune_state::TuneDir,
    revision: Option<String>,
}

/// The answer to one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutput {
    /// The output parsed as JSON (the task's schema guarantees it unless generation was cut).
    pub output: serde_json::Value,
    pub generation: Generation,
    pub receipt: Receipt,
}

impl Runner {
    /// Verifies `path` (failing closed, as `kolm verify` does) and loads the student from the
    /// verified handle, in place. `embedder`: the folder of the index's embedder
    /// when the copy a build keeps is not on this machine (indexes with dense vectors only).
    pub fn open(
        path: &Path,
        home: &Home,
        verify: &VerifyOptions,
        opts: GenOptions,
        embedder: Option<&Path>,
    ) -> Result<Runner> {
        let artifact = open::open(path, home, verify, true)?;
        // A sidecar that no longer matches its index fails here, before any model loads.
        let rag = crate::rag::attached(home, path)?;
        // A tuned artifact runs with its HEAD revision's adapter; the `.kolm` is unchanged.
        let tune = tune_state::TuneDir::of(home, &artifact.manifest.task.name, &artifact.sha256);
        let (revision, student) = tuned_student(&artifact, &tune)?;
        let system = prompt::system_prompt(
            &artifact.manifest.task.description,
            Some(&artifact.manifest.task.output_schema),
        );
        let grounding = artifact.grounding(home, embedder)?;
        let mut recipes = recipes::of_artifact(&artifact)?;
        // An attached index is the one the user means recipes to query.
        if let (Some((side, _)), false) = (&rag, recipes.pack().recipes.is_empty()) {
            let (_, db) = crate::rag::open(home, &side.index)?;
            recipes = recipes.with_rag(Some(recipes::rag_over(db)));
        }
        Ok(Runner {
            artifact,
            kept: kept::Kept::of(student),
            system,
            opts,
            home: home.clone(),
            rag,
            grounding,
            recipes,
            tune,
            revision,
        })
    }

    /// Follows the tune HEAD (tune.md §5): when a promote or rollback moved it since the
    /// student was loaded (a `kolm tune daemon` beside a `kolm serve`), the student is loaded
    /// again with the new HEAD's adapter before the next run. One small file read per run.
    fn follow_head(&mut self) -> Result<()> {
        let head = self.tune.head()?.map(|h| h.head);
        if head == self.revision {
            return Ok(());
        }
        let (revision, student) = tuned_student(&self.artifact, &self.tune)?;
        self.kept = kept::Kept::of(student);
        self.revision = revision;
        Ok(())
    }

    /// The tune revision the student runs with (`None`: the artifact's own adapter).
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// Searches the index attached to the artifact (`kolm rag attach`); `None` when there is
    /// none. (Recipes reach it as `lib.rag.query`.)
    pub fn rag_query(&self, query: &str, k: usize) -> Result<Option<Vec<crate::recall::Hit>>> {
        match &self.rag {
            None => Ok(None),
            Some((_, db)) => crate::recall::search(db, query, k).map(Some),
        }
    }

    /// The input as the student sees it: grounded in the artifact's index when it has one.
    pub fn ground(&self, input: &str) -> Result<Grounded> {
        ground(self.grounding.as_ref(), input)
    }

    /// Generates for one (grounded) input with the runner's options, `max_tokens` aside; no
    /// receipt.
    pub fn generate(&mut self, input: &str, max_tokens: u32) -> Result<Generation> {
        // The context is sized to what the prompt needs rather than the model's whole trained
        // context, which for a large-context model would cost a cold start its KV cache.
        let prompt = self.kept.student().render(&self.system, input)?;
        let opts = self.context_for(&prompt, max_tokens);
        let system = &self.system;
        self.kept.with_session(&opts, |s| {
            s.fix_prefix(system)?;
            s.generate_raw(&prompt)
        })
    }

    /// The runner's options for one prompt: a context sized to what it needs (the kept
    /// session is reopened only when a prompt needs more than it has).
    fn context_for(&self, prompt: &str, max_tokens: u32) -> GenOptions {
        let mut opts = self.opts.clone();
        opts.max_tokens = max_tokens;
        if opts.n_ctx == 0 {
            let student = self.kept.student();
            let need = student.tokenize(prompt).len() as u32 + max_tokens;
            opts.n_ctx = need
                .next_multiple_of(256)
                .min(student.n_ctx_train().max(256));
        }
        opts
    }

    /// Runs one input and appends its receipt to `KOLM_HOME/logs/receipts.jsonl`: an exact
    /// recipe answers when one accepts the input; otherwise the model does, verifying drafts.
    pub fn run(&mut self, input: &str) -> Result<RunOutput> {
        self.run_with(input, &Ask::default())
    }

    /// [`Runner::run`] with what a caller asks beyond its input. Under a schema other than the
    /// task's, the model answers alone (recipes and drafts are made for the task's), under that
    /// schema's grammar, and the output is checked against it.
    pub fn run_with(&mut self, input: &str, ask: &Ask) -> Result<RunOutput> {
        self.run_inner(input, ask, None)
    }

    /// [`Runner::run_with`], handing the answer's text to `sink` as it is made (all of it at
    /// once when a recipe answers). The pieces put together are the generation's text.
    pub fn run_streaming(
        &mut self,
        input: &str,
        ask: &Ask,
        sink: &mut engine::TextSink<'_>,
    ) -> Result<RunOutput> {
        self.run_inner(input, ask, Some(sink))
    }

    fn run_inner(
        &mut self,
        input: &str,
        ask: &Ask,
        sink: Option<&mut engine::TextSink<'_>>,
    ) -> Result<RunOutput> {
        let started = std::time::Instant::now();
        let plan = self.plan(input, ask)?;
        let (output, generation, path, chunk_ids) = match &plan.consulted.exact {
            Some((id, output)) => {
                let g = self.exact_generation(output, plan.max_tokens, started);
                let output = match g.stop {
                    Stop::MaxTokens => cut_output(&g, plan.max_tokens, ask.partial)?,
                    _ => output.clone(),
                };
                if let Some(sink) = sink {
                    sink(&g.text);
                }
                (output, g, format!("recipe:{id}"), Vec::new())
            }
            None => {
                let (prompt, chunk_ids) = self.prompt(input)?;
                let g = self.decode(&plan, &prompt, None, sink)?;
                let output = match parse_output(&g, plan.max_tokens) {
                    Ok(o) => o,
                    Err(_) if g.stop == Stop::MaxTokens => {
                        cut_output(&g, plan.max_tokens, ask.partial)?
                    }
                    Err(e) => return Err(e),
                };
                if let (Some(schema), false) = (plan.custom, output.is_null()) {
                    check_against(schema, &output)?;
                }
                (output, g, "model".to_string(), chunk_ids)
            }
        };
        let facts = RunFacts {
            latency_us: generation.micros,
            tokens_in: generation.prompt_tokens,
            tokens_out: generation.output_tokens,
            draft_tokens_accepted: generation.draft_tokens,
            ..self.facts(input, &output, path, chunk_ids)
        };
        let receipt = self.receipt(facts)?;
        if generation.stop != Stop::MaxTokens {
            self.capture(input, &output, &receipt);
        }
        Ok(RunOutput {
            output,
            generation,
            receipt,
        })
    }

    /// Appends a successful run to the tune captures when capture is on (`kolm tune
    /// capture-on`). A capture that cannot be written is reported on stderr, not failed: the
    /// run itself succeeded and its receipt is written.
    fn capture(&self, input: &str, output: &serde_json::Value, receipt: &Receipt) {
        if !self.tune.capturing() {
            return;
        }
        let row = tune_state::Capture {
            input: input.to_string(),
            output: output.clone(),
            recipe: receipt
                .facts
                .path
                .strip_prefix("recipe:")
                .map(str::to_owned),
            latency_us: receipt.facts.latency_us,
            revision: self.revision.clone(),
        };
        if let Err(e) = self.tune.capture(&row) {
            eprintln!("kolm: this run was not captured for tune: {e}");
        }
    }

    /// What a run will do for `input`: its limits, the caller's schema and its grammar, and
    /// what the recipe pack says.
    fn plan<'s>(&mut self, input: &str, ask: &Ask<'s>) -> Result<Plan<'s>> {
        self.follow_head()?;
        let max_tokens = ask
            .max_tokens
            .map_or(self.opts.max_tokens, |m| m.clamp(1, self.opts.max_tokens));
        let custom = ask
            .schema
            .filter(|s| **s != self.artifact.manifest.task.output_schema);
        if let Some(why) = custom.and_then(grammar::unenforceable) {
            return Err(Error::invalid(
                format!("the requested schema cannot be enforced: {why}"),
                "simplify the schema to what the grammar enforces (runtime.md §3)",
            ));
        }
        let grammar = custom.map(engine::schema_grammar).transpose()?;
        let consulted = if custom.is_some() {
            recipes::Consulted::default()
        } else {
            self.recipes.consult(input)
        };
        Ok(Plan {
            max_tokens,
            custom,
            grammar,
            consulted,
        })
    }

    /// The generation an exact recipe's answer stands for: its tokens, all drafted, no pass.
    /// An answer longer than `max_tokens` is cut there, as the model's would be.
    fn exact_generation(
        &self,
        output: &serde_json::Value,
        max_tokens: u32,
        started: std::time::Instant,
    ) -> Generation {
        let mut text = serde_json::to_string(output).expect("serialises");
        let student = self.kept.student();
        let tokens = student.tokenize_plain(&text);
        let mut n = tokens.len() as u64;
        let mut stop = Stop::EndOfText;
        if n > u64::from(max_tokens) {
            text = student.detokenize(&tokens[..max_tokens as usize]);
            n = u64::from(max_tokens);
            stop = Stop::MaxTokens;
        }
        Generation {
            text,
            prompt_tokens: 0,
            output_tokens: n,
            decode_passes: 0,
            draft_tokens: n,
            drafted_tokens: n,
            verify_rows: Vec::new(),
            stop,
            micros: started.elapsed().as_micros() as u64,
            prefill_micros: 0,
        }
    }

    /// The student's prompt for `input` (grounded), and the chunks it was grounded in.
    fn prompt(&self, input: &str) -> Result<(String, Vec<String>)> {
        let grounded = self.ground(input)?;
        let prompt = self.kept.student().render(&self.system, &grounded.text)?;
        Ok((prompt, grounded.chunk_ids))
    }

    /// One generation for `prompt` under the plan, on the kept session: under the caller's
    /// grammar, or the task's with the pack's drafts; greedy, or sampled with `sample`.
    fn decode(
        &mut self,
        plan: &Plan,
        prompt: &str,
        sample: Option<engine::Sampling>,
        sink: Option<&mut engine::TextSink<'_>>,
    ) -> Result<Generation> {
        let mut opts = self.context_for(prompt, plan.max_tokens);
        opts.sample = sample;
        let drafts = self.recipes.drafts(&plan.consulted);
        let system = &self.system;
        self.kept.with_session(&opts, |s| {
            s.fix_prefix(system)?;
            match &plan.grammar {
                Some(gr) => s.generate_streamed(prompt, None, Some(gr), sink),
                None => {
                    let drafts = drafts.as_ref().map(|f| f as &engine::DraftFn<'_>);
                    let grammar = s.grammar();
                    s.generate_streamed(prompt, drafts, grammar, sink)
                }
            }
        })
    }

    /// A receipt's facts for `output` of `input`, the counted work left at zero.
    fn facts(
        &self,
        input: &str,
        output: &serde_json::Value,
        path: String,
        chunk_ids: Vec<String>,
    ) -> RunFacts {
        RunFacts {
            artifact_sha256: self.artifact.sha256.clone(),
            manifest_sha256: self.artifact.manifest_sha256.clone(),
            task: self.artifact.manifest.task.name.clone(),
            input_sha256: crate::digest::sha256(input.as_bytes()),
            output_sha256: crate::digest::sha256(&crate::digest::canonical_json(output)),
            path,
            latency_us: 0,
            tokens_in: 0,
            tokens_out: 0,
            draft_tokens_accepted: 0,
            chunk_ids,
            revision: self.revision.clone(),
            verified: None,
        }
    }

    /// Appends the receipt for `facts` to `KOLM_HOME/logs/receipts.jsonl`.
    fn receipt(&self, facts: RunFacts) -> Result<Receipt> {
        let key = receipts::env_key()?;
        receipts::append(&receipts::log_path(&self.home), facts, key.as_ref())
    }
}

/// What a run will do ([`Runner::plan`]).
struct Plan<'s> {
    max_tokens: u32,
    /// The caller's schema, when it is not the task's.
    custom: Option<&'s serde_json::Value>,
    grammar: Option<String>,
    consulted: recipes::Consulted,
}

/// The artifact's student with the tune HEAD's adapter when it is tuned, else its own; and
/// the revision.
fn tuned_student(
    artifact: &open::Opened,
    tune: &tune_state::TuneDir,
) -> Result<(Option<String>, Student)> {
    Ok(match tune.head_adapter()? {
        None => (None, artifact.student()?),
        Some((rev, adapter)) => (Some(rev), artifact.student_with(Some(&adapter))?),
    })
}

/// What a caller asks of one run beyond its input ([`Runner::run_with`]).
#[derive(Debug, Default, Clone)]
pub struct Ask<'a> {
    /// Answer under this JSON schema instead of the task's.
    pub schema: Option<&'a serde_json::Value>,
    /// Fewer output tokens than the runner's limit.
    pub max_tokens: Option<u32>,
    /// An answer cut at `max_tokens` comes back as it is (`output` null, the text in the
    /// generation, `Stop::MaxTokens`: OpenAI's `finish_reason: "length"`) instead of failing
    /// the run. Recipe and model answers are cut alike.
    pub partial: bool,
}

/// The output of an answer cut at `max_tokens`: null when the caller takes partial answers,
/// else the error that says so.
fn cut_output(g: &Generation, max_tokens: u32, partial: bool) -> Result<serde_json::Value> {
    if partial {
        return Ok(serde_json::Value::Null);
    }
    Err(parse_output(g, max_tokens).err().unwrap_or_else(|| {
        Error::invalid(
            format!("the output was cut at --max-tokens {max_tokens} before its JSON was complete"),
            "raise --max-tokens",
        )
    }))
}

/// An output the caller's schema rejects (the grammar should make this impossible: llama.cpp's
/// converter does not express every JSON-schema keyword).
fn check_against(schema: &serde_json::Value, output: &serde_json::Value) -> Result<()> {
    let v = jsonschema::validator_for(schema).map_err(|e| {
        Error::invalid_because(
            "the requested schema does not compile",
            e,
            "send a valid JSON schema",
        )
    })?;
    let first = v
        .iter_errors(output)
        .next()
        .map(|e| format!("at `{}`: {e}", e.instance_path()));
    match first {
        None => Ok(()),
        Some(why) => Err(Error::invalid(
            format!("the output does not match the requested schema {why}"),
            "llama.cpp's grammar cannot express every JSON-schema keyword; simplify the schema",
        )),
    }
}

/// The generated text as JSON, or an error that says why it is not.
pub fn parse_output(g: &Generation, max_tokens: u32) -> Result<serde_json::Value> {
    serde_json::from_str(g.text.trim()).map_err(|e| {
        let (what, help) = match g.stop {
            Stop::MaxTokens => (
                format!(
                    "the output was cut at --max-tokens {max_tokens} before its JSON was complete"
                ),
                "raise --max-tokens",
            ),
            Stop::StopString => (
                "a --stop string cut the output before its JSON was complete".to_string(),
                "the JSON output itself contains that string: choose a stop string it cannot contain, or none",
            ),
            Stop::EndOfText => (
                format!("the output is not JSON ({e})"),
                "the task's schema should make this impossible: please report it",
            ),
        };
        Error::invalid(
            format!("{what}: {}", crate::untrusted::shown(&format!("{:?}", g.text))),
            help,
        )
    })
}
