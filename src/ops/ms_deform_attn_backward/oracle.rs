//! Oracle of the backward pass: naive loops in `T`, the official CUDA op's `col2im` arithmetic
//! sample by sample (checked against central differences of the forward oracle in the tests).
//!
//! ```text
//! x = loc_x·W − 0.5, y = loc_y·H − 0.5 (skip unless −1 < y < H, −1 < x < W), y0 = ⌊y⌋, x0 = ⌊x⌋,
//! ly = y − y0, lx = x − x0, hy = 1 − ly, hx = 1 − lx; corners c = (y0,x0) (y0,x0+1) (y0+1,x0)
//! (y0+1,x0+1) with weights hy·hx, hy·lx, ly·hx, ly·lx, read as 0 outside the level.
//! grad_value[c, d]  += weight_c · a · g_d
//! grad_attention    += Σ_d g_d · Σ_c weight_c · v_c,d
//! grad_loc_x        += W · a · Σ_d g_d · (−hy·v1 + hy·v2 − ly·v3 + ly·v4)
//! grad_loc_y        += H · a · Σ_d g_d · (−hx·v1 − lx·v2 + hx·v3 + lx·v4)
//! ```
//! Fused form: `grad_off = grad_loc / (W, H)` (points) or `grad_loc · ref_wh · 0.5 / P` (boxes);
//! `grad_logit_j = a_j · (grad_a_j − Σ_k a_k · grad_a_k)` over the head's L·P samples.

use crate::ops::ms_deform_attn::oracle::{fused_to_official, widen};
use crate::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};
use crate::reference::Real;

/// Gradients in `T`: `(value, sampling, attention)` in the layouts of [`super::MsdaGrads`].
pub type Grads<T> = (Vec<T>, Vec<T>, Vec<T>);

/// The official-form gradients (value, locations, weights) of the core op, every input and the
/// accumulation in `T`.
pub fn core<T: Real>(pr: &MsDeformAttnProblem, value: &[T], loc: &[T], weights: &[T], grad_out: &[T]) -> Grads<T> {
    let (m_n, d_n, l_n, p_n) = (pr.heads, pr.channels, pr.num_levels(), pr.points);
    let zero = T::of(0.0);
    let one = T::of(1.0);
    let mut gv = vec![zero; value.len()];
    let mut gloc = vec![zero; loc.len()];
    let mut ga = vec![zero; weights.len()];
    for b in 0..pr.batch {
        for q in 0..pr.queries {
            for m in 0..m_n {
                let g = &grad_out[((b * pr.queries + q) * m_n + m) * d_n..][..d_n];
                for l in 0..l_n {
                    let lv = pr.levels[l];
                    let (h, w) = (lv.h as i64, lv.w as i64);
                    for p in 0..p_n {
                        let s = (((b * pr.queries + q) * m_n + m) * l_n + l) * p_n + p;
                        let a = weights[s];
                        let x = loc[2 * s] * T::of(lv.w as f64) - T::of(0.5);
                        let y = loc[2 * s + 1] * T::of(lv.h as f64) - T::of(0.5);
                        if !(y > T::of(-1.0) && x > T::of(-1.0) && y < T::of(h as f64) && x < T::of(w as f64)) {
                            continue;
                        }
                        let (y0f, x0f) = (y.floor(), x.floor());
                        let (ly, lx) = (y - y0f, x - x0f);
                        let (hy, hx) = (one - ly, one - lx);
                        let (y0, x0) = (y0f.to_f64() as i64, x0f.to_f64() as i64);
                        // (row, column, bilinear weight, its derivative by x, by y)
                        let corners = [
                            (y0, x0, hy * hx, zero - hy, zero - hx),
                            (y0, x0 + 1, hy * lx, hy, zero - lx),
                            (y0 + 1, x0, ly * hx, zero - ly, hx),
                            (y0 + 1, x0 + 1, ly * lx, ly, lx),
                        ];
                        let (mut g_a, mut g_x, mut g_y) = (zero, zero, zero);
                        for (d, &gd) in g.iter().enumerate() {
                            for &(yy, xx, cw, dx, dy) in &corners {
                                if yy >= 0 && xx >= 0 && yy < h && xx < w {
                                    let i = ((b * pr.tokens + lv.start + (yy * w + xx) as usize) * m_n + m) * d_n + d;
                                    let v = value[i];
                                    gv[i] += cw * a * gd;
                                    g_a += gd * cw * v;
                                    g_x += gd * dx * v;
                                    g_y += gd * dy * v;
                                }
                            }
                        }
                        ga[s] += g_a;
                        gloc[2 * s] += T::of(lv.w as f64) * a * g_x;
                        gloc[2 * s + 1] += T::of(lv.h as f64) * a * g_y;
                    }
                }
            }
        }
    }
    (gv, gloc, ga)
}

/// The whole backward pass, either form, accumulated in `T`. Inputs must already be checked
/// against `pr` (and `grad_out` has `[B,Q,M·D]` elements).
pub fn backward<T: Real>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, grad_out: &[f32]) -> Grads<T> {
    match *input {
        MsDeformAttnInput::Official { value, sampling_locations, attention_weights } => {
            let loc: Vec<T> = sampling_locations.iter().map(|&x| T::from_f32(x)).collect();
            let w: Vec<T> = attention_weights.iter().map(|&x| T::from_f32(x)).collect();
            core(pr, &widen(value), &loc, &w, &widen(grad_out))
        }
        MsDeformAttnInput::Fused { value, reference, sampling_offsets, attention_logits } => {
            let kind = match pr.form {
                Form::Fused(k) => k,
                Form::Official => RefKind::Points,
            };
            let (loc, w) = fused_to_official::<T>(pr, kind, reference, sampling_offsets, attention_logits);
            let (gv, gloc, ga) = core(pr, &widen(value), &loc, &w, &widen(grad_out));
            let (goff, glogit) = chain_fused(pr, kind, reference, &w, &gloc, &ga);
            (gv, goff, glogit)
        }
    }
}

/// The fused form's gradients from the official form's: offsets through the location
/// arithmetic, logits through the softmax (`w` are its outputs).
pub fn chain_fused<T: Real>(
    pr: &MsDeformAttnProblem,
    kind: RefKind,
    reference: &[f32],
    w: &[T],
    gloc: &[T],
    ga: &[T],
) -> (Vec<T>, Vec<T>) {
    let (l_n, p_n) = (pr.num_levels(), pr.points);
    let lp = l_n * p_n;
    let mut goff = vec![T::of(0.0); gloc.len()];
    let mut glogit = vec![T::of(0.0); ga.len()];
    for bq in 0..pr.batch * pr.queries {
        for m in 0..pr.heads {
            let s0 = (bq * pr.heads + m) * lp;
            let mut dot = T::of(0.0);
            for j in s0..s0 + lp {
                dot += w[j] * ga[j];
            }
            for l in 0..l_n {
                let lv = pr.levels[l];
                let r = &reference[(bq * l_n + l) * kind.dim()..][..kind.dim()];
                let (sx, sy) = match kind {
                    RefKind::Points => (T::of(1.0 / lv.w as f64), T::of(1.0 / lv.h as f64)),
                    RefKind::Boxes => {
                        let half = T::of(0.5 / p_n as f64);
                        (T::from_f32(r[2]) * half, T::from_f32(r[3]) * half)
                    }
                };
                for p in 0..p_n {
                    let s = s0 + l * p_n + p;
                    goff[2 * s] = gloc[2 * s] * sx;
                    goff[2 * s + 1] = gloc[2 * s + 1] * sy;
                    glogit[s] = w[s] * (ga[s] - dot);
                }
            }
        }
    }
    (goff, glogit)
}
