//! Oracle for multi-scale deformable attention (official semantics, spec §3 and §2.5.4).
//!
//! ```text
//! out[b,q,m·D+d] = Σ_l Σ_p  A[b,q,m,l,p] · bilin(V_l[b,:,:,m,d], x = loc_x·W_l − 0.5, y = loc_y·H_l − 0.5)
//! bilin: 0 unless −1 < y < H_l and −1 < x < W_l; y0 = ⌊y⌋, x0 = ⌊x⌋, ly = y − y0, lx = x − x0;
//!        corners outside [0, H_l−1]×[0, W_l−1] read as 0 (zero padding, align_corners = False).
//! ```
//! Fused form: `A = softmax over L·P of the logits (max-subtracted)`,
//! points: `loc = ref + off / (W_l, H_l)`; boxes: `loc = ref_xy + off / P · ref_wh · 0.5`.

use crate::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};
use crate::reference::Real;

/// Sampling locations `[B,Q,M,L,P,2]` and attention weights `[B,Q,M,L,P]` of the fused form,
/// computed exactly as the official module does before calling its core.
pub fn fused_to_official<T: Real>(
    pr: &MsDeformAttnProblem,
    kind: RefKind,
    reference: &[f32],
    offsets: &[f32],
    logits: &[f32],
) -> (Vec<T>, Vec<T>) {
    let (l_n, p_n) = (pr.num_levels(), pr.points);
    let lp = l_n * p_n;
    let mut loc = vec![T::of(0.0); pr.samples() * 2];
    let mut weights = vec![T::of(0.0); pr.samples()];
    for bq in 0..pr.batch * pr.queries {
        for m in 0..pr.heads {
            let head = bq * pr.heads + m;
            let row = &logits[head * lp..(head + 1) * lp];
            let mx = row.iter().fold(T::from_f32(row[0]), |a, &x| if T::from_f32(x) > a { T::from_f32(x) } else { a });
            let mut sum = T::of(0.0);
            for &x in row {
                sum += (T::from_f32(x) - mx).exp();
            }
            for l in 0..l_n {
                let lv = pr.levels[l];
                let r = &reference[(bq * l_n + l) * kind.dim()..(bq * l_n + l + 1) * kind.dim()];
                for p in 0..p_n {
                    let s = head * lp + l * p_n + p;
                    weights[s] = (T::from_f32(row[l * p_n + p]) - mx).exp() / sum;
                    let (ox, oy) = (T::from_f32(offsets[2 * s]), T::from_f32(offsets[2 * s + 1]));
                    let (rx, ry) = (T::from_f32(r[0]), T::from_f32(r[1]));
                    let (x, y) = match kind {
                        RefKind::Points => (rx + ox / T::of(lv.w as f64), ry + oy / T::of(lv.h as f64)),
                        RefKind::Boxes => {
                            let (rw, rh) = (T::from_f32(r[2]), T::from_f32(r[3]));
                            let np = T::of(p_n as f64);
                            (rx + ox / np * rw * T::of(0.5), ry + oy / np * rh * T::of(0.5))
                        }
                    };
                    loc[2 * s] = x;
                    loc[2 * s + 1] = y;
                }
            }
        }
    }
    (loc, weights)
}

/// The core op on official-form inputs in `T` (all of them: an f64 caller gets an f64 op end to
/// end), accumulated in `T`. Returns `[B,Q,M·D]`.
pub fn core<T: Real>(pr: &MsDeformAttnProblem, value: &[T], loc: &[T], weights: &[T]) -> Vec<T> {
    let (m_n, d_n, l_n, p_n) = (pr.heads, pr.channels, pr.num_levels(), pr.points);
    let mut out = vec![T::of(0.0); pr.output_len()];
    for b in 0..pr.batch {
        for q in 0..pr.queries {
            for m in 0..m_n {
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
                        let (y0, x0) = (y0f.to_f64() as i64, x0f.to_f64() as i64);
                        let one = T::of(1.0);
                        let corners = [
                            (y0, x0, (one - ly) * (one - lx)),
                            (y0, x0 + 1, (one - ly) * lx),
                            (y0 + 1, x0, ly * (one - lx)),
                            (y0 + 1, x0 + 1, ly * lx),
                        ];
                        for d in 0..d_n {
                            let mut v = T::of(0.0);
                            for &(yy, xx, cw) in &corners {
                                if yy >= 0 && xx >= 0 && yy < h && xx < w {
                                    let tok = lv.start + (yy * w + xx) as usize;
                                    v += cw * value[((b * pr.tokens + tok) * m_n + m) * d_n + d];
                                }
                            }
                            out[(b * pr.queries + q) * m_n * d_n + m * d_n + d] += a * v;
                        }
                    }
                }
            }
        }
    }
    out
}

/// The whole op, either form, accumulated in `T`. Inputs must already be checked against `pr`.
pub fn ms_deform_attn<T: Real>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput) -> Vec<T> {
    match (*input, pr.form) {
        (MsDeformAttnInput::Official { value, sampling_locations, attention_weights }, _) => {
            let loc: Vec<T> = sampling_locations.iter().map(|&x| T::from_f32(x)).collect();
            let w: Vec<T> = attention_weights.iter().map(|&x| T::from_f32(x)).collect();
            core(pr, &widen(value), &loc, &w)
        }
        (MsDeformAttnInput::Fused { value, reference, sampling_offsets, attention_logits }, form) => {
            let kind = match form {
                Form::Fused(k) => k,
                Form::Official => RefKind::Points,
            };
            let (loc, w) = fused_to_official::<T>(pr, kind, reference, sampling_offsets, attention_logits);
            core(pr, &widen(value), &loc, &w)
        }
    }
}

/// `x` in `T`.
pub(crate) fn widen<T: Real>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}
