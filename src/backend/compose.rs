//! The ALIF ops composed from the building blocks (`gemm`, `layer_norm`, `attention`) of any
//! backend: every intermediate goes through a separate call and buffer, and the score matrix is
//! computed twice (once per direction), as the official PyTorch code's ~40 small kernels do.
//! This is the op-by-op baseline of the benches, and the ALIF ops of backends that have the
//! building blocks but no fused kernels yet.

use crate::backend::{Backend, Ops};
use crate::error::Result;
use crate::problem::gated_cross_attn::LN_EPS;
use crate::problem::{
    Activation, AttentionProblem, BertLayerProblem, BertLayerWeights, GatedCrossAttnProblem, GatedCrossAttnWeights,
    GemmProblem, LayerNormProblem, Linear, Norm, SparseFusionProblem,
};

fn dense(
    be: &dyn Backend,
    rows: usize,
    x: &[f32],
    lin: &Linear,
    k: usize,
    n: usize,
    act: Activation,
) -> Result<Vec<f32>> {
    be.gemm(&GemmProblem::linear(rows, k, n).with_act(act), x, lin.weight, Some(lin.bias))
}

fn norm(be: &dyn Backend, rows: usize, width: usize, x: &[f32], n: &Norm) -> Result<Vec<f32>> {
    be.layer_norm(&LayerNormProblem { rows, width, eps: LN_EPS }, x, n.weight, n.bias)
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Same contract as [`super::Ops::gated_cross_attn`]: returns `(v', l')`.
pub fn gated_cross_attn(
    be: &dyn Backend,
    f: &GatedCrossAttnProblem,
    v: &[f32],
    pos: &[f32],
    l: &[f32],
    fw: &GatedCrossAttnWeights,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rv, rl, cv, cl, e) = (f.batch * f.nv, f.batch * f.t, f.v_dim, f.l_dim, f.embed);
    let vh = norm(be, rv, cv, v, &fw.layer_norm_v)?;
    let lh = norm(be, rl, cl, l, &fw.layer_norm_l)?;
    let q = dense(be, rv, &add(&vh, pos), &fw.v_proj, cv, e, Activation::None)?;
    let k = dense(be, rl, &lh, &fw.l_proj, cl, e, Activation::None)?;
    let vv = dense(be, rv, &vh, &fw.values_v_proj, cv, e, Activation::None)?;
    let vl = dense(be, rl, &lh, &fw.values_l_proj, cl, e, Activation::None)?;
    let img = AttentionProblem {
        batch: f.batch,
        heads: f.heads,
        q_len: f.nv,
        k_len: f.t,
        head_dim: f.head_dim(),
        scale: f.scale(),
    };
    let out_v = be.attention(&img, &q, &k, &vl, None)?;
    let txt = AttentionProblem { q_len: f.t, k_len: f.nv, ..img };
    let out_l = be.attention(&txt, &k, &q, &vv, None)?;
    let dv = dense(be, rv, &out_v, &fw.out_v_proj, e, cv, Activation::None)?;
    let dl = dense(be, rl, &out_l, &fw.out_l_proj, e, cl, Activation::None)?;
    let gate = |x: &[f32], d: &[f32], g: &[f32]| -> Vec<f32> {
        x.iter().zip(d).enumerate().map(|(i, (a, b))| a + b * f.gate.factor(g, i % g.len())).collect()
    };
    Ok((gate(&vh, &dv, fw.gamma_v), gate(&lh, &dl, fw.gamma_l)))
}

/// The post-LN language layer over `x [B,T,H]`, mask 1 = label.
pub fn bert_layer(
    be: &dyn Backend,
    lp: &BertLayerProblem,
    x: &[f32],
    mask: Option<&[f32]>,
    bw: &BertLayerWeights,
) -> Result<Vec<f32>> {
    let (rows, h) = (lp.batch * lp.t, lp.hidden);
    let lq = dense(be, rows, x, &bw.query, h, h, Activation::None)?;
    let lk = dense(be, rows, x, &bw.key, h, h, Activation::None)?;
    let lv = dense(be, rows, x, &bw.value, h, h, Activation::None)?;
    let additive: Option<Vec<f32>> = mask.map(|m| m.iter().map(|&v| (1.0 - v) * -10000.0).collect());
    let ap = AttentionProblem {
        batch: lp.batch,
        heads: lp.heads,
        q_len: lp.t,
        k_len: lp.t,
        head_dim: lp.head_dim(),
        scale: (lp.head_dim() as f32).powf(-0.5),
    };
    let ctx = be.attention(&ap, &lq, &lk, &lv, additive.as_deref())?;
    let a = norm(be, rows, h, &add(&dense(be, rows, &ctx, &bw.attn_out, h, h, Activation::None)?, x), &bw.attn_norm)?;
    let inter = dense(be, rows, &a, &bw.intermediate, h, lp.ffn, Activation::Gelu)?;
    norm(be, rows, h, &add(&dense(be, rows, &inter, &bw.output, lp.ffn, h, Activation::None)?, &a), &bw.out_norm)
}

/// Same contract as [`super::Ops::sparse_fusion`].
#[allow(clippy::too_many_arguments)]
pub fn sparse_fusion(
    be: &dyn Backend,
    p: &SparseFusionProblem,
    memory: &mut [f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<Vec<f32>> {
    let (v_new, l_new) = gated_cross_attn(be, &p.fusion, &p.gather_level(memory), &p.gather_level(pos), lang, fw)?;
    p.scatter_level(memory, &v_new);
    bert_layer(be, &p.lang, &l_new, mask, bw)
}
