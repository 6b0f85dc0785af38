//! Tiny models kolm writes itself, so tests and examples never download anything.
//!
//! A `tiny` model is a real llama or qwen2 GGUF: 64-dim embeddings, 2 layers, 4 heads (2 KV
//! heads), a byte-level BPE vocabulary (the 256 GPT-2 byte tokens, a few merges, and the chat
//! special tokens), weights drawn from our own seeded RNG. The same (arch, seed, quant) always
//! gives the same bytes. The zero-init LoRA adapter for any base is written here too, because it
//! is built from the same tensor table.

use super::{GgufWriter, Header, TensorData, Value};
use crate::rng::SplitMix64;

pub const N_EMBD: u64 = 64;
pub const N_LAYER: u64 = 2;
pub const N_HEAD: u64 = 4;
pub const N_HEAD_KV: u64 = 2;
pub const N_FF: u64 = 128;
pub const N_CTX: u64 = 2048;

/// Weight storage of a tiny model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    F32,
    Q8_0,
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

/// The vocabulary: byte tokens, merged tokens, then special tokens. Returns (tokens, merges, types).
fn vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
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
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    (tokens, merges, types)
}

/// Writes a tiny model for `arch` ("llama" or "qwen2").
pub fn tiny_model(arch: &str, seed: u64, quant: Quant) -> Vec<u8> {
    let (tokens, merges, types) = vocab();
    let n_vocab = tokens.len() as u64;
    let eos = (n_vocab - 3) as u32;
    let mut w = GgufWriter::new();
    let a = |k: &str| format!("{arch}.{k}");
    w.meta("general.architecture", Value::Str(arch.into()))
        .meta("general.name", Value::Str(format!("kolm-tiny-{arch}-s{seed}")))
        .meta("general.file_type", Value::U32(if quant == Quant::Q8_0 { 7 } else { 0 }))
        .meta(&a("context_length"), Value::U32(N_CTX as u32))
        .meta(&a("embedding_length"), Value::U32(N_EMBD as u32))
        .meta(&a("block_count"), Value::U32(N_LAYER as u32))
        .meta(&a("feed_forward_length"), Value::U32(N_FF as u32))
        .meta(&a("attention.head_count"), Value::U32(N_HEAD as u32))
        .meta(&a("attention.head_count_kv"), Value::U32(N_HEAD_KV as u32))
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
    let head_dim = N_EMBD / N_HEAD;
    let kv = head_dim * N_HEAD_KV;
    let mut mat = |name: String, cols: u64, rows: u64, w: &mut GgufWriter| {
        let scale = 1.0 / (cols as f32).sqrt();
        let v: Vec<f32> = (0..cols * rows).map(|_| rng.normal() * scale).collect();
        w.tensor(match quant {
            Quant::F32 => TensorData::f32(name, vec![cols, rows], &v),
            Quant::Q8_0 => TensorData::q8_0(name, vec![cols, rows], &v),
        });
    };
    mat("token_embd.weight".into(), N_EMBD, n_vocab, &mut w);
    for l in 0..N_LAYER {
        let b = |s: &str| format!("blk.{l}.{s}");
        w.tensor(TensorData::f32(
            b("attn_norm.weight"),
            vec![N_EMBD],
            &vec![1.0; N_EMBD as usize],
        ));
        mat(b("attn_q.weight"), N_EMBD, N_EMBD, &mut w);
        mat(b("attn_k.weight"), N_EMBD, kv, &mut w);
        mat(b("attn_v.weight"), N_EMBD, kv, &mut w);
        if arch == "qwen2" {
            for (t, n) in [
                ("attn_q.bias", N_EMBD),
                ("attn_k.bias", kv),
                ("attn_v.bias", kv),
            ] {
                w.tensor(TensorData::f32(b(t), vec![n], &vec![0.0; n as usize]));
            }
        }
        mat(b("attn_output.weight"), N_EMBD, N_EMBD, &mut w);
        w.tensor(TensorData::f32(
            b("ffn_norm.weight"),
            vec![N_EMBD],
            &vec![1.0; N_EMBD as usize],
        ));
        mat(b("ffn_gate.weight"), N_EMBD, N_FF, &mut w);
        mat(b("ffn_up.weight"), N_EMBD, N_FF, &mut w);
        mat(b("ffn_down.weight"), N_FF, N_EMBD, &mut w);
    }
    w.tensor(TensorData::f32(
        "output_norm.weight",
        vec![N_EMBD],
        &vec![1.0; N_EMBD as usize],
    ));
    mat("output.weight".into(), N_EMBD, n_vocab, &mut w);
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
    let arch = base
        .architecture()
        .ok_or("the base has no general.architecture")?;
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::Str(arch.into()))
        .meta("general.type", Value::Str("adapter".into()))
        .meta("adapter.type", Value::Str("lora".into()))
        .meta("adapter.lora.alpha", Value::F32(alpha as f32));
    let mut rng = SplitMix64::new(seed ^ 0x6c6f_7261);
    let r = rank as u64;
    let mut any = false;
    for t in &base.tensors {
        let Some(rest) = t.name.strip_prefix("blk.") else {
            continue;
        };
        let Some((_, leaf)) = rest.split_once('.') else {
            continue;
        };
        let Some(target) = leaf.strip_suffix(".weight") else {
            continue;
        };
        if !targets.iter().any(|x| x == target) || t.dims.len() != 2 {
            continue;
        }
        let (n_in, n_out) = (t.dims[0], t.dims[1]);
        let scale = 1.0 / (n_in as f32).sqrt();
        let a: Vec<f32> = (0..n_in * r).map(|_| rng.normal() * scale).collect();
        w.tensor(TensorData::f32(
            format!("{}.lora_a", t.name),
            vec![n_in, r],
            &a,
        ));
        w.tensor(TensorData::f32(
            format!("{}.lora_b", t.name),
            vec![r, n_out],
            &vec![0.0; (r * n_out) as usize],
        ));
        any = true;
    }
    if !any {
        return Err(format!(
            "the base has no tensors for the LoRA targets {targets:?}"
        ));
    }
    Ok(w.to_bytes())
}
