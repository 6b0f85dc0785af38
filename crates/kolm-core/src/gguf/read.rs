//! Reading a GGUF header defensively: every count and length is bounded before anything is
//! allocated, so a truncated or hostile file is an error, never a panic or a huge allocation.

use std::io::{BufReader, Read};
use std::path::Path;

use super::{GgmlType, GgufError, Header, TensorInfo, Value, DEFAULT_ALIGNMENT, MAGIC};

const MAX_STRING: u64 = 16 << 20;
const MAX_ARRAY: u64 = 8 << 20;
const MAX_KV: u64 = 1 << 16;
const MAX_TENSORS: u64 = 1 << 20;
const MAX_DIMS: u32 = 8;

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<Header, GgufError> {
    let f = std::fs::File::open(path)
        .map_err(|e| GgufError(format!("cannot open {}: {e}", path.display())))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let h = read_header_from(&mut BufReader::with_capacity(1 << 16, f))?;
    check_extent(&h, len)?;
    Ok(h)
}

/// Checks that every tensor's data lies inside a file of `len` bytes.
pub fn check_extent(h: &Header, len: u64) -> Result<(), GgufError> {
    for t in &h.tensors {
        let size = t.ty.bytes_for(t.elements()).unwrap_or(0);
        let end = h
            .data_offset
            .checked_add(t.offset)
            .and_then(|o| o.checked_add(size));
        if end.is_none_or(|e| e > len) {
            return Err(GgufError(format!(
                "tensor `{}` extends past the end of the file (truncated?)",
                t.name
            )));
        }
    }
    Ok(())
}

struct Rd<'a, R> {
    r: &'a mut R,
    pos: u64,
}

impl<R: Read> Rd<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| GgufError(format!("unexpected end of file at byte {}", self.pos)))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()?;
        if n > MAX_STRING {
            return Err(GgufError(format!(
                "string of {n} bytes at byte {} is implausible",
                self.pos
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|_| GgufError(format!("unexpected end of file at byte {}", self.pos)))?;
        self.pos += n;
        String::from_utf8(buf)
            .map_err(|_| GgufError(format!("string at byte {} is not UTF-8", self.pos)))
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            0 => Value::U8(self.bytes::<1>()?[0]),
            1 => Value::I8(self.bytes::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(GgufError("arrays nested too deeply".into()));
                }
                let ety = self.u32()?;
                let n = self.u64()?;
                if n > MAX_ARRAY {
                    return Err(GgufError(format!("array of {n} items is implausible")));
                }
                let mut v = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            t => {
                return Err(GgufError(format!(
                    "unknown metadata value type {t} at byte {}",
                    self.pos
                )))
            }
        })
    }
}

/// Reads a GGUF header from a reader positioned at the start of the file.
pub fn read_header_from<R: Read>(r: &mut R) -> Result<Header, GgufError> {
    let mut rd = Rd { r, pos: 0 };
    if rd.u32()? != MAGIC {
        return Err(GgufError("bad magic (expected \"GGUF\")".into()));
    }
    let version = rd.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError(format!("unsupported GGUF version {version}")));
    }
    let n_tensors = rd.u64()?;
    let n_kv = rd.u64()?;
    if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
        return Err(GgufError(format!(
            "{n_tensors} tensors / {n_kv} metadata keys is implausible"
        )));
    }
    let mut metadata = Vec::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let k = rd.string()?;
        let ty = rd.u32()?;
        let v = rd.value(ty, 0)?;
        metadata.push((k, v));
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = rd.string()?;
        let nd = rd.u32()?;
        if nd == 0 || nd > MAX_DIMS {
            return Err(GgufError(format!("tensor `{name}` has {nd} dimensions")));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            dims.push(rd.u64()?);
        }
        if dims
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .is_none()
        {
            return Err(GgufError(format!(
                "tensor `{name}` has an impossible shape {dims:?}"
            )));
        }
        let ty = GgmlType(rd.u32()?);
        let offset = rd.u64()?;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
        });
    }
    let align = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(DEFAULT_ALIGNMENT)
        .max(1);
    let data_offset = rd.pos.div_ceil(align) * align;
    Ok(Header {
        version,
        metadata,
        tensors,
        data_offset,
    })
}
