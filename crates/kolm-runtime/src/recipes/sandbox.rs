//! The sandbox recipes and `javascript` assertions run in: QuickJS-NG (rquickjs), with no I/O,
//! no nondeterminism and hard limits.
//!
//! Every call gets a fresh context, so nothing one call leaves behind (a global, a patched
//! prototype) reaches the next; the runtime under it is reused and garbage-collected after each
//! call, so every call starts from the same heap and a limit is hit (or not) the same way
//! whatever ran before. What a context has, and why:
//!
//! | present | absent |
//! | --- | --- |
//! | base objects, `JSON`, `RegExp`, `Map`/`Set`, `eval` of source | `Date`, `Math.random`, `performance` (nondeterministic) |
//! | `lib.rag.query(q, k)` when an index is attached | modules, `std`/`os`, timers, promises, `WeakRef` (I/O, scheduling, GC timing) |
//! | | a bytecode loader (QuickJS bytecode is not verified: loading it is memory-unsafe) |
//!
//! The limits, and what enforces each:
//! - **time**: an interrupt handler polled by the interpreter (and by the regexp engine) stops
//!   the call at its deadline. A long native builtin (a huge `Array.prototype.join`) does not
//!   poll it, so the elapsed time is checked again when the call returns: a call that overran
//!   is a time fault whatever it returned. The memory limit bounds how long a builtin can run.
//! - **memory**: QuickJS's own allocator accounting (`JS_SetMemoryLimit`); rquickjs's
//!   `rust-alloc` feature would turn it into a no-op, so it is not enabled.
//! - **stack**: `JS_SetMaxStackSize`, measured from where the call enters the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rquickjs::context::intrinsic;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Runtime, Value};

/// Limits of one call (`[decompose] time_limit_ms`, `memory_limit_mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub time_ms: u32,
    pub memory_mb: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time_ms: 50,
            memory_mb: 16,
        }
    }
}

/// Why a call produced no value. The process is unharmed by every one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("does not load: {0}")]
    Load(String),
    #[error("defines no function `{0}`")]
    Missing(String),
    #[error("ran past its time limit of {limit_ms} ms ({ran_ms} ms)")]
    Time { limit_ms: u32, ran_ms: u64 },
    #[error("ran out of its memory limit of {limit_mb} MiB")]
    Memory { limit_mb: u32 },
    #[error("recursed past the stack limit")]
    Stack,
    #[error("attempted I/O (`{0}`): a recipe has none")]
    Io(String),
    #[error("threw: {0}")]
    Threw(String),
    #[error("returned {0}, which JSON cannot represent")]
    NotJson(String),
}

impl Fault {
    /// A short stable name for reports (`time`, `memory`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Load(_) => "load",
            Fault::Missing(_) => "missing",
            Fault::Time { .. } => "time",
            Fault::Memory { .. } => "memory",
            Fault::Stack => "stack",
            Fault::Io(_) => "io",
            Fault::Threw(_) => "threw",
            Fault::NotJson(_) => "not_json",
        }
    }
}

/// `lib.rag.query(q, k)`: the hits for a query, as JSON, or why there are none.
pub type RagQuery = Arc<dyn Fn(&str, usize) -> Result<serde_json::Value, String> + Send + Sync>;

/// Names whose use is an attempt at I/O (or at scheduling, which needs an event loop that is
/// not there). A reference to one fails as "not defined"; it is reported as I/O.
const IO_NAMES: [&str; 12] = [
    "fetch",
    "require",
    "XMLHttpRequest",
    "WebSocket",
    "importScripts",
    "process",
    "std",
    "os",
    "Deno",
    "setTimeout",
    "setInterval",
    "queueMicrotask",
];

/// The stack a call may use, bytes.
const STACK_BYTES: usize = 512 << 10;

/// The intrinsics a context gets (see the table above).
type Intrinsics = (
    intrinsic::Eval,
    intrinsic::RegExpCompiler,
    intrinsic::RegExp,
    intrinsic::Json,
    intrinsic::MapSet,
);

/// A QuickJS runtime with kolm's limits; one per thread that runs recipes.
pub struct Sandbox {
    rt: Runtime,
    limits: Limits,
    /// A fresh context made ahead of the next call ([`Sandbox::prepare`]).
    spare: std::cell::RefCell<Option<Context>>,
    /// The last call's context, freed (and its garbage collected) before the next context is
    /// made: off the call's path when the caller prepares.
    used: std::cell::RefCell<Option<Context>>,
    /// Microseconds since `epoch` at which the running call is interrupted.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

impl Sandbox {
    pub fn new(limits: Limits) -> Result<Sandbox, Fault> {
        let rt = Runtime::new().map_err(|e| Fault::Load(format!("QuickJS did not start: {e}")))?;
        rt.set_memory_limit((limits.memory_mb as usize) << 20);
        rt.set_max_stack_size(STACK_BYTES);
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let epoch = Instant::now();
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || {
            epoch.elapsed().as_micros() as u64 >= d.load(Ordering::Relaxed)
        })));
        Ok(Sandbox {
            rt,
            limits,
            spare: std::cell::RefCell::new(None),
            used: std::cell::RefCell::new(None),
            deadline,
            epoch,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Loads `source` into a fresh context and calls its global function `entry` with `args`
    /// (and, for recipes, a `lib` object last). Returns the JSON of what it returned (`null`
    /// stays `Null`); `undefined`, a function, a `BigInt` or a cycle is [`Fault::NotJson`].
    pub fn call(
        &self,
        source: &str,
        entry: &str,
        args: &[&serde_json::Value],
        lib: Option<Option<&RagQuery>>,
    ) -> Result<serde_json::Value, Fault> {
        let started = self.epoch.elapsed().as_micros() as u64;
        let limit_us = self.limits.time_ms as u64 * 1000;
        self.deadline
            .store(started.saturating_add(limit_us), Ordering::Relaxed);
        let spare = self.spare.borrow_mut().take();
        let result = spare.map_or_else(|| self.fresh(), Ok).and_then(|cx| {
            let r = cx.with(|ctx| self.run(&ctx, source, entry, args, lib));
            *self.used.borrow_mut() = Some(cx);
            r
        });
        self.deadline.store(u64::MAX, Ordering::Relaxed);
        let ran = self.epoch.elapsed().as_micros() as u64 - started;
        if ran > limit_us {
            return Err(Fault::Time {
                limit_ms: self.limits.time_ms,
                ran_ms: ran / 1000,
            });
        }
        result
    }

    /// Makes the next call's context now, so that a caller with idle time (a server between
    /// requests, the score stage between tests) takes QuickJS's context set-up (most of a small
    /// recipe's call) off the next call's path. The context is as fresh as one made in the call.
    pub fn prepare(&self) {
        let mut spare = self.spare.borrow_mut();
        if spare.is_none() {
            *spare = self.fresh().ok();
        }
    }

    /// A new context with the sandbox's intrinsics, `Math.random` removed, on a heap from
    /// which every earlier call's garbage is collected: each call starts from the same heap.
    fn fresh(&self) -> Result<Context, Fault> {
        if let Some(used) = self.used.borrow_mut().take() {
            drop(used);
            self.rt.run_gc();
        }
        let memory = || Fault::Memory {
            limit_mb: self.limits.memory_mb,
        };
        let cx = Context::custom::<Intrinsics>(&self.rt).map_err(|_| memory())?;
        cx.with(|ctx| {
            let math: Object = ctx.globals().get("Math")?;
            math.remove("random")
        })
        .map_err(|_| memory())?;
        Ok(cx)
    }

    fn run<'js>(
        &self,
        ctx: &Ctx<'js>,
        source: &str,
        entry: &str,
        args: &[&serde_json::Value],
        lib: Option<Option<&RagQuery>>,
    ) -> Result<serde_json::Value, Fault> {
        let g = ctx.globals();
        ctx.eval::<(), _>(source)
            .catch(ctx)
            .map_err(|e| match self.caught(e) {
                Fault::Threw(m) => Fault::Load(m),
                f => f,
            })?;
        let f: Value = g.get(entry).map_err(|e| self.fault(ctx, e))?;
        let Some(f) = f.into_function() else {
            return Err(Fault::Missing(entry.into()));
        };
        let mut values = rquickjs::function::Args::new(ctx.clone(), args.len() + 1);
        for a in args {
            let v = ctx
                .json_parse(a.to_string())
                .catch(ctx)
                .map_err(|e| self.caught(e))?;
            values.push_arg(v).map_err(|e| self.fault(ctx, e))?;
        }
        if let Some(rag) = lib {
            values
                .push_arg(self.lib(ctx, rag).map_err(|e| self.fault(ctx, e))?)
                .map_err(|e| self.fault(ctx, e))?;
        }
        let out: Value = f.call_arg(values).catch(ctx).map_err(|e| self.caught(e))?;
        let described = describe(&out);
        let text = ctx
            .json_stringify(out)
            .catch(ctx)
            .map_err(|e| match self.caught(e) {
                Fault::Threw(m) => Fault::NotJson(format!("{described} ({m})")),
                f => f,
            })?;
        let Some(text) = text else {
            return Err(Fault::NotJson(described));
        };
        let text = text.to_string().map_err(|e| self.fault(ctx, e))?;
        serde_json::from_str(&text).map_err(|e| Fault::NotJson(format!("{described} ({e})")))
    }

    /// The `lib` argument: `{rag: {query}}`, or `{rag: null}` without an index.
    fn lib<'js>(&self, ctx: &Ctx<'js>, rag: Option<&RagQuery>) -> rquickjs::Result<Object<'js>> {
        let lib = Object::new(ctx.clone())?;
        match rag {
            None => lib.set("rag", Value::new_null(ctx.clone()))?,
            Some(q) => {
                let q = q.clone();
                let query = Function::new(
                    ctx.clone(),
                    move |ctx: Ctx<'js>, text: String, k: rquickjs::function::Opt<u32>| {
                        let k = k.0.unwrap_or(5).clamp(1, 100) as usize;
                        match q(&text, k) {
                            Ok(v) => ctx.json_parse(v.to_string()),
                            Err(e) => Err(rquickjs::Exception::throw_message(
                                &ctx,
                                &format!("lib.rag.query failed: {e}"),
                            )),
                        }
                    },
                )?;
                let rag = Object::new(ctx.clone())?;
                rag.set("query", query)?;
                lib.set("rag", rag)?;
            }
        }
        Ok(lib)
    }

    fn fault(&self, ctx: &Ctx<'_>, e: rquickjs::Error) -> Fault {
        self.caught(CaughtError::from_error(ctx, e))
    }

    /// What a JavaScript exception (or an engine error) means for the caller.
    fn caught(&self, e: CaughtError<'_>) -> Fault {
        let (name, message) = match &e {
            CaughtError::Exception(x) => {
                let name: Option<String> = x.get::<_, Option<String>>("name").ok().flatten();
                (name.unwrap_or_default(), x.message().unwrap_or_default())
            }
            CaughtError::Value(v) => (String::new(), describe(v)),
            CaughtError::Error(rquickjs::Error::Allocation) => {
                return Fault::Memory {
                    limit_mb: self.limits.memory_mb,
                }
            }
            CaughtError::Error(e) => (String::new(), e.to_string()),
        };
        let now = self.epoch.elapsed().as_micros() as u64;
        if message == "interrupted" && now >= self.deadline.load(Ordering::Relaxed) {
            return Fault::Time {
                limit_ms: self.limits.time_ms,
                ran_ms: self.limits.time_ms as u64,
            };
        }
        if message == "out of memory" || message == "string too long" {
            return Fault::Memory {
                limit_mb: self.limits.memory_mb,
            };
        }
        if message.starts_with("Maximum call stack size exceeded") || message == "stack overflow" {
            return Fault::Stack;
        }
        if name == "ReferenceError" {
            if let Some(n) = message.strip_suffix(" is not defined") {
                let n = n.trim_matches('\'');
                if IO_NAMES.contains(&n) {
                    return Fault::Io(n.into());
                }
            }
        }
        let shown = if name.is_empty() {
            message
        } else {
            format!("{name}: {message}")
        };
        Fault::Threw(crate::untrusted::shown(&shown))
    }
}

/// A short description of a JavaScript value, for messages.
fn describe(v: &Value<'_>) -> String {
    use rquickjs::Type;
    match v.type_of() {
        Type::Undefined | Type::Uninitialized => "undefined".into(),
        Type::Function | Type::Constructor => "a function".into(),
        Type::BigInt => "a BigInt".into(),
        Type::Symbol => "a symbol".into(),
        Type::Array => "an array".into(),
        Type::Object => "an object".into(),
        Type::String => "a string".into(),
        Type::Null => "null".into(),
        Type::Bool => "a boolean".into(),
        Type::Int | Type::Float => "a number".into(),
        t => format!("a {t:?}"),
    }
}
