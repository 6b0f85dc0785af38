//! Open, verify and run `.kolm` artifacts, fully offline: the product at run time. The build
//! (`kolm-compiler`) and the servers (`kolm-serve`) sit above it; it knows neither.
//!
//! An application that runs artifacts depends on this crate alone:
//!
//! ```no_run
//! use kolm_runtime::{GenOptions, Home, Runner, VerifyOptions};
//!
//! fn main() -> kolm_runtime::Result<()> {
//!     let home = Home::from_env();
//!     // Verified when opened (the signature with KOLM_SIGNING_KEY, every entry's digest): a
//!     // tampered file is refused, never run.
//!     let mut runner = Runner::open(
//!         "dist/triage.kolm".as_ref(),
//!         &home,
//!         &VerifyOptions::default(),
//!         GenOptions::default(),
//!         None,
//!     )?;
//!     println!("{}", runner.run("I was billed twice")?.output);
//!     Ok(())
//! }
//! ```
//!
//! Layers inside the crate (lowest first; `tests/layers.rs` checks them): formats and measures
//! (`recipes`, `evals`, `versions`), containers and engines (`artifact`: the container, which
//! knows no inference engine; `recall`: the index; `tune_state`: what `kolm tune` keeps beside
//! an artifact), then the runtime (`runtime`, `rag`, `receipts`).
//!
//! Feature `embed`: dense retrieval, the sentence embedder on candle, for artifacts whose
//! index carries vectors. Without it such an artifact is refused when it is opened, saying so;
//! BM25-only artifacts run either way.
//!
//! Every module of `kolm-core` (and, with `embed`, `kolm-kernels`) is re-exported at this
//! crate's root, so a path reads the same (`crate::digest`) in every crate above the one that
//! defines it.

pub use kolm_core::*;
#[cfg(feature = "embed")]
pub use kolm_kernels::kernels;

pub mod artifact;
pub mod evals;
pub mod rag;
pub mod recall;
pub mod receipts;
pub mod recipes;
pub mod runtime;
pub mod tune_state;
pub mod versions;

pub use artifact::verify::VerifyOptions;
pub use home::Home;
pub use runtime::{GenOptions, Runner};
