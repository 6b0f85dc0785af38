//! kolm: a compiler and build system for private AI.
//!
//! A `Kolmfile.toml` describes tasks; kolm turns each into one signed, self-evaluating file,
//! `<task>.kolm`. Data flows one way (the Kolmfile becomes a graph, the graph runs stages, the
//! stages seal an artifact, the runtime runs it), and so do the imports.
//!
//! # Crates and layers
//!
//! The crates are the layers: a crate depends only on the crates below it, so a wrong-way
//! import does not compile. Inside a crate, a module imports only its own layer and the
//! layers below it, and no two modules import each other, directly or around a cycle
//! (`tests/layers.rs` enforces both, and fails on a module missing from its table):
//!
//! | crate | layers inside it (lowest first) | what it is |
//! |---|---|---|
//! | `kolm` (this one) | surfaces: `cli`, `process` | the `kolm` and `kolmbuild` commands |
//! | `kolm-serve` | `serve` | MCP and the OpenAI-compatible HTTP API; on the runtime alone |
//! | `kolm-compiler` | `download`, `cache` · `kolmfile` · `teacher` · `label`, `train`, `propose`, `tune` · `stages` · `graph`, `executor`, `explain`, `inputs`, `watch` | compiling a Kolmfile: the description, the teacher wire, the build engines, one module per stage, the graph |
//! | `kolm-runtime` | `recipes`, `evals`, `versions` · `artifact`, `recall`, `tune_state` · `runtime`, `rag`, `receipts` | the product at run time: the container (it knows no inference engine), the index, llama.cpp, recipes, receipts |
//! | `kolm-kernels` | `kernels` | training kernels on candle (and the embedder's GELU) |
//! | `kolm-core` | `error`, `diagnostic`, `digest`, `dates`, `fsutil`, `interrupt`, `jsonl`, `rng`, `progress`, `home`, `untrusted` · `gguf`, `kscore` | what every crate shares |
//!
//! Each crate re-exports the modules of the crates below it at its root, so a module's paths
//! read the same (`crate::digest`) whichever crate it sits in, and this crate re-exports them
//! all: `kolm::executor`, `kolm::runtime`, `kolm::artifact`. Code two layers share lives below
//! both (the K measurement that the score stage and `kolm verify --rescore` share is
//! [`runtime::measure`]; the llama.cpp version the container records is [`versions`]).
//!
//! An application that only runs artifacts depends on `kolm-runtime` alone (its docs have an
//! example; examples/cargo-buildrs is one): no build, teacher, graph or training code, no
//! candle unless it asks for dense retrieval (`kolm-runtime`'s `embed` feature).

pub use kolm_compiler::*;
pub use kolm_serve::serve;

pub mod cli;
pub mod process;
