//! A sentence-transformers model run with candle: the BERT network ([`super::bert`]) and its
//! tokenizer, mean-pooled over real tokens and L2-normalised, which is what
//! sentence-transformers does for models like all-MiniLM-L6-v2. Built with the `embed` feature
//! only: an application that runs BM25-only artifacts compiles no candle.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::bert::{Bert, Config};
use super::folder::{bad, files};
use crate::{Error, Result};

/// A loaded model and its tokenizer.
pub(super) struct Model {
    model: Bert,
    tokenizer: Tokenizer,
}

impl Model {
    /// Loads the model in `dir`; the size of its vectors.
    pub(super) fn load(dir: &Path) -> Result<(Model, usize)> {
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
        Ok((Model { model, tokenizer }, config.hidden_size))
    }

    pub(super) fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
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
