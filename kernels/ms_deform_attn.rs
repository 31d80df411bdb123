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
        mx = logits_max(attn, s0, lp);
        inv = logits_inv_sum(attn, s0, lp, mx);
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
            let a = sample_weight(attn, s, mx, inv, fused);
            let lx = sample_location(samp, refp, s, r, wf, 0usize, points, fused, boxes);
            let ly = sample_location(samp, refp, s, r, hf, 1usize, points, fused, boxes);
            let f = footprint(lx, ly, hf, wf);
            if f.ok {
                #[unroll]
                for c in 0..4u32 {
                    let dy = comptime![(c / 2) as i32];
                    let dx = comptime![(c % 2) as i32];
                    let yy = f.y0 + dy;
                    let xx = f.x0 + dx;
                    if on_level(yy, xx, h, w) {
                        let wy = select(dy == 0, 1.0f32 - f.fy, f.fy);
                        let wx = select(dx == 0, 1.0f32 - f.fx, f.fx);
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

/// Fused form: the maximum of the `lp` logits from `s0`.
#[cube]
pub(crate) fn logits_max(attn: &Array<f32>, s0: usize, lp: usize) -> f32 {
    let mut mx = attn[s0];
    for k in 1..lp {
        mx = max(mx, attn[s0 + k]);
    }
    mx
}

/// Fused form: `1 / Σ exp(logit − mx)` over the `lp` logits from `s0`.
#[cube]
pub(crate) fn logits_inv_sum(attn: &Array<f32>, s0: usize, lp: usize, mx: f32) -> f32 {
    let mut sum = 0.0f32;
    for k in 0..lp {
        sum += (attn[s0 + k] - mx).exp();
    }
    1.0f32 / sum
}

/// The attention weight of sample `s`: the input (official form), or the softmax of the logits
/// with the head's statistics `mx`, `inv` (fused).
#[cube]
pub(crate) fn sample_weight(attn: &Array<f32>, s: usize, mx: f32, inv: f32, #[comptime] fused: bool) -> f32 {
    let mut a = attn[s];
    if comptime![fused] {
        a = (a - mx).exp() * inv;
    }
    a
}

/// The normalized location of sample `s` along `axis` (0 = x, 1 = y): the input (official
/// form), or from the reference at `r` (fused) — points `ref + off / size`, boxes
/// `ref_xy + off / P · ref_wh · 0.5`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sample_location(
    samp: &Array<f32>,
    refp: &Array<f32>,
    s: usize,
    r: usize,
    size: f32,
    #[comptime] axis: usize,
    #[comptime] points: usize,
    #[comptime] fused: bool,
    #[comptime] boxes: bool,
) -> f32 {
    let off = samp[2 * s + axis];
    let mut loc = off;
    if comptime![fused] {
        if comptime![boxes] {
            let pf = comptime![points as f32];
            loc = refp[r + axis] + off / pf * refp[r + 2 + axis] * 0.5f32;
        } else {
            loc = refp[r + axis] + off / size;
        }
    }
    loc
}

/// A sample's bilinear footprint on an `hf × wf` level (spec §3): `ok` = the official validity
/// rule (−1 < y < H, −1 < x < W) for x = loc_x·W − 0.5, y = loc_y·H − 0.5; (`y0`, `x0`) its
/// top-left corner, (`fy`, `fx`) its fractional offsets.
#[derive(CubeType)]
pub(crate) struct Footprint {
    pub ok: bool,
    pub y0: i32,
    pub x0: i32,
    pub fy: f32,
    pub fx: f32,
}

#[cube]
pub(crate) fn footprint(lx: f32, ly: f32, hf: f32, wf: f32) -> Footprint {
    let x = lx * wf - 0.5f32;
    let y = ly * hf - 0.5f32;
    let y0f = y.floor();
    let x0f = x.floor();
    Footprint {
        ok: y > -1.0f32 && x > -1.0f32 && y < hf && x < wf,
        y0: i32::cast_from(y0f),
        x0: i32::cast_from(x0f),
        fy: y - y0f,
        fx: x - x0f,
    }
}

/// Whether the cell (`yy`, `xx`) lies on an `h × w` level (corners outside read, and receive, zero).
#[cube]
pub(crate) fn on_level(yy: i32, xx: i32, h: u32, w: u32) -> bool {
    yy >= 0 && xx >= 0 && yy < i32::cast_from(h) && xx < i32::cast_from(w)
}
