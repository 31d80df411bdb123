//! Oracle for `gated_cross_attn` (formula in `problem::gated_cross_attn`), composed from the
//! oracle's own `layer_norm`, `gemm` and `attention`: the image side attends with the scaled
//! queries over the text keys; the text side uses the same score matrix transposed, i.e.
//! attention with the text keys as queries over the scaled image queries, scale 1.

use crate::ops::attention::oracle::attention;
use crate::ops::gemm::oracle::gemm;
use crate::ops::layer_norm::oracle::layer_norm;
use crate::problem::gated_cross_attn::LN_EPS;
use crate::problem::{
    AttentionProblem, Gate, GatedCrossAttnProblem, GatedCrossAttnWeights, GemmProblem, LayerNormProblem, Linear,
};
use crate::reference::Real;

fn linear<T: Real>(rows: usize, x: &[T], lin: &Linear, k: usize, n: usize) -> Vec<T> {
    gemm(&GemmProblem::linear(rows, k, n), x, lin.weight, Some(lin.bias))
}

/// Returns `(v' [B,Nv,Cv], l' [B,T,Cl])`.
pub fn gated_cross_attn<T: Real>(
    p: &GatedCrossAttnProblem,
    v: &[T],
    pos: &[T],
    l: &[T],
    w: &GatedCrossAttnWeights,
) -> (Vec<T>, Vec<T>) {
    let (rv, rl) = (p.batch * p.nv, p.batch * p.t);
    let (cv, cl, e) = (p.v_dim, p.l_dim, p.embed);
    let vh = layer_norm(
        &LayerNormProblem { rows: rv, width: cv, eps: LN_EPS },
        v,
        w.layer_norm_v.weight,
        w.layer_norm_v.bias,
    );
    let lh = layer_norm(
        &LayerNormProblem { rows: rl, width: cl, eps: LN_EPS },
        l,
        w.layer_norm_l.weight,
        w.layer_norm_l.bias,
    );
    let with_pos: Vec<T> = vh.iter().zip(pos).map(|(&a, &b)| a + b).collect();
    let scale = T::of(p.scale() as f64);
    let q: Vec<T> = linear(rv, &with_pos, &w.v_proj, cv, e).into_iter().map(|x| x * scale).collect();
    let k = linear(rl, &lh, &w.l_proj, cl, e);
    let vv = linear(rv, &vh, &w.values_v_proj, cv, e);
    let vl = linear(rl, &lh, &w.values_l_proj, cl, e);
    let img = AttentionProblem {
        batch: p.batch,
        heads: p.heads,
        q_len: p.nv,
        k_len: p.t,
        head_dim: p.head_dim(),
        scale: 1.0,
    };
    let txt = AttentionProblem { q_len: p.t, k_len: p.nv, ..img };
    let out_v = attention(&img, &q, &k, &vl, None);
    let out_l = attention(&txt, &k, &q, &vv, None);
    let dv = linear(rv, &out_v, &w.out_v_proj, e, cv);
    let dl = linear(rl, &out_l, &w.out_l_proj, e, cl);
    (gated(p.gate, &vh, &dv, w.gamma_v), gated(p.gate, &lh, &dl, w.gamma_l))
}

/// `base + g ⊙ delta` for the gate kind (rows of width `gamma.len()`).
pub fn gated<T: Real>(gate: Gate, base: &[T], delta: &[T], gamma: &[f32]) -> Vec<T> {
    let c = gamma.len();
    base.iter().zip(delta).enumerate().map(|(i, (&x, &d))| x + T::from_f32(gate.factor(gamma, i % c)) * d).collect()
}
