//! The cpu backend's backward pass, deterministic for any thread count: every gradient element
//! is summed by one task in a fixed order, never by two threads racing.
//!
//! 1. Rows (rayon over `b·Q + q`): for each head and sample, the location and attention
//!    gradients (a sum over the D channels), chained through the softmax and the location
//!    arithmetic in the fused form — all within the row, so rows are independent.
//! 2. `grad_value` (rayon over `(b, m, l)`): a sample of head `m` at level `l` only touches that
//!    head's channels of that level's cells, so each task scatters into its own `[H_l·W_l, D]`
//!    buffer, visiting queries and points in order; the buffers are then copied into place.
//!
//! f16/bf16 storage: `value` is rounded to the dtype first (it only enters the location and
//! attention gradients); accumulation is f32.

use rayon::prelude::*;

use super::MsdaGrads;
use crate::backend::reference::round_to;
use crate::ops::ms_deform_attn::cpu::head_samples;
use crate::ops::ms_deform_attn::MAX_POINTS;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};

/// One validated sample's bilinear footprint: `(token offset in the level or None, weight,
/// ∂weight/∂x, ∂weight/∂y)` per corner, in the order of the official op.
type Corners = [(Option<usize>, f32, f32, f32); 4];

/// The corners of the sample at normalized `(lx, ly)` on a `h × w` level, or `None` when the
/// official validity rule (`−1 < y < H`, `−1 < x < W`) drops it.
#[inline(always)]
fn corners(loc: [f32; 2], h: usize, w: usize) -> Option<Corners> {
    let (hf, wf) = (h as f32, w as f32);
    let x = loc[0] * wf - 0.5;
    let y = loc[1] * hf - 0.5;
    if !(y > -1.0 && x > -1.0 && y < hf && x < wf) {
        return None;
    }
    let (y0f, x0f) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0f, x - x0f);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    let (y0, x0) = (y0f as isize, x0f as isize);
    let at = |yy: isize, xx: isize| {
        (yy >= 0 && xx >= 0 && yy < h as isize && xx < w as isize).then(|| yy as usize * w + xx as usize)
    };
    Some([
        (at(y0, x0), hy * hx, -hy, -hx),
        (at(y0, x0 + 1), hy * lx, hy, -lx),
        (at(y0 + 1, x0), ly * hx, -ly, hx),
        (at(y0 + 1, x0 + 1), ly * lx, ly, lx),
    ])
}

/// The gradients of `input` (checked against `pr`) for `grad_out [B,Q,M·D]`.
pub(crate) fn backward(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    grad_out: &[f32],
    dtype: DType,
) -> MsdaGrads {
    let rounded: Vec<f32>;
    let value = if dtype == DType::F32 {
        input.value()
    } else {
        rounded = input.value().iter().map(|&x| round_to(x, dtype)).collect();
        &rounded
    };
    let (sampling, attention) = sample_grads(pr, input, value, grad_out);
    MsdaGrads { value: value_grad(pr, input, grad_out), sampling, attention }
}

/// Pass 1: the location (or offset) and attention (or logit) gradients, row by row.
fn sample_grads(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    value: &[f32],
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let lp = pr.num_levels() * pr.points;
    let m_n = pr.heads;
    let mut gs = vec![0f32; pr.samples() * 2];
    let mut ga = vec![0f32; pr.samples()];
    gs.par_chunks_mut(m_n * lp * 2)
        .zip(ga.par_chunks_mut(m_n * lp))
        .enumerate()
        .with_min_len(4)
        .for_each(|(bq, (gs_row, ga_row))| row(pr, input, value, grad_out, bq, gs_row, ga_row));
    (gs, ga)
}

/// One row `bq = b·Q + q` of pass 1. On x86-64 with AVX2+FMA the same body is compiled a second
/// time for those instructions (the sums are the same operations in the same order either way).
fn row(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    value: &[f32],
    grad_out: &[f32],
    bq: usize,
    gs_row: &mut [f32],
    ga_row: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features this function is compiled for (checked above).
        return unsafe { row_avx2(pr, input, value, grad_out, bq, gs_row, ga_row) };
    }
    row_body(pr, input, value, grad_out, bq, gs_row, ga_row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    value: &[f32],
    grad_out: &[f32],
    bq: usize,
    gs_row: &mut [f32],
    ga_row: &mut [f32],
) {
    row_body(pr, input, value, grad_out, bq, gs_row, ga_row)
}

#[inline(always)]
fn row_body(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    value: &[f32],
    grad_out: &[f32],
    bq: usize,
    gs_row: &mut [f32],
    ga_row: &mut [f32],
) {
    let (m_n, d_n, l_n, p_n) = (pr.heads, pr.channels, pr.num_levels(), pr.points);
    let lp = l_n * p_n;
    let b = bq / pr.queries;
    let (mut aw, mut xy) = ([0f32; MAX_POINTS], [[0f32; 2]; MAX_POINTS]);
    for m in 0..m_n {
        head_samples(pr, input, bq, m, &mut aw, &mut xy);
        let g = &grad_out[(bq * m_n + m) * d_n..][..d_n];
        let (mut g_a, mut g_xy) = ([0f32; MAX_POINTS], [[0f32; 2]; MAX_POINTS]);
        for l in 0..l_n {
            let lv = pr.levels[l];
            for p in 0..p_n {
                let i = l * p_n + p;
                let Some(cs) = corners(xy[i], lv.h, lv.w) else { continue };
                let (mut sa, mut sx, mut sy) = (0f32, 0f32, 0f32);
                for (tok, cw, dx, dy) in cs {
                    let Some(tok) = tok else { continue };
                    let v = &value[((b * pr.tokens + lv.start + tok) * m_n + m) * d_n..][..d_n];
                    let gv = dot8(g, v);
                    sa += cw * gv;
                    sx += dx * gv;
                    sy += dy * gv;
                }
                g_a[i] = sa;
                g_xy[i] = [lv.w as f32 * aw[i] * sx, lv.h as f32 * aw[i] * sy];
            }
        }
        let (gs_head, ga_head) = (&mut gs_row[m * lp * 2..][..lp * 2], &mut ga_row[m * lp..][..lp]);
        match pr.form {
            Form::Official => {
                ga_head.copy_from_slice(&g_a[..lp]);
                for (o, c) in gs_head.chunks_mut(2).zip(&g_xy[..lp]) {
                    o.copy_from_slice(c);
                }
            }
            Form::Fused(kind) => {
                let dot: f32 = aw[..lp].iter().zip(&g_a[..lp]).map(|(a, g)| a * g).sum();
                for i in 0..lp {
                    ga_head[i] = aw[i] * (g_a[i] - dot);
                }
                let MsDeformAttnInput::Fused { reference, .. } = *input else { unreachable!("checked form") };
                for l in 0..l_n {
                    let lv = pr.levels[l];
                    let r = &reference[(bq * l_n + l) * kind.dim()..][..kind.dim()];
                    let (sx, sy) = match kind {
                        RefKind::Points => (1.0 / lv.w as f32, 1.0 / lv.h as f32),
                        RefKind::Boxes => (r[2] * 0.5 / p_n as f32, r[3] * 0.5 / p_n as f32),
                    };
                    for p in 0..p_n {
                        let i = l * p_n + p;
                        gs_head[2 * i] = g_xy[i][0] * sx;
                        gs_head[2 * i + 1] = g_xy[i][1] * sy;
                    }
                }
            }
        }
    }
}

/// `Σ g·v` in 8 lanes (D is a multiple of 8), summed in a fixed order: it vectorizes, and the
/// result does not depend on the instruction set.
#[inline(always)]
fn dot8(g: &[f32], v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (gc, vc) in g.chunks_exact(8).zip(v.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += gc[k] * vc[k];
        }
    }
    lanes.iter().sum()
}

/// Pass 2: `grad_value [B,S,M,D]`, one task per (b, m, l) into its own buffer, then copied.
fn value_grad(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, grad_out: &[f32]) -> Vec<f32> {
    let (m_n, d_n, l_n) = (pr.heads, pr.channels, pr.num_levels());
    let tasks: Vec<(usize, usize, usize)> =
        (0..pr.batch).flat_map(|b| (0..m_n).flat_map(move |m| (0..l_n).map(move |l| (b, m, l)))).collect();
    let parts: Vec<Vec<f32>> = tasks.par_iter().map(|&(b, m, l)| level_part(pr, input, grad_out, b, m, l)).collect();
    let mut gv = vec![0f32; input.value().len()];
    gv.par_chunks_mut(m_n * d_n).enumerate().for_each(|(row, out)| {
        let (b, tok) = (row / pr.tokens, row % pr.tokens);
        // a token in no level (a gap in the level table) gets no gradient
        let Some(l) = pr.levels.iter().position(|lv| tok >= lv.start && tok < lv.start + lv.h * lv.w) else { return };
        let at = (tok - pr.levels[l].start) * d_n;
        for m in 0..m_n {
            out[m * d_n..][..d_n].copy_from_slice(&parts[(b * m_n + m) * l_n + l][at..][..d_n]);
        }
    });
    gv
}

/// Pass 2's task `(b, m, l)`: the gradient of head `m`'s channels of level `l`'s cells of image
/// `b`, `[H_l·W_l, D]`, queries and points visited in order. Compiled a second time for
/// AVX2+FMA on x86-64 (the same operations in the same order).
fn level_part(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    grad_out: &[f32],
    b: usize,
    m: usize,
    l: usize,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features this function is compiled for (checked above).
        return unsafe { level_part_avx2(pr, input, grad_out, b, m, l) };
    }
    level_part_body(pr, input, grad_out, b, m, l)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn level_part_avx2(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    grad_out: &[f32],
    b: usize,
    m: usize,
    l: usize,
) -> Vec<f32> {
    level_part_body(pr, input, grad_out, b, m, l)
}

#[inline(always)]
fn level_part_body(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    grad_out: &[f32],
    b: usize,
    m: usize,
    l: usize,
) -> Vec<f32> {
    let (m_n, d_n, p_n) = (pr.heads, pr.channels, pr.points);
    let lv = pr.levels[l];
    let mut part = vec![0f32; lv.h * lv.w * d_n];
    let (mut aw, mut xy) = ([0f32; MAX_POINTS], [[0f32; 2]; MAX_POINTS]);
    for q in 0..pr.queries {
        let bq = b * pr.queries + q;
        head_samples(pr, input, bq, m, &mut aw, &mut xy);
        let g = &grad_out[(bq * m_n + m) * d_n..][..d_n];
        for p in 0..p_n {
            let i = l * p_n + p;
            let Some(cs) = corners(xy[i], lv.h, lv.w) else { continue };
            for (tok, cw, _, _) in cs {
                let Some(tok) = tok else { continue };
                let c = cw * aw[i];
                for (o, &gd) in part[tok * d_n..][..d_n].iter_mut().zip(g) {
                    *o += c * gd;
                }
            }
        }
    }
    part
}
