//! Recipes (kolmfile-spec/recipes.md): small deterministic programs that answer part of a task
//! exactly, and the drafts the model verifies for the rest.
//!
//! - [`sandbox`]: QuickJS with no I/O, no nondeterminism, and time, memory and stack limits;
//!   recipes and `javascript` assertions both run in it.
//! - [`pack`]: `recipes.json`, the RS-1 recipes with what was measured of each.
//! - [`drafts`]: the skeleton, enums and continuation table, and the lookup that drafts from
//!   them.
//! - [`neighbours`]: the labelled inputs' terms, and the ranking that drafts, for one input,
//!   the outputs of the inputs most like it.
//!
//! This sits with the formats, below the runtime that runs recipes and the stage that builds
//! the pack.

pub mod drafts;
pub mod neighbours;
pub mod pack;
pub mod sandbox;
pub mod verify;

#[cfg(test)]
mod tests;

pub use drafts::{Drafter, Drafts};
pub use pack::{Pack, Recipe};
pub use sandbox::{Fault, Limits, RagQuery, Sandbox};
