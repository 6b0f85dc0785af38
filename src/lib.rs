//! kolm: a compiler and build system for private AI.
//!
//! A `Kolmfile.toml` describes tasks; kolm turns each into one signed, self-evaluating file,
//! `<task>.kolm`. Data flows one way (the Kolmfile becomes a graph, the graph runs stages, the
//! stages seal an artifact, the runtime runs it), and so do the imports.
//!
//! # Layers
//!
//! A module imports only its own layer and the layers below it, and no two modules import each
//! other, directly or around a cycle (`tests/layers.rs` enforces both, with no exceptions, and
//! fails on a module missing from this table):
//!
//! | layer | modules | what it is |
//! |---|---|---|
//! | surfaces | `cli`, `serve` | the `kolm` and `kolmbuild` commands; serving artifacts to agents and apps |
//! | the graph | `graph`, `executor`, `explain`, `inputs`, `watch` | the build graph, running it, saying why, what it reads, rebuilding on a change |
//! | stages | `stages` | one module per stage: base, recall, label, train, decompose, baseline, score, seal |
//! | build engines | `label`, `train`, `propose`, `tune` | what the build drives the runtime and the teacher with; the evolve loop that trains beside an artifact |
//! | the runtime | `runtime`, `rag`, `receipts` | the product at run time; the build uses it, never the reverse |
//! | containers and engines | `artifact`, `recall`, `teacher` | the `.kolm` container (it knows no inference engine), the index, the teacher wire |
//! | the description | `kolmfile` | the checked configuration everything above reads |
//! | formats and measures | `gguf`, `cache`, `kscore`, `evals`, `kernels`, `recipes` | file formats, the cache, K, assertions, training kernels, the recipe pack and its sandbox |
//! | foundation | `error`, `diagnostic`, `digest`, `dates`, `fsutil`, `interrupt`, `jsonl`, `rng`, `process`, `progress`, `home`, `versions`, `untrusted`, `download` | what every layer shares |
//!
//! Code two layers share lives below both (the K measurement that the score stage and
//! `kolm verify --rescore` share is [`runtime::measure`]; the llama.cpp version the container
//! records is [`versions`]).
//!
//! The library is the whole product: the `kolm` and `kolmbuild` binaries are thin wrappers
//! over `cli`, and an application can do everything the CLI can with `Kolmfile`,
//! `executor::build` and [`artifact`].
//!
//! # Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | (none) | opening, verifying and running artifacts: `runtime`, `artifact`, `recall`, `rag`, `recipes`, `receipts`, `evals`, `kscore` | always |
//! | `build` | compiling them: `kolmfile`, `graph`, `executor`, `stages`, `train`, `teacher`, `label`, `propose`, `cache` (local and remote), `tune`, `inputs`, `watch` | yes |
//! | `serve` | `serve`: MCP and the OpenAI-compatible HTTP API | yes |
//! | `cli` | `cli` and `process`: the `kolm` and `kolmbuild` binaries (implies both above) | yes |
//!
//! An application that only runs artifacts depends on `kolm = { default-features = false }`
//! (examples/cargo-buildrs).

pub mod artifact;
#[cfg(feature = "build")]
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
pub mod dates;
pub mod diagnostic;
pub mod digest;
#[cfg(feature = "build")]
pub mod download;
pub mod error;
pub mod evals;
#[cfg(feature = "build")]
pub mod executor;
#[cfg(feature = "build")]
pub mod explain;
pub mod fsutil;
pub mod gguf;
#[cfg(feature = "build")]
pub mod graph;
pub mod home;
#[cfg(feature = "build")]
pub mod inputs;
pub mod interrupt;
pub mod jsonl;
pub mod kernels;
#[cfg(feature = "build")]
pub mod kolmfile;
pub mod kscore;
#[cfg(feature = "build")]
pub mod label;
#[cfg(feature = "cli")]
pub mod process;
pub mod progress;
#[cfg(feature = "build")]
pub mod propose;
pub mod rag;
pub mod recall;
pub mod receipts;
pub mod recipes;
pub mod rng;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "build")]
pub mod stages;
#[cfg(feature = "build")]
pub mod teacher;
#[cfg(feature = "build")]
pub mod train;
#[cfg(feature = "build")]
pub mod tune;
pub mod untrusted;
pub mod versions;
#[cfg(feature = "build")]
pub mod watch;

pub use error::{Error, Result};
#[cfg(feature = "build")]
pub use kolmfile::Kolmfile;
