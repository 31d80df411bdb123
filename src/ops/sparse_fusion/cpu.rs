//! The cpu backend's ALIF round: `gated_cross_attn` on the last level (read and written in place
//! in the token buffer), then the language layer.

use rayon::prelude::*;

use crate::ops::attention::cpu::attention;
use crate::ops::gated_cross_attn::cpu::{dense, gated_cross_attn, norm};
use crate::problem::{
    Activation, AttentionProblem, BertLayerProblem, BertLayerWeights, GatedCrossAttnWeights, SparseFusionProblem,
};

/// The post-LN RoBERTa layer over `x [B,T,H]`, mask 1 = label.
pub(crate) fn bert_layer(p: &BertLayerProblem, x: &[f32], mask: Option<&[f32]>, w: &BertLayerWeights) -> Vec<f32> {
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
    let mut a = dense(rows, &ctx, &w.attn_out, h, h, Activation::None);
    a.par_iter_mut().zip(x).for_each(|(o, r)| *o += r);
    let a = norm(rows, h, &a, &w.attn_norm);
    let inter = dense(rows, &a, &w.intermediate, h, p.ffn, Activation::Gelu);
    let mut o = dense(rows, &inter, &w.output, p.ffn, h, Activation::None);
    o.par_iter_mut().zip(&a).for_each(|(o, r)| *o += r);
    norm(rows, h, &o, &w.out_norm)
}

/// One round; `memory`'s last level fused in place, the new language state returned.
pub(crate) fn sparse_fusion(
    p: &SparseFusionProblem,
    memory: &mut [f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Vec<f32> {
    let (v_new, l_new) = gated_cross_attn(&p.fusion, &p.gather_level(memory), &p.gather_level(pos), lang, fw);
    p.scatter_level(memory, &v_new);
    bert_layer(&p.lang, &l_new, mask, bw)
}
