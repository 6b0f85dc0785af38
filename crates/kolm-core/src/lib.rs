//! kolm's foundation: what every other crate shares, and nothing that knows of artifacts,
//! builds or serving. Errors and the diagnostics that point into a user's file, digests
//! (sha256, BLAKE3, canonical JSON), dates, atomic files, interruption, JSON Lines, the seeded
//! random stream, progress, `KOLM_HOME`, untrusted text, the GGUF format, and the K-score.
//!
//! Layers inside the crate (lowest first; `tests/layers.rs` checks them): the foundation
//! (`error`, `diagnostic`, `digest`, `dates`, `fsutil`, `interrupt`, `jsonl`, `rng`,
//! `progress`, `home`, `untrusted`), then the formats and measures (`gguf`, `kscore`).
//!
//! Feature `kquant`: writing k-quant tensors (tiny test models) with candle's quantiser.

pub mod dates;
pub mod diagnostic;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod gguf;
pub mod home;
pub mod interrupt;
pub mod jsonl;
pub mod kscore;
pub mod progress;
pub mod rng;
pub mod untrusted;

pub use error::{Error, Result};
