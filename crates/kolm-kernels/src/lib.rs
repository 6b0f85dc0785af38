//! kolm's training kernels on candle (attention, norms, RoPE, SwiGLU, LoRA linear layers, the
//! loss): what training runs, and what the sentence embedder borrows (GELU). A crate of its own
//! so that an application that only runs artifacts compiles no candle unless it asks for dense
//! retrieval (`kolm-runtime`'s `embed` feature).
//!
//! Every module of `kolm-core` is re-exported at this crate's root, so a path reads the same
//! (`crate::rng`) in every crate above the one that defines it.

pub use kolm_core::*;

pub mod kernels;
