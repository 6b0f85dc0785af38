//! The recipe pack at run time (runtime.md §5): an exact recipe that accepts the input answers
//! it; otherwise the other recipes' answers and the pack's drafts become drafts the model
//! verifies (recipe speculative decoding, in [`super::engine`]).
//!
//! A recipe that faults (time, memory, a throw, a schema-invalid answer) is passed over: the
//! run goes on to the next recipe and, in the end, to the model.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::recipes::{Drafter, Fault, Pack, RagQuery, Recipe, Sandbox};
use crate::{Error, Result};

/// A loaded pack: the sandbox its recipes run in and the prepared drafts.
pub struct Recipes {
    pack: Pack,
    drafter: Drafter,
    /// Present when the pack has recipes.
    sandbox: Option<Sandbox>,
    schema: jsonschema::Validator,
    rag: Option<RagQuery>,
    /// Whether drafts are used at all (off: plain decoding, for comparisons).
    pub speculate: bool,
}

/// What the pack says about one input before the model runs.
#[derive(Default)]
pub struct Consulted {
    /// The exact recipe that answered, and its answer.
    pub exact: Option<(String, Value)>,
    /// Drafts for this input, as compact JSON, tried in order: the answers of recipes that are
    /// not exact, then the outputs of the labelled inputs most like it (recipes.md §4).
    pub drafts: Vec<Vec<u8>>,
    /// Recipes that faulted on this input, by name.
    pub faults: Vec<(String, Fault)>,
}

impl Recipes {
    /// Loads `recipes.json`; `schema` is the task's output schema.
    pub fn load(bytes: &[u8], schema: &Value) -> Result<Recipes> {
        let pack = Pack::parse(bytes).map_err(|why| {
            Error::invalid(
                format!("the artifact's recipes.json cannot be read: {why}"),
                "rebuild the artifact with this kolm",
            )
        })?;
        let sandbox =
            if pack.recipes.is_empty() {
                None
            } else {
                Some(Sandbox::new(pack.limits).map_err(|e| {
                    Error::failed("the recipe sandbox could not start", e.to_string())
                })?)
            };
        let schema = jsonschema::validator_for(schema).map_err(|e| {
            Error::invalid_because(
                "the task's output schema does not compile",
                e,
                "rebuild the artifact",
            )
        })?;
        Ok(Recipes {
            drafter: Drafter::new(&pack.drafts),
            pack,
            sandbox,
            schema,
            rag: None,
            speculate: true,
        })
    }

    /// Gives recipes `lib.rag.query` over this index.
    pub fn with_rag(mut self, rag: Option<RagQuery>) -> Recipes {
        self.rag = rag;
        self
    }

    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    /// Makes the next recipe call's sandbox context now ([`Sandbox::prepare`]): for callers
    /// with idle time between inputs.
    pub fn prepare(&self) {
        if let Some(s) = &self.sandbox {
            s.prepare();
        }
    }

    /// Runs the recipes on `input`: the first exact one that answers wins; the answers of the
    /// others, then the neighbours' outputs, are drafts.
    pub fn consult(&self, input: &str) -> Consulted {
        let mut c = self.run_recipes(input);
        if c.exact.is_none() && self.speculate {
            c.drafts.extend(
                self.drafter
                    .neighbours(input)
                    .into_iter()
                    .map(<[u8]>::to_vec),
            );
        }
        c
    }

    fn run_recipes(&self, input: &str) -> Consulted {
        let mut c = Consulted::default();
        let Some(sandbox) = &self.sandbox else {
            return c;
        };
        for r in &self.pack.recipes {
            let arg = recipe_input(r, input);
            match r.run(sandbox, &arg, self.rag.as_ref(), &self.schema) {
                Ok(None) => {}
                Ok(Some(out)) if r.exact => {
                    c.exact = Some((r.id.clone(), out));
                    return c;
                }
                Ok(Some(out)) if self.speculate => {
                    c.drafts.push(serde_json::to_vec(&out).expect("serialises"));
                }
                Ok(Some(_)) => {}
                Err(e) => c.faults.push((
                    r.name.clone(),
                    match e {
                        crate::recipes::pack::RunFault::Sandbox(f) => f,
                        other => Fault::Threw(other.to_string()),
                    },
                )),
            }
        }
        c
    }

    /// The draft source for one input: its recipes' answers first, then the pack's drafts.
    /// `None` when speculation is off.
    pub fn drafts<'a>(
        &'a self,
        consulted: &'a Consulted,
    ) -> Option<impl Fn(&[u8]) -> Option<Vec<u8>> + 'a> {
        self.speculate.then_some(move |so_far: &[u8]| {
            continuing(&consulted.drafts, so_far)
                .or_else(|| self.drafter.propose(so_far).map(<[u8]>::to_vec))
        })
    }
}

/// The rest of the first of `drafts` that begins with the output so far and is longer
/// (recipes.md §5): how whole-output drafts (an input's recipe answers and neighbours, or a
/// known answer in a test or benchmark) become continuations.
pub fn continuing<D: AsRef<[u8]>>(drafts: &[D], so_far: &[u8]) -> Option<Vec<u8>> {
    drafts
        .iter()
        .map(AsRef::as_ref)
        .find(|d| d.len() > so_far.len() && d.starts_with(so_far))
        .map(|d| d[so_far.len()..].to_vec())
}

/// What a recipe is given for a run's input text: the text, or its JSON when the recipe takes
/// structured input.
fn recipe_input(r: &Recipe, input: &str) -> Value {
    match r.input_schema.get("type").and_then(Value::as_str) {
        Some("string") => Value::String(input.to_string()),
        _ => serde_json::from_str(input).unwrap_or_else(|_| Value::String(input.to_string())),
    }
}

/// The pack of an opened artifact, its recipes querying the artifact's own index (when it has
/// chunks).
pub fn of_artifact(a: &super::open::Opened) -> Result<Recipes> {
    let recipes = Recipes::load(&a.recipes, &a.manifest.task.output_schema)?;
    let rag = if a.manifest.recall.chunks > 0 && !recipes.pack.recipes.is_empty() {
        Some(rag_over(crate::recall::index::open(&a.index_path)?))
    } else {
        None
    };
    Ok(recipes.with_rag(rag))
}

/// `lib.rag.query` over an index (BM25), for recipes.
pub fn rag_over(db: rusqlite::Connection) -> RagQuery {
    let db = Mutex::new(db);
    Arc::new(move |q: &str, k: usize| {
        let db = db
            .lock()
            .map_err(|_| "the index is unavailable".to_string())?;
        let hits = crate::recall::search(&db, q, k).map_err(|e| e.to_string())?;
        serde_json::to_value(hits).map_err(|e| e.to_string())
    })
}
