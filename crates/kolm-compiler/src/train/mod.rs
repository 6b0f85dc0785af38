//! Distilling a LoRA adapter: candle training on the labelled pairs, exported as a GGUF
//! adapter llama.cpp runs.
//!
//! - [`weights`]: the base GGUF dequantised to f32, and its hyperparameters.
//! - [`model`]: the differentiable forward pass (llama, qwen2) with LoRA, matching llama.cpp.
//! - [`data`]: pairs rendered and tokenised exactly as the runtime does.
//! - [`optim`]: AdamW, clipping and the schedule, with state a checkpoint can hold.
//!
//! Training starts from the zero-init adapter the stage would seal with training off (A from
//! the seeded RNG, B = 0: the identity), so "no training" and "training" differ only by the
//! steps taken. Batches are drawn in an order shuffled by the seed; every operation is on the
//! CPU in f32 in a fixed order, so the same inputs give a byte-identical adapter. An interrupt
//! saves a checkpoint (adapter, optimiser moments, step) under the run's key; the rerun resumes
//! from it and takes exactly the steps that were left.

pub mod data;
pub mod model;
pub mod optim;
pub mod weights;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};

use crate::gguf::Header;
use crate::kolmfile::DistillConfig;
use crate::rng::SplitMix64;
use crate::{Error, Result};
use data::Example;
use model::{Forward, Lora};
use weights::Base;

fn c(e: candle_core::Error) -> Error {
    Error::failed("training failed", e)
}

/// A finished training run.
#[derive(Debug, Clone)]
pub struct Trained {
    /// `lora.bin`.
    pub adapter: Vec<u8>,
    pub steps: u64,
    /// Tokens processed (prompt and target), over all epochs.
    pub tokens: u64,
    /// Mean loss over the last epoch's target tokens.
    pub final_loss: f64,
}

/// Progress after each step.
pub struct Step {
    pub step: u64,
    pub total: u64,
    pub loss: f64,
    pub tokens: u64,
}

impl Step {
    /// Shows this step on `bar` as "<what> step n/N, loss, pace" (the train stage and
    /// `kolm tune step` report alike).
    pub fn show(&self, bar: &indicatif::ProgressBar, pace: &crate::progress::Pace, what: &str) {
        bar.set_length(self.total);
        bar.set_position(self.step);
        let pace = pace.after(self.step, self.total, self.tokens, "tok");
        bar.set_message(format!(
            "{what}: step {}/{}, loss {:.3}, {pace}",
            self.step, self.total, self.loss
        ));
    }
}

/// The zero-init adapter for `base` as trainable tensors: the very values
/// [`crate::gguf::tiny::zero_lora`] writes.
pub fn init_lora(header: &Header, s: &DistillConfig) -> Result<Lora> {
    let bytes = crate::gguf::tiny::zero_lora(header, &s.targets, s.rank, s.alpha, s.seed as u64)
        .map_err(|e| Error::invalid(e, "choose `distill.targets` the base has"))?;
    lora_from_adapter(bytes, header, &s.targets, s.rank, s.alpha)
}

/// An adapter file (for `base`, adapting `targets`) as trainable tensors.
pub fn lora_from_adapter(
    bytes: Vec<u8>,
    header: &Header,
    targets: &[String],
    rank: u32,
    alpha: f64,
) -> Result<Lora> {
    let mut cur = std::io::Cursor::new(bytes);
    let content = candle_core::quantized::gguf_file::Content::read(&mut cur).map_err(c)?;
    let mut pairs = BTreeMap::new();
    for t in crate::gguf::adapter::targets(header, targets)
        .map_err(|e| Error::invalid(e, "choose `distill.targets` the base has"))?
    {
        let mut read = |suffix: &str| -> Result<Var> {
            let q = content
                .tensor(&mut cur, &format!("{}.{suffix}", t.name), &Device::Cpu)
                .map_err(c)?;
            Var::from_tensor(&q.dequantize(&Device::Cpu).map_err(c)?).map_err(c)
        };
        let (a, b) = (read("lora_a")?, read("lora_b")?);
        pairs.insert(t.name, (a, b));
    }
    Ok(Lora {
        rank: rank as usize,
        alpha,
        pairs,
    })
}

/// The adapter as the GGUF file llama.cpp loads (targets in the base's order).
pub fn export(lora: &Lora, header: &Header, targets: &[String]) -> Result<Vec<u8>> {
    let arch = header.architecture().unwrap_or_default().to_string();
    let mut tensors = Vec::new();
    for t in crate::gguf::adapter::targets(header, targets)
        .map_err(|e| Error::invalid(e, "choose `distill.targets` the base has"))?
    {
        let (a, b) = &lora.pairs[&t.name];
        let flat = |v: &Var| {
            v.as_tensor()
                .flatten_all()
                .and_then(|x| x.to_vec1::<f32>())
                .map_err(c)
        };
        tensors.push((t, flat(a)?, flat(b)?));
    }
    Ok(crate::gguf::adapter::write(
        &arch,
        lora.alpha,
        lora.rank as u64,
        &tensors,
    ))
}

/// The mean target-token loss of a batch, as a differentiable scalar. The batch is packed
/// ([`model::Packed`]): its shared prompt prefix is computed once, and the logits (a row of
/// the whole vocabulary each) only for the rows that predict a target token.
pub fn batch_loss(fwd: &Forward, batch: &[&Example]) -> Result<Tensor> {
    if batch.is_empty() {
        return Err(Error::Internal("an empty batch".into()));
    }
    // Position i predicts token i + 1, so the last token is never an input.
    let inputs: Vec<&[u32]> = batch
        .iter()
        .map(|e| &e.tokens[..e.tokens.len() - 1])
        .collect();
    let packed = model::Packed::new(&inputs);
    let hidden = fwd.hidden_packed(&packed)?;
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (i, ex) in batch.iter().enumerate() {
        for k in ex.prompt_len.max(1)..ex.tokens.len() {
            rows.push(packed.row(i, k - 1) as u32);
            targets.push(ex.tokens[k]);
        }
    }
    let count = rows.len();
    let rows = Tensor::new(rows, &Device::Cpu).map_err(c)?;
    let logits = fwd.logits(&hidden.index_select(&rows, 0).map_err(c)?)?;
    logits
        .apply_op1(crate::kernels::nll::Nll {
            targets: targets.into(),
        })
        .and_then(|n| n.sum_all())
        .and_then(|n| n / count.max(1) as f64)
        .map_err(c)
}

/// Gradients of `loss` for every LoRA tensor, in [`Lora::vars`] order (zeros where a tensor
/// did not reach the loss).
pub fn gradients(loss: &Tensor, lora: &Lora) -> Result<Vec<Tensor>> {
    let store = loss.backward().map_err(c)?;
    lora.vars()
        .into_iter()
        .map(|v| match store.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => v.as_tensor().zeros_like().map_err(c),
        })
        .collect()
}

/// The batches of one epoch: examples shuffled by (seed, epoch), then cut in `size`.
fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ (0x7472_6169_6e00 + epoch as u64));
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Trains an adapter for `base_path` on `examples`, on a pool of `distill.threads` threads.
/// With `checkpoint`, an interrupt saves the state there and a later call with the same folder
/// resumes from it. The adapter does not depend on the thread count: every kernel computes each
/// row on one thread in a fixed order, and so does each block of a matrix product.
pub fn train(
    base_path: &Path,
    examples: &[Example],
    s: &DistillConfig,
    checkpoint: Option<&Path>,
    on_step: &(dyn Fn(&Step) + Sync),
) -> Result<Trained> {
    train_from(base_path, examples, s, None, checkpoint, on_step)
}

/// [`train`] starting from the adapter `start` (a GGUF LoRA of `s`'s rank and targets for this
/// base) instead of the zero-init one: `kolm tune step` goes on from HEAD's adapter.
pub fn train_from(
    base_path: &Path,
    examples: &[Example],
    s: &DistillConfig,
    start: Option<Vec<u8>>,
    checkpoint: Option<&Path>,
    on_step: &(dyn Fn(&Step) + Sync),
) -> Result<Trained> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(s.threads.max(1) as usize)
        .build()
        .map_err(|e| Error::failed("training could not start its threads", e))?;
    pool.install(|| train_here(base_path, examples, s, start, checkpoint, on_step))
}

/// [`train`], on the current rayon pool.
fn train_here(
    base_path: &Path,
    examples: &[Example],
    s: &DistillConfig,
    start: Option<Vec<u8>>,
    checkpoint: Option<&Path>,
    on_step: &(dyn Fn(&Step) + Sync),
) -> Result<Trained> {
    if examples.is_empty() {
        return Err(Error::invalid(
            "there are no pairs to train on",
            "add seeds, or set `[distill] train = false`",
        ));
    }
    let header = crate::gguf::read_header(base_path).map_err(|e| {
        Error::invalid_because(
            format!("base `{}`", base_path.display()),
            e,
            "check the base model",
        )
    })?;
    let base = Base::load(base_path)?;
    let lora = match start {
        None => init_lora(&header, s)?,
        Some(bytes) => lora_from_adapter(bytes, &header, &s.targets, s.rank, s.alpha)?,
    };
    let vars: Vec<Var> = lora.vars().into_iter().cloned().collect();
    let var_refs: Vec<&Var> = vars.iter().collect();
    let mut opt = optim::AdamW::new(&var_refs)?;
    let per_epoch = examples.len().div_ceil(s.batch_size.max(1) as usize) as u64;
    let total = per_epoch * s.epochs.max(1) as u64;
    let mut tokens = 0u64;
    let mut epoch_loss = (0f64, 0usize);
    if let Some(dir) = checkpoint {
        if let Some(state) = Checkpoint::load(dir)? {
            state.restore(&var_refs, &mut opt)?;
            tokens = state.tokens;
        }
    }
    let fwd = Forward::new(&base, &lora);
    while opt.step < total {
        let step = opt.step;
        let (epoch, at) = ((step / per_epoch) as u32, (step % per_epoch) as usize);
        if at == 0 {
            epoch_loss = (0.0, 0);
        }
        if let Err(e) = crate::interrupt::check() {
            if let Some(dir) = checkpoint {
                Checkpoint::save(dir, &var_refs, &opt, tokens)?;
            }
            return Err(e);
        }
        let order = epoch_order(examples.len(), s.seed as u64, epoch);
        let bs = s.batch_size.max(1) as usize;
        let batch: Vec<&Example> = order[at * bs..((at + 1) * bs).min(order.len())]
            .iter()
            .map(|&i| &examples[i])
            .collect();
        let loss = batch_loss(&fwd, &batch)?;
        let value = loss.to_scalar::<f32>().map_err(c)? as f64;
        let mut grads = gradients(&loss, &lora)?;
        optim::clip(&mut grads)?;
        opt.step(
            &var_refs,
            &grads,
            optim::schedule(s.learning_rate, step, total),
        )?;
        let targets: usize = batch.iter().map(|e| e.target_len()).sum();
        epoch_loss = (
            epoch_loss.0 + value * targets as f64,
            epoch_loss.1 + targets,
        );
        tokens += batch.iter().map(|e| e.tokens.len() as u64).sum::<u64>();
        on_step(&Step {
            step: opt.step,
            total,
            loss: value,
            tokens,
        });
    }
    if let Some(dir) = checkpoint {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Trained {
        adapter: export(&lora, &header, &s.targets)?,
        steps: opt.step,
        tokens,
        final_loss: if epoch_loss.1 == 0 {
            0.0
        } else {
            epoch_loss.0 / epoch_loss.1 as f64
        },
    })
}

/// A training run's saved state.
struct Checkpoint {
    tensors: HashMap<String, Tensor>,
    step: u64,
    tokens: u64,
}

impl Checkpoint {
    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("state.safetensors"), dir.join("state.json"))
    }

    fn save(dir: &Path, vars: &[&Var], opt: &optim::AdamW, tokens: u64) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
        let mut t = HashMap::new();
        for (i, v) in vars.iter().enumerate() {
            t.insert(format!("w.{i}"), v.as_tensor().clone());
            t.insert(format!("m.{i}"), opt.m[i].clone());
            t.insert(format!("v.{i}"), opt.v[i].clone());
        }
        let (tensors, meta) = Self::paths(dir);
        // The tensors first, the step last: a half-written checkpoint has no step and is
        // ignored.
        let _ = std::fs::remove_file(&meta);
        candle_core::safetensors::save(&t, &tensors).map_err(c)?;
        let json = serde_json::json!({ "step": opt.step, "tokens": tokens, "tensors": vars.len() });
        crate::fsutil::write_atomic(&meta, json.to_string().as_bytes())
    }

    fn load(dir: &Path) -> Result<Option<Checkpoint>> {
        let (tensors, meta) = Self::paths(dir);
        let Ok(json) = std::fs::read(&meta) else {
            return Ok(None);
        };
        let v: serde_json::Value = match serde_json::from_slice(&json) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let Ok(t) = candle_core::safetensors::load(&tensors, &Device::Cpu) else {
            return Ok(None);
        };
        Ok(Some(Checkpoint {
            tensors: t,
            step: v["step"].as_u64().unwrap_or(0),
            tokens: v["tokens"].as_u64().unwrap_or(0),
        }))
    }

    fn restore(&self, vars: &[&Var], opt: &mut optim::AdamW) -> Result<()> {
        for (i, v) in vars.iter().enumerate() {
            let get = |k: String| {
                self.tensors
                    .get(&k)
                    .filter(|t| t.dims() == v.as_tensor().dims() && t.dtype() == DType::F32)
                    .cloned()
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("the checkpoint has no fitting `{k}`"),
                            "remove the checkpoint folder to train from the start",
                        )
                    })
            };
            v.set(&get(format!("w.{i}"))?).map_err(c)?;
            opt.m[i] = get(format!("m.{i}"))?;
            opt.v[i] = get(format!("v.{i}"))?;
        }
        opt.step = self.step;
        Ok(())
    }
}
