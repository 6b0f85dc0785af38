//! CPU kernels kolm writes itself, as candle custom ops.
//!
//! Two reasons to write one. Speed: candle builds softmax, norms and activations out of
//! several whole-tensor passes with scalar `exp`/`erf` calls, where one pass over each row with
//! a polynomial the compiler vectorises does the same work. And training: candle's autograd
//! keeps every intermediate tensor of a composed op alive until the backward pass, and its
//! matmul backward computes the gradient of the weight too, even for a base weight nobody
//! trains. Each training op here has a hand-written backward pass that keeps only what it needs
//! (an input or the output) and computes only the gradients that are used. The backward pass
//! is the same type's implementation of the next candle op trait (an op that is `CustomOp1`
//! forward is `CustomOp2` backward, taking the gradient as one more input), so its settings are
//! written once.
//!
//! Every kernel works row by row, each row on its own and in a fixed order, so results do not
//! depend on how rayon splits the rows: the same inputs give the same bits.
//!
//! - [`attention`]: causal attention over a packed batch, with GQA.
//! - [`gelu`]: BERT's exact GELU (recall's encoder).
//! - [`linear`]: `x·Wᵀ` for a frozen `W`.
//! - [`norm`]: RMSNorm, as llama.cpp computes it.
//! - [`rope`]: rotary position embeddings, both conventions.
//! - [`swiglu`]: `silu(gate) · up`.
//! - [`nll`]: the negative log-likelihood of target tokens, straight from logits.

pub mod attention;
pub mod gelu;
pub mod linear;
pub mod nll;
pub mod norm;
pub mod rope;
pub mod swiglu;

#[cfg(test)]
mod tests;

use candle_core::{bail, CpuStorage, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

/// The f32 elements a contiguous layout covers.
fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: f32 only");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!("{op}: contiguous input only");
    };
    Ok(&v[start..end])
}

/// Runs `f` on a (contiguous, f32, CPU) tensor's elements.
fn with_f32s<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (s, l) = t.storage_and_layout();
    let Storage::Cpu(s) = &*s else {
        bail!("{op}: CPU tensors only");
    };
    f(f32s(s, l, op)?)
}

/// The length of the last dimension, and a check that `len` is a whole number of rows.
fn row_len(l: &Layout, op: &str) -> Result<usize> {
    let n = l.dims().last().copied().unwrap_or(1);
    if n == 0 {
        bail!("{op}: empty rows");
    }
    Ok(n)
}

/// Calls `f(r, row r of out)` for every row of `n` elements, in parallel.
fn rows_mut(out: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    out.par_chunks_mut(n)
        .enumerate()
        .for_each(|(r, row)| f(r, row));
}

/// A tensor of `x`'s shape whose row `r` is written by `f(r, row r of x, out)`.
fn map_rows(
    s: &CpuStorage,
    l: &Layout,
    op: &str,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync + Send,
) -> Result<(CpuStorage, Shape)> {
    let x = f32s(s, l, op)?;
    let n = row_len(l, op)?;
    let mut out = vec![0f32; x.len()];
    rows_mut(&mut out, n, |r, y| f(r, &x[r * n..(r + 1) * n], y));
    Ok((CpuStorage::F32(out), l.shape().clone()))
}

/// [`map_rows`] over two tensors of the same shape: `f(r, row of a, row of b, out)`.
fn map_rows2(
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    op: &str,
    f: impl Fn(usize, &[f32], &[f32], &mut [f32]) + Sync + Send,
) -> Result<(CpuStorage, Shape)> {
    if l1.dims() != l2.dims() {
        bail!("{op}: shapes {:?} and {:?} differ", l1.dims(), l2.dims());
    }
    let b = f32s(s2, l2, op)?;
    let n = row_len(l1, op)?;
    map_rows(s1, l1, op, |r, a, y| f(r, a, &b[r * n..(r + 1) * n], y))
}

/// A strided view of a matrix in a slice: element (i, j) at `off + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct View {
    off: usize,
    rs: usize,
    cs: usize,
}

impl View {
    /// Row-major rows of `n` values from `off`.
    fn rows(off: usize, n: usize) -> View {
        View { off, rs: n, cs: 1 }
    }
    /// The transpose of [`View::rows`]: row-major rows of `n` read as columns.
    fn cols(off: usize, n: usize) -> View {
        View { off, rs: 1, cs: n }
    }
}

/// `dst[m×n] = (dst +) scale · a[m×k] · b[k×n]` with the `gemm` crate candle's matrix products
/// run on, on strided views, so a kernel multiplies blocks where they lie and accumulates into
/// its output (candle's matmul copies strided operands, zero-fills a new output per product and
/// leaves sums to separate passes). `parallel` spreads it over the current rayon pool; the
/// result does not depend on that (each output block is reduced in a fixed order).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    d: View,
    accumulate: bool,
    scale: f32,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |v: View, r: usize, c: usize| v.off + (r - 1) * v.rs + (c - 1) * v.cs;
    assert!(
        last(d, m, n) < dst.len(),
        "gemm: the output view is out of range"
    );
    if k > 0 {
        assert!(
            last(av, m, k) < a.len(),
            "gemm: the left view is out of range"
        );
        assert!(
            last(bv, k, n) < b.len(),
            "gemm: the right view is out of range"
        );
    }
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: every element each view reaches is inside its slice (checked above), and `dst`
    // is borrowed mutably, so it overlaps neither input.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(d.off),
            d.cs as isize,
            d.rs as isize,
            accumulate,
            a.as_ptr().add(av.off),
            av.cs as isize,
            av.rs as isize,
            b.as_ptr().add(bv.off),
            bv.cs as isize,
            bv.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        )
    }
}

/// `e^x` for f32 without a call: Cephes' `expf` (range reduction by ln 2, a degree-6
/// polynomial, the exponent put in by bit arithmetic), within 2 ulp of `f32::exp` and
/// vectorised by the compiler. Below -87.3 it gives 0, above 88.7 the largest finite value.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_83);
    let n = (x * std::f32::consts::LOG2_E).round();
    // x - n·ln2 in two parts, so the reduction loses no precision.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    // 2^n, built in the exponent bits (n is within [-126, 128] after the clamp).
    let n = n as i32;
    let (n1, n2) = (n / 2, n - n / 2);
    y * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}
