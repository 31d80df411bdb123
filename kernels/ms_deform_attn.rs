//! Multi-scale deformable attention forward (official semantics, spec §3), both entry forms.
//!
//! One unit per (b, q, m, g), g = a group of 2·N channels (two `Vector<F, N>` loads per tap).
//! Each unit computes its head's softmax (fused form) and sampling locations itself, then for
//! every tap gathers its channels from the ≤ 4 in-bounds corners. Accumulation is f32 for every
//! storage type F (f32, f16, bf16).

use cubecl::prelude::*;

/// Arguments (element offsets are in scalars; `value`/`out` are indexed in vectors of N):
/// - `value [B,S,M,D]` (as `Vector<F,N>`), `out [B,Q,M·D]` (as `Vector<F,N>`)
/// - `shapes [L,3]`: per level (H, W, start)
/// - official: `samp` = sampling_locations `[B,Q,M,L,P,2]`, `attn` = attention_weights `[B,Q,M,L,P]`,
///   `refp` unused (any 1-element array)
/// - fused: `samp` = sampling_offsets `[B,Q,M,L,P,2]`, `attn` = attention_logits `[B,Q,M,L·P]`,
///   `refp` = reference `[B,Q,L,2]` (points) or `[B,Q,L,4]` (`boxes`)
/// - `groups` = D / (N·(1 + pair)) = D / 8; `total` = B·Q·M·groups; `points` = P (comptime)
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn ms_deform_attn<F: Float, N: Size>(
    value: &Array<Vector<F, N>>,
    shapes: &Array<u32>,
    samp: &Array<f32>,
    attn: &Array<f32>,
    refp: &Array<f32>,
    out: &mut Array<Vector<F, N>>,
    queries: u32,
    heads: u32,
    groups: u32,
    tokens: u32,
    levels: u32,
    total: u32,
    #[comptime] points: usize,
    #[comptime] pair: bool,
    #[comptime] fused: bool,
    #[comptime] boxes: bool,
) {
    let i = ABSOLUTE_POS;
    if i >= total as usize {
        terminate!();
    }
    let heads = heads as usize;
    let groups = groups as usize;
    let levels = levels as usize;
    let g = i % groups;
    let bqm = i / groups;
    let m = bqm % heads;
    let bq = bqm / heads;
    let b = bq / queries as usize;
    let lp = levels * points;
    let s0 = bqm * lp;

    // Softmax statistics of this head's logits (fused form only).
    let mut mx = 0.0f32;
    let mut inv = 1.0f32;
    if comptime![fused] {
        mx = attn[s0];
        for k in 1..lp {
            mx = max(mx, attn[s0 + k]);
        }
        let mut sum = 0.0f32;
        for k in 0..lp {
            sum += (attn[s0 + k] - mx).exp();
        }
        inv = 1.0f32 / sum;
    }

    let ref_dim = comptime![if boxes { 4usize } else { 2usize }];
    let vpu = comptime![if pair { 2usize } else { 1usize }]; // vectors per unit
    let vec_per_head = groups * vpu;
    let mut acc_lo = Vector::<f32, N>::new(0.0f32);
    let mut acc_hi = Vector::<f32, N>::new(0.0f32);
    for l in 0..levels {
        let h = shapes[3 * l];
        let w = shapes[3 * l + 1];
        let start = shapes[3 * l + 2] as usize;
        let hf = f32::cast_from(h);
        let wf = f32::cast_from(w);
        let r = (bq * levels + l) * ref_dim;
        #[unroll]
        for p in 0..points {
            let s = s0 + l * points + p;
            let mut lx = samp[2 * s];
            let mut ly = samp[2 * s + 1];
            let mut a = attn[s];
            if comptime![fused] {
                a = (a - mx).exp() * inv;
                if comptime![boxes] {
                    let pf = comptime![points as f32];
                    lx = refp[r] + lx / pf * refp[r + 2] * 0.5f32;
                    ly = refp[r + 1] + ly / pf * refp[r + 3] * 0.5f32;
                } else {
                    lx = refp[r] + lx / wf;
                    ly = refp[r + 1] + ly / hf;
                }
            }
            let x = lx * wf - 0.5f32;
            let y = ly * hf - 0.5f32;
            if y > -1.0f32 && x > -1.0f32 && y < hf && x < wf {
                let y0f = y.floor();
                let x0f = x.floor();
                let fy = y - y0f;
                let fx = x - x0f;
                let y0 = i32::cast_from(y0f);
                let x0 = i32::cast_from(x0f);
                let hi = i32::cast_from(h);
                let wi = i32::cast_from(w);
                #[unroll]
                for c in 0..4u32 {
                    let dy = comptime![(c / 2) as i32];
                    let dx = comptime![(c % 2) as i32];
                    let yy = y0 + dy;
                    let xx = x0 + dx;
                    if yy >= 0 && xx >= 0 && yy < hi && xx < wi {
                        let wy = select(dy == 0, 1.0f32 - fy, fy);
                        let wx = select(dx == 0, 1.0f32 - fx, fx);
                        let k = Vector::<f32, N>::new(a * wy * wx);
                        let tok =
                            b * tokens as usize + start + usize::cast_from(yy) * w as usize + usize::cast_from(xx);
                        let v = (tok * heads + m) * vec_per_head + g * vpu;
                        acc_lo += Vector::<f32, N>::cast_from(value[v]) * k;
                        if comptime![pair] {
                            acc_hi += Vector::<f32, N>::cast_from(value[v + 1]) * k;
                        }
                    }
                }
            }
        }
    }
    let o = bqm * vec_per_head + g * vpu;
    out[o] = Vector::<F, N>::cast_from(acc_lo);
    if comptime![pair] {
        out[o + 1] = Vector::<F, N>::cast_from(acc_hi);
    }
}
