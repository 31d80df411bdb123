//! Oracle for one ALIF round (`problem::sparse_fusion`) and its post-LN BERT layer.

use crate::ops::attention::oracle::attention;
use crate::ops::gated_cross_attn::oracle::gated_cross_attn;
use crate::ops::gemm::oracle::gemm;
use crate::ops::layer_norm::oracle::layer_norm;
use crate::problem::gated_cross_attn::LN_EPS;
use crate::problem::{
    Activation, AttentionProblem, BertLayerProblem, BertLayerWeights, GatedCrossAttnWeights, GemmProblem,
    LayerNormProblem, Linear, Norm, SparseFusionProblem,
};
use crate::reference::Real;

fn dense<T: Real>(rows: usize, x: &[T], lin: &Linear, k: usize, n: usize, act: Activation) -> Vec<T> {
    gemm(&GemmProblem::linear(rows, k, n).with_act(act), x, lin.weight, Some(lin.bias))
}

fn add_norm<T: Real>(rows: usize, width: usize, x: Vec<T>, residual: &[T], norm: &Norm) -> Vec<T> {
    let sum: Vec<T> = x.into_iter().zip(residual).map(|(a, &b)| a + b).collect();
    layer_norm(&LayerNormProblem { rows, width, eps: LN_EPS }, &sum, norm.weight, norm.bias)
}

/// RoBERTa layer: `a = LN(attn(x)·W_o + b_o + x)`, `y = LN(GELU(a·W_i + b_i)·W_2 + b_2 + a)`,
/// attention 12 heads, scale Dh^-½, additive key mask `(1 − mask)·−10000` (mask 1 = valid).
pub fn bert_layer<T: Real>(p: &BertLayerProblem, x: &[T], mask: Option<&[f32]>, w: &BertLayerWeights) -> Vec<T> {
    let (rows, h) = (p.batch * p.t, p.hidden);
    let q = dense(rows, x, &w.query, h, h, Activation::None);
    let k = dense(rows, x, &w.key, h, h, Activation::None);
    let v = dense(rows, x, &w.value, h, h, Activation::None);
    let additive: Option<Vec<f32>> = mask.map(|m| m.iter().map(|&v| (1.0 - v) * -10000.0).collect());
    let ap = AttentionProblem {
        batch: p.batch,
        heads: p.heads,
        q_len: p.t,
        k_len: p.t,
        head_dim: p.head_dim(),
        scale: (p.head_dim() as f32).powf(-0.5),
    };
    let ctx = attention(&ap, &q, &k, &v, additive.as_deref());
    let a = add_norm(rows, h, dense(rows, &ctx, &w.attn_out, h, h, Activation::None), x, &w.attn_norm);
    let inter = dense(rows, &a, &w.intermediate, h, p.ffn, Activation::Gelu);
    add_norm(rows, h, dense(rows, &inter, &w.output, p.ffn, h, Activation::None), &a, &w.out_norm)
}

/// Runs one round: fuses `memory[:, start..]` in place and returns the new language state.
pub fn sparse_fusion<T: Real>(
    p: &SparseFusionProblem,
    memory: &mut [T],
    pos: &[T],
    lang: &[T],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Vec<T> {
    let (v_new, l_new) = gated_cross_attn(&p.fusion, &p.gather_level(memory), &p.gather_level(pos), lang, fw);
    p.scatter_level(memory, &v_new);
    bert_layer(&p.lang, &l_new, mask, bw)
}
