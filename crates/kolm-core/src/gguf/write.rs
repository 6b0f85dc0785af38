//! Writing GGUF files byte-deterministically: metadata in insertion order, tensors in insertion
//! order, each at the next aligned offset, zero padding. Same inputs, same bytes.

use super::{GgmlType, Value, DEFAULT_ALIGNMENT, MAGIC};

/// Tensor contents, already in the tensor's ggml type.
pub struct TensorData {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub bytes: Vec<u8>,
}

impl TensorData {
    pub fn f32(name: impl Into<String>, dims: Vec<u64>, values: &[f32]) -> TensorData {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        TensorData {
            name: name.into(),
            dims,
            ty: GgmlType::F32,
            bytes,
        }
    }

    /// Quantises to Q8_0 (blocks of 32: an f16 scale and 32 signed bytes).
    pub fn q8_0(name: impl Into<String>, dims: Vec<u64>, values: &[f32]) -> TensorData {
        let mut bytes = Vec::with_capacity(values.len() / 32 * 34);
        for block in values.chunks(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            bytes.extend_from_slice(&f32_to_f16(d).to_le_bytes());
            for v in block {
                bytes.push((v * inv).round().clamp(-127.0, 127.0) as i8 as u8);
            }
        }
        TensorData {
            name: name.into(),
            dims,
            ty: GgmlType::Q8_0,
            bytes,
        }
    }

    /// Quantises to a k-quant (`Q4_K`, `Q5_K`, `Q6_K`: super-blocks of 256 values, so every
    /// row's length must be a multiple of 256) with candle's port of ggml's reference
    /// quantiser. Hand-writing k-quant packing would be a second copy of intricate bit layout
    /// for test models only; candle's is the one its own dequantiser (training's) reads.
    /// Without the `kquant` feature (no candle), it says so.
    #[cfg(not(feature = "kquant"))]
    pub fn k_quant(
        name: impl Into<String>,
        _dims: Vec<u64>,
        _values: &[f32],
        ty: GgmlType,
    ) -> Result<TensorData, String> {
        Err(format!(
            "`{}`: writing {} is not available: kolm-core was built without its `kquant` feature",
            name.into(),
            ty.name()
        ))
    }

    /// See above: the quantiser itself.
    #[cfg(feature = "kquant")]
    pub fn k_quant(
        name: impl Into<String>,
        dims: Vec<u64>,
        values: &[f32],
        ty: GgmlType,
    ) -> Result<TensorData, String> {
        use candle_core::quantized::{GgmlDType, QTensor};
        let dtype = match ty {
            GgmlType::Q4_K => GgmlDType::Q4K,
            GgmlType::Q5_K => GgmlDType::Q5K,
            GgmlType::Q6_K => GgmlDType::Q6K,
            other => return Err(format!("{} is not a k-quant", other.name())),
        };
        let name = name.into();
        let row = dims.first().copied().unwrap_or(0) as usize;
        if row == 0 || !row.is_multiple_of(256) {
            return Err(format!(
                "`{name}`: rows of {row} values do not split into k-quant blocks of 256"
            ));
        }
        let bytes = candle_core::Tensor::from_slice(
            values,
            (values.len() / row, row),
            &candle_core::Device::Cpu,
        )
        .and_then(|t| QTensor::quantize(&t, dtype))
        .and_then(|q| q.data().map(|d| d.to_vec()))
        .map_err(|e| format!("`{name}`: {e}"))?;
        Ok(TensorData {
            name,
            dims,
            ty,
            bytes,
        })
    }
}

/// IEEE half from single, round to nearest even (enough for scales and test weights).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = (man | 0x80_0000) >> (1 - e);
        let round = (m >> 12) & 1 != 0 && ((m & 0x1fff) != 0x1000 || (m >> 13) & 1 != 0);
        return sign | ((m >> 13) as u16 + round as u16);
    }
    let round = (man >> 12) & 1 != 0 && ((man & 0x1fff) != 0x1000 || (man >> 13) & 1 != 0);
    (sign | ((e as u16) << 10) | (man >> 13) as u16).wrapping_add(round as u16)
}

/// Accumulates metadata and tensors, then serialises them.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorData>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, t: TensorData) -> &mut Self {
        self.tensors.push(t);
        self
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self
            .metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(DEFAULT_ALIGNMENT);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            put_value(&mut out, v, true);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.0.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.bytes.len() as u64).div_ceil(align) * align;
        }
        pad(&mut out, align);
        for t in &self.tensors {
            out.extend_from_slice(&t.bytes);
            pad(&mut out, align);
        }
        out
    }
}

fn pad(out: &mut Vec<u8>, align: u64) {
    let len = out.len() as u64;
    out.resize((len.div_ceil(align) * align) as usize, 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value, with_type: bool) {
    if with_type {
        out.extend_from_slice(&type_id(v).to_le_bytes());
    }
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => put_str(out, s),
        Value::Array(items) => {
            let ety = items.first().map(type_id).unwrap_or(4);
            out.extend_from_slice(&ety.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i, false);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
