//! Oracle: `out[b,i,h] = Σ_j softmax_j(scale · q_i·k_j + mask[b,j]) · v_j` per head, on packed
//! `[B,L,H·Dh]` projections.

use crate::ops::softmax::oracle::softmax_row;
use crate::problem::AttentionProblem;
use crate::reference::Real;

/// Multi-head attention, softmax over keys, optional additive key mask `[B,Lk]`.
pub fn attention<T: Real>(p: &AttentionProblem, q: &[T], k: &[T], v: &[T], mask: Option<&[f32]>) -> Vec<T> {
    let (w, dh) = (p.width(), p.head_dim);
    let mut out = vec![T::of(0.0); p.batch * p.q_len * w];
    for b in 0..p.batch {
        for h in 0..p.heads {
            for i in 0..p.q_len {
                let qi = &q[(b * p.q_len + i) * w + h * dh..][..dh];
                let scores: Vec<T> = (0..p.k_len)
                    .map(|j| {
                        let kj = &k[(b * p.k_len + j) * w + h * dh..][..dh];
                        let mut s = T::of(0.0);
                        for (&a, &c) in qi.iter().zip(kj) {
                            s += a * c;
                        }
                        s * T::of(p.scale as f64) + mask.map_or(T::of(0.0), |m| T::from_f32(m[b * p.k_len + j]))
                    })
                    .collect();
                let probs = softmax_row(&scores);
                let o = &mut out[(b * p.q_len + i) * w + h * dh..][..dh];
                for (j, &pj) in probs.iter().enumerate() {
                    let vj = &v[(b * p.k_len + j) * w + h * dh..][..dh];
                    for (od, &vd) in o.iter_mut().zip(vj) {
                        *od += pj * vd;
                    }
                }
            }
        }
    }
    out
}
