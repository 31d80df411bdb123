//! CPU building blocks: `gemm` through the `gemm` crate (packed, SIMD, rayon), row-parallel
//! `layer_norm` and `softmax`, and small-sequence `attention`.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::problem::{Activation, AttentionProblem, LayerNormProblem};

/// A read-only strided matrix: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `dst [m×n]` (row stride `dst_rs`, unit column stride) `= lhs [m×k] · rhs [k×n]`.
#[allow(clippy::too_many_arguments)] // three dimensions, three operands, two strides
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    par: Parallelism,
) {
    matmul_into(m, n, k, dst, dst_rs, lhs, rhs, par, false)
}

/// [`matmul`], adding the product to what `dst` holds when `accumulate` is set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    par: Parallelism,
    accumulate: bool,
) {
    // The views must lie inside their slices: the `gemm` call below reads and writes raw pointers.
    assert!(
        dst.len() >= extent(m, n, dst_rs, 1)
            && lhs.data.len() >= extent(m, k, lhs.rs, lhs.cs)
            && rhs.data.len() >= extent(k, n, rhs.rs, rhs.cs),
        "matmul view out of bounds"
    );
    // SAFETY: every index the kernel touches is within the extents asserted above; dst does not
    // alias lhs or rhs (it is a distinct &mut slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// `act(x [rows,k] · Wᵀ + b)` with PyTorch's `W [n,k]`.
pub(crate) fn linear(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
) -> Vec<f32> {
    let mut y = vec![0.0; rows * n];
    matmul(
        rows,
        n,
        k,
        &mut y,
        n,
        View { data: x, rs: k, cs: 1 },
        View { data: weight, rs: 1, cs: k },
        Parallelism::Rayon(0),
    );
    if bias.is_some() || act != Activation::None {
        y.par_chunks_mut(n).for_each(|row| {
            for (j, o) in row.iter_mut().enumerate() {
                *o = act.apply(*o + bias.map_or(0.0, |b| b[j]));
            }
        });
    }
    y
}

pub(crate) fn layer_norm(p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(p.width).zip(x.par_chunks(p.width)).for_each(|(out, row)| {
        let n = p.width as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + p.eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    });
    y
}

/// In-place max-subtracted softmax of one row.
#[inline]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in row.iter_mut() {
        *v = (*v - mx).exp();
        s += *v;
    }
    let inv = 1.0 / s;
    row.iter_mut().for_each(|v| *v *= inv);
}

pub(crate) fn softmax(width: usize, x: &[f32]) -> Vec<f32> {
    let mut y = x.to_vec();
    y.par_chunks_mut(width).for_each(softmax_row);
    y
}

/// Multi-head attention; one rayon task per (b, h), each a score GEMM, row softmax, PV GEMM.
pub(crate) fn attention(p: &AttentionProblem, q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>) -> Vec<f32> {
    let (w, dh, lq, lk) = (p.width(), p.head_dim, p.q_len, p.k_len);
    let heads: Vec<(usize, usize, Vec<f32>)> = (0..p.batch * p.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / p.heads, bh % p.heads);
            let mut s = vec![0.0; lq * lk];
            let qv = View { data: &q[b * lq * w + h * dh..], rs: w, cs: 1 };
            let kt = View { data: &k[b * lk * w + h * dh..], rs: 1, cs: w };
            matmul(lq, lk, dh, &mut s, lk, qv, kt, Parallelism::None);
            for row in s.chunks_mut(lk) {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x * p.scale + mask.map_or(0.0, |m| m[b * lk + j]);
                }
                softmax_row(row);
            }
            let mut o = vec![0.0; lq * dh];
            matmul(
                lq,
                dh,
                lk,
                &mut o,
                dh,
                View { data: &s, rs: lk, cs: 1 },
                View { data: &v[b * lk * w + h * dh..], rs: w, cs: 1 },
                Parallelism::None,
            );
            (b, h, o)
        })
        .collect();
    let mut out = vec![0.0; p.batch * lq * w];
    for (b, h, o) in heads {
        for i in 0..lq {
            out[(b * lq + i) * w + h * dh..][..dh].copy_from_slice(&o[i * dh..(i + 1) * dh]);
        }
    }
    out
}
