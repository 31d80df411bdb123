//! The ALIF round done op by op through the public building blocks — the unfused baseline that
//! `sparse_fusion` is timed against on the same backend. Every intermediate goes through a
//! separate call and buffer, and the score matrix is computed twice (once per direction), as the
//! official PyTorch code's ~40 small kernels do.

use crate::backend::{self, Backend, BackendKind};
use crate::problem::{BertLayerProblem, OwnedWeights};
use crate::seeded::Rng;
use crate::error::Result;
use crate::problem::gated_cross_attn::LN_EPS;
use crate::problem::{Activation, AttentionProblem, BertLayerWeights, Gate, GatedCrossAttnWeights, GemmProblem, LayerNormProblem, Linear, Norm, SparseFusionProblem};

fn dense(be: &dyn Backend, rows: usize, x: &[f32], lin: &Linear, k: usize, n: usize, act: Activation) -> Result<Vec<f32>> {
    be.gemm(&GemmProblem::linear(rows, k, n).with_act(act), x, lin.weight, Some(lin.bias))
}

fn norm(be: &dyn Backend, rows: usize, width: usize, x: &[f32], n: &Norm) -> Result<Vec<f32>> {
    be.layer_norm(&LayerNormProblem { rows, width, eps: LN_EPS }, x, n.weight, n.bias)
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Same contract as [`Backend::sparse_fusion`], built from `gemm`, `layer_norm` and `attention`.
#[allow(clippy::too_many_arguments)]
pub fn unfused_round(be: &dyn Backend, p: &SparseFusionProblem, memory: &mut [f32], pos: &[f32], lang: &[f32], mask: Option<&[f32]>, fw: &GatedCrossAttnWeights, bw: &BertLayerWeights) -> Result<Vec<f32>> {
    let f = &p.fusion;
    let (rv, rl, cv, cl, e) = (f.batch * f.nv, f.batch * f.t, f.v_dim, f.l_dim, f.embed);
    let level = |b: usize| (b * p.tokens + p.start) * cv..(b * p.tokens + p.tokens) * cv;
    let v: Vec<f32> = (0..f.batch).flat_map(|b| memory[level(b)].to_vec()).collect();
    let vp: Vec<f32> = (0..f.batch).flat_map(|b| pos[level(b)].to_vec()).collect();
    let vh = norm(be, rv, cv, &v, &fw.layer_norm_v)?;
    let lh = norm(be, rl, cl, lang, &fw.layer_norm_l)?;
    let q = dense(be, rv, &add(&vh, &vp), &fw.v_proj, cv, e, Activation::None)?;
    let k = dense(be, rl, &lh, &fw.l_proj, cl, e, Activation::None)?;
    let vv = dense(be, rv, &vh, &fw.values_v_proj, cv, e, Activation::None)?;
    let vl = dense(be, rl, &lh, &fw.values_l_proj, cl, e, Activation::None)?;
    let img = AttentionProblem { batch: f.batch, heads: f.heads, q_len: f.nv, k_len: f.t, head_dim: f.head_dim(), scale: f.scale() };
    let out_v = be.attention(&img, &q, &k, &vl, None)?;
    let txt = AttentionProblem { q_len: f.t, k_len: f.nv, ..img };
    let out_l = be.attention(&txt, &k, &q, &vv, None)?;
    let dv = dense(be, rv, &out_v, &fw.out_v_proj, e, cv, Activation::None)?;
    let dl = dense(be, rl, &out_l, &fw.out_l_proj, e, cl, Activation::None)?;
    let gate = |x: &[f32], d: &[f32], g: &[f32]| -> Vec<f32> {
        x.iter()
            .zip(d)
            .enumerate()
            .map(|(i, (a, b))| {
                a + b * match f.gate {
                    Gate::VXAc => g[0],
                    Gate::Glip => g[i % g.len()],
                    Gate::XGating => 1.0,
                }
            })
            .collect()
    };
    let v_new = gate(&vh, &dv, fw.gamma_v);
    let l_new = gate(&lh, &dl, fw.gamma_l);
    for b in 0..f.batch {
        memory[level(b)].copy_from_slice(&v_new[b * f.nv * cv..(b + 1) * f.nv * cv]);
    }
    // the language layer, op by op
    let lp = &p.lang;
    let (rows, h) = (lp.batch * lp.t, lp.hidden);
    let lq = dense(be, rows, &l_new, &bw.query, h, h, Activation::None)?;
    let lk = dense(be, rows, &l_new, &bw.key, h, h, Activation::None)?;
    let lv = dense(be, rows, &l_new, &bw.value, h, h, Activation::None)?;
    let additive: Option<Vec<f32>> = mask.map(|m| m.iter().map(|&v| (1.0 - v) * -10000.0).collect());
    let ap = AttentionProblem { batch: lp.batch, heads: lp.heads, q_len: lp.t, k_len: lp.t, head_dim: lp.head_dim(), scale: (lp.head_dim() as f32).powf(-0.5) };
    let ctx = be.attention(&ap, &lq, &lk, &lv, additive.as_deref())?;
    let a = norm(be, rows, h, &add(&dense(be, rows, &ctx, &bw.attn_out, h, h, Activation::None)?, &l_new), &bw.attn_norm)?;
    let inter = dense(be, rows, &a, &bw.intermediate, h, lp.ffn, Activation::Gelu)?;
    norm(be, rows, h, &add(&dense(be, rows, &inter, &bw.output, lp.ffn, h, Activation::None)?, &a), &bw.out_norm)
}

/// Times, per backend: `gated_cross_attn` alone, the fused round (`sparse_fusion`) and the
/// unfused round, at RLIPv2 sizes with seeded weights; returns the printed table.
pub fn run_table(kinds: &[BackendKind], repeat: usize, mut progress: impl FnMut(&str)) -> String {
    let (tokens, start, t) = (22223, 21950, 198);
    let p = SparseFusionProblem::rlipv2(1, tokens, start, t);
    let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 1);
    let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(1, t).weight_shapes(), 2);
    let mut rng = Rng::new(3);
    let (memory, pos, lang) = (rng.fill(tokens * 256, -1.0, 1.0), rng.fill(tokens * 256, -1.0, 1.0), rng.fill(t * 768, -1.0, 1.0));
    let v: Vec<f32> = memory[start * 256..].to_vec();
    let vp: Vec<f32> = pos[start * 256..].to_vec();
    let (fwv, bwv) = (fw.as_fusion(), bw.as_bert());
    let mut s = format!("sparse_fusion round: B=1 S={tokens} Nv={} T={t}; times are medians of {repeat} host-to-host calls\n", p.fusion.nv);
    s += &format!("{:<12} {:>18} {:>14} {:>16} {:>8}  device\n", "backend", "gated_cross_attn", "fused round", "unfused round", "ratio");
    for &kind in kinds {
        let be = match backend::open(kind) {
            Ok(b) => b,
            Err(e) => {
                s += &format!("{:<12} SKIP: {e}\n", kind.name());
                continue;
            }
        };
        progress(&format!("{kind} on {}", be.device()));
        let be = be.as_ref();
        let gca = super::time_host(repeat, || be.gated_cross_attn(&p.fusion, &v, &vp, &lang, &fwv).map(|_| ()));
        let fused = super::time_host(repeat, || {
            let mut m = memory.clone();
            be.sparse_fusion(&p, &mut m, &pos, &lang, None, &fwv, &bwv).map(|_| ())
        });
        let unfused = super::time_host(repeat, || {
            let mut m = memory.clone();
            unfused_round(be, &p, &mut m, &pos, &lang, None, &fwv, &bwv).map(|_| ())
        });
        match (gca, fused, unfused) {
            (Ok(g), Ok(f), Ok(u)) => {
                s += &format!("{:<12} {:>15.2} ms {:>11.2} ms {:>13.2} ms {:>7.2}×  {}\n", kind.name(), g.median_s * 1e3, f.median_s * 1e3, u.median_s * 1e3, u.median_s / f.median_s, be.device());
            }
            (g, f, u) => {
                let why = [g.err(), f.err(), u.err()].into_iter().flatten().next().map(|e| e.to_string()).unwrap_or_default();
                s += &format!("{:<12} SKIP: {why}\n", kind.name());
            }
        }
    }
    s
}
