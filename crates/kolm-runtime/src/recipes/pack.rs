//! `recipes.json`, the recipe pack (kolmfile-spec/recipes.md): RS-1 recipes with what was
//! measured of each, and the drafts.
//!
//! The pack is written as canonical JSON (sorted keys, no whitespace), and everything in it is
//! in a fixed order, so the same inputs give the same bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::drafts::Drafts;
use super::sandbox::{Fault, Limits, RagQuery, Sandbox};

/// The `spec` of a pack this code reads and writes.
pub const SPEC: &str = "rs-1-recipes";
/// The registry version recipes are drawn from.
pub const REGISTRY: &str = "rs-1@2026-05-06";

/// One RS-1 recipe: `{id, name, version_id, input_schema, output_schema, source}` plus what
/// the decompose stage measured of it on the labelled pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// `sha256:` of the source: the same program is the same recipe wherever it came from.
    pub id: String,
    /// From the file name (`refunds.js` → `refunds`) or the teacher's.
    pub name: String,
    /// `sha256:` of (id, input schema, output schema): one recipe applied to another contract
    /// is another version.
    pub version_id: String,
    pub input_schema: Value,
    pub output_schema: Value,
    /// JavaScript defining `function recipe(input, lib)`.
    pub source: String,
    /// Where it came from: `file:<path>` or `teacher`.
    pub origin: String,
    pub measured: Measured,
    /// Answers runs directly (precision 1.0 on the held-out pairs, with enough of them);
    /// otherwise its outputs are only drafts the model verifies.
    pub exact: bool,
}

/// A recipe's record on the labelled pairs it was not written from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Pairs it ran on.
    pub pairs: u64,
    /// Pairs it answered (did not decline or fail).
    pub answered: u64,
    /// Answers equal to the pair's output.
    pub correct: u64,
    /// Runs that faulted (time, memory, a throw, a schema-invalid answer…), by kind.
    pub faults: std::collections::BTreeMap<String, u64>,
    /// correct / answered (0 when it answered nothing).
    pub precision: f64,
    /// answered / pairs.
    pub coverage: f64,
}

/// The whole pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pack {
    pub spec: String,
    pub registry: String,
    /// The sandbox limits the recipes were verified under, and run under.
    #[serde(default)]
    pub limits: Limits,
    /// Kept recipes, exact ones first, then by name and id.
    pub recipes: Vec<Recipe>,
    pub drafts: Drafts,
}

impl Pack {
    pub fn empty() -> Pack {
        Pack {
            spec: SPEC.into(),
            registry: REGISTRY.into(),
            limits: Limits::default(),
            recipes: Vec::new(),
            drafts: Drafts::default(),
        }
    }

    /// The pack's bytes as sealed.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::digest::canonical_json(self)
    }

    /// Reads a pack, refusing one this code does not understand.
    pub fn parse(bytes: &[u8]) -> Result<Pack, String> {
        if bytes.is_empty() {
            return Ok(Pack::empty());
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("spec").and_then(Value::as_str) {
            Some(SPEC) => {}
            other => {
                return Err(format!(
                    "its spec is {other:?}, and this kolm reads `{SPEC}` packs"
                ))
            }
        }
        // Packs sealed before drafts existed carry `"drafts": []`.
        let v = match v.get("drafts") {
            Some(Value::Array(a)) if a.is_empty() => {
                let mut v = v;
                v["drafts"] = serde_json::to_value(Drafts::default()).expect("serialises");
                v
            }
            _ => v,
        };
        serde_json::from_value(v).map_err(|e| format!("not an {SPEC} pack: {e}"))
    }

    /// The recipes that answer runs directly, in order.
    pub fn exact(&self) -> impl Iterator<Item = &Recipe> {
        self.recipes.iter().filter(|r| r.exact)
    }
}

/// Why a recipe run gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunFault {
    #[error(transparent)]
    Sandbox(#[from] Fault),
    #[error("returned an output its schema rejects: {0}")]
    Schema(String),
}

impl RunFault {
    pub fn kind(&self) -> &'static str {
        match self {
            RunFault::Sandbox(f) => f.kind(),
            RunFault::Schema(_) => "schema",
        }
    }
}

impl Recipe {
    /// Builds the RS-1 record of a program (measurements to be filled in).
    pub fn new(name: &str, origin: &str, source: &str, input: &Value, output: &Value) -> Recipe {
        let id = format!("sha256:{}", crate::digest::sha256(source.as_bytes()));
        let version_id = format!(
            "sha256:{}",
            crate::digest::sha256(&crate::digest::canonical_json(&serde_json::json!([
                id, input, output
            ])))
        );
        Recipe {
            id,
            name: name.into(),
            version_id,
            input_schema: input.clone(),
            output_schema: output.clone(),
            source: source.into(),
            origin: origin.into(),
            measured: Measured::default(),
            exact: false,
        }
    }

    /// Runs the recipe on one input: `Ok(None)` when it declines (returns `null`).
    pub fn run(
        &self,
        sandbox: &Sandbox,
        input: &Value,
        rag: Option<&RagQuery>,
        schema: &jsonschema::Validator,
    ) -> Result<Option<Value>, RunFault> {
        let out = sandbox.call(&self.source, "recipe", &[input], Some(rag))?;
        if out.is_null() {
            return Ok(None);
        }
        if let Some(e) = schema.iter_errors(&out).next() {
            return Err(RunFault::Schema(crate::untrusted::shown(&format!(
                "{e} at `{}`",
                e.instance_path()
            ))));
        }
        Ok(Some(out))
    }
}
