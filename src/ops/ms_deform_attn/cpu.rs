//! The cpu backend's `ms_deform_attn`: rayon over (b, q) rows; for each head the D channels of
//! a tap are contiguous in `value [B,S,M,D]`, so the inner loop is a straight multiply-add over a
//! slice that the compiler vectorizes. Softmax and location arithmetic of the fused form are done
//! per head in registers, never stored.
//!
//! f16/bf16: `value` is rounded to the dtype on upload and held as f32 (the CPU has no 16-bit
//! float arithmetic worth using); accumulation is f32 and the output is rounded to the dtype.

use rayon::prelude::*;

use super::{Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind, MAX_POINTS};
use crate::backend::reference::round_to;
use crate::problem::DType;

/// `out [B,Q,M·D]` of `input` (value already in the dtype's precision), rows in parallel.
pub(crate) fn compute(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType, out: &mut [f32]) {
    let row_len = pr.heads * pr.channels;
    out.par_chunks_mut(row_len).with_min_len(8).enumerate().for_each(|(bq, row)| {
        match pr.channels {
            16 => rows::<16>(pr, input, bq, row),
            32 => rows::<32>(pr, input, bq, row),
            64 => rows::<64>(pr, input, bq, row),
            _ => rows::<0>(pr, input, bq, row),
        }
        if dtype != DType::F32 {
            row.iter_mut().for_each(|x| *x = round_to(*x, dtype));
        }
    });
}

/// One output row `[M·D]` of `bq = b·Q + q`. `D` > 0 fixes the channel count at compile time
/// (the tap loop then unrolls into SIMD registers); `D` = 0 reads it from the problem. On x86-64
/// with AVX2+FMA the same body is compiled a second time for those instructions.
fn rows<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features this function is compiled for (checked above).
        return unsafe { rows_avx2::<D>(pr, input, bq, row) };
    }
    rows_body::<D>(pr, input, bq, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    rows_body::<D>(pr, input, bq, row)
}

#[inline(always)]
fn rows_body<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    for m in 0..pr.heads {
        let acc = &mut row[m * pr.channels..(m + 1) * pr.channels];
        if D > 0 {
            let mut local = [0f32; D];
            head::<D>(pr, input, bq, m, &mut local);
            acc.copy_from_slice(&local);
        } else {
            acc.fill(0.0);
            head::<D>(pr, input, bq, m, acc);
        }
    }
}

/// Accumulates head `m` of row `bq = b·Q + q` into `acc [D]`.
#[inline(always)]
fn head<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, m: usize, acc: &mut [f32]) {
    let (l_n, p_n, d_n) = (pr.num_levels(), pr.points, pr.channels);
    let b = bq / pr.queries;
    let mut aw = [0f32; MAX_POINTS];
    let mut xy = [[0f32; 2]; MAX_POINTS];
    head_samples(pr, input, bq, m, &mut aw, &mut xy);
    let value = input.value();
    for l in 0..l_n {
        let lv = pr.levels[l];
        let (h, w) = (lv.h as f32, lv.w as f32);
        for p in 0..p_n {
            let i = l * p_n + p;
            let x = xy[i][0] * w - 0.5;
            let y = xy[i][1] * h - 0.5;
            if !(y > -1.0 && x > -1.0 && y < h && x < w) {
                continue;
            }
            let (y0f, x0f) = (y.floor(), x.floor());
            let (ly, lx) = (y - y0f, x - x0f);
            let (y0, x0) = (y0f as isize, x0f as isize);
            let a = aw[i];
            let corners = [
                (y0, x0, (1.0 - ly) * (1.0 - lx)),
                (y0, x0 + 1, (1.0 - ly) * lx),
                (y0 + 1, x0, ly * (1.0 - lx)),
                (y0 + 1, x0 + 1, ly * lx),
            ];
            for (yy, xx, cw) in corners {
                if yy < 0 || xx < 0 || yy >= lv.h as isize || xx >= lv.w as isize {
                    continue;
                }
                let tok = lv.start + yy as usize * lv.w + xx as usize;
                let base = ((b * pr.tokens + tok) * pr.heads + m) * d_n;
                let c = a * cw;
                if D > 0 {
                    let v: &[f32; D] = value[base..base + D].try_into().expect("D channels");
                    for (o, &x) in acc.iter_mut().zip(v) {
                        *o += c * x;
                    }
                } else {
                    for (o, &x) in acc.iter_mut().zip(&value[base..base + d_n]) {
                        *o += c * x;
                    }
                }
            }
        }
    }
}

/// The attention weights `aw[..L·P]` and normalized sampling locations `xy[..L·P]` of head `m` of
/// row `bq = b·Q + q`: read (official form) or computed as the official module does (fused form:
/// softmax over the logits, reference plus scaled offsets).
#[inline(always)]
pub(crate) fn head_samples(
    pr: &MsDeformAttnProblem,
    input: &MsDeformAttnInput,
    bq: usize,
    m: usize,
    aw: &mut [f32; MAX_POINTS],
    xy: &mut [[f32; 2]; MAX_POINTS],
) {
    let (l_n, p_n) = (pr.num_levels(), pr.points);
    let lp = l_n * p_n;
    let s0 = (bq * pr.heads + m) * lp; // first sample of this head
    match *input {
        MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
            aw[..lp].copy_from_slice(&attention_weights[s0..s0 + lp]);
            for (i, c) in xy[..lp].iter_mut().enumerate() {
                *c = [sampling_locations[2 * (s0 + i)], sampling_locations[2 * (s0 + i) + 1]];
            }
        }
        MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
            let logits = &attention_logits[s0..s0 + lp];
            let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for (a, &z) in aw[..lp].iter_mut().zip(logits) {
                *a = (z - mx).exp();
                sum += *a;
            }
            let inv = 1.0 / sum;
            aw[..lp].iter_mut().for_each(|a| *a *= inv);
            let kind = match pr.form {
                Form::Fused(k) => k,
                Form::Official => RefKind::Points,
            };
            let rd = kind.dim();
            for l in 0..l_n {
                let r = &reference[(bq * l_n + l) * rd..(bq * l_n + l + 1) * rd];
                let lv = pr.levels[l];
                for p in 0..p_n {
                    let i = l * p_n + p;
                    let (ox, oy) = (sampling_offsets[2 * (s0 + i)], sampling_offsets[2 * (s0 + i) + 1]);
                    xy[i] = match kind {
                        RefKind::Points => [r[0] + ox / lv.w as f32, r[1] + oy / lv.h as f32],
                        RefKind::Boxes => [r[0] + ox / p_n as f32 * r[2] * 0.5, r[1] + oy / p_n as f32 * r[3] * 0.5],
                    };
                }
            }
        }
    }
}
