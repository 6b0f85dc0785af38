//! The defaults more than one place uses, each said once: the ship gates, and how a LoRA
//! adapter is trained when nothing says otherwise (the train stage, from the Kolmfile's
//! `[distill]`, and `kolm tune step`, which has no Kolmfile).
//!
//! There are three gates, and they differ on purpose:
//!
//! | gate | value | where | why |
//! |---|---|---|---|
//! | [`MIN_K`] | 0.70 | a build, when `[gate] min_k` is not set | the product's ship gate (seed 003): an artifact below it is not sealed |
//! | [`INIT_MIN_K`] | 0.0 | the `kolm init` template | a starter's tiny untrained student scores far below 0.70; the first build must seal so the new user sees the whole pipeline, and the comment says to raise it |
//! | [`PROMOTE_MIN_K`] | 0.85 | `kolm tune promote` and the daemon, without `--gate` | promotion replaces what is already serving: it asks more than a first ship |

/// A build's ship gate when the Kolmfile sets none.
pub const MIN_K: f64 = 0.70;
/// The gate `kolm init` writes.
pub const INIT_MIN_K: f64 = 0.0;
/// `kolm tune promote`'s gate when none is given.
pub const PROMOTE_MIN_K: f64 = 0.85;

/// `[distill]` when a key is not set, and `kolm tune step`'s training options.
pub mod distill {
    pub const RANK: u32 = 8;
    pub const ALPHA: f64 = 16.0;
    pub const TARGETS: [&str; 4] = ["attn_q", "attn_k", "attn_v", "attn_output"];
    /// A build's epochs. A tune step trains one epoch on HEAD (tune.md §3): it continues an
    /// adapter already trained, on captures that grow between steps.
    pub const EPOCHS: u32 = 3;
    pub const STEP_EPOCHS: u32 = 1;
    pub const LEARNING_RATE: f64 = 1e-3;
    pub const BATCH_SIZE: u32 = 8;
    pub const MAX_SEQ_LEN: u32 = 512;
    pub const SEED: i64 = 0;
    /// The adapter is the same for any count (training.md); two is what a laptop spares.
    pub const THREADS: u32 = 2;
}
