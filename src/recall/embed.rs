//! Dense embeddings: a sentence-transformers BERT folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`) run with candle ([`super::bert`]), mean-pooled over real tokens and
//! L2-normalised, which is what sentence-transformers does for models like all-MiniLM-L6-v2.
//!
//! An embedder is identified by content: [`identity`] hashes its three files, so the manifest
//! names exactly the weights the index was made with, the embedding cache is keyed by it, and
//! the runtime can find (or refuse) the embedder a dense index needs.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::bert::{Bert, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{Error, Result};

/// The files an embedder folder must have, in the order their digests enter its identity.
pub const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Texts embedded per forward pass (sentence-transformers' default).
const BATCH: usize = 32;

/// A loaded embedder.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    /// The size of its vectors.
    pub dimensions: usize,
    /// [`identity`] of its folder.
    pub sha256: String,
}

/// The identity of an embedder from the sha256 of each of its [`FILES`]: the sha256 of the lines
/// `<file> <sha256>\n` in [`FILES`] order (kolmfile-spec/rag.md §4).
pub fn identity(file_sha256: &[String; 3]) -> String {
    let mut s = String::new();
    for (f, d) in FILES.iter().zip(file_sha256) {
        s.push_str(&format!("{f} {d}\n"));
    }
    crate::digest::sha256(s.as_bytes())
}

fn bad(dir: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(
        format!("embedder `{}`: {what}", dir.display()),
        "point `recall.embedder` at a sentence-transformers BERT folder (config.json, tokenizer.json, model.safetensors), e.g. all-MiniLM-L6-v2",
    )
}

/// The paths of an embedder's [`FILES`], or an error naming the one that is missing.
pub fn files(dir: &Path) -> Result<[PathBuf; 3]> {
    let paths = FILES.map(|f| dir.join(f));
    for p in &paths {
        if !p.is_file() {
            return Err(bad(
                dir,
                format_args!(
                    "`{}` is missing",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
    }
    Ok(paths)
}

/// Hashes the files of the embedder in `dir`: its [`identity`].
pub fn identity_of(dir: &Path) -> Result<String> {
    let paths = files(dir)?;
    let mut digests: [String; 3] = Default::default();
    for (d, p) in digests.iter_mut().zip(&paths) {
        *d = crate::digest::sha256_file(p, None)?.0;
    }
    Ok(identity(&digests))
}

impl Embedder {
    /// Loads the embedder in `dir`, whose identity the caller has computed (or [`identity_of`]).
    pub fn load(dir: &Path, sha256: String) -> Result<Embedder> {
        let [config_path, weights, tokenizer_path] = files(dir)?;
        let config: Config = std::fs::read(&config_path)
            .map_err(|e| Error::io(&config_path, "read", e))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| {
                    bad(
                        dir,
                        format_args!("config.json is not a BERT configuration: {e}"),
                    )
                })
            })?;
        // sentence-transformers truncates at its own `max_seq_length`, not the tokenizer's.
        let max_len = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .unwrap_or(config.max_position_embeddings as u64)
            .min(config.max_position_embeddings as u64) as usize;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| bad(dir, format_args!("tokenizer.json cannot be read: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| bad(dir, e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: config.pad_token_id as u32,
            ..Default::default()
        }));
        // SAFETY: the weights are mapped read-only; kolm never writes an embedder's files,
        // and the folder is content-checked by the caller's identity.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }
                .map_err(|e| bad(dir, format_args!("model.safetensors: {e}")))?;
        let model = Bert::load(vb, &config).map_err(|e| {
            bad(
                dir,
                format_args!("model.safetensors does not fit config.json: {e}"),
            )
        })?;
        Ok(Embedder {
            model,
            tokenizer,
            dimensions: config.hidden_size,
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
            for (&i, v) in batch.iter().zip(self.embed_batch(&inputs)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::failed("the embedder's tokenizer failed", e))?;
        let ids: Vec<Vec<u32>> = enc.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = enc
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        let candle = |e: candle_core::Error| Error::failed("the embedder failed", e);
        let dev = Device::Cpu;
        let ids = Tensor::new(ids, &dev).map_err(candle)?;
        let mask = Tensor::new(mask, &dev).map_err(candle)?;
        let hidden = self.model.forward(&ids, &mask).map_err(candle)?;
        // Mean over the real tokens, then unit length.
        let m = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(candle)?;
        let summed = hidden
            .broadcast_mul(&m)
            .and_then(|h| h.sum(1))
            .map_err(candle)?;
        let counts = m
            .sum(1)
            .and_then(|c| c.clamp(1e-9, f64::MAX))
            .map_err(candle)?;
        let mean = summed.broadcast_div(&counts).map_err(candle)?;
        let norm = mean
            .sqr()
            .and_then(|s| s.sum_keepdim(1))
            .and_then(|s| s.sqrt())
            .and_then(|n| n.clamp(1e-12, f64::MAX))
            .map_err(candle)?;
        mean.broadcast_div(&norm)
            .and_then(|v| v.to_vec2::<f32>())
            .map_err(candle)
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
