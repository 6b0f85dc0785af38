//! Each kernel against the same function composed from candle's differentiable primitives:
//! the forward values, and the gradients candle's autograd gives the composition.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, Var, D};

use super::attention::PackedAttention;
use super::linear::{Adapted, Frozen};
use super::nll::Nll;
use super::norm::RmsNorm;
use super::rope::{Pairs, Rope};
use super::swiglu::SwiGlu;

fn randn(seed: u64, dims: &[usize]) -> Tensor {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform() * 4.0 - 2.0).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Runs `ours` and `reference` on the same inputs, weighs the outputs by one random tensor,
/// and compares the outputs and every input's gradient.
fn agree(
    inputs: &[Tensor],
    ours: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Tensor]) -> Result<Tensor>,
    tol: f32,
) {
    let run = |f: &dyn Fn(&[Tensor]) -> Result<Tensor>| {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&xs).unwrap();
        let weights = randn(99, y.dims());
        let grads = (&y * weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<Tensor> = xs.iter().map(|x| grads.get(x).unwrap().clone()).collect();
        (y, g)
    };
    let (y1, g1) = run(&ours);
    let (y2, g2) = run(&reference);
    assert!(
        max_diff(&y1, &y2) < tol,
        "outputs differ by {}",
        max_diff(&y1, &y2)
    );
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        assert!(
            max_diff(a, b) < tol,
            "gradient {i} differs by {}",
            max_diff(a, b)
        );
    }
}

#[test]
fn exp_is_within_two_ulp_of_std() {
    let mut x = -87.0f32;
    while x < 88.0 {
        let (a, b) = (super::exp(x), x.exp());
        let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
        assert!(ulp <= 2, "exp({x}) = {a}, std says {b}");
        x += 0.001_37;
    }
    assert_eq!(super::exp(-200.0), super::exp(-87.336_54));
    assert!(super::exp(200.0).is_finite());
}

#[test]
fn frozen_linear_matches_matmul_and_passes_no_gradient_to_the_weight() {
    let w = randn(2, &[6, 5]);
    agree(
        &[randn(1, &[4, 5])],
        |x| x[0].apply_op1(Frozen(w.clone())),
        |x| x[0].matmul(&w.t()?),
        1e-5,
    );
    // Even a weight that is a variable gets no gradient through it.
    let (x, w) = (
        Var::from_tensor(&randn(1, &[4, 5])).unwrap(),
        Var::new(&[[1f32; 5]; 6], &Device::Cpu).unwrap(),
    );
    let y = x.apply_op1(Frozen(w.as_tensor().clone())).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_some() && grads.get(&w).is_none());
}

#[test]
fn adapted_linear_matches_its_composition() {
    // Gradients for x, A and B; none for W (it is not an input).
    let w = randn(7, &[7, 12]);
    agree(
        &[randn(1, &[5, 12]), randn(2, &[3, 12]), randn(3, &[7, 3])],
        |x| {
            let op = Adapted {
                w: w.clone(),
                scale: 0.7,
            };
            x[0].apply_op3(&x[1], &x[2], op)
        },
        |x| {
            let low = (x[0].matmul(&x[1].t()?)? * 0.7)?.matmul(&x[2].t()?)?;
            x[0].matmul(&w.t()?)? + low
        },
        1e-4,
    );
}

#[test]
fn rms_norm_matches_its_composition() {
    let w = randn(3, &[7]);
    agree(
        &[randn(4, &[3, 2, 7])],
        |x| {
            x[0].apply_op1(RmsNorm {
                w: w.clone(),
                eps: 1e-6,
            })
        },
        |x| {
            let ms = x[0].sqr()?.mean_keepdim(D::Minus1)?;
            x[0].broadcast_div(&(ms + 1e-6)?.sqrt()?)?.broadcast_mul(&w)
        },
        1e-4,
    );
}

/// Packed attention against the composition it replaced: each segment's queries over its key
/// blocks sliced out and concatenated, the key-value heads broadcast to the query heads, the
/// causal mask on the segment's own block, and softmax from `exp`, `max` and `sum`.
fn attention_reference(x: &[Tensor], op: &PackedAttention) -> Result<Tensor> {
    let (q, k, v) = (&x[0], &x[1], &x[2]);
    let (nh, t, hd) = q.dims3()?;
    let nkv = k.dim(0)?;
    let group = |y: &Tensor| {
        y.unsqueeze(1)?
            .broadcast_as((nkv, nh / nkv, t, hd))?
            .contiguous()?
            .reshape((nh, t, hd))
    };
    let (k, v) = (group(k)?, group(v)?);
    let segments: Vec<(std::ops::Range<usize>, Vec<std::ops::Range<usize>>)> =
        if op.rests.is_empty() {
            vec![(0..t, std::iter::once(0..t).collect())]
        } else {
            let pre = 0..op.prefix;
            let mut s = vec![];
            if op.prefix > 0 {
                s.push((pre.clone(), vec![pre.clone()]));
            }
            for r in op.rests.iter().filter(|r| !r.is_empty()) {
                let mut blocks = vec![];
                if op.prefix > 0 {
                    blocks.push(pre.clone());
                }
                blocks.push(r.clone());
                s.push((r.clone(), blocks));
            }
            s
        };
    let mut parts = vec![];
    for (qs, blocks) in segments {
        let take = |y: &Tensor| -> Result<Tensor> {
            let b: Vec<Tensor> = blocks
                .iter()
                .map(|b| y.narrow(1, b.start, b.len()))
                .collect::<Result<_>>()?;
            Tensor::cat(&b, 1)
        };
        let (kb, vb) = (take(&k)?, take(&v)?);
        let (nq, nk) = (qs.len(), kb.dim(1)?);
        let mask: Vec<f32> = (0..nq * nk)
            .map(|i| {
                if i % nk > nk - nq + i / nk {
                    -1e30
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (nq, nk), &Device::Cpu)?;
        let s = (q.narrow(1, qs.start, nq)?.matmul(&kb.t()?)? * op.scale as f64)?
            .broadcast_add(&mask)?;
        let e = s.broadcast_sub(&s.max_keepdim(D::Minus1)?)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        parts.push(p.matmul(&vb)?);
    }
    Tensor::cat(&parts, 1)
}

#[test]
fn packed_attention_matches_its_composition() {
    // One sequence; a prefix and three rests (one empty); rests with no prefix; MHA and GQA.
    let cases = [
        (
            4,
            2,
            7,
            PackedAttention {
                prefix: 7,
                rests: vec![],
                scale: 0.3,
            },
        ),
        (
            4,
            2,
            11,
            PackedAttention {
                prefix: 4,
                rests: vec![4..7, 7..7, 7..11],
                scale: 0.3,
            },
        ),
        (
            2,
            2,
            6,
            PackedAttention {
                prefix: 0,
                rests: vec![0..2, 2..6],
                scale: 0.5,
            },
        ),
        (
            6,
            3,
            9,
            PackedAttention {
                prefix: 5,
                rests: std::iter::once(5..9).collect(),
                scale: 0.25,
            },
        ),
    ];
    for (nh, nkv, t, op) in cases {
        let hd = 8;
        agree(
            &[
                randn(1, &[nh, t, hd]),
                randn(2, &[nkv, t, hd]),
                randn(3, &[nkv, t, hd]),
            ],
            |x| x[0].apply_op3(&x[1], &x[2], op.clone()),
            |x| attention_reference(x, &op),
            1e-5,
        );
    }
}

#[test]
fn packed_attention_refuses_a_packing_that_does_not_tile_the_rows() {
    let (q, k) = (randn(1, &[2, 6, 4]), randn(2, &[2, 6, 4]));
    let one = |r: std::ops::Range<usize>| std::iter::once(r).collect::<Vec<_>>();
    for rests in [one(2..4), one(3..6), vec![2..4, 4..7]] {
        let op = PackedAttention {
            prefix: 2,
            rests,
            scale: 1.0,
        };
        let e = q.apply_op3(&k, &k, op).unwrap_err().to_string();
        assert!(e.contains("packed attention"), "{e}");
    }
}

#[test]
fn rope_matches_its_composition_in_both_conventions() {
    let (h, t, d) = (2, 4, 8);
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 10000f64.powf(-2.0 * i as f64 / d as f64) as f32)
        .collect();
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let inv = Tensor::new(inv.as_slice(), &Device::Cpu).unwrap();
    let ang = pos
        .reshape((t, 1))
        .unwrap()
        .broadcast_mul(&inv.reshape((1, d / 2)).unwrap())
        .unwrap();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    for pairs in [Pairs::Adjacent, Pairs::Halves] {
        let rope = Rope::new(&(0..t).collect::<Vec<_>>(), d, 10000.0, pairs);
        agree(
            &[randn(6, &[h, t, d])],
            |x| x[0].apply_op1(rope.clone()),
            |x| {
                let (x0, x1) = match pairs {
                    Pairs::Adjacent => {
                        let x = x[0].reshape((h, t, d / 2, 2))?;
                        (
                            x.narrow(3, 0, 1)?.squeeze(3)?,
                            x.narrow(3, 1, 1)?.squeeze(3)?,
                        )
                    }
                    Pairs::Halves => (x[0].narrow(2, 0, d / 2)?, x[0].narrow(2, d / 2, d / 2)?),
                };
                let o0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
                let o1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
                match pairs {
                    Pairs::Adjacent => Tensor::stack(&[o0, o1], 3)?.reshape((h, t, d)),
                    Pairs::Halves => Tensor::cat(&[o0, o1], 2),
                }
            },
            1e-5,
        );
    }
}

#[test]
fn swiglu_matches_its_composition() {
    agree(
        &[randn(7, &[3, 40_000]), randn(8, &[3, 40_000])],
        |x| x[0].apply_op2(&x[1], SwiGlu),
        |x| x[0].silu()? * &x[1],
        1e-5,
    );
}

#[test]
fn nll_matches_log_softmax_and_gather() {
    let targets: Vec<u32> = vec![3, 0, 36];
    let t = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
    agree(
        &[(randn(9, &[3, 37]) * 4.0).unwrap()],
        |x| {
            x[0].apply_op1(Nll {
                targets: Arc::from(targets.as_slice()),
            })
        },
        |x| {
            let logp = candle_nn::ops::log_softmax(&x[0], 1)?;
            logp.gather(&t.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
        },
        1e-5,
    );
    let bad = randn(9, &[1, 37]).apply_op1(Nll {
        targets: Arc::from(&[37u32][..]),
    });
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("outside the vocabulary"));
}
