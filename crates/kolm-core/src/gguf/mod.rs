//! GGUF, the file format of the student model and of its LoRA adapter.
//!
//! kolm reads GGUF headers (architecture, quantisation, parameter count, context length, tensor
//! shapes) without touching the weights, so a multi-GB base costs one small read; and it writes
//! GGUF for the files it makes itself: the tiny test models and the zero-init adapter.
//! Reference: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

pub mod adapter;
mod read;
pub mod tiny;
mod write;

pub use read::{check_extent, read_header, read_header_from};
pub use write::{GgufWriter, TensorData};

/// GGUF magic, "GGUF" little-endian.
pub const MAGIC: u32 = 0x4655_4747;

/// Whether the file at `path` starts with the GGUF magic: the cheap check a Kolmfile's reader
/// makes before any stage reads the header.
pub fn has_magic(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && u32::from_le_bytes(b) == MAGIC
}
/// Default alignment of the tensor data section.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// A short human form, for `kolm inspect` (arrays are summarised, not dumped).
    pub fn summary(&self) -> String {
        match self {
            Value::Str(s) if s.len() > 60 => format!("{:?}…", &s[..s.floor_char_boundary(60)]),
            Value::Str(s) => format!("{s:?}"),
            Value::Array(a) => format!("[{} items]", a.len()),
            Value::Bool(b) => b.to_string(),
            v => v.as_f64().map(|f| f.to_string()).unwrap_or_default(),
        }
    }
}

/// ggml tensor types kolm knows the size of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);

    /// (elements per block, bytes per block), or None for a type kolm does not know.
    pub fn block(self) -> Option<(u64, u64)> {
        Some(match self.0 {
            0 => (1, 4),
            1 | 30 => (1, 2),
            2 => (32, 18),
            3 => (32, 20),
            6 => (32, 22),
            7 => (32, 24),
            8 => (32, 34),
            9 => (32, 36),
            10 => (256, 84),
            11 => (256, 110),
            12 => (256, 144),
            13 => (256, 176),
            14 => (256, 210),
            15 => (256, 292),
            24 => (1, 1),
            25 => (1, 2),
            26 => (1, 4),
            27 => (1, 8),
            28 => (1, 8),
            _ => return None,
        })
    }

    pub fn name(self) -> String {
        match self.0 {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            6 => "Q5_0",
            7 => "Q5_1",
            8 => "Q8_0",
            9 => "Q8_1",
            10 => "Q2_K",
            11 => "Q3_K",
            12 => "Q4_K",
            13 => "Q5_K",
            14 => "Q6_K",
            15 => "Q8_K",
            30 => "BF16",
            n => return format!("type{n}"),
        }
        .to_string()
    }

    /// Bytes taken by `n` elements, if the type is known and `n` is whole blocks.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (per, bytes) = self.block()?;
        n.is_multiple_of(per).then(|| n / per * bytes)
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF header: metadata and the tensor table, without the weights.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute offset of the data section in the file.
    pub data_offset: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }
    /// `<arch>.<key>`, e.g. `arch_u64("context_length")`.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{key}")).and_then(Value::as_u64)
    }
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::elements).sum()
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The quantisation, from `general.file_type`, else the most common weight type.
    pub fn quantization(&self) -> String {
        if let Some(ft) = self.get("general.file_type").and_then(Value::as_u64) {
            let name = match ft {
                0 => "F32",
                1 => "F16",
                2 => "Q4_0",
                3 => "Q4_1",
                7 => "Q8_0",
                8 => "Q5_0",
                9 => "Q5_1",
                10 => "Q2_K",
                11 => "Q3_K_S",
                12 => "Q3_K_M",
                13 => "Q3_K_L",
                14 => "Q4_K_S",
                15 => "Q4_K_M",
                16 => "Q5_K_S",
                17 => "Q5_K_M",
                18 => "Q6_K",
                32 => "BF16",
                _ => "",
            };
            if !name.is_empty() {
                return name.to_string();
            }
        }
        let mut counts: Vec<(u32, u64)> = Vec::new();
        for t in &self.tensors {
            match counts.iter_mut().find(|(ty, _)| *ty == t.ty.0) {
                Some((_, n)) => *n += t.elements(),
                None => counts.push((t.ty.0, t.elements())),
            }
        }
        counts
            .iter()
            .max_by_key(|(_, n)| *n)
            .map(|(ty, _)| GgmlType(*ty).name())
            .unwrap_or_else(|| "none".into())
    }
    /// The facts `kolm inspect` and the manifest show about a model or adapter.
    pub fn summary(&self) -> ModelSummary {
        ModelSummary {
            architecture: self.architecture().unwrap_or("unknown").to_string(),
            kind: self
                .get("general.type")
                .and_then(Value::as_str)
                .unwrap_or("model")
                .to_string(),
            quantization: self.quantization(),
            parameters: self.parameter_count(),
            context_length: self.arch_u64("context_length"),
            embedding_length: self.arch_u64("embedding_length"),
            block_count: self.arch_u64("block_count"),
            tensors: self.tensors.len() as u64,
            name: self
                .get("general.name")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// What a GGUF header says about a model, in the terms a user cares about.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSummary {
    pub architecture: String,
    /// `model` or `adapter`.
    pub kind: String,
    pub quantization: String,
    pub parameters: u64,
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    pub block_count: Option<u64>,
    pub tensors: u64,
    pub name: Option<String>,
}

/// A GGUF that cannot be read, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("not a readable GGUF file: {0}")]
pub struct GgufError(pub String);
