//! Decoding: a session (a llama.cpp context and its KV cache, bound to a student) generating
//! under a grammar, greedy or sampled, verifying drafts as it goes (recipe speculative
//! decoding, runtime.md §5), and keeping the prompt prefix it shares with the next prompt.

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::grammar::{argmax, best_allowed, sample_allowed, Sampling, FEW};
pub use super::output::TextSink;
use super::output::{find_stop, whole_json, Output};
use super::prompt::Template;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// How a generation is run.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Decode threads; default: every core.
    pub threads: u32,
    /// Most tokens generated before stopping.
    pub max_tokens: u32,
    /// Generation stops before any of these strings; the string is not part of the output.
    pub stop: Vec<String>,
    /// Context size; 0 means the model's trained context.
    pub n_ctx: u32,
    /// Never end on an end-of-generation token when unconstrained (no schema): generate exactly
    /// `max_tokens`, as `llama-bench` does. For benchmarks.
    pub ignore_eos: bool,
    /// Sample instead of choosing greedily (`None`: greedy, the default and what `kolm run`
    /// does).
    pub sample: Option<Sampling>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            max_tokens: 512,
            stop: Vec::new(),
            n_ctx: 0,
            ignore_eos: false,
            sample: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model ended the sequence (under a grammar: the JSON is complete).
    EndOfText,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` was reached; the output may be cut short.
    MaxTokens,
}

/// One generation: the text and the work counted to make it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Forward passes after the prompt's: one per generated token but the last, whose logits
    /// are needed only when generation goes on to end on an end-of-text token, which under a
    /// schema's grammar it never needs to (a whole JSON value can only end).
    pub decode_passes: u64,
    /// Drafted tokens the model accepted (each saved a forward pass).
    pub draft_tokens: u64,
    /// Drafted tokens verified, accepted or not.
    pub drafted_tokens: u64,
    /// Tokens decoded by each pass that verified drafts (the chosen token and its drafts).
    #[serde(skip)]
    pub verify_rows: Vec<u64>,
    pub stop: Stop,
    /// Wall-clock time of this generation (never sealed anywhere).
    pub micros: u64,
    /// Wall-clock time of the prompt's forward pass.
    pub prefill_micros: u64,
}

/// A context bound to a student, reused across generations.
pub struct Session<'a> {
    model: &'a LlamaModel,
    ctx: LlamaContext<'a>,
    batch: LlamaBatch<'a>,
    grammar: Option<&'a str>,
    template: &'a Template,
    opts: GenOptions,
    n_ctx: u32,
    /// The tokens whose keys and values the context holds, at positions `0..len`.
    cached: Vec<LlamaToken>,
    /// The fixed prefix ([`Session::fix_prefix`]): what every prompt of one task begins with
    /// (the system message is most of a short prompt), and the system text it was made from.
    fixed: Vec<LlamaToken>,
    fixed_for: Option<String>,
    /// Whether `cached` begins with all of `fixed`, decoded as a batch of its own.
    fixed_ready: bool,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        model: &'a LlamaModel,
        ctx: LlamaContext<'a>,
        grammar: Option<&'a str>,
        template: &'a Template,
        opts: GenOptions,
        n_ctx: u32,
    ) -> Session<'a> {
        Session {
            model,
            ctx,
            batch: LlamaBatch::new(n_ctx as usize, 1),
            grammar,
            template,
            opts,
            n_ctx,
            cached: Vec::new(),
            fixed: Vec::new(),
            fixed_for: None,
            fixed_ready: false,
        }
    }

    /// Makes the tokens every prompt with this system message begins with the session's fixed
    /// prefix: the one part of the cache a generation may reuse (runtime.md §6). Reusing
    /// whatever prefix the last prompt happened to share would make an answer depend on the
    /// request before it: the kept tokens' keys and values would have been computed in batches
    /// of another size, and llama.cpp's kernels round differently by batch size. With one
    /// fixed prefix, decoded as a batch of its own, the tokens a prompt decodes and the batches
    /// they are decoded in are a function of the prompt alone. The prefix is where two
    /// renderings with different inputs part; a prompt that does not begin with all of it (its
    /// input merged into the template's last token) keeps only the part it shares, which is
    /// still the same batch's work.
    pub fn fix_prefix(&mut self, system: &str) -> Result<()> {
        if self.fixed_for.as_deref() == Some(system) {
            return Ok(());
        }
        let vocab = self.model.vocab();
        let tokens = |input: &str| -> Result<Vec<LlamaToken>> {
            let prompt = self.template.render(self.model, system, input)?;
            Ok(vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true))
        };
        let (a, b) = (tokens("a")?, tokens("0")?);
        let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        self.fixed = a[..shared].to_vec();
        self.fixed_for = Some(system.to_string());
        self.forget();
        Ok(())
    }

    /// The student's output grammar (`None`: unconstrained text).
    pub fn grammar(&self) -> Option<&'a str> {
        self.grammar
    }

    /// The context's size in tokens.
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// Takes `opts`' limits (output tokens, stop strings, `ignore_eos`) for the generations
    /// that follow; the context itself, its size and threads, stay as opened.
    pub fn limit(&mut self, opts: &GenOptions) {
        self.opts.max_tokens = opts.max_tokens;
        self.opts.stop.clone_from(&opts.stop);
        self.opts.ignore_eos = opts.ignore_eos;
        self.opts.sample = opts.sample;
    }

    /// Builds the prompt for (system, input) with the student's template and generates.
    pub fn generate(&mut self, system: &str, input: &str) -> Result<Generation> {
        self.generate_with(system, input, None)
    }

    /// [`Session::generate`] with drafts to verify ([`Session::generate_drafted`]).
    pub fn generate_with(
        &mut self,
        system: &str,
        input: &str,
        drafts: Option<&DraftFn<'_>>,
    ) -> Result<Generation> {
        self.fix_prefix(system)?;
        let prompt = self.template.render(self.model, system, input)?;
        self.generate_drafted(&prompt, drafts)
    }

    /// How many tokens `text` is as output (what an exact recipe's answer would have cost).
    pub fn count_tokens(&self, text: &str) -> u64 {
        tokenize_bytes(self.model, text.as_bytes()).len() as u64
    }

    /// The logits at every position of `tokens` (no sampling, no grammar): for checking
    /// another implementation of the same forward pass against llama.cpp's.
    pub fn logits(&mut self, tokens: &[LlamaToken]) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() || tokens.len() > self.n_ctx as usize {
            return Err(Error::invalid(
                format!(
                    "{} tokens do not fit a context of {}",
                    tokens.len(),
                    self.n_ctx
                ),
                "pass fewer tokens",
            ));
        }
        self.forget();
        self.batch.clear();
        for (i, t) in tokens.iter().enumerate() {
            self.batch
                .add(*t, i as i32, &[0], true)
                .map_err(|e| Error::failed("llama.cpp could not take a token batch", e))?;
        }
        self.decode()?;
        Ok((0..tokens.len())
            .map(|i| self.ctx.get_logits_ith(i as i32).to_vec())
            .collect())
    }

    /// Generates from an already rendered prompt.
    pub fn generate_raw(&mut self, prompt: &str) -> Result<Generation> {
        self.generate_drafted(prompt, None)
    }

    /// Generates from an already rendered prompt, verifying drafts as it goes (recipe
    /// speculative decoding, runtime.md §5). `drafts` maps the output so far to a guess at
    /// what follows. Each forward pass decodes the token just chosen together with up to
    /// [`MAX_DRAFT`] drafted tokens; the drafted tokens the model would have chosen itself
    /// (greedy, under the grammar) are accepted, the first it would not is replaced by its own
    /// choice (the bonus token, from the same pass), and the cache forgets the rest. So the
    /// output is the plain greedy output, in fewer passes when drafts are right.
    pub fn generate_drafted(
        &mut self,
        prompt: &str,
        drafts: Option<&DraftFn<'_>>,
    ) -> Result<Generation> {
        let grammar = self.grammar;
        self.generate_under(prompt, drafts, grammar)
    }

    /// [`Session::generate_drafted`] under `grammar` (llama.cpp GBNF) instead of the
    /// student's: for a caller that asks for another schema (`None`: unconstrained). The
    /// grammar must be a schema's ([`super::grammar::schema_grammar`]), which admits nothing
    /// after a whole JSON value: generation ends there without a pass to choose the
    /// end-of-generation token, the only one it allows.
    pub fn generate_under(
        &mut self,
        prompt: &str,
        drafts: Option<&DraftFn<'_>>,
        grammar: Option<&str>,
    ) -> Result<Generation> {
        self.generate_streamed(prompt, drafts, grammar, None)
    }

    /// [`Session::generate_under`], handing the text to `sink` as it is generated: whole UTF-8
    /// characters only, and never bytes a stop string could still cut, so the pieces put
    /// together are exactly the generation's text.
    pub fn generate_streamed(
        &mut self,
        prompt: &str,
        drafts: Option<&DraftFn<'_>>,
        grammar: Option<&str>,
        mut sink: Option<&mut TextSink<'_>>,
    ) -> Result<Generation> {
        let started = Instant::now();
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
        let room = self.n_ctx as usize;
        let need = tokens.len() + self.opts.max_tokens as usize;
        if tokens.is_empty() {
            return Err(Error::invalid(
                "the prompt is empty",
                "give the artifact some input",
            ));
        }
        if need > room {
            return Err(Error::invalid(
                format!(
                    "the input is too long: its prompt is {} tokens, and with up to {} output tokens that exceeds the context of {room} tokens",
                    tokens.len(),
                    self.opts.max_tokens
                ),
                if tokens.len() < room {
                    "shorten the input, or lower --max-tokens"
                } else {
                    "shorten the input: the prompt alone does not fit the model's context"
                },
            ));
        }
        let keep = self.resume(&tokens)?;
        self.batch.clear();
        let last = tokens.len() - 1;
        for (i, t) in tokens.iter().enumerate().skip(keep) {
            self.batch
                .add(*t, i as i32, &[0], i == last)
                .map_err(|e| Error::failed("llama.cpp could not take a token batch", e))?;
        }
        self.cached.extend_from_slice(&tokens[keep..]);
        self.decode()?;
        let prefill_micros = started.elapsed().as_micros() as u64;

        let mut sampler = match grammar {
            Some(g) => Some(
                LlamaSampler::grammar(self.model, g, "root")
                    .map_err(|e| Error::failed("llama.cpp rejected the output grammar", e))?,
            ),
            None => None,
        };
        let max = self.opts.max_tokens as u64;
        // Bytes a stop string could still cut are held back from the sink.
        let held = self
            .opts
            .stop
            .iter()
            .map(|s| s.len().saturating_sub(1))
            .max()
            .unwrap_or(0);
        let mut draw = self.opts.sample.map(|s| (s, SplitMix64::new(s.seed)));
        let mut out = Output::default();
        let mut pos = tokens.len() as i32;
        let mut stop = Stop::MaxTokens;
        let mut passes = 0u64;
        // The batch row whose logits choose the next token.
        let mut row = self.batch.n_tokens() - 1;
        // The model's own choice where it rejected a draft: chosen already, from that row.
        let mut chosen = None;
        'generate: while out.produced < max {
            let token = match chosen.take() {
                Some(t) => t,
                None => self.pick(sampler.as_mut(), row, draw.as_mut())?,
            };
            if vocab.is_eog(token) {
                stop = Stop::EndOfText;
                break;
            }
            // No forward pass for logits nobody will read: after a stop, or the last token
            // allowed.
            if let Some(end) = self.accept(sampler.as_mut(), &mut out, token)? {
                stop = end;
                break;
            }
            out.emit(sink.as_deref_mut(), held);
            if out.produced >= max {
                break;
            }
            let draft = match drafts {
                Some(f) => self.draft(f, &out, (max - out.produced) as usize),
                None => Vec::new(),
            };
            // A draft that would end the JSON is verified from the rows before its last
            // token; that token's own row would only choose the end of generation.
            let rows = if sampler.is_some() && self.ends_json(&out, &draft) {
                draft.len() - 1
            } else {
                draft.len()
            };
            self.batch.clear();
            for (j, t) in std::iter::once(&token).chain(&draft[..rows]).enumerate() {
                self.batch
                    .add(*t, pos + j as i32, &[0], true)
                    .map_err(|e| Error::failed("llama.cpp could not take a token batch", e))?;
            }
            self.cached.push(token);
            self.cached.extend_from_slice(&draft[..rows]);
            self.decode()?;
            passes += 1;
            out.drafted += draft.len() as u64;
            if !draft.is_empty() {
                out.verify_rows.push(1 + rows as u64);
            }
            // Row j holds the logits after `token` and the first j drafted tokens.
            let mut k = 0;
            while k < draft.len() {
                let mine = self.pick(sampler.as_mut(), k as i32, draw.as_mut())?;
                if mine != draft[k] {
                    chosen = Some(mine);
                    break;
                }
                out.accepted += 1;
                k += 1;
                if let Some(end) = self.accept(sampler.as_mut(), &mut out, mine)? {
                    stop = end;
                    break 'generate;
                }
                out.emit(sink.as_deref_mut(), held);
                if out.produced >= max {
                    break 'generate;
                }
            }
            let kept = pos + 1 + k as i32;
            if k < rows {
                self.trim(kept as u32)?;
            }
            pos = kept;
            row = k as i32;
        }
        let text = String::from_utf8_lossy(&out.bytes).into_owned();
        if let Some(sink) = sink {
            let rest = String::from_utf8_lossy(&out.bytes[out.sent..]);
            if !rest.is_empty() {
                sink(&rest);
            }
        }
        Ok(Generation {
            text,
            prompt_tokens: tokens.len() as u64,
            output_tokens: out.produced,
            decode_passes: passes,
            draft_tokens: out.accepted,
            drafted_tokens: out.drafted,
            verify_rows: out.verify_rows,
            stop,
            micros: started.elapsed().as_micros() as u64,
            prefill_micros,
        })
    }

    /// Takes `token` into the output (and the grammar's state), and says whether the output
    /// now ends: at a stop string (cut before it), or, under a schema's grammar, as a whole
    /// JSON value, after which the grammar allows only the end of generation (so no pass is
    /// made to choose it).
    fn accept(
        &self,
        sampler: Option<&mut LlamaSampler>,
        out: &mut Output,
        token: LlamaToken,
    ) -> Result<Option<Stop>> {
        let constrained = sampler.is_some();
        if let Some(s) = sampler {
            s.try_accept(token)
                .map_err(|e| Error::failed("the output grammar rejected a token it allowed", e))?;
        }
        let before = out.bytes.len();
        self.model
            .vocab()
            .token_to_piece_into(token, &mut out.bytes, false, None);
        out.tokens.push(token);
        out.produced += 1;
        if let Some(cut) = find_stop(&out.bytes, before, &self.opts.stop) {
            out.bytes.truncate(cut);
            return Ok(Some(Stop::StopString));
        }
        Ok((constrained && whole_json(&out.bytes)).then_some(Stop::EndOfText))
    }

    /// The drafted continuation of `out` as tokens, at most `room` of them. The output and the
    /// draft are tokenised together, as the student saw such text in training, when that
    /// tokenisation begins with the tokens already chosen; otherwise the draft alone.
    fn draft(&self, f: &DraftFn<'_>, out: &Output, room: usize) -> Vec<LlamaToken> {
        let Some(more) = f(&out.bytes).filter(|m| !m.is_empty()) else {
            return Vec::new();
        };
        let vocab = self.model.vocab();
        let mut whole = out.bytes.clone();
        whole.extend_from_slice(&more);
        let together = tokenize_bytes(self.model, &whole);
        let mut draft = match together.strip_prefix(out.tokens.as_slice()) {
            Some(rest) => rest.to_vec(),
            None => tokenize_bytes(self.model, &more),
        };
        draft.retain(|t| !vocab.is_eog(*t));
        draft.truncate(room.min(MAX_DRAFT));
        draft
    }

    /// Whether the output followed by all of `draft` is a whole JSON value.
    fn ends_json(&self, out: &Output, draft: &[LlamaToken]) -> bool {
        if draft.is_empty() {
            return false;
        }
        let mut bytes = out.bytes.clone();
        for t in draft {
            self.model
                .vocab()
                .token_to_piece_into(*t, &mut bytes, false, None);
        }
        whole_json(&bytes)
    }

    /// Drops the cache from position `from` on (drafted tokens the model did not accept).
    fn trim(&mut self, from: u32) -> Result<()> {
        let dropped = matches!(
            self.ctx.clear_kv_cache_seq(Some(0), Some(from), None),
            Ok(true)
        );
        self.cached.truncate(from as usize);
        if !dropped {
            self.forget();
            return Err(Error::failed(
                "llama.cpp could not drop rejected draft tokens from its cache",
                "this model's cache cannot be trimmed",
            ));
        }
        Ok(())
    }

    fn decode(&mut self) -> Result<()> {
        let done = self.ctx.decode(&mut self.batch);
        if done.is_err() {
            // What the cache holds after a failed decode is not known.
            self.forget();
        }
        done.map_err(|e| Error::failed("llama.cpp could not decode", e))
    }

    /// Empties the context's cache.
    fn forget(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
        self.fixed_ready = false;
    }

    /// Brings the cache to what a generation of `tokens` starts from, the same whatever ran
    /// before: the part of the fixed prefix that `tokens` begins with (all but its last token
    /// at most: its logits must be computed), as decoded in the prefix's own batch, and
    /// nothing else. Returns how many tokens that is.
    ///
    /// The cells hold the prefix at `0..len` and are free after it, so llama.cpp places what
    /// follows in the same cells every time (it searches from the lowest freed cell).
    fn resume(&mut self, tokens: &[LlamaToken]) -> Result<usize> {
        let keep = self
            .fixed
            .iter()
            .zip(&tokens[..tokens.len().saturating_sub(1)])
            .take_while(|(a, b)| a == b)
            .count();
        if keep == 0 {
            self.forget();
            return Ok(0);
        }
        if !self.fixed_ready {
            self.forget();
            self.batch.clear();
            let last = self.fixed.len() - 1;
            for (i, t) in self.fixed.iter().enumerate() {
                self.batch
                    .add(*t, i as i32, &[0], i == last)
                    .map_err(|e| Error::failed("llama.cpp could not take a token batch", e))?;
            }
            self.decode()?;
            self.cached.clone_from(&self.fixed);
            self.fixed_ready = true;
        }
        if keep < self.fixed.len() {
            self.fixed_ready = false;
        }
        if self.cached.len() > keep {
            self.trim(keep as u32)?;
        }
        Ok(keep)
    }

    /// Greedy choice under the grammar, or a draw when sampling. The argmax is tried alone
    /// first (the common case, and cheap); only if the grammar rejects it is the grammar
    /// applied to the whole vocabulary, which is what llama.cpp's own common sampler does.
    fn pick(
        &self,
        mut sampler: Option<&mut LlamaSampler>,
        row: i32,
        draw: Option<&mut (Sampling, SplitMix64)>,
    ) -> Result<LlamaToken> {
        let logits = self.ctx.get_logits_ith(row);
        if let Some((s, rng)) = draw {
            if let Some(t) = sample_allowed(sampler.as_deref_mut(), logits, s, rng) {
                return Ok(t);
            }
        }
        let best = argmax(logits);
        let Some(sampler) = sampler else {
            let vocab = self.model.vocab();
            if self.opts.ignore_eos && vocab.is_eog(LlamaToken(best as i32)) {
                let next = (0..logits.len())
                    .filter(|i| !vocab.is_eog(LlamaToken(*i as i32)))
                    .max_by(|a, b| logits[*a].total_cmp(&logits[*b]).then(b.cmp(a)));
                return Ok(LlamaToken(next.unwrap_or(best) as i32));
            }
            return Ok(LlamaToken(best as i32));
        };
        let mut one = LlamaTokenDataArray::new(
            vec![LlamaTokenData::new(
                LlamaToken(best as i32),
                logits[best],
                0.0,
            )],
            false,
        );
        one.apply_sampler(sampler);
        if one.data[0].logit().is_finite() {
            return Ok(LlamaToken(best as i32));
        }
        // Then the best few, then everything: checking a candidate against the grammar costs
        // about a microsecond, and a model that is not yet trained for the format misses with
        // its argmax at nearly every token (over a 49k vocabulary that was 15 s an answer).
        // Both orders are (logit, then lower id), so the choice is the full pass's.
        let order = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
        let mut ids: Vec<usize> = (0..logits.len()).collect();
        if ids.len() > FEW {
            ids.select_nth_unstable_by(FEW - 1, order);
            if let Some(t) = best_allowed(sampler, logits, &ids[..FEW]) {
                return Ok(t);
            }
        }
        best_allowed(sampler, logits, &ids)
            .ok_or_else(|| Error::Internal("the output grammar allows no token here".into()))
    }
}

/// A draft source: the output so far to a guess at its continuation.
pub type DraftFn<'a> = dyn Fn(&[u8]) -> Option<Vec<u8>> + 'a;

/// Most drafted tokens verified in one pass. On a CPU a pass is bound by reading the weights,
/// so a few more rows cost little; a draft is rarely right for longer than this.
pub const MAX_DRAFT: usize = 16;

/// Tokenises generated text (no BOS, no special tokens).
fn tokenize_bytes(model: &LlamaModel, text: &[u8]) -> Vec<LlamaToken> {
    model.vocab().tokenize(text, false, false)
}
