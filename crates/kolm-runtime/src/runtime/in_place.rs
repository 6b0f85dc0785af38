//! The model and adapter read in place: llama.cpp loads them from the verified artifact's own
//! open file, at their entries' offsets (runtime.md §1).
//!
//! RS-1 stores `model.gguf` uncompressed at a 4096-aligned offset, and llama.cpp can read a
//! GGUF from an open `FILE*` at its current position (`llama_model_load_from_file_ptr`,
//! `llama_adapter_lora_init_from_file_ptr`), memory-mapping the tensors where they lie when the
//! data section is aligned. So nothing is copied out and nothing is rehashed after
//! verification, and the handle llama.cpp reads is a duplicate of the one that was verified:
//! there is no path to swap in between.
//!
//! The safe `llama-cpp-2` wrapper does not expose these two functions, and its `LlamaModel` and
//! `LlamaLoraAdapter` can only be made by its own loaders. Both are one non-null pointer (a
//! `#[repr(transparent)]` `Ptr` around `NonNull`), so a pointer from the C function is turned
//! into the wrapper's type by `transmute`, whose size check fails the build if that ever
//! changes; the wrapper then owns and frees it as it does its own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;

use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};

use crate::{Error, Result};

/// An entry's bytes inside the artifact: where they start and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

/// The tensor alignment llama.cpp's CPU backend needs to map a GGUF's data section in place.
const MMAP_ALIGN: u64 = 32;

/// A read-only view of `span` of `file`, by positional reads (the file's own cursor is left
/// alone): what kolm's GGUF reader checks before llama.cpp sees the entry.
pub struct Window<'a> {
    file: &'a File,
    span: Span,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, span: Span) -> Window<'a> {
        Window { file, span, pos: 0 }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.span.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self
            .file
            .read_at(&mut buf[..n], self.span.offset + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.span.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the entry")
        })?;
        Ok(self.pos)
    }
}

/// A C `FILE*` on a duplicate of `file`'s descriptor (the same open file), positioned at
/// `offset`; closed on drop.
struct CFile(NonNull<libc::FILE>);

impl CFile {
    fn at(file: &File, offset: u64) -> std::io::Result<CFile> {
        // SAFETY: dup of a descriptor we own for the duration of the call; fdopen takes the
        // duplicate, which fclose then closes.
        unsafe {
            let fd = libc::dup(file.as_raw_fd());
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fp = libc::fdopen(fd, c"rb".as_ptr());
            let Some(fp) = NonNull::new(fp) else {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            };
            let c = CFile(fp);
            let offset = libc::off_t::try_from(offset)
                .map_err(|_| std::io::Error::other("offset past off_t"))?;
            if libc::fseeko(c.0.as_ptr(), offset, libc::SEEK_SET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(c)
        }
    }

    /// The pointer as llama-cpp-sys-2's own (private) `FILE` type: the same C struct.
    fn as_sys<T>(&self) -> *mut T {
        self.0.as_ptr().cast()
    }
}

impl Drop for CFile {
    fn drop(&mut self) {
        // SAFETY: opened by fdopen above and not closed elsewhere (llama.cpp does not own a
        // FILE* it is handed).
        unsafe {
            libc::fclose(self.0.as_ptr());
        }
    }
}

/// Whether llama.cpp can map the tensors of the GGUF at `span` where they lie: its data
/// section (`data_offset` into the GGUF) must sit at an aligned offset of the file.
pub fn mappable(span: Span, data_offset: u64) -> bool {
    (span.offset + data_offset).is_multiple_of(MMAP_ALIGN)
}

/// Loads the model whose GGUF is `span` of `file`: mapped in place when `mappable`, else read
/// into memory through the same handle (llama.cpp refuses to map an unaligned data section).
/// The caller has started llama.cpp's backend (`engine::backend`).
pub fn load_model(file: &File, span: Span, mmap: bool, label: &str) -> Result<LlamaModel> {
    let c = CFile::at(file, span.offset)
        .map_err(|e| Error::failed(format!("could not read {label} in place"), e.to_string()))?;
    // SAFETY: plain data, llama.cpp's own defaults (what the wrapper's default starts from).
    let mut params = unsafe { llama_cpp_sys_2::llama_model_default_params() };
    params.load_mode = if mmap {
        llama_cpp_sys_2::LLAMA_LOAD_MODE_MMAP
    } else {
        llama_cpp_sys_2::LLAMA_LOAD_MODE_NONE
    };
    // SAFETY: a valid FILE* positioned at a GGUF that kolm's reader has checked (header,
    // extent); llama.cpp reads it during the call and keeps only its own mapping.
    let raw = unsafe { llama_cpp_sys_2::llama_model_load_from_file_ptr(c.as_sys(), params) };
    let Some(raw) = NonNull::new(raw) else {
        return Err(Error::invalid(
            format!("llama.cpp could not load {label}"),
            "the file passed kolm's GGUF checks but llama.cpp refused it: check that its architecture is one llama.cpp supports",
        ));
    };
    // SAFETY: `LlamaModel` is one `Ptr<llama_model>` (`#[repr(transparent)]` over
    // `NonNull<llama_model>`); transmute checks the sizes. The model is owned by the result,
    // whose Drop frees it with llama_model_free, as for a model the wrapper loaded.
    Ok(unsafe { std::mem::transmute::<NonNull<llama_cpp_sys_2::llama_model>, LlamaModel>(raw) })
}

/// Loads the LoRA adapter whose GGUF is `span` of `file` for `model`.
pub fn load_adapter(
    model: &mut LlamaModel,
    file: &File,
    span: Span,
    label: &str,
) -> Result<LlamaLoraAdapter> {
    let c = CFile::at(file, span.offset)
        .map_err(|e| Error::failed(format!("could not read {label} in place"), e.to_string()))?;
    // SAFETY: the inverse of the transmute below: `LlamaModel` is one non-null pointer to the
    // model, borrowed mutably for the call as the wrapper's own `lora_adapter_init` does.
    let model_ptr = unsafe {
        std::mem::transmute_copy::<LlamaModel, NonNull<llama_cpp_sys_2::llama_model>>(model)
    };
    // SAFETY: a valid model and a FILE* positioned at an adapter GGUF kolm has checked.
    let raw = unsafe {
        llama_cpp_sys_2::llama_adapter_lora_init_from_file_ptr(model_ptr.as_ptr(), c.as_sys())
    };
    let Some(raw) = NonNull::new(raw) else {
        return Err(Error::invalid(
            format!("llama.cpp could not load the adapter {label}"),
            "the adapter must be a GGUF LoRA adapter for this base (general.type = adapter)",
        ));
    };
    // SAFETY: as for the model: `LlamaLoraAdapter` is one `Ptr<llama_adapter_lora>`.
    Ok(unsafe {
        std::mem::transmute::<NonNull<llama_cpp_sys_2::llama_adapter_lora>, LlamaLoraAdapter>(raw)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reads_and_seeks_only_its_span() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"0123456789").unwrap();
        let mut w = Window::new(&f, Span { offset: 3, len: 4 });
        let mut s = String::new();
        w.read_to_string(&mut s).unwrap();
        assert_eq!(s, "3456");
        w.seek(SeekFrom::Start(2)).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(w.read(&mut b).unwrap(), 2);
        assert_eq!(&b[..2], b"56");
        assert!(w.seek(SeekFrom::Current(-9)).is_err());
    }

    #[test]
    fn the_wrappers_are_one_pointer() {
        assert_eq!(
            std::mem::size_of::<LlamaModel>(),
            std::mem::size_of::<NonNull<llama_cpp_sys_2::llama_model>>()
        );
        assert_eq!(
            std::mem::size_of::<LlamaLoraAdapter>(),
            std::mem::size_of::<NonNull<llama_cpp_sys_2::llama_adapter_lora>>()
        );
    }
}
