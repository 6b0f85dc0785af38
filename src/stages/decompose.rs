//! The `decompose` stage: the recipe pack (`recipes.json`), RS-1 recipes and drafts.
//!
//! With decompose off the pack is empty but well-formed. Proposing and verifying recipes in the
//! QuickJS sandbox comes with the decompose issue.

use super::{unavailable, BuildOptions, Cx, DecomposeOut, Inputs, Stage, StageKind, StageOutput};
use crate::kolmfile::TaskConfig;
use crate::Result;

pub struct DecomposeStage;

/// The registry version recipes are drawn from.
pub const REGISTRY: &str = "rs-1@2026-05-06";

impl Stage for DecomposeStage {
    fn kind(&self) -> StageKind {
        StageKind::Decompose
    }
    fn version(&self) -> u32 {
        1
    }
    fn config(&self, task: &TaskConfig, _: &BuildOptions) -> serde_json::Value {
        serde_json::to_value(&task.decompose).expect("serialises")
    }
    fn run(&self, cx: &Cx, _: &Inputs) -> Result<StageOutput> {
        if cx.task.decompose.enabled {
            return Err(unavailable(
                StageKind::Decompose,
                cx.task,
                "recipe extraction (QuickJS sandbox, drafts) is not built yet",
                "set `[decompose] enabled = false` to build with an empty recipe pack",
            ));
        }
        let pack = serde_json::json!({ "spec": "rs-1-recipes", "registry": REGISTRY, "recipes": [], "drafts": [] });
        let recipes = cx.store.put_blob(&crate::digest::canonical_json(&pack))?;
        Ok(StageOutput::Decompose(DecomposeOut {
            recipes,
            recipe_count: 0,
            draft_count: 0,
            registry: REGISTRY.into(),
        }))
    }
}
