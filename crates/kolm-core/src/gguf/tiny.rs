//! Models kolm writes itself, so tests, examples and benchmarks never download anything.
//!
//! A `tiny` model is a real llama or qwen2 GGUF: 64-dim embeddings, 2 layers, 4 heads (2 KV
//! heads), a byte-level BPE vocabulary (the 256 GPT-2 byte tokens, a few merges, and the chat
//! special tokens), weights drawn from our own seeded RNG. The same (arch, shape, seed, quant)
//! always gives the same bytes. Benchmarks use the same writer at the shape of a real model
//! ([`Shape::QWEN2_5_0_5B`]): random weights, but the exact tensor shapes, vocabulary size and
//! bytes per token of the real thing, which is what speed depends on. The zero-init LoRA
//! adapter for any base is written here too, because it is built from the same tensor table.

use super::{GgmlType, GgufWriter, Header, TensorData, Value};
use crate::rng::SplitMix64;

pub const N_EMBD: u64 = 64;
pub const N_LAYER: u64 = 2;
pub const N_HEAD: u64 = 4;
pub const N_HEAD_KV: u64 = 2;
pub const N_FF: u64 = 128;
pub const N_CTX: u64 = 2048;

/// The dimensions of a model kolm writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ff: u64,
    pub n_ctx: u64,
    /// Vocabulary size; tokens past the byte-level ones are filler that decodes but is never
    /// produced by the tokenizer (0: just the byte-level vocabulary).
    pub n_vocab: u64,
    /// Output projection shared with the token embedding (no `output.weight`).
    pub tied: bool,
}

impl Shape {
    pub const TINY: Shape = Shape {
        n_embd: N_EMBD,
        n_layer: N_LAYER,
        n_head: N_HEAD,
        n_head_kv: N_HEAD_KV,
        n_ff: N_FF,
        n_ctx: N_CTX,
        n_vocab: 0,
        tied: false,
    };
    /// Qwen2.5-0.5B-Instruct's dimensions (494M parameters).
    pub const QWEN2_5_0_5B: Shape = Shape {
        n_embd: 896,
        n_layer: 24,
        n_head: 14,
        n_head_kv: 2,
        n_ff: 4864,
        n_ctx: 32768,
        n_vocab: 151_936,
        tied: true,
    };

    /// The tiny model widened to 256: k-quants pack rows in super-blocks of 256 values, so
    /// every row (the embedding width and the feed-forward width) must be a multiple of it.
    pub const TINY_256: Shape = Shape {
        n_embd: 256,
        n_ff: 512,
        ..Shape::TINY
    };

    /// A shape by name, for `kolm dev tiny-model --shape`.
    pub fn named(name: &str) -> Option<Shape> {
        match name {
            "tiny" => Some(Shape::TINY),
            "tiny-256" => Some(Shape::TINY_256),
            "qwen2.5-0.5b" => Some(Shape::QWEN2_5_0_5B),
            _ => None,
        }
    }
}

/// Weight storage of a tiny model. The k-quant mixes follow llama.cpp's `llama-quantize`
/// presets in kind (a user's Q4_K_M file is mostly Q4_K with Q6_K where precision matters);
/// they are test models, not llama.cpp's exact per-layer choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F32,
    Q8_0,
    /// Q4_K, with Q6_K for `attn_v`, `ffn_down` and the output projection.
    Q4KM,
    /// Q5_K, with Q6_K for `attn_v`, `ffn_down` and the output projection.
    Q5KM,
    /// Q6_K throughout.
    Q6K,
}

impl Quant {
    /// llama.cpp's `general.file_type` for the mix.
    fn file_type(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::Q8_0 => 7,
            Quant::Q4KM => 15,
            Quant::Q5KM => 17,
            Quant::Q6K => 18,
        }
    }

    /// The type of the tensor `name` (`output`: the output projection, or the embedding that
    /// doubles as it).
    fn type_of(self, name: &str, output: bool) -> GgmlType {
        let precise = output || name.contains("attn_v") || name.contains("ffn_down");
        match self {
            Quant::F32 => GgmlType::F32,
            Quant::Q8_0 => GgmlType::Q8_0,
            Quant::Q6K => GgmlType::Q6_K,
            Quant::Q4KM | Quant::Q5KM if precise => GgmlType::Q6_K,
            Quant::Q4KM => GgmlType::Q4_K,
            Quant::Q5KM => GgmlType::Q5_K,
        }
    }

    /// Why `shape` cannot be stored this way, if it cannot.
    pub fn fits(self, shape: &Shape) -> Result<(), String> {
        let k = matches!(self, Quant::Q4KM | Quant::Q5KM | Quant::Q6K);
        if k && cfg!(not(feature = "kquant")) {
            return Err(
                "k-quant test models are not available: kolm-core was built without \
                 its `kquant` feature"
                    .into(),
            );
        }
        if k && !(shape.n_embd.is_multiple_of(256) && shape.n_ff.is_multiple_of(256)) {
            return Err(format!(
                "k-quants need widths that are multiples of 256; this shape has {} and {} \
                 (use the `tiny-256` shape)",
                shape.n_embd, shape.n_ff
            ));
        }
        Ok(())
    }
}

/// The GPT-2 byte-to-unicode table: every byte gets a printable character.
pub fn byte_tokens() -> Vec<String> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    table.sort();
    table
        .into_iter()
        .map(|(_, c)| char::from_u32(c).expect("valid").to_string())
        .collect()
}

/// The vocabulary: byte tokens, merged tokens, filler up to `n_vocab`, then special tokens.
/// Returns (tokens, merges, types).
fn vocab(n_vocab: u64) -> (Vec<String>, Vec<String>, Vec<i32>) {
    let mut tokens = byte_tokens();
    let mut types = vec![1i32; tokens.len()];
    // A few merges over JSON-ish text; each merged token must exist in the vocabulary.
    let pairs = [
        ("\"", ":"),
        ("Ġ", "\""),
        ("e", "r"),
        ("i", "n"),
        ("o", "n"),
        ("Ġ", "t"),
    ];
    let mut merges = Vec::new();
    for (a, b) in pairs {
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let specials = 3;
    let mut i = 0;
    while (tokens.len() + specials) < n_vocab as usize {
        tokens.push(format!("<|filler_{i}|>"));
        types.push(5); // unused
        i += 1;
    }
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    (tokens, merges, types)
}

/// Writes a tiny model for `arch` ("llama" or "qwen2").
pub fn tiny_model(arch: &str, seed: u64, quant: Quant) -> Vec<u8> {
    model(arch, &Shape::TINY, seed, quant)
}

/// Writes a model of any shape for `arch` ("llama" or "qwen2").
///
/// # Panics
/// If `quant` cannot store `shape` ([`Quant::fits`] says why): callers pick both.
pub fn model(arch: &str, shape: &Shape, seed: u64, quant: Quant) -> Vec<u8> {
    let (tokens, merges, types) = vocab(shape.n_vocab);
    let n_vocab = tokens.len() as u64;
    let eos = (n_vocab - 3) as u32;
    let mut w = GgufWriter::new();
    let a = |k: &str| format!("{arch}.{k}");
    w.meta("general.architecture", Value::Str(arch.into()))
        .meta("general.name", Value::Str(format!("kolm-tiny-{arch}-s{seed}")))
        .meta("general.file_type", Value::U32(quant.file_type()))
        .meta(&a("context_length"), Value::U32(shape.n_ctx as u32))
        .meta(&a("embedding_length"), Value::U32(shape.n_embd as u32))
        .meta(&a("block_count"), Value::U32(shape.n_layer as u32))
        .meta(&a("feed_forward_length"), Value::U32(shape.n_ff as u32))
        .meta(&a("attention.head_count"), Value::U32(shape.n_head as u32))
        .meta(&a("attention.head_count_kv"), Value::U32(shape.n_head_kv as u32))
        .meta(&a("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .meta(&a("rope.freq_base"), Value::F32(10000.0))
        .meta("tokenizer.ggml.model", Value::Str("gpt2".into()))
        .meta("tokenizer.ggml.pre", Value::Str(if arch == "qwen2" { "qwen2" } else { "default" }.into()))
        .meta("tokenizer.ggml.tokens", Value::Array(tokens.into_iter().map(Value::Str).collect()))
        .meta("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect()))
        .meta("tokenizer.ggml.merges", Value::Array(merges.into_iter().map(Value::Str).collect()))
        .meta("tokenizer.ggml.bos_token_id", Value::U32(eos))
        .meta("tokenizer.ggml.eos_token_id", Value::U32(eos))
        .meta("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .meta(
            "tokenizer.chat_template",
            Value::Str("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into()),
        );
    let mut rng = SplitMix64::new(seed ^ 0x6b6f_6c6d);
    let head_dim = shape.n_embd / shape.n_head;
    let kv = head_dim * shape.n_head_kv;
    if let Err(e) = quant.fits(shape) {
        panic!("{e}");
    }
    let mut mat = |name: String, cols: u64, rows: u64, w: &mut GgufWriter| {
        let scale = 1.0 / (cols as f32).sqrt();
        let v: Vec<f32> = (0..cols * rows).map(|_| rng.normal() * scale).collect();
        let output = name == "output.weight" || (shape.tied && name == "token_embd.weight");
        let dims = vec![cols, rows];
        w.tensor(match quant.type_of(&name, output) {
            GgmlType::F32 => TensorData::f32(name, dims, &v),
            GgmlType::Q8_0 => TensorData::q8_0(name, dims, &v),
            k => TensorData::k_quant(name, dims, &v, k).expect("Quant::fits checked the widths"),
        });
    };
    mat("token_embd.weight".into(), shape.n_embd, n_vocab, &mut w);
    for l in 0..shape.n_layer {
        let b = |s: &str| format!("blk.{l}.{s}");
        w.tensor(TensorData::f32(
            b("attn_norm.weight"),
            vec![shape.n_embd],
            &vec![1.0; shape.n_embd as usize],
        ));
        mat(b("attn_q.weight"), shape.n_embd, shape.n_embd, &mut w);
        mat(b("attn_k.weight"), shape.n_embd, kv, &mut w);
        mat(b("attn_v.weight"), shape.n_embd, kv, &mut w);
        if arch == "qwen2" {
            for (t, n) in [
                ("attn_q.bias", shape.n_embd),
                ("attn_k.bias", kv),
                ("attn_v.bias", kv),
            ] {
                w.tensor(TensorData::f32(b(t), vec![n], &vec![0.0; n as usize]));
            }
        }
        mat(b("attn_output.weight"), shape.n_embd, shape.n_embd, &mut w);
        w.tensor(TensorData::f32(
            b("ffn_norm.weight"),
            vec![shape.n_embd],
            &vec![1.0; shape.n_embd as usize],
        ));
        mat(b("ffn_gate.weight"), shape.n_embd, shape.n_ff, &mut w);
        mat(b("ffn_up.weight"), shape.n_embd, shape.n_ff, &mut w);
        mat(b("ffn_down.weight"), shape.n_ff, shape.n_embd, &mut w);
    }
    w.tensor(TensorData::f32(
        "output_norm.weight",
        vec![shape.n_embd],
        &vec![1.0; shape.n_embd as usize],
    ));
    if !shape.tied {
        mat("output.weight".into(), shape.n_embd, n_vocab, &mut w);
    }
    w.to_bytes()
}

/// A LoRA adapter for `base` whose B halves are zero: llama.cpp applies it and the outputs are
/// exactly the base's. A is drawn from the seeded RNG (standard LoRA init), so training can
/// start from this very file.
pub fn zero_lora(
    base: &Header,
    targets: &[String],
    rank: u32,
    alpha: f64,
    seed: u64,
) -> Result<Vec<u8>, String> {
    lora(base, targets, rank, alpha, seed, 0.0)
}

/// A LoRA adapter for `base` with B drawn from N(0, `b_std`²): 0 gives [`zero_lora`]; anything
/// else an adapter that really changes the base, with a trained adapter's shapes and cost (for
/// tests and benchmarks).
pub fn lora(
    base: &Header,
    targets: &[String],
    rank: u32,
    alpha: f64,
    seed: u64,
    b_std: f32,
) -> Result<Vec<u8>, String> {
    let arch = base
        .architecture()
        .ok_or("the base has no general.architecture")?;
    let mut rng = SplitMix64::new(seed ^ 0x6c6f_7261);
    let r = rank as u64;
    let tensors: Vec<_> = super::adapter::targets(base, targets)?
        .into_iter()
        .map(|t| {
            let scale = 1.0 / (t.n_in as f32).sqrt();
            let a: Vec<f32> = (0..t.n_in * r).map(|_| rng.normal() * scale).collect();
            let b: Vec<f32> = (0..r * t.n_out)
                .map(|_| {
                    if b_std == 0.0 {
                        0.0
                    } else {
                        rng.normal() * b_std
                    }
                })
                .collect();
            (t, a, b)
        })
        .collect();
    Ok(super::adapter::write(arch, alpha, r, &tensors))
}
