//! Compiling a `Kolmfile.toml` into `.kolm` artifacts: the Kolmfile, the build graph and its
//! executor, one module per stage (base, recall, label, train, decompose, baseline, score,
//! seal), the caches (local and remote), the teacher, training, and tune. It drives the
//! runtime (`kolm-runtime`) to measure and label; the runtime never imports it.
//!
//! Layers inside the crate (lowest first; `tests/layers.rs` checks them): what the build
//! shares (`download`, `cache`), the description (`kolmfile`), the teacher wire (`teacher`),
//! the build engines (`label`, `train`, `propose`, `tune`), the stages (`stages`), then the
//! graph (`graph`, `executor`, `explain`, `inputs`, `watch`).
//!
//! Every module of `kolm-runtime` and `kolm-kernels` is re-exported at this crate's root, so
//! a path reads the same (`crate::artifact`) in every crate above the one that defines it.

pub use kolm_runtime::*;

pub mod cache;
pub mod download;
pub mod executor;
pub mod explain;
pub mod graph;
pub mod inputs;
pub mod kolmfile;
pub mod label;
pub mod propose;
pub mod stages;
pub mod teacher;
pub mod train;
pub mod tune;
pub mod watch;

pub use kolmfile::Kolmfile;
