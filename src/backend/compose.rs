//! The ALIF ops composed from the building blocks (`gemm`, `layer_norm`, `attention`) of any
//! backend: every intermediate goes through a separate call and buffer, and the score matrix is
//! computed twice (once per direction), as the official PyTorch code's ~40 small kernels do.
//! This is the op-by-op baseline of the benches, and the ALIF ops of backends that have the
//! building blocks but no fused kernels yet.

use crate::backend::Backend;
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

/// Same contract as [`Backend::gated_cross_attn`]: returns `(v', l')`.
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

/// Same contract as [`Backend::sparse_fusion`].
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

/// `conv2d` from the backend's `gemm`: columns built on the host for a band of output rows at a
/// time (`[pixels, Ci·Kh·Kw]`, ≤ 4 M floats), `gemm` against the `[Co, Ci·Kh·Kw]` weights, then
/// bias, residual and activation on the host while scattering back to NCHW. The conv2d of
/// backends without a conv kernel yet (correct, not fast: every band goes host → device → host).
pub fn conv2d<B: Backend + ?Sized>(
    be: &B,
    p: &crate::problem::Conv2dProblem,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Result<Vec<f32>> {
    const MAX_COLUMN_FLOATS: usize = 4 << 20;
    let (ho, wo) = (p.out_h(), p.out_w());
    let k = p.in_c * p.kh * p.kw;
    let plane = ho * wo;
    let mut y = vec![0f32; p.batch * p.out_c * plane];
    let rows_per_band = (MAX_COLUMN_FLOATS / (k * wo).max(1)).clamp(1, ho);
    for b in 0..p.batch {
        let xb = &x[b * p.in_c * p.h * p.w..(b + 1) * p.in_c * p.h * p.w];
        for r0 in (0..ho).step_by(rows_per_band) {
            let rows = rows_per_band.min(ho - r0);
            let n = rows * wo;
            let mut col = vec![0f32; n * k];
            for (j, crow) in col.chunks_mut(k).enumerate() {
                let (oy, ox) = (r0 + j / wo, j % wo);
                for (kk, v) in crow.iter_mut().enumerate() {
                    let (c, ky, kx) = (kk / (p.kh * p.kw), (kk / p.kw) % p.kh, kk % p.kw);
                    let iy = (oy * p.stride + ky) as isize - p.pad as isize;
                    let ix = (ox * p.stride + kx) as isize - p.pad as isize;
                    if iy >= 0 && iy < p.h as isize && ix >= 0 && ix < p.w as isize {
                        *v = xb[(c * p.h + iy as usize) * p.w + ix as usize];
                    }
                }
            }
            let band = be.gemm(&GemmProblem::linear(n, k, p.out_c), &col, weight, Some(bias))?;
            for j in 0..n {
                for o in 0..p.out_c {
                    let at = (b * p.out_c + o) * plane + r0 * wo + j;
                    let v = band[j * p.out_c + o] + residual.map_or(0.0, |r| r[at]);
                    y[at] = crate::reference::gemm::activate(v as f64, p.act) as f32;
                }
            }
        }
    }
    Ok(y)
}
