//! Building blocks of the ALIF ops (f32): `gemm`, `layer_norm`, `softmax`, `attention`.
//! Same mapping as `shaders/gemm.wgsl` and the row-op shaders: one 256-unit cube per 64×64 GEMM output tile (4×4 per
//! unit), one 256-unit cube per row for the row ops and per (b, h, query) for attention.

use cubecl::prelude::*;

use super::tile::{block_row, reduce, tile_block, Cols, V1, V4};

const WG: usize = 256;
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;

/// The epilogue activation: 0 none, 1 ReLU (NaN stays NaN, as torch.relu keeps it), 2 exact-erf GELU.
#[cube]
#[allow(clippy::collapsible_if)] // the comptime branch stays apart from the runtime test
pub(crate) fn activate(x: f32, #[comptime] act: u32) -> f32 {
    let mut v = x;
    if comptime![act == 1] {
        if v < 0.0f32 {
            v = 0.0f32;
        }
    }
    if comptime![act == 2] {
        v = v * 0.5f32 * (1.0f32 + Erf::erf(v * FRAC_1_SQRT_2));
    }
    v
}

/// A plain GEMM's B has no convolution geometry.
#[cube]
fn no_cols() -> Cols {
    Cols { xb: 0, h: 0, w: 0, kh: 1, kw: 1, stride: 1, pad: 0, out_w: 1 }
}

/// Writes output `(row, col)` of a GEMM tile: bias, activation, then the residual.
#[cube]
#[allow(clippy::too_many_arguments)]
fn gemm_out(
    v: f32,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    row: usize,
    col: usize,
    m: usize,
    n: usize,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] has_res: bool,
) {
    if row < m && col < n {
        let mut out = v;
        if comptime![has_bias] {
            out += bias[col];
        }
        out = activate(out, act);
        if comptime![has_res] {
            out += res[row * n + col];
        }
        y[row * n + col] = out;
    }
}

/// `y [M,N] = act(x [M,K]·Wᵀ + b) [+ res [M,N]]`, `W [N,K]`; act 0 none, 1 ReLU, 2 exact-erf GELU.
/// One 256-unit cube per `tile`×`tile` output tile (64: a 4×4 block per unit; 128, for large
/// products: 8×8; see `backend::gemm_tile` and `tile::tile_block`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    x: &Array<f32>,
    w: &Array<f32>,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    m: u32,
    k: u32,
    n: u32,
    #[comptime] tile: usize,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] has_res: bool,
) {
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let row0 = CUBE_POS_Y as usize * tile;
    let col0 = CUBE_POS_X as usize * tile;
    let mut acc = Array::<V4>::new(comptime![tile * tile / 1024]);
    tile_block(x, w, &no_cols(), row0, col0, m, n, k, &mut acc, tile, false);
    let lid = UNIT_POS as usize;
    let (ty, tx) = (lid / 16, lid % 16);
    let halves = comptime![tile / 64];
    #[unroll]
    for i in 0..comptime![4 * tile / 64] {
        let row = row0 + block_row(ty, i);
        #[unroll]
        for h in 0..halves {
            #[unroll]
            for j in 0..4usize {
                let v = acc[i * halves + h][j];
                gemm_out(v, bias, res, y, row, col0 + h * 64 + tx * 4 + j, m, n, has_bias, act, has_res);
            }
        }
    }
}

#[cube(launch_unchecked)]
pub fn layer_norm(
    x: &Array<f32>,
    gamma: &Array<f32>,
    beta: &Array<f32>,
    y: &mut Array<f32>,
    rows: u32,
    width: u32,
    eps: f32,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if row >= rows as usize {
        terminate!();
    }
    let mut shared = SharedMemory::<V1>::new(256usize);
    let lid = UNIT_POS as usize;
    let w = width as usize;
    let base = row * w;
    let mut s = 0.0f32;
    let mut i = lid;
    while i < w {
        s += x[base + i];
        i += WG;
    }
    let mean = reduce(&mut shared, s, false) / f32::cast_from(width);
    let mut q = 0.0f32;
    let mut i = lid;
    while i < w {
        let d = x[base + i] - mean;
        q += d * d;
        i += WG;
    }
    let rstd = 1.0f32 / (reduce(&mut shared, q, false) / f32::cast_from(width) + eps).sqrt();
    let mut i = lid;
    while i < w {
        y[base + i] = (x[base + i] - mean) * rstd * gamma[i] + beta[i];
        i += WG;
    }
}

/// Row softmax of `x [R,C]`, max-subtracted.
#[cube(launch_unchecked)]
pub fn softmax(x: &Array<f32>, y: &mut Array<f32>, rows: u32, width: u32) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    if row >= rows as usize {
        terminate!();
    }
    let mut shared = SharedMemory::<V1>::new(256usize);
    let lid = UNIT_POS as usize;
    let w = width as usize;
    let base = row * w;
    let mut m = f32::new(-3.4e38);
    let mut i = lid;
    while i < w {
        m = max(m, x[base + i]);
        i += WG;
    }
    let mx = reduce(&mut shared, m, true);
    let mut s = 0.0f32;
    let mut i = lid;
    while i < w {
        s += (x[base + i] - mx).exp();
        i += WG;
    }
    let inv = 1.0f32 / reduce(&mut shared, s, false);
    let mut i = lid;
    while i < w {
        y[base + i] = (x[base + i] - mx).exp() * inv;
        i += WG;
    }
}

/// Multi-head attention on packed `[B,L,H·Dh]` projections, one cube per (b, h, query row);
/// the query row (Dh ≤ 256) and all scores (Lk ≤ 2048) are staged in shared memory.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    mask: &Array<f32>,
    out: &mut Array<f32>,
    batch: u32,
    heads: u32,
    q_len: u32,
    k_len: u32,
    head_dim: u32,
    scale: f32,
    #[comptime] has_mask: bool,
) {
    let item = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let (heads, q_len, k_len, dh) = (heads as usize, q_len as usize, k_len as usize, head_dim as usize);
    if item >= batch as usize * heads * q_len {
        terminate!();
    }
    let mut shared = SharedMemory::<V1>::new(256usize);
    let mut qs = SharedMemory::<f32>::new(256usize);
    let mut sc = SharedMemory::<f32>::new(2048usize);
    let lid = UNIT_POS as usize;
    let i = item % q_len;
    let bh = item / q_len;
    let h = bh % heads;
    let b = bh / heads;
    let w = heads * dh;
    let qbase = (b * q_len + i) * w + h * dh;
    let mut t = lid;
    while t < dh {
        qs[t] = q[qbase + t];
        t += WG;
    }
    sync_cube();
    let mut m = f32::new(-3.4e38);
    let mut j = lid;
    while j < k_len {
        let kb = (b * k_len + j) * w + h * dh;
        let mut s = 0.0f32;
        for d in 0..dh {
            s += qs[d] * k[kb + d];
        }
        s *= scale;
        if comptime![has_mask] {
            s += mask[b * k_len + j];
        }
        sc[j] = s;
        m = max(m, s);
        j += WG;
    }
    let mx = reduce(&mut shared, m, true);
    let mut sum = 0.0f32;
    let mut j = lid;
    while j < k_len {
        let e = (sc[j] - mx).exp();
        sc[j] = e;
        sum += e;
        j += WG;
    }
    let inv = 1.0f32 / reduce(&mut shared, sum, false);
    let mut t = lid;
    while t < dh {
        let mut o = 0.0f32;
        for jj in 0..k_len {
            o += sc[jj] * v[(b * k_len + jj) * w + h * dh + t];
        }
        out[qbase + t] = o * inv;
        t += WG;
    }
}

/// Flat index of this unit in a 2-D grid of 256-unit cubes.
#[cube]
pub(crate) fn flat_pos() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize * 256 + UNIT_POS as usize
}

/// `out = a + b` (or `act(a · b)` when `mul`) over `n` elements (the op-by-op round's residual
/// adds, the graph's positions, query scaling and MBF's gate).
#[cube(launch_unchecked)]
pub fn add(a: &Array<f32>, b: &Array<f32>, out: &mut Array<f32>, n: u32, #[comptime] mul: bool, #[comptime] act: u32) {
    let i = flat_pos();
    if i >= n as usize {
        terminate!();
    }
    if comptime![mul] {
        out[i] = activate(a[i] * b[i], act);
    } else {
        out[i] = a[i] + b[i];
    }
}

/// `dst[dst_at + i] = src[src_at + i]` for `i < n` (row copies between device tensors).
#[cube(launch_unchecked)]
pub fn copy(src: &Array<f32>, dst: &mut Array<f32>, src_at: u32, dst_at: u32, n: u32) {
    let i = flat_pos();
    if i >= n as usize {
        terminate!();
    }
    dst[dst_at as usize + i] = src[src_at as usize + i];
}

/// Gated residual `out = x + g·d` over `n` elements of rows `width` wide:
/// g = `gamma[0]` (gate 0, VXAc), `gamma[channel]` (gate 1, GLIP) or 1 (gate 2, XGating).
#[cube(launch_unchecked)]
pub fn gated_residual(
    x: &Array<f32>,
    d: &Array<f32>,
    gamma: &Array<f32>,
    out: &mut Array<f32>,
    n: u32,
    width: u32,
    #[comptime] gate: u32,
) {
    let i = flat_pos();
    if i >= n as usize {
        terminate!();
    }
    let mut g = 1.0f32;
    if comptime![gate == 0] {
        g = gamma[0];
    }
    if comptime![gate == 1] {
        g = gamma[i % width as usize];
    }
    out[i] = x[i] + g * d[i];
}
