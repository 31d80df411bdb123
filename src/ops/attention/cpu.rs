//! The cpu backend's small-sequence attention: per (batch, head) a score GEMM, the row softmax
//! and the PV GEMM.

use gemm::Parallelism;
use rayon::prelude::*;

use super::AttentionProblem;
use crate::ops::gemm::cpu::{matmul, View};
use crate::ops::softmax::cpu::softmax_row;

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
