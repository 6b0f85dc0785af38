//! llama.cpp: loading a student (base + adapter) and opening decoding sessions on it
//! ([`super::decode`] generates).
//!
//! Two things here exist because of how llama.cpp fails. It reports a bad file by returning
//! null after logging, and aborts the process on some misuse; so everything it would trip on
//! is checked first with our own GGUF reader ([`crate::gguf`]): the model's header and extent,
//! the adapter's shapes against the base. And sampling never calls `llama_sampler_sample` with
//! a grammar in the chain (it can hit `GGML_ASSERT(!stacks.empty())`): we apply the grammar to
//! a candidate array and accept with `try_accept`, which turns a grammar exception into an
//! error instead of an abort.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;

pub use super::decode::{DraftFn, GenOptions, Generation, Session, Stop, TextSink, MAX_DRAFT};
pub use super::grammar::{schema_grammar, Sampling};
use super::prompt::Template;
use crate::{Error, Result};

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend (it may be initialised once per process). Its own log
/// lines are silenced: every failure they would explain is reported by our own checks.
pub fn backend() -> Result<&'static LlamaBackend> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::failed("llama.cpp could not start", e.clone()))
}

/// A loaded student: base weights, optional LoRA adapter, the output grammar, the template.
pub struct Student {
    model: LlamaModel,
    /// In a cell so that sessions can be opened from a shared student (llama.cpp's setter takes
    /// the adapter mutably; a session only attaches it to its context).
    adapter: Option<RefCell<LlamaLoraAdapter>>,
    grammar: Option<String>,
    template: Template,
}

impl Student {
    /// Loads `model` (and `adapter`), checking both with our own reader first. `schema` is the
    /// task's output JSON schema; without one, output is unconstrained text.
    pub fn load(
        model: &Path,
        adapter: Option<&Path>,
        schema: Option<&serde_json::Value>,
    ) -> Result<Student> {
        Student::load_from(Gguf::Path(model), adapter.map(Gguf::Path), schema)
    }

    /// [`Student::load`] from GGUFs where they lie: files, or entries of a verified artifact
    /// read in place ([`super::in_place`]).
    pub fn load_from(
        model: Gguf<'_>,
        adapter: Option<Gguf<'_>>,
        schema: Option<&serde_json::Value>,
    ) -> Result<Student> {
        let backend = backend()?;
        let header = read_checked(model, "model")?;
        if header.get("general.type").and_then(|v| v.as_str()) == Some("adapter") {
            return Err(Error::invalid(
                format!("{} is a LoRA adapter, not a model", model.label()),
                "pass the base model's GGUF",
            ));
        }
        let mut identity = false;
        if let Some(a) = adapter {
            let lh = read_checked(a, "adapter")?;
            crate::gguf::adapter::fits(&header, &lh).map_err(|why| {
                Error::invalid(
                    format!("the adapter {} does not fit the model: {why}", a.label()),
                    "use the adapter that was trained for this base",
                )
            })?;
            // A zero-init adapter (every B = 0) is exactly the identity: applying it would
            // only add work to every forward pass.
            identity = a.is_identity(&lh)?;
        }
        let adapter = adapter.filter(|_| !identity);
        let grammar = schema.map(schema_grammar).transpose()?;
        let mut loaded = match model {
            Gguf::Path(p) => {
                path_str(p)?;
                LlamaModel::load_from_file(backend, p, &LlamaModelParams::default()).map_err(|e| {
                    Error::invalid_because(
 format!("llama.cpp could not load `{}`", p.display()),
 e,

                        "the file passed kolm's GGUF checks but llama.cpp refused it: check that its architecture is one llama.cpp supports",
                    )
                })?
            }
            Gguf::Entry { file, span, label } => {
                let mmap = super::in_place::mappable(span, header.data_offset);
                super::in_place::load_model(file, span, mmap, label)?
            }
        };
        let adapter = match adapter {
            None => None,
            Some(Gguf::Path(a)) => {
                path_str(a)?;
                Some(RefCell::new(loaded.lora_adapter_init(a).map_err(|e| {
                    Error::invalid_because(
 format!("llama.cpp could not load the adapter `{}`", a.display()),
 e,

                        "the adapter must be a GGUF LoRA adapter for this base (general.type = adapter)",
                    )
                })?))
            }
            Some(Gguf::Entry { file, span, label }) => Some(RefCell::new(
                super::in_place::load_adapter(&mut loaded, file, span, label)?,
            )),
        };
        let template = Template::of(&loaded);
        Ok(Student {
            model: loaded,
            adapter,
            grammar,
            template,
        })
    }

    /// Only the vocabulary and chat template of `model` (no weights): what training needs to
    /// render and tokenise prompts exactly as the runtime does.
    pub fn load_vocab(model: &Path) -> Result<Student> {
        let backend = backend()?;
        read_checked(Gguf::Path(model), "model")?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        let loaded = LlamaModel::load_from_file(backend, model, &params).map_err(|e| {
            Error::invalid_because(
                format!(
                    "llama.cpp could not load the vocabulary of `{}`",
                    model.display()
                ),
                e,
                "check the base model",
            )
        })?;
        let template = Template::of(&loaded);
        Ok(Student {
            model: loaded,
            adapter: None,
            grammar: None,
            template,
        })
    }

    /// The end-of-generation token a trained answer ends with.
    pub fn eos(&self) -> LlamaToken {
        self.model.vocab().eos()
    }

    /// Tokenises generated text (no special tokens parsed, no BOS).
    pub fn tokenize_plain(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), false, false)
    }

    /// The text of generated tokens (the inverse of [`Student::tokenize_plain`]).
    pub fn detokenize(&self, tokens: &[LlamaToken]) -> String {
        let mut bytes = Vec::new();
        for t in tokens {
            self.model
                .vocab()
                .token_to_piece_into(*t, &mut bytes, false, None);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The model's trained context length.
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// The prompt for (system, input), as a session would render it.
    pub fn render(&self, system: &str, input: &str) -> Result<String> {
        self.template.render(&self.model, system, input)
    }

    /// Tokenises text as the runtime does (special tokens parsed, no BOS unless the vocab asks).
    pub fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        vocab.tokenize(text.as_bytes(), vocab.should_add_bos(), true)
    }

    /// Opens a decoding session (a context with its KV cache); reuse it for many inputs.
    pub fn session(&self, opts: &GenOptions) -> Result<Session<'_>> {
        let backend = backend()?;
        let (n_ctx, params) = context_params(&self.model, opts);
        let Student {
            model,
            adapter,
            grammar,
            template,
        } = self;
        let mut ctx = model.new_context(backend, params).map_err(|e| {
            Error::failed_with(
                format!("llama.cpp could not create a context of {n_ctx} tokens"),
                e,
                "a smaller --ctx needs less memory",
            )
        })?;
        if let Some(a) = adapter {
            ctx.lora_adapter_set(&mut a.borrow_mut(), 1.0)
                .map_err(|e| Error::failed("llama.cpp could not apply the adapter", e))?;
        }
        Ok(Session::new(
            model,
            ctx,
            grammar.as_deref(),
            template,
            opts.clone(),
            n_ctx,
        ))
    }
}

/// The size and parameters of the llama.cpp context a session of `model` decodes in:
/// `opts.n_ctx` tokens (0: the model's trained context, within 256..=8192), a whole prompt in
/// one batch, `opts.threads` for both decoding and prefill, no flash attention and an f32 KV
/// cache (runtime.md §7). On the CPU, llama.cpp's flash attention splits a one-token pass over
/// 512 or more cached tokens into one chunk per thread and adds the chunks up, so its output
/// depends on the thread count; the plain attention computes each row in one thread, so an
/// answer is the same on 2 cores and 64. With an f16 cache the plain path rounds the attention
/// weights to f16 (1.6e-3 of the logit range from candle's f32 forward pass on the real
/// student, against 6.4e-4 with flash attention); with f32 it is 2.1e-6 (tests/train.rs), for
/// twice the cache's memory, small beside the weights at the contexts kolm sizes. Public so
/// that a benchmark timing passes by hand times them in the context a session would use.
pub fn context_params(model: &LlamaModel, opts: &GenOptions) -> (u32, LlamaContextParams) {
    let n_ctx = if opts.n_ctx == 0 {
        model.n_ctx_train().clamp(256, 8192)
    } else {
        opts.n_ctx
    };
    let threads = opts.threads.max(1) as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(512.min(n_ctx))
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
        .with_type_k(llama_cpp_2::context::params::KvCacheType::F32)
        .with_type_v(llama_cpp_2::context::params::KvCacheType::F32);
    (n_ctx, params)
}

/// Where a GGUF lies: a file of its own, or an entry of a verified artifact, read in place
/// through the artifact's open handle.
#[derive(Clone, Copy)]
pub enum Gguf<'a> {
    Path(&'a Path),
    Entry {
        file: &'a std::fs::File,
        span: super::in_place::Span,
        /// How errors name it, e.g. "model.gguf of `triage.kolm`".
        label: &'a str,
    },
}

impl Gguf<'_> {
    fn label(&self) -> String {
        match self {
            Gguf::Path(p) => format!("`{}`", p.display()),
            Gguf::Entry { label, .. } => label.to_string(),
        }
    }

    /// Whether the adapter with header `h` is the identity (every `lora_b` zero).
    fn is_identity(&self, h: &crate::gguf::Header) -> Result<bool> {
        match *self {
            Gguf::Path(p) => crate::gguf::adapter::is_identity(p, h)
                .map_err(|e| Error::io(p, "read the adapter", e)),
            Gguf::Entry { file, span, label } => crate::gguf::adapter::is_identity_in(
                &mut super::in_place::Window::new(file, span),
                h,
            )
            .map_err(|e| {
                Error::failed(format!("could not read the adapter {label}"), e.to_string())
            }),
        }
    }
}

/// llama.cpp takes paths as C strings: a path that is not UTF-8 is refused with a clear error.
fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| {
        Error::invalid(
            format!("`{}` is not a UTF-8 path", p.display()),
            "llama.cpp needs a UTF-8 path; move or rename the file",
        )
    })
}

/// Reads and checks a GGUF header and its extent, so llama.cpp only ever sees a sound file.
fn read_checked(g: Gguf<'_>, what: &str) -> Result<crate::gguf::Header> {
    let path = match g {
        Gguf::Path(p) => p,
        Gguf::Entry { file, span, label } => {
            let mut w = std::io::BufReader::with_capacity(
                1 << 16,
                super::in_place::Window::new(file, span),
            );
            let h = crate::gguf::read_header_from(&mut w)
                .and_then(|h| crate::gguf::check_extent(&h, span.len).map(|_| h));
            return h.map_err(|e| {
                Error::invalid_because(
 format!("the {what} {label} is damaged"),
 e,

                    "the artifact passed verification, so this is a bug in its writer: please report it",
                )
            });
        }
    };
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, "open", e))?;
    let h = crate::gguf::read_header(path).map_err(|e| {
        Error::invalid_because(
            format!("the {what} `{}` is not a valid GGUF file", path.display()),
            e,
            "the file is damaged or not a GGUF model: fetch or build it again",
        )
    })?;
    crate::gguf::check_extent(&h, md.len()).map_err(|e| {
        Error::invalid_because(
            format!("the {what} `{}` is damaged", path.display()),
            e,
            "the file is truncated or corrupt: fetch or build it again",
        )
    })?;
    Ok(h)
}
