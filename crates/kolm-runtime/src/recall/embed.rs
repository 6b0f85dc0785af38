//! Dense embeddings: a sentence-transformers BERT folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`), run by [`super::sentence`] when kolm-runtime has its `embed` feature.
//!
//! An embedder is identified by content: [`identity`] hashes its three files, so the manifest
//! names exactly the weights the index was made with, the embedding cache is keyed by it, and
//! the runtime can find (or refuse) the embedder a dense index needs.

use std::path::Path;

pub use super::folder::{files, identity, identity_of, FILES};
#[cfg(not(feature = "embed"))]
use crate::Error;
use crate::Result;

/// Texts embedded per forward pass (sentence-transformers' default).
const BATCH: usize = 32;

/// A loaded embedder.
pub struct Embedder {
    model: Model,
    /// The size of its vectors.
    pub dimensions: usize,
    /// [`identity`] of its folder.
    pub sha256: String,
}

#[cfg(feature = "embed")]
use super::sentence::Model;

/// Without the `embed` feature there is no model: an [`Embedder`] cannot be made.
#[cfg(not(feature = "embed"))]
enum Model {}

#[cfg(not(feature = "embed"))]
impl Model {
    fn load(dir: &Path) -> Result<(Model, usize)> {
        files(dir)?;
        Err(Error::invalid(
            format!(
                "embedder `{}`: dense retrieval is not available in this program",
                dir.display()
            ),
            "it was built without kolm-runtime's `embed` feature (the `kolm` command has it); \
             BM25-only artifacts run without it",
        ))
    }

    fn embed_batch(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match *self {}
    }
}

impl Embedder {
    /// Loads the embedder in `dir`, whose identity the caller has computed (or [`identity_of`]).
    pub fn load(dir: &Path, sha256: String) -> Result<Embedder> {
        let (model, dimensions) = Model::load(dir)?;
        Ok(Embedder {
            model,
            dimensions,
            sha256,
        })
    }

    /// Embeds `texts`: one unit vector of [`Self::dimensions`] floats each, in order.
    ///
    /// Texts are batched by length, as sentence-transformers does, so a batch pads little.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(BATCH) {
            crate::interrupt::check()?;
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i]).collect();
            for (&i, v) in batch.iter().zip(self.model.embed_batch(&inputs)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// A vector as sqlite-vec stores a `float[N]`: little-endian f32s.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`to_blob`].
pub fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(all(test, not(feature = "embed")))]
mod tests {
    /// Built without `embed`, an artifact's embedder is refused with the reason, never faked.
    #[test]
    fn without_the_embed_feature_an_embedder_is_refused_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        for f in super::FILES {
            std::fs::write(dir.path().join(f), b"{}").unwrap();
        }
        let e = match super::Embedder::load(dir.path(), "x".into()) {
            Err(e) => e,
            Ok(_) => panic!("an embedder without the feature"),
        };
        let shown = e.render();
        assert!(
            shown.contains("dense retrieval is not available"),
            "{shown}"
        );
        assert!(shown.contains("`embed` feature"), "{shown}");
    }
}
