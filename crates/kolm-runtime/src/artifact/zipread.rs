//! Reading an RS-1 zip strictly.
//!
//! A general zip reader is forgiving: it finds the end record by scanning, ignores bytes before
//! the first entry or after the last, and trusts the central directory. A verifier must not be:
//! every one of those slack spaces is a place to hide something. This reader accepts exactly
//! the layout `zipwrite` produces (entries contiguous from offset 0, central directory right
//! after them, end record at the very end with no comment) and says precisely what differs.

use std::io::{Read, Seek, SeekFrom};

use super::zipwrite::{Method, ALIGN_EXTRA_ID};

/// One entry as found in the file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub method: Method,
    pub crc32: u32,
    pub compressed: u64,
    pub size: u64,
    pub header_offset: u64,
    /// Absolute offset of the entry's data.
    pub data_offset: u64,
}

/// Why a file is not a well-formed RS-1 zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

type R<T> = std::result::Result<T, Malformed>;

fn bad<T>(msg: impl Into<String>) -> R<T> {
    Err(Malformed(msg.into()))
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

fn read_at<F: Read + Seek>(f: &mut F, at: u64, len: usize) -> R<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(at))
        .map_err(|e| Malformed(format!("seek failed: {e}")))?;
    f.read_exact(&mut buf).map_err(|_| {
        Malformed(format!(
            "unexpected end of file reading {len} bytes at offset {at} (truncated?)"
        ))
    })?;
    Ok(buf)
}

/// Why the last 22 bytes are not an end-of-archive record: the file was cut short (the record
/// is there but incomplete), bytes were appended after it (however many: the whole file is
/// searched, backwards, since this is only the error path), or there is no record at all.
fn diagnose_end<F: Read + Seek>(f: &mut F, len: u64) -> Malformed {
    const SIG: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const CHUNK: u64 = 1 << 20;
    let mut end = len;
    while end > 0 {
        // Overlap chunks by 3 bytes so a signature across a boundary is still seen.
        let start = end.saturating_sub(CHUNK);
        let Ok(buf) = read_at(f, start, (end - start) as usize) else {
            break;
        };
        for i in buf
            .windows(4)
            .enumerate()
            .rev()
            .filter(|(_, w)| *w == SIG)
            .map(|(i, _)| i)
        {
            let at = start + i as u64;
            let record_end = at + 22;
            if record_end > len {
                return Malformed(format!(
                    "the file ends {} bytes into its end-of-archive record: it was cut short (truncated)",
                    len - at
                ));
            }
            // A real record: the directory it names ends where the record starts.
            let Ok(rec) = read_at(f, at, 22) else {
                continue;
            };
            let (size, offset) = (u32_at(&rec, 12) as u64, u32_at(&rec, 16) as u64);
            let zip64 = size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF;
            if zip64 || offset + size <= at {
                return Malformed(format!(
                    "{} bytes follow the end-of-archive record (appended data or a zip comment)",
                    len - record_end
                ));
            }
        }
        if start == 0 {
            break;
        }
        end = start + 3;
    }
    Malformed(
        "no end-of-archive record anywhere in the file: it is not a zip (or not a `.kolm`)".into(),
    )
}

/// Parses the zip structure of a file of `len` bytes. Data is not read.
pub fn read_entries<F: Read + Seek>(f: &mut F, len: u64) -> R<Vec<Entry>> {
    if len < 22 {
        return bad(format!("{len} bytes is too short to be a zip (truncated?)"));
    }
    let eocd = read_at(f, len - 22, 22)?;
    if u32_at(&eocd, 0) != 0x0605_4b50 {
        return Err(diagnose_end(f, len));
    }
    if u16_at(&eocd, 20) != 0 {
        return bad("the archive has a comment; RS-1 allows none");
    }
    let (mut n, mut cd_size, mut cd_offset) = (
        u16_at(&eocd, 10) as u64,
        u32_at(&eocd, 12) as u64,
        u32_at(&eocd, 16) as u64,
    );
    let mut cd_end = len - 22;
    if cd_offset == 0xFFFF_FFFF || cd_size == 0xFFFF_FFFF {
        if len < 22 + 20 + 56 {
            return bad("ZIP64 records are missing");
        }
        let loc = read_at(f, len - 22 - 20, 20)?;
        if u32_at(&loc, 0) != 0x0706_4b50 {
            return bad("ZIP64 end-of-archive locator is missing");
        }
        let at = u64_at(&loc, 8);
        if at != len - 22 - 20 - 56 {
            return bad("ZIP64 end-of-archive record is not where it belongs");
        }
        let rec = read_at(f, at, 56)?;
        if u32_at(&rec, 0) != 0x0606_4b50 || u64_at(&rec, 4) != 44 {
            return bad("ZIP64 end-of-archive record is malformed");
        }
        n = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_offset = u64_at(&rec, 48);
        cd_end = at;
    }
    if let Some(shift) = cd_end
        .checked_sub(cd_size)
        .and_then(|start| start.checked_sub(cd_offset))
        .filter(|s| *s > 0)
    {
        // Everything is where the directory says, plus `shift`: bytes were put in front.
        let sig = read_at(f, shift, 4).map(|b| u32_at(&b, 0));
        if cd_offset == 0 || sig == Ok(0x0403_4b50) {
            return bad(format!(
                "{shift} bytes precede the first entry (prepended data)"
            ));
        }
    }
    if cd_offset.checked_add(cd_size) != Some(cd_end) {
        return bad(format!(
            "the central directory ({cd_size} bytes at {cd_offset}) does not end where the end record starts ({cd_end}): bytes were inserted, removed or appended"
        ));
    }
    if n > 64 || cd_size > 1 << 20 {
        return bad(format!(
            "{n} entries / a {cd_size}-byte directory is not an RS-1 artifact"
        ));
    }
    let cd = read_at(f, cd_offset, cd_size as usize)?;
    let mut entries = Vec::with_capacity(n as usize);
    let mut i = 0usize;
    for _ in 0..n {
        if i + 46 > cd.len() || u32_at(&cd, i) != 0x0201_4b50 {
            return bad(format!(
                "central directory entry {} is malformed",
                entries.len() + 1
            ));
        }
        let flags = u16_at(&cd, i + 8);
        let method = match u16_at(&cd, i + 10) {
            0 => Method::Stored,
            8 => Method::Deflated,
            m => {
                return bad(format!(
                    "entry {} uses compression method {m}; RS-1 allows stored (0) and deflate (8)",
                    entries.len() + 1
                ))
            }
        };
        if flags & 0x0009 != 0 {
            return bad("an entry is encrypted or uses a data descriptor; RS-1 allows neither");
        }
        let crc32 = u32_at(&cd, i + 16);
        let mut compressed = u32_at(&cd, i + 20) as u64;
        let mut size = u32_at(&cd, i + 24) as u64;
        let (nl, el, cl) = (
            u16_at(&cd, i + 28) as usize,
            u16_at(&cd, i + 30) as usize,
            u16_at(&cd, i + 32) as usize,
        );
        let mut header_offset = u32_at(&cd, i + 42) as u64;
        let end = i + 46 + nl + el + cl;
        if end > cd.len() {
            return bad("central directory entry runs past the directory");
        }
        let name = String::from_utf8(cd[i + 46..i + 46 + nl].to_vec())
            .map_err(|_| Malformed("an entry name is not UTF-8".into()))?;
        if cl != 0 {
            return bad(format!("entry `{name}` has a comment; RS-1 allows none"));
        }
        let mut extra = &cd[i + 46 + nl..i + 46 + nl + el];
        while extra.len() >= 4 {
            let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
            if 4 + len > extra.len() {
                return bad(format!("entry `{name}` has a malformed extra field"));
            }
            let body = &extra[4..4 + len];
            if id != 0x0001 {
                return bad(format!("entry `{name}` has an extra field 0x{id:04x} in the central directory; RS-1 allows only ZIP64"));
            }
            let mut j = 0;
            for field in [&mut size, &mut compressed, &mut header_offset] {
                if *field == 0xFFFF_FFFF {
                    if j + 8 > body.len() {
                        return bad(format!("entry `{name}` has a short ZIP64 field"));
                    }
                    *field = u64_at(body, j);
                    j += 8;
                }
            }
            extra = &extra[4 + len..];
        }
        entries.push(Entry {
            name,
            method,
            crc32,
            compressed,
            size,
            header_offset,
            data_offset: 0,
        });
        i = end;
    }
    if i != cd.len() {
        return bad("the central directory has trailing bytes");
    }
    // Local headers: contiguous from 0, agreeing with the directory.
    let mut expect = 0u64;
    for e in &mut entries {
        if e.header_offset != expect {
            return bad(if expect == 0 {
                format!(
                    "{} bytes precede the first entry (prepended data)",
                    e.header_offset
                )
            } else {
                format!("entry `{}` starts at {} but the previous entry ends at {expect}: bytes were inserted or removed", e.name, e.header_offset)
            });
        }
        let h = read_at(f, e.header_offset, 30)?;
        if u32_at(&h, 0) != 0x0403_4b50 {
            return bad(format!(
                "entry `{}` has no local header at offset {}",
                e.name, e.header_offset
            ));
        }
        let (nl, el) = (u16_at(&h, 26) as usize, u16_at(&h, 28) as usize);
        let rest = read_at(f, e.header_offset + 30, nl + el)?;
        if rest[..nl] != *e.name.as_bytes() {
            return bad(format!(
                "entry `{}`: the local header names `{}`",
                e.name,
                String::from_utf8_lossy(&rest[..nl])
            ));
        }
        if u16_at(&h, 8)
            != match e.method {
                Method::Stored => 0,
                Method::Deflated => 8,
            }
            || u32_at(&h, 14) != e.crc32
            || u16_at(&h, 6) & 0x0009 != 0
        {
            return bad(format!(
                "entry `{}`: the local header disagrees with the central directory",
                e.name
            ));
        }
        let mut extra = &rest[nl..];
        while extra.len() >= 4 {
            let (id, len) = (u16_at(extra, 0), u16_at(extra, 2) as usize);
            if 4 + len > extra.len() || (id != 0x0001 && id != ALIGN_EXTRA_ID) {
                return bad(format!(
                    "entry `{}` has an unexpected extra field 0x{id:04x}",
                    e.name
                ));
            }
            if id == ALIGN_EXTRA_ID && extra[4 + 2.min(len)..4 + len].iter().any(|b| *b != 0) {
                return bad(format!(
                    "entry `{}` hides data in its alignment padding",
                    e.name
                ));
            }
            extra = &extra[4 + len..];
        }
        if !extra.is_empty() {
            return bad(format!("entry `{}` has a malformed extra field", e.name));
        }
        e.data_offset = e.header_offset + 30 + (nl + el) as u64;
        expect = e
            .data_offset
            .checked_add(e.compressed)
            .ok_or_else(|| Malformed("entry sizes overflow".into()))?;
    }
    if expect != cd_offset {
        return bad(format!(
            "{} bytes lie between the last entry and the central directory",
            cd_offset.saturating_sub(expect)
        ));
    }
    Ok(entries)
}
