//! The cpu backend's `gated_cross_attn`: each head's score matrix is computed once and both
//! softmaxes are taken from it (rows → image side, columns → text side).

use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::gemm::cpu::{linear, matmul, View};
use crate::ops::layer_norm::cpu::layer_norm;
use crate::ops::softmax::cpu::softmax_row;
use crate::problem::gated_cross_attn::LN_EPS;
use crate::problem::{
    Activation, Gate, GatedCrossAttnProblem, GatedCrossAttnWeights, LayerNormProblem, Linear, Norm, Precision,
};

/// `act(x·Wᵀ + b)` of one PyTorch `Linear`.
pub(crate) fn dense(rows: usize, x: &[f32], lin: &Linear, k: usize, n: usize, act: Activation) -> Vec<f32> {
    linear(rows, k, n, x, lin.weight, Some(lin.bias), act, Precision::F32)
}

/// LayerNorm with the ALIF epsilon.
pub(crate) fn norm(rows: usize, width: usize, x: &[f32], n: &Norm) -> Vec<f32> {
    layer_norm(&LayerNormProblem { rows, width, eps: LN_EPS }, x, n.weight, n.bias)
}

pub(crate) fn gated_cross_attn(
    p: &GatedCrossAttnProblem,
    v: &[f32],
    pos: &[f32],
    l: &[f32],
    w: &GatedCrossAttnWeights,
) -> (Vec<f32>, Vec<f32>) {
    let (rv, rl) = (p.batch * p.nv, p.batch * p.t);
    let (cv, cl, e, dh, nv, t) = (p.v_dim, p.l_dim, p.embed, p.head_dim(), p.nv, p.t);
    let vh = norm(rv, cv, v, &w.layer_norm_v);
    let lh = norm(rl, cl, l, &w.layer_norm_l);
    let with_pos: Vec<f32> = vh.par_iter().zip(pos).map(|(a, b)| a + b).collect();
    let mut q = dense(rv, &with_pos, &w.v_proj, cv, e, Activation::None);
    let scale = p.scale();
    q.par_iter_mut().for_each(|x| *x *= scale);
    let k = dense(rl, &lh, &w.l_proj, cl, e, Activation::None);
    let vv = dense(rv, &vh, &w.values_v_proj, cv, e, Activation::None);
    let vl = dense(rl, &lh, &w.values_l_proj, cl, e, Activation::None);

    let heads: Vec<(usize, usize, Vec<f32>, Vec<f32>)> = (0..p.batch * p.heads)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / p.heads, bh % p.heads);
            // A = Q_h · K_hᵀ  [Nv, T], computed once for both directions.
            let mut a = vec![0.0; nv * t];
            matmul(
                nv,
                t,
                dh,
                &mut a,
                t,
                View { data: &q[b * nv * e + h * dh..], rs: e, cs: 1 },
                View { data: &k[b * t * e + h * dh..], rs: 1, cs: e },
                Parallelism::None,
            );
            // Text side: softmax over Nv of each column, kept column-major as P_l [T, Nv].
            let mut pl = vec![0.0; t * nv];
            for j in 0..t {
                let col = &mut pl[j * nv..(j + 1) * nv];
                for (i, c) in col.iter_mut().enumerate() {
                    *c = a[i * t + j];
                }
                softmax_row(col);
            }
            // Image side: softmax over T of each row, in place.
            a.chunks_mut(t).for_each(softmax_row);
            let mut ov = vec![0.0; nv * dh];
            matmul(
                nv,
                dh,
                t,
                &mut ov,
                dh,
                View { data: &a, rs: t, cs: 1 },
                View { data: &vl[b * t * e + h * dh..], rs: e, cs: 1 },
                Parallelism::None,
            );
            let mut ol = vec![0.0; t * dh];
            matmul(
                t,
                dh,
                nv,
                &mut ol,
                dh,
                View { data: &pl, rs: nv, cs: 1 },
                View { data: &vv[b * nv * e + h * dh..], rs: e, cs: 1 },
                Parallelism::None,
            );
            (b, h, ov, ol)
        })
        .collect();
    let mut out_v = vec![0.0; rv * e];
    let mut out_l = vec![0.0; rl * e];
    for (b, h, ov, ol) in heads {
        for i in 0..nv {
            out_v[(b * nv + i) * e + h * dh..][..dh].copy_from_slice(&ov[i * dh..(i + 1) * dh]);
        }
        for j in 0..t {
            out_l[(b * t + j) * e + h * dh..][..dh].copy_from_slice(&ol[j * dh..(j + 1) * dh]);
        }
    }
    let dv = dense(rv, &out_v, &w.out_v_proj, e, cv, Activation::None);
    let dl = dense(rl, &out_l, &w.out_l_proj, e, cl, Activation::None);
    (gate(p.gate, vh, &dv, w.gamma_v), gate(p.gate, lh, &dl, w.gamma_l))
}

/// `base + g ⊙ delta`, rows of width `gamma.len()`.
fn gate(kind: Gate, mut base: Vec<f32>, delta: &[f32], gamma: &[f32]) -> Vec<f32> {
    let c = gamma.len();
    base.par_chunks_mut(c).zip(delta.par_chunks(c)).for_each(|(row, d)| {
        for (j, (x, &dj)) in row.iter_mut().zip(d).enumerate() {
            *x += kind.factor(gamma, j) * dj;
        }
    });
    base
}
