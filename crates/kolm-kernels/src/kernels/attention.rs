//! Causal attention over a packed batch ([`crate::train::model::Packed`]) as one op, with its
//! backward pass.
//!
//! Composed from candle ops, packed attention sliced each rest's queries, keys and values out
//! of the layer's tensors, concatenated the shared prefix's keys in front of each rest's, and
//! broadcast the key-value heads to the query heads. Every slice's backward pass is a
//! zero-filled tensor of the whole layer's size plus an addition into the gradient: with 8
//! sequences a batch, 27 of them per layer, most of a training step's memory traffic outside
//! the matrix products. Here each (head, segment) pair reads its rows where they lie, with
//! strided matrix products, and the backward pass writes each gradient row once.
//!
//! A segment is a run of query rows and the key blocks they see: all of every block but the
//! last, and of the last (the rows' own) the keys up to their own. The prefix attends to
//! itself; each rest to the prefix and itself; an unpacked sequence is one segment. Query
//! head `h` reads key-value head `h / (heads / kv_heads)`.
//!
//! The backward pass recomputes the probabilities instead of keeping them (a fraction of the
//! layer's arithmetic, and no `[heads, rows, keys]` tensor held across the step). Heads run in
//! parallel, each head's segments in order on one thread, and the key-value gradients of a
//! group are summed in head order: the same inputs give the same bits.

use std::ops::Range;

use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{exp, f32s, gemm, with_f32s, View};

/// `softmax(scale · q·kᵀ, causal within the packing) · v` for `q` `[heads, rows, head_dim]`
/// and `k`, `v` `[kv_heads, rows, head_dim]`, all contiguous.
#[derive(Debug, Clone)]
pub struct PackedAttention {
    /// Rows `0..prefix` are the shared prefix.
    pub prefix: usize,
    /// Each sequence's own rows after the prefix (none: the rows are one sequence).
    pub rests: Vec<Range<usize>>,
    pub scale: f32,
}

struct Segment {
    queries: Range<usize>,
    /// The key blocks, the queries' own last.
    blocks: Vec<Range<usize>>,
}

impl Segment {
    fn keys(&self) -> usize {
        self.blocks.iter().map(|b| b.len()).sum()
    }
    /// Each block with its first column in the segment's `[queries, keys]` scores.
    fn columns(&self) -> impl Iterator<Item = (usize, &Range<usize>)> {
        self.blocks.iter().scan(0, |c, b| {
            let at = *c;
            *c += b.len();
            Some((at, b))
        })
    }
}

/// Shapes of one call: heads, kv heads, rows, head dim.
#[derive(Clone, Copy)]
struct Dims {
    nh: usize,
    nkv: usize,
    t: usize,
    hd: usize,
}

impl Dims {
    fn of(q: &[usize], k: &[usize], v: &[usize]) -> Result<Dims> {
        let (&[nh, t, hd], &[nkv, tk, hk], true) = (q, k, k == v) else {
            bail!("packed attention: q {q:?}, k {k:?}, v {v:?} are not [heads, rows, head_dim]");
        };
        if tk != t || hk != hd || nkv == 0 || nh % nkv != 0 {
            bail!("packed attention: q {q:?} does not fit k and v {k:?}");
        }
        Ok(Dims { nh, nkv, t, hd })
    }
    fn group(&self, h: usize) -> usize {
        h / (self.nh / self.nkv)
    }
}

/// `f` folded over `x` in eight interleaved lanes, then across them: a fixed order the
/// compiler can vectorise (a single running fold waits on each step's latency).
#[inline(always)]
fn lanes(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    tail.iter()
        .fold(acc.into_iter().fold(init, &f), |a, &b| f(a, b))
}

/// `Σ a·b` in [`lanes`]' order.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl PackedAttention {
    fn segments(&self, t: usize) -> Result<Vec<Segment>> {
        let mut out = Vec::new();
        if self.rests.is_empty() {
            out.push(Segment {
                queries: 0..t,
                blocks: std::iter::once(0..t).collect(),
            });
        } else {
            let pre = 0..self.prefix;
            if !pre.is_empty() {
                out.push(Segment {
                    queries: pre.clone(),
                    blocks: vec![pre.clone()],
                });
            }
            for r in self.rests.iter().filter(|r| !r.is_empty()) {
                let mut blocks = vec![];
                if !pre.is_empty() {
                    blocks.push(pre.clone());
                }
                blocks.push(r.clone());
                out.push(Segment {
                    queries: r.clone(),
                    blocks,
                });
            }
        }
        let mut next = 0;
        for s in &out {
            if s.queries.start != next {
                bail!("packed attention: the packing does not tile the {t} rows");
            }
            next = s.queries.end;
        }
        if next != t {
            bail!("packed attention: the packing covers {next} of {t} rows");
        }
        Ok(out)
    }

    /// The attention probabilities `[queries, keys]` of head `qh` (its rows) over `kg`.
    fn probs(&self, s: &Segment, d: Dims, qh: &[f32], kg: &[f32]) -> Vec<f32> {
        let (nq, nk, hd) = (s.queries.len(), s.keys(), d.hd);
        let mut p = vec![0f32; nq * nk];
        for (c, b) in s.columns() {
            let dst = View {
                off: c,
                rs: nk,
                cs: 1,
            };
            let q = View::rows(s.queries.start * hd, hd);
            gemm(
                (nq, b.len(), hd),
                &mut p,
                dst,
                false,
                1.0,
                qh,
                q,
                kg,
                View::cols(b.start * hd, hd),
                false,
            );
        }
        let own = s.blocks.last().map_or(0, |b| b.len());
        for (j, row) in p.chunks_mut(nk).enumerate() {
            let (seen, unseen) = row.split_at_mut(nk - own + j + 1);
            let max = lanes(seen, f32::NEG_INFINITY, f32::max) * self.scale;
            seen.iter_mut()
                .for_each(|y| *y = exp(*y * self.scale - max));
            let inv = 1.0 / lanes(seen, 0.0, |a, b| a + b);
            seen.iter_mut().for_each(|y| *y *= inv);
            unseen.iter_mut().for_each(|y| *y = 0.0);
        }
        p
    }

    /// The gradients of q, k and v for the output gradient `g`.
    fn backward(
        &self,
        d: Dims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
    ) -> Result<[Vec<f32>; 3]> {
        let segments = self.segments(d.t)?;
        let (hd, n) = (d.hd, d.t * d.hd);
        // Per query head: its q gradient, and its share of its group's k and v gradients.
        let per_head: Vec<[Vec<f32>; 3]> = (0..d.nh)
            .into_par_iter()
            .map(|h| {
                let gi = d.group(h);
                let (qh, gh) = (&q[h * n..(h + 1) * n], &g[h * n..(h + 1) * n]);
                let (kg, vg) = (&k[gi * n..(gi + 1) * n], &v[gi * n..(gi + 1) * n]);
                let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                for s in &segments {
                    let (nq, nk, q0) = (s.queries.len(), s.keys(), s.queries.start * hd);
                    let p = self.probs(s, d, qh, kg);
                    // dP = dO·vᵀ, then dS = scale · P ⊙ (dP − Σ P⊙dP) in place.
                    let mut ds = vec![0f32; nq * nk];
                    for (c, b) in s.columns() {
                        let dst = View {
                            off: c,
                            rs: nk,
                            cs: 1,
                        };
                        gemm(
                            (nq, b.len(), hd),
                            &mut ds,
                            dst,
                            false,
                            1.0,
                            gh,
                            View::rows(q0, hd),
                            vg,
                            View::cols(b.start * hd, hd),
                            false,
                        );
                    }
                    for (dsr, pr) in ds.chunks_mut(nk).zip(p.chunks(nk)) {
                        let dot = dot(dsr, pr);
                        for (x, &y) in dsr.iter_mut().zip(pr) {
                            *x = self.scale * y * (*x - dot);
                        }
                    }
                    for (i, (c, b)) in s.columns().enumerate() {
                        let lb = b.len();
                        // dQ += dS·k; dK += dSᵀ·q; dV += Pᵀ·dO.
                        gemm(
                            (nq, hd, lb),
                            &mut dq,
                            View::rows(q0, hd),
                            i > 0,
                            1.0,
                            &ds,
                            View {
                                off: c,
                                rs: nk,
                                cs: 1,
                            },
                            kg,
                            View::rows(b.start * hd, hd),
                            false,
                        );
                        let t = View {
                            off: c,
                            rs: 1,
                            cs: nk,
                        };
                        gemm(
                            (lb, hd, nq),
                            &mut dk,
                            View::rows(b.start * hd, hd),
                            true,
                            1.0,
                            &ds,
                            t,
                            qh,
                            View::rows(q0, hd),
                            false,
                        );
                        gemm(
                            (lb, hd, nq),
                            &mut dv,
                            View::rows(b.start * hd, hd),
                            true,
                            1.0,
                            &p,
                            t,
                            gh,
                            View::rows(q0, hd),
                            false,
                        );
                    }
                }
                [dq, dk, dv]
            })
            .collect();
        let mut dq = Vec::with_capacity(d.nh * n);
        let (mut dk, mut dv) = (vec![0f32; d.nkv * n], vec![0f32; d.nkv * n]);
        for (h, [q, k, v]) in per_head.into_iter().enumerate() {
            dq.extend_from_slice(&q);
            let gi = d.group(h);
            for (acc, x) in [(&mut dk, k), (&mut dv, v)] {
                acc[gi * n..(gi + 1) * n]
                    .iter_mut()
                    .zip(&x)
                    .for_each(|(a, b)| *a += b);
            }
        }
        Ok([dq, dk, dv])
    }
}

impl CustomOp3 for PackedAttention {
    fn name(&self) -> &'static str {
        "kolm-packed-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = Dims::of(l1.dims(), l2.dims(), l3.dims())?;
        let op = "packed attention";
        let (q, k, v) = (f32s(s1, l1, op)?, f32s(s2, l2, op)?, f32s(s3, l3, op)?);
        let segments = self.segments(d.t)?;
        let (hd, n) = (d.hd, d.t * d.hd);
        let mut out = vec![0f32; d.nh * n];
        out.par_chunks_mut(n).enumerate().for_each(|(h, o)| {
            let gi = d.group(h);
            let (qh, kg, vg) = (
                &q[h * n..(h + 1) * n],
                &k[gi * n..(gi + 1) * n],
                &v[gi * n..(gi + 1) * n],
            );
            for s in &segments {
                let p = self.probs(s, d, qh, kg);
                let nk = s.keys();
                for (i, (c, b)) in s.columns().enumerate() {
                    let pv = View {
                        off: c,
                        rs: nk,
                        cs: 1,
                    };
                    let dst = View::rows(s.queries.start * hd, hd);
                    gemm(
                        (s.queries.len(), hd, b.len()),
                        o,
                        dst,
                        i > 0,
                        1.0,
                        &p,
                        pv,
                        vg,
                        View::rows(b.start * hd, hd),
                        false,
                    );
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = Dims::of(q.dims(), k.dims(), v.dims())?;
        let op = "packed attention back";
        let grad = grad.contiguous()?;
        let [dq, dk, dv] = with_f32s(q, op, |q| {
            with_f32s(k, op, |k| {
                with_f32s(v, op, |v| {
                    with_f32s(&grad, op, |g| self.backward(d, q, k, v, g))
                })
            })
        })?;
        let t = |x: Vec<f32>, like: &Tensor| Tensor::from_vec(x, like.shape(), &Device::Cpu);
        Ok((Some(t(dq, q)?), Some(t(dk, k)?), Some(t(dv, v)?)))
    }
}
