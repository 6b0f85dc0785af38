//! kolm: a compiler and build system for private AI.
//!
//! A `Kolmfile.toml` describes tasks; kolm turns each into one signed, self-evaluating file,
//! `<task>.kolm`. Data flows one way, and so do the modules:
//!
//! ```text
//! kolmfile ─► graph ─► executor ─► stages::{base, recall, label, train, decompose, score, seal} ─► artifact
//!                         │                                                                        │
//!                       cache (action cache, blobs, fingerprints, lock)                     verify / inspect
//! ```
//!
//! The library is the whole product: the `kolm` and `kolmbuild` binaries are thin wrappers
//! over [`cli`], and a `build.rs` or an application can do everything the CLI can with
//! [`Kolmfile`], [`executor::build`] and [`artifact`].

pub mod artifact;
pub mod cache;
pub mod cli;
pub mod digest;
pub mod download;
pub mod error;
pub mod evals;
pub mod executor;
pub mod explain;
pub mod fsutil;
pub mod gguf;
pub mod graph;
pub mod home;
pub mod interrupt;
pub mod jsonl;
pub mod kernels;
pub mod kolmfile;
pub mod kscore;
pub mod label;
pub mod process;
pub mod progress;
pub mod rag;
pub mod recall;
pub mod receipts;
pub mod rng;
pub mod runtime;
pub mod stages;
pub mod teacher;
pub mod train;

pub use error::{Error, Result};
pub use kolmfile::Kolmfile;
