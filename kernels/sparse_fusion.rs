//! One ALIF round in 8 launches (f32): the cubecl twin of `shaders/sparse_fusion.wgsl`, over the
//! same plan (`src/backend/fusion_plan.rs`): one `arena` holding inputs, weights and every
//! intermediate, and per launch a parameter block `p` of u32 words (f32 fields bit-cast).
//!
//! Launches: 1 `gemm_jobs` (Q with LN + pos and ·scale, Vv, K, Vl, LN as a prologue), 2 `attend`
//! (both directions of the one score matrix, 4 query rows per cube), 3 `gemm_jobs` (output projections, gated residual),
//! 4 `gemm_jobs` (language Q/K/V), 5 `lang_attend` (masked MHA + output projection + residual +
//! LayerNorm per label row), 6/7 `gemm_jobs` (FFN with GELU, down-projection + residual),
//! 8 `norm_rows` (last LayerNorm). Image row r lives at (r / Nv)·tokens + start + r % Nv.

use cubecl::prelude::*;

use super::tile::{reduce, reduce_cube, slab_fma, V1, V4};
use crate::backend::fusion_layout::*;

const WG: usize = 256;
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;

// Words of the parameter block (`FusionParams`; asserted against its layout in the launcher).
pub const P_BATCH: usize = 0;
pub const P_NV: usize = 1;
pub const P_T: usize = 2;
pub const P_E: usize = 3;
pub const P_HEADS: usize = 4;
pub const P_DH: usize = 5;
pub const P_TOKENS: usize = 6;
pub const P_START: usize = 7;
pub const P_GATE: usize = 8;
pub const P_NJOBS: usize = 10;
pub const P_TOTAL: usize = 11;
pub const P_LH: usize = 12;
pub const P_LHEADS: usize = 13;
pub const P_LDH: usize = 14;
pub const P_LSCALE: usize = 16;
pub const P_HAS_MASK: usize = 17;
pub const P_EPS: usize = 18;
/// First word of the offset slots and of the job table; words per job.
pub const P_OFF: usize = 20;
pub const P_JOBS: usize = 52;
pub const JOB_WORDS: usize = 16;

// Words of a job.
const J_A: usize = 0;
const J_W: usize = 1;
const J_BIAS: usize = 2;
const J_OUT: usize = 3;
const J_ROWS: usize = 4;
const J_K: usize = 5;
const J_N: usize = 6;
const J_TILE0: usize = 7;
const J_LN_W: usize = 8;
const J_LN_B: usize = 9;
const J_POS: usize = 10;
const J_FLAGS: usize = 11;
const J_STAT: usize = 12;
const J_GAMMA: usize = 13;
const J_SCALE: usize = 14;
const J_RES: usize = 15;

// Job flags (same values as the WGSL).

#[cube]
fn word(p: &Array<u32>, i: usize) -> usize {
    p[i] as usize
}

#[cube]
fn image_row(p: &Array<u32>, r: usize) -> usize {
    let nv = word(p, P_NV);
    (r / nv) * word(p, P_TOKENS) + word(p, P_START) + r % nv
}

/// Sum over the 4 units that share tile row `r` (all four get it).
#[cube]
fn row_sum4(part: &mut SharedMemory<f32>, r: usize, q: usize, v: f32) -> f32 {
    part[r * 4 + q] = v;
    sync_cube();
    let s = part[r * 4] + part[r * 4 + 1] + part[r * 4 + 2] + part[r * 4 + 3];
    sync_cube();
    s
}

/// Grouped GEMM: 64×64 output tile per 256-unit cube, 4×4 per unit, K in 16-deep slabs; the job
/// is found from the cube index and the jobs' first tiles.
#[cube(launch_unchecked)]
pub fn gemm_jobs(arena: &mut Array<f32>, p: &Array<u32>) {
    let g = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if g >= word(p, P_TOTAL) {
        terminate!();
    }
    let mut job = 0usize;
    for i in 1..word(p, P_NJOBS) {
        if g >= word(p, P_JOBS + i * JOB_WORDS + J_TILE0) {
            job = i;
        }
    }
    let jb = P_JOBS + job * JOB_WORDS;
    let a = word(p, jb + J_A);
    let wt = word(p, jb + J_W);
    let rows = word(p, jb + J_ROWS);
    let k = word(p, jb + J_K);
    let n = word(p, jb + J_N);
    let ln_w = word(p, jb + J_LN_W);
    let ln_b = word(p, jb + J_LN_B);
    let pos = word(p, jb + J_POS);
    let flags = p[jb + J_FLAGS];
    let stat = word(p, jb + J_STAT);
    let has_ln = (flags & F_LN) != 0;
    let has_pos = (flags & F_POS) != 0;
    let map_a = (flags & F_MAP_A) != 0;

    // K slabs staged k-major as vec4s: [16 k][16 row (or column) quads]
    let mut xs = SharedMemory::<V4>::new(256usize);
    let mut ws = SharedMemory::<V4>::new(256usize);
    let mut part = SharedMemory::<f32>::new(256usize);
    let mut row_mean = SharedMemory::<f32>::new(64usize);
    let mut row_rstd = SharedMemory::<f32>::new(64usize);
    let mut a_row_s = SharedMemory::<u32>::new(64usize);
    let mut lnw_s = SharedMemory::<f32>::new(16usize);
    let mut lnb_s = SharedMemory::<f32>::new(16usize);

    let lid = UNIT_POS as usize;
    let tiles_n = n.div_ceil(64);
    let local = g - word(p, jb + J_TILE0);
    let row0 = (local / tiles_n) * 64;
    let col0 = (local % tiles_n) * 64;
    if lid < 64 {
        let row = row0 + lid;
        let mut ar = row;
        if map_a {
            ar = image_row(p, row);
        }
        a_row_s[lid] = ar as u32;
    }
    sync_cube();

    if has_ln {
        let lr = lid / 4;
        let q = lid % 4;
        let live = row0 + lr < rows;
        let base = a + a_row_s[lr] as usize * k;
        let mut s = 0.0f32;
        if live {
            let mut kk = q;
            while kk < k {
                s += arena[base + kk];
                kk += 4;
            }
        }
        let mean = row_sum4(&mut part, lr, q, s) / f32::cast_from(k as u32);
        let mut v = 0.0f32;
        if live {
            let mut kk = q;
            while kk < k {
                let d = arena[base + kk] - mean;
                v += d * d;
                kk += 4;
            }
        }
        let var = row_sum4(&mut part, lr, q, v) / f32::cast_from(k as u32);
        let rstd = 1.0f32 / (var + f32::reinterpret(p[P_EPS])).sqrt();
        if q == 0 {
            row_mean[lr] = mean;
            row_rstd[lr] = rstd;
            if (flags & F_STATS) != 0 && col0 == 0 && live {
                arena[stat + 2 * (row0 + lr)] = mean;
                arena[stat + 2 * (row0 + lr) + 1] = rstd;
            }
        }
        sync_cube();
    }

    let ty = lid / 16;
    let tx = lid % 16;
    let mut acc = Array::<V4>::new(4usize);
    #[unroll]
    for i in 0..4usize {
        acc[i] = V4::new(0.0f32);
    }
    // this unit stages k = k0 + kk of rows (and columns) q4·4 .. q4·4 + 4
    let kk = lid % 16;
    let q4 = lid / 16;
    let mut k0 = 0usize;
    while k0 < k {
        if has_ln {
            if lid < 16 {
                let kx = k0 + lid;
                let mut gw = 0.0f32;
                let mut gb = 0.0f32;
                if kx < k {
                    gw = arena[ln_w + kx];
                    gb = arena[ln_b + kx];
                }
                lnw_s[lid] = gw;
                lnb_s[lid] = gb;
            }
            sync_cube();
        }
        let kx = k0 + kk;
        let mut xv = V4::new(0.0f32);
        let mut wv = V4::new(0.0f32);
        #[unroll]
        for c in 0..4usize {
            let r = q4 * 4 + c;
            let mut x = 0.0f32;
            if row0 + r < rows && kx < k {
                let ar = a_row_s[r] as usize;
                x = arena[a + ar * k + kx];
                if has_ln {
                    x = (x - row_mean[r]) * row_rstd[r] * lnw_s[kk] + lnb_s[kk];
                }
                if has_pos {
                    x += arena[pos + ar * k + kx];
                }
            }
            xv[c] = x;
            let col = col0 + r;
            let mut w = 0.0f32;
            if col < n && kx < k {
                w = arena[wt + col * k + kx];
            }
            wv[c] = w;
        }
        xs[kk * 16 + q4] = xv;
        ws[kk * 16 + q4] = wv;
        sync_cube();
        slab_fma(&xs, &ws, ty, tx, &mut acc);
        sync_cube();
        k0 += 16;
    }
    let bias = word(p, jb + J_BIAS);
    let out = word(p, jb + J_OUT);
    let res = word(p, jb + J_RES);
    let gamma = word(p, jb + J_GAMMA);
    let gate = p[P_GATE];
    let scale = f32::reinterpret(p[jb + J_SCALE]);
    #[unroll]
    for i in 0..4usize {
        #[unroll]
        for j in 0..4usize {
            let row = row0 + ty * 4 + i;
            let col = col0 + tx * 4 + j;
            if row < rows && col < n {
                let mut y = (acc[i][j] + arena[bias + col]) * scale;
                if (flags & F_GELU) != 0 {
                    y = y * 0.5f32 * (1.0f32 + Erf::erf(y * FRAC_1_SQRT_2));
                }
                let mut o_row = row;
                if (flags & F_MAP_OUT) != 0 {
                    o_row = image_row(p, row);
                }
                if (flags & F_GATE) != 0 {
                    let r = arena[res + o_row * n + col];
                    let ln =
                        (r - arena[stat + 2 * row]) * arena[stat + 2 * row + 1] * arena[ln_w + col] + arena[ln_b + col];
                    let mut gv = 1.0f32;
                    if gate == 0 {
                        gv = arena[gamma];
                    }
                    if gate == 1 {
                        gv = arena[gamma + col];
                    }
                    y = ln + gv * y;
                }
                if (flags & F_RESID) != 0 {
                    y += arena[res + o_row * n + col];
                }
                arena[out + o_row * n + col] = y;
            }
        }
    }
}

/// Query rows per `attend` cube.
const AR: usize = 4;

/// Launch 2: one cube per (side, b, h, block of 4 query rows); each key and value element read
/// serves the 4 rows (vec4 component r = query row i0 + r). Image rows attend over the T label
/// keys with values Vl; label rows over the Nv image keys (the scaled queries) with values Vv.
#[cube(launch_unchecked)]
pub fn attend(arena: &mut Array<f32>, p: &Array<u32>) {
    let item = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let (batch, heads, nv, t, e, dh) =
        (word(p, P_BATCH), word(p, P_HEADS), word(p, P_NV), word(p, P_T), word(p, P_E), word(p, P_DH));
    let blocks_img = nv.div_ceil(AR);
    let blocks_txt = t.div_ceil(AR);
    let n_img = batch * heads * blocks_img;
    if item >= n_img + batch * heads * blocks_txt {
        terminate!();
    }
    let mut red = SharedMemory::<V4>::new(256usize);
    let mut qs = SharedMemory::<V4>::new(256usize); // [channel] (Dh ≤ 256)
    let mut sc = SharedMemory::<V4>::new(1024usize); // [key] (≤ 1024 keys)
    let lid = UNIT_POS as usize;
    let text = item >= n_img;
    let mut it = item;
    let mut n_q = nv;
    let mut n_k = t;
    let mut nb = blocks_img;
    let mut q_off = word(p, P_OFF + O_Q);
    let mut k_off = word(p, P_OFF + O_K);
    let mut v_off = word(p, P_OFF + O_VL);
    let mut o_off = word(p, P_OFF + O_CTXV);
    if text {
        it = item - n_img;
        n_q = t;
        n_k = nv;
        nb = blocks_txt;
        q_off = word(p, P_OFF + O_K);
        k_off = word(p, P_OFF + O_Q);
        v_off = word(p, P_OFF + O_VV);
        o_off = word(p, P_OFF + O_CTXL);
    }
    let i0 = (it % nb) * AR;
    let bh = it / nb;
    let col = (bh % heads) * dh;
    let b = bh / heads;
    let mut d = lid;
    while d < dh {
        let mut q = V4::new(0.0f32);
        #[unroll]
        for r in 0..AR {
            if i0 + r < n_q {
                q[r] = arena[q_off + (b * n_q + i0 + r) * e + col + d];
            }
        }
        qs[d] = q; // rows past the end score 0 and are not written
        d += WG;
    }
    sync_cube();
    let mut m = V4::new(-3.4e38f32);
    let mut j = lid;
    while j < n_k {
        let kb = k_off + (b * n_k + j) * e + col;
        let mut s = V4::new(0.0f32);
        for dd in 0..dh {
            s += qs[dd] * V4::new(arena[kb + dd]);
        }
        sc[j] = s;
        m = max(m, s);
        j += WG;
    }
    let mx = reduce_cube::<Const<4>>(&mut red, m, true);
    let mut sum = V4::new(0.0f32);
    let mut j = lid;
    while j < n_k {
        let x = (sc[j] - mx).exp();
        sc[j] = x;
        sum += x;
        j += WG;
    }
    let inv = V4::new(1.0f32) / reduce_cube::<Const<4>>(&mut red, sum, false);
    let mut d = lid;
    while d < dh {
        let mut o = V4::new(0.0f32);
        for jj in 0..n_k {
            o += sc[jj] * V4::new(arena[v_off + (b * n_k + jj) * e + col + d]);
        }
        o *= inv;
        #[unroll]
        for r in 0..AR {
            if i0 + r < n_q {
                arena[o_off + (b * n_q + i0 + r) * e + col + d] = o[r];
            }
        }
        d += WG;
    }
}

/// LayerNorm of `rowv[0..width]` with (w, b) into `arena[dst..]`.
#[cube]
fn norm_row(
    arena: &mut Array<f32>,
    rowv: &SharedMemory<f32>,
    red: &mut SharedMemory<V1>,
    width: usize,
    w: usize,
    b: usize,
    dst: usize,
    eps: f32,
) {
    let lid = UNIT_POS as usize;
    let mut s = 0.0f32;
    let mut c = lid;
    while c < width {
        s += rowv[c];
        c += WG;
    }
    let mean = reduce(red, s, false) / f32::cast_from(width as u32);
    let mut q = 0.0f32;
    let mut c = lid;
    while c < width {
        let d = rowv[c] - mean;
        q += d * d;
        c += WG;
    }
    let rstd = 1.0f32 / (reduce(red, q, false) / f32::cast_from(width as u32) + eps).sqrt();
    let mut c = lid;
    while c < width {
        arena[dst + c] = (rowv[c] - mean) * rstd * arena[w + c] + arena[b + c];
        c += WG;
    }
}

/// Launch 5: one cube per label row — every head with the additive mask (1 − m)·−10000, then the
/// attention output projection (weight stored transposed, [in, out]) + residual + LayerNorm.
#[cube(launch_unchecked)]
pub fn lang_attend(arena: &mut Array<f32>, p: &Array<u32>) {
    let r = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let t = word(p, P_T);
    if r >= word(p, P_BATCH) * t {
        terminate!();
    }
    let mut red = SharedMemory::<V1>::new(256usize);
    let mut rowv = SharedMemory::<f32>::new(1024usize);
    let mut ctx = SharedMemory::<f32>::new(1024usize);
    let mut sc = SharedMemory::<f32>::new(2048usize);
    let lid = UNIT_POS as usize;
    let (lh, lheads, ldh) = (word(p, P_LH), word(p, P_LHEADS), word(p, P_LDH));
    let lscale = f32::reinterpret(p[P_LSCALE]);
    let has_mask = p[P_HAS_MASK] != 0;
    let (o_lk, o_lv, o_mask) = (word(p, P_OFF + O_LK), word(p, P_OFF + O_LV), word(p, P_OFF + O_MASK));
    let b = r / t;
    let mut c = lid;
    while c < lh {
        rowv[c] = arena[word(p, P_OFF + O_LQ) + r * lh + c];
        c += WG;
    }
    sync_cube();
    for h in 0..lheads {
        let mut m = f32::new(-3.4e38);
        let mut j = lid;
        while j < t {
            let kb = o_lk + (b * t + j) * lh + h * ldh;
            let mut s = 0.0f32;
            for d in 0..ldh {
                s += rowv[h * ldh + d] * arena[kb + d];
            }
            s *= lscale;
            if has_mask {
                s += (1.0f32 - arena[o_mask + b * t + j]) * -10000.0f32;
            }
            sc[j] = s;
            m = max(m, s);
            j += WG;
        }
        let mx = reduce(&mut red, m, true);
        let mut sum = 0.0f32;
        let mut j = lid;
        while j < t {
            let x = (sc[j] - mx).exp();
            sc[j] = x;
            sum += x;
            j += WG;
        }
        let inv = 1.0f32 / reduce(&mut red, sum, false);
        let mut d = lid;
        while d < ldh {
            let mut o = 0.0f32;
            for jj in 0..t {
                o += sc[jj] * arena[o_lv + (b * t + jj) * lh + h * ldh + d];
            }
            ctx[h * ldh + d] = o * inv;
            d += WG;
        }
        sync_cube();
    }
    let (o_wo, o_bo, o_lnew) = (word(p, P_OFF + O_WO), word(p, P_OFF + O_BO), word(p, P_OFF + O_LNEW));
    let mut c = lid;
    while c < lh {
        let mut y = arena[o_bo + c] + arena[o_lnew + r * lh + c];
        for kk in 0..lh {
            y += ctx[kk] * arena[o_wo + kk * lh + c];
        }
        rowv[c] = y; // every head is done: the query values are no longer read
        c += WG;
    }
    sync_cube();
    let eps = f32::reinterpret(p[P_EPS]);
    norm_row(
        arena,
        &rowv,
        &mut red,
        lh,
        word(p, P_OFF + O_N1W),
        word(p, P_OFF + O_N1B),
        word(p, P_OFF + O_A) + r * lh,
        eps,
    );
}

/// Launch 8: the language layer's last LayerNorm, one cube per label row.
#[cube(launch_unchecked)]
pub fn norm_rows(arena: &mut Array<f32>, p: &Array<u32>) {
    let r = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if r >= word(p, P_BATCH) * word(p, P_T) {
        terminate!();
    }
    let mut red = SharedMemory::<V1>::new(256usize);
    let mut rowv = SharedMemory::<f32>::new(1024usize);
    let lid = UNIT_POS as usize;
    let lh = word(p, P_LH);
    let src = word(p, P_OFF + O_INTER2) + r * lh;
    let mut c = lid;
    while c < lh {
        rowv[c] = arena[src + c];
        c += WG;
    }
    sync_cube();
    let eps = f32::reinterpret(p[P_EPS]);
    norm_row(
        arena,
        &rowv,
        &mut red,
        lh,
        word(p, P_OFF + O_N2W),
        word(p, P_OFF + O_N2B),
        word(p, P_OFF + O_LOUT) + r * lh,
        eps,
    );
}
