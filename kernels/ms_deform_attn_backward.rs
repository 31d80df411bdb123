//! Multi-scale deformable attention backward (the official CUDA op's col2im semantics), both
//! entry forms; the same three steps as `shaders/ms_deform_attn_backward.wgsl`:
//!
//! 0. [`msda_clear()`] zeroes the fixed-point cells.
//! 1. [`msda_sample_grads()`], one unit per row (b, q, m): every sample's location and attention
//!    gradients (sums over the ≤ 4 corners and the D channels), chained through the softmax in
//!    the fused form, and the row's mass `Σ_{l,p} |A| · Σ_d |g_d|` into `bound` (an integer max).
//! 2. [`msda_scatter_value()`], one unit per (b, q, m, g), g = `UNIT` channels: adds
//!    `A · w_corner · g_d` to `grad_value` as 64-bit fixed point with integer atomics.
//! 3. [`msda_finish_value()`], one unit per element: fixed point → f32.
//!
//! Integer sums are exact and associative, so `grad_value` is the same bits whatever order the
//! units run in (floats summed in arrival order would not be). The scale `2^K` keeps every cell's
//! sum, at most `Q · max mass`, below 2^61. A non-finite mass makes every `grad_value` NaN.

use cubecl::prelude::*;

use super::ms_deform_attn::{footprint, logits_inv_sum, logits_max, on_level, sample_location, sample_weight};

/// `2^k` as f32, exactly, for `k` in −126..=127.
#[cube]
fn pow2(k: i32) -> f32 {
    f32::reinterpret(u32::cast_from(k + 127) << 23)
}

/// The scale exponent `K` for the largest row mass' bits, or `NOT_FINITE` (1000) when that
/// mass is not finite. `k_base` = 60 − ⌈log2 (Q + 1)⌉, from the host.
#[cube]
fn fixed_scale(bits: u32, k_base: i32) -> i32 {
    let mut k = 1000i32;
    if bits < 0x7f80_0000u32 {
        // mass < 2^(e+1); e = −127 for zero and subnormals
        let e = i32::cast_from(bits >> 23) - 127;
        k = min(k_base - e, 126);
    }
    k
}

/// Step 1. Arrays: `value [B,S,M,D]` and `gout [B,Q,M·D]` in vectors of N, `shapes [L,3]`
/// (H, W, start), `samp`/`attn`/`refp` as the forward, `gsamp [B,Q,M,L,P,2]`, `gattn [B,Q,M,L·P]`,
/// `bound [1]`; `vph` = D / N, `rows` = B·Q·M.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn msda_sample_grads<F: Float, N: Size>(
    value: &Array<Vector<F, N>>,
    gout: &Array<Vector<f32, N>>,
    shapes: &Array<u32>,
    samp: &Array<f32>,
    attn: &Array<f32>,
    refp: &Array<f32>,
    gsamp: &mut Array<f32>,
    gattn: &mut Array<f32>,
    bound: &mut Array<Atomic<u32>>,
    queries: u32,
    heads: u32,
    vph: u32,
    tokens: u32,
    levels: u32,
    rows: u32,
    #[comptime] points: usize,
    #[comptime] fused: bool,
    #[comptime] boxes: bool,
) {
    let row = ABSOLUTE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let heads = heads as usize;
    let vph = vph as usize;
    let levels = levels as usize;
    let m = row % heads;
    let bq = row / heads;
    let b = bq / queries as usize;
    let lp = levels * points;
    let s0 = row * lp;
    let g0 = row * vph;
    let ones = Vector::<f32, N>::new(1.0f32);
    let mut gmass = 0.0f32;
    for k in 0..vph {
        gmass += Vector::dot(gout[g0 + k].abs(), ones);
    }
    let mut mx = 0.0f32;
    let mut inv = 1.0f32;
    if comptime![fused] {
        mx = logits_max(attn, s0, lp);
        inv = logits_inv_sum(attn, s0, lp, mx);
    }
    let ref_dim = comptime![if boxes { 4usize } else { 2usize }];
    let mut amass = 0.0f32;
    let mut dot_ag = 0.0f32;
    for l in 0..levels {
        let h = shapes[3 * l];
        let w = shapes[3 * l + 1];
        let start = shapes[3 * l + 2] as usize;
        let hf = f32::cast_from(h);
        let wf = f32::cast_from(w);
        let r = (bq * levels + l) * ref_dim;
        // d loc / d offset: 1/(W, H) for points, ref_wh · 0.5 / P for boxes
        let mut cx = 1.0f32;
        let mut cy = 1.0f32;
        if comptime![fused] {
            if comptime![boxes] {
                let pf = comptime![points as f32];
                cx = refp[r + 2] * 0.5f32 / pf;
                cy = refp[r + 3] * 0.5f32 / pf;
            } else {
                cx = 1.0f32 / wf;
                cy = 1.0f32 / hf;
            }
        }
        for p in 0..points {
            let s = s0 + l * points + p;
            let a = sample_weight(attn, s, mx, inv, fused);
            amass += a.abs();
            let lx = sample_location(samp, refp, s, r, wf, 0usize, points, fused, boxes);
            let ly = sample_location(samp, refp, s, r, hf, 1usize, points, fused, boxes);
            let f = footprint(lx, ly, hf, wf);
            let mut sa = 0.0f32;
            let mut sx = 0.0f32;
            let mut sy = 0.0f32;
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
                        let tok =
                            b * tokens as usize + start + usize::cast_from(yy) * w as usize + usize::cast_from(xx);
                        let v0 = (tok * heads + m) * vph;
                        let mut lanes = Vector::<f32, N>::new(0.0f32);
                        for k in 0..vph {
                            lanes += gout[g0 + k] * Vector::<f32, N>::cast_from(value[v0 + k]);
                        }
                        let gv = Vector::dot(lanes, ones);
                        sa += wy * wx * gv;
                        // ∂w/∂x = ±wy, ∂w/∂y = ±wx (minus for the first row/column)
                        sx += select(dx == 0, -wy, wy) * gv;
                        sy += select(dy == 0, -wx, wx) * gv;
                    }
                }
            }
            gsamp[2 * s] = wf * a * sx * cx;
            gsamp[2 * s + 1] = hf * a * sy * cy;
            gattn[s] = sa;
            dot_ag += a * sa;
        }
    }
    if comptime![fused] {
        // through the softmax: d logit_j = a_j · (d a_j − Σ_k a_k · d a_k)
        for j in 0..lp {
            gattn[s0 + j] = sample_weight(attn, s0 + j, mx, inv, fused) * (gattn[s0 + j] - dot_ag);
        }
    }
    // mass ≥ 0 (or NaN): its bits order as the values, so an integer max is the max
    let bits = u32::reinterpret(amass * gmass);
    if bits > bound[0].load() {
        bound[0].fetch_max(bits);
    }
}

/// Adds `t · 2^k` to the fixed-point cell `e` of `acc` (words `2e` low, `2e+1` high).
#[cube]
fn add_fixed(acc: &mut Array<Atomic<u32>>, e: usize, t: f32, k: i32) {
    if t != 0.0f32 {
        let x = (t.abs() * pow2(k)).floor();
        let hi_f = (x * pow2(-32)).floor();
        let mut hi = u32::cast_from(hi_f);
        // exact: x is an integer of ≤ 24 significant bits
        let mut lo = u32::cast_from(x - hi_f * pow2(32));
        if t < 0.0f32 {
            lo = 0u32 - lo;
            hi = 0u32 - hi - select(lo == 0u32, 0u32, 1u32);
        }
        let old = acc[2 * e].fetch_add(lo);
        let sum = old + lo;
        let high = hi + select(sum < old, 1u32, 0u32);
        if high != 0u32 {
            acc[2 * e + 1].fetch_add(high);
        }
    }
}

/// Step 2. Arrays as [`msda_sample_grads()`] (`gout` scalar here), `acc [B,S,M,D,2]` zeroed;
/// `groups` = D / `unit`, `total` = B·Q·M·groups.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn msda_scatter_value(
    gout: &Array<f32>,
    shapes: &Array<u32>,
    samp: &Array<f32>,
    attn: &Array<f32>,
    refp: &Array<f32>,
    acc: &mut Array<Atomic<u32>>,
    bound: &mut Array<Atomic<u32>>,
    queries: u32,
    heads: u32,
    groups: u32,
    tokens: u32,
    levels: u32,
    total: u32,
    k_base: i32,
    #[comptime] unit: usize,
    #[comptime] points: usize,
    #[comptime] fused: bool,
    #[comptime] boxes: bool,
) {
    let i = ABSOLUTE_POS;
    let k = fixed_scale(bound[0].load(), k_base);
    if i >= total as usize || k == 1000i32 {
        terminate!();
    }
    let heads = heads as usize;
    let groups = groups as usize;
    let levels = levels as usize;
    let g = i % groups;
    let row = i / groups;
    let m = row % heads;
    let bq = row / heads;
    let b = bq / queries as usize;
    let d = groups * unit;
    let lp = levels * points;
    let s0 = row * lp;
    let g0 = row * d + g * unit;
    let mut mx = 0.0f32;
    let mut inv = 1.0f32;
    if comptime![fused] {
        mx = logits_max(attn, s0, lp);
        inv = logits_inv_sum(attn, s0, lp, mx);
    }
    let ref_dim = comptime![if boxes { 4usize } else { 2usize }];
    for l in 0..levels {
        let h = shapes[3 * l];
        let w = shapes[3 * l + 1];
        let start = shapes[3 * l + 2] as usize;
        let hf = f32::cast_from(h);
        let wf = f32::cast_from(w);
        let r = (bq * levels + l) * ref_dim;
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
                        let cw = wy * wx * a;
                        let tok =
                            b * tokens as usize + start + usize::cast_from(yy) * w as usize + usize::cast_from(xx);
                        let e0 = (tok * heads + m) * d + g * unit;
                        for j in 0..unit {
                            add_fixed(acc, e0 + j, cw * gout[g0 + j], k);
                        }
                    }
                }
            }
        }
    }
}

/// Zeroes the first `total` words of `words` (the fixed-point cells before step 2).
#[cube(launch_unchecked)]
pub fn msda_clear(words: &mut Array<Atomic<u32>>, total: u32) {
    let e = ABSOLUTE_POS;
    if e < total as usize {
        words[e].store(0u32);
    }
}

/// Step 3: `gvalue[e]` = fixed-point cell `e` · 2^−K, for `e` < `total` = B·S·M·D.
#[cube(launch_unchecked)]
pub fn msda_finish_value(
    acc: &mut Array<Atomic<u32>>,
    bound: &mut Array<Atomic<u32>>,
    gvalue: &mut Array<f32>,
    total: u32,
    k_base: i32,
) {
    let e = ABSOLUTE_POS;
    if e >= total as usize {
        terminate!();
    }
    let bits = bound[0].load();
    let k = fixed_scale(bits, k_base);
    if k == 1000i32 {
        gvalue[e] = f32::reinterpret(bits | 0x7fc0_0000u32);
    } else {
        let mut lo = acc[2 * e].load();
        let mut hi = acc[2 * e + 1].load();
        let negative = hi >= 0x8000_0000u32;
        if negative {
            lo = 0u32 - lo;
            hi = 0u32 - hi - select(lo == 0u32, 0u32, 1u32);
        }
        // both words non-negative: no cancellation in the sum
        let magnitude = (f32::cast_from(hi) * pow2(32) + f32::cast_from(lo)) * pow2(-k);
        gvalue[e] = select(negative, -magnitude, magnitude);
    }
}
