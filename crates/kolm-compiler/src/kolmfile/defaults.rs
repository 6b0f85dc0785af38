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

/// `[distill]`'s defaults that are not numbers with a range (those are declared with their
/// key in `raw.rs`, and [`distill::of`] reads them), and `kolm tune step`'s one difference.
pub mod distill {
    pub const TARGETS: [&str; 4] = ["attn_q", "attn_k", "attn_v", "attn_output"];
    pub const SEED: i64 = 0;
    /// A tune step trains one epoch on HEAD (tune.md §3): it continues an adapter already
    /// trained, on captures that grow between steps.
    pub const STEP_EPOCHS: u32 = 1;

    /// The declared default of the `[distill]` key `key` (`max_seq_len`, `threads`, …): what a
    /// build trains with when the Kolmfile does not say, and what `kolm tune step` trains with.
    pub fn of(key: &str) -> f64 {
        super::super::raw::RawDistill::bounds(key).default
    }
}
