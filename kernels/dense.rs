//! Building blocks of the ALIF ops (f32): `gemm`, `layer_norm`, `softmax`, `attention`.
//! Same mapping as `shaders/dense.wgsl`: one 256-unit cube per 64×64 GEMM output tile (4×4 per
//! unit), one 256-unit cube per row for the row ops and per (b, h, query) for attention.

use cubecl::prelude::*;

const WG: usize = 256;
const FRAC_1_SQRT_2: f32 = core::f32::consts::FRAC_1_SQRT_2;

/// Sum (or max) over the cube's 256 units of one value each; every unit gets the result.
#[cube]
pub(crate) fn reduce_cube(shared: &mut SharedMemory<f32>, v: f32, #[comptime] is_max: bool) -> f32 {
    let lid = UNIT_POS as usize;
    shared[lid] = v;
    sync_cube();
    let mut s = 128usize;
    while s > 0 {
        if lid < s {
            let other = shared[lid + s];
            if comptime![is_max] {
                shared[lid] = max(shared[lid], other);
            } else {
                shared[lid] = shared[lid] + other;
            }
        }
        sync_cube();
        s /= 2;
    }
    let r = shared[0];
    sync_cube();
    r
}

/// A 4-wide f32 vector: the GEMM tiles stage K slabs as vec4s.
pub(crate) type V4 = Vector<f32, Const<4>>;

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

/// The 64×64 GEMM tile's inner loop over one staged 16-deep slab: `xs`, `ws` hold
/// [16 k][16 row (column) quads]; the unit at (ty, tx) accumulates rows ty·4 + i (acc[i]) and
/// columns tx·4 .. tx·4 + 4. Two vec4 reads per 16 FMAs (on a software adapter every divergent
/// load is a per-lane loop).
#[cube]
pub(crate) fn slab_fma(xs: &SharedMemory<V4>, ws: &SharedMemory<V4>, ty: usize, tx: usize, acc: &mut Array<V4>) {
    for s in 0..16usize {
        let av = xs[s * 16 + ty];
        let bv = ws[s * 16 + tx];
        #[unroll]
        for i in 0..4usize {
            acc[i] += V4::new(av[i]) * bv;
        }
    }
}

/// The 128×128 tile's inner loop over one staged 8-deep slab: `xs`, `ws` hold [8 k][32 row
/// (column) quads]; the unit at (ty, tx) accumulates rows ty·4 + i and 64 + ty·4 + i (acc[2i + h]
/// and acc[8 + 2i + h]) against column quads tx (h = 0) and 16 + tx (h = 1).
#[cube]
pub(crate) fn slab_fma8(xs: &SharedMemory<V4>, ws: &SharedMemory<V4>, ty: usize, tx: usize, acc: &mut Array<V4>) {
    for s in 0..8usize {
        let a0 = xs[s * 32 + ty];
        let a1 = xs[s * 32 + 16 + ty];
        let b0 = ws[s * 32 + tx];
        let b1 = ws[s * 32 + 16 + tx];
        #[unroll]
        for i in 0..4usize {
            acc[2 * i] += V4::new(a0[i]) * b0;
            acc[2 * i + 1] += V4::new(a0[i]) * b1;
            acc[8 + 2 * i] += V4::new(a1[i]) * b0;
            acc[9 + 2 * i] += V4::new(a1[i]) * b1;
        }
    }
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

/// Stages one K column of a GEMM tile: x rows and W rows row0/col0 + q4·4 .. + 4 at `kx`, as
/// one vec4 each into `xs[at]` and `ws[at]` (zeros outside the matrices); shared by gemm and
/// gemm128, which differ in slab depth and so in `at`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_quads(
    x: &Array<f32>,
    w: &Array<f32>,
    xs: &mut SharedMemory<V4>,
    ws: &mut SharedMemory<V4>,
    row0: usize,
    col0: usize,
    kx: usize,
    q4: usize,
    at: usize,
    m: usize,
    k: usize,
    n: usize,
) {
    let mut xv = V4::new(0.0f32);
    let mut wv = V4::new(0.0f32);
    #[unroll]
    for q in 0..4usize {
        let r = q4 * 4 + q;
        if row0 + r < m && kx < k {
            xv[q] = x[(row0 + r) * k + kx];
        }
        if col0 + r < n && kx < k {
            wv[q] = w[(col0 + r) * k + kx];
        }
    }
    xs[at] = xv;
    ws[at] = wv;
}

/// `y [M,N] = act(x [M,K]·Wᵀ + b) [+ res [M,N]]`, `W [N,K]`; act 0 none, 1 ReLU, 2 exact-erf GELU.
/// One 256-unit cube per 64×64 output tile, each unit a 4×4 register block (see `slab_fma`).
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
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] has_res: bool,
) {
    let mut xs = SharedMemory::<V4>::new(256usize);
    let mut ws = SharedMemory::<V4>::new(256usize);
    let lid = UNIT_POS as usize;
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let row0 = CUBE_POS_Y as usize * 64;
    let col0 = CUBE_POS_X as usize * 64;
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
        stage_quads(x, w, &mut xs, &mut ws, row0, col0, k0 + kk, q4, kk * 16 + q4, m, k, n);
        sync_cube();
        slab_fma(&xs, &ws, ty, tx, &mut acc);
        sync_cube();
        k0 += 16;
    }
    #[unroll]
    for i in 0..4usize {
        #[unroll]
        for j in 0..4usize {
            gemm_out(acc[i][j], bias, res, y, row0 + ty * 4 + i, col0 + tx * 4 + j, m, n, has_bias, act, has_res);
        }
    }
}

/// `gemm` for large products (see `backend::gemm_tile`): one 256-unit cube per 128×128 output
/// tile, each unit an 8×8 block — rows ty·4 + i and 64 + ty·4 + i, columns tx·4 .. + 4 and
/// 64 + tx·4 .. + 4 — with K in 8-deep slabs: four vec4 reads from shared memory per 64 FMAs.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn gemm128(
    x: &Array<f32>,
    w: &Array<f32>,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    m: u32,
    k: u32,
    n: u32,
    #[comptime] has_bias: bool,
    #[comptime] act: u32,
    #[comptime] has_res: bool,
) {
    let mut xs = SharedMemory::<V4>::new(256usize); // [k (8)][row / 4 (32)]
    let mut ws = SharedMemory::<V4>::new(256usize); // [k (8)][col / 4 (32)]
    let lid = UNIT_POS as usize;
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let row0 = CUBE_POS_Y as usize * 128;
    let col0 = CUBE_POS_X as usize * 128;
    let ty = lid / 16;
    let tx = lid % 16;
    // acc[2i + h]: block row i (i < 4: ty·4 + i, else 64 + ty·4 + i − 4), column half h
    let mut acc = Array::<V4>::new(16usize);
    #[unroll]
    for i in 0..16usize {
        acc[i] = V4::new(0.0f32);
    }
    // this unit stages k = k0 + kk of rows (and columns) q4·4 .. q4·4 + 4
    let kk = lid % 8;
    let q4 = lid / 8;
    let mut k0 = 0usize;
    while k0 < k {
        stage_quads(x, w, &mut xs, &mut ws, row0, col0, k0 + kk, q4, kk * 32 + q4, m, k, n);
        sync_cube();
        slab_fma8(&xs, &ws, ty, tx, &mut acc);
        sync_cube();
        k0 += 8;
    }
    #[unroll]
    for i in 0..8usize {
        let row = row0 + (i / 4) * 64 + ty * 4 + i % 4;
        #[unroll]
        for h in 0..2usize {
            #[unroll]
            for j in 0..4usize {
                gemm_out(
                    acc[2 * i + h][j],
                    bias,
                    res,
                    y,
                    row,
                    col0 + h * 64 + tx * 4 + j,
                    m,
                    n,
                    has_bias,
                    act,
                    has_res,
                );
            }
        }
    }
}

/// Row LayerNorm of `x [R,C]` with biased variance.
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
    let mut shared = SharedMemory::<f32>::new(256usize);
    let lid = UNIT_POS as usize;
    let w = width as usize;
    let base = row * w;
    let mut s = 0.0f32;
    let mut i = lid;
    while i < w {
        s += x[base + i];
        i += WG;
    }
    let mean = reduce_cube(&mut shared, s, false) / f32::cast_from(width);
    let mut q = 0.0f32;
    let mut i = lid;
    while i < w {
        let d = x[base + i] - mean;
        q += d * d;
        i += WG;
    }
    let rstd = 1.0f32 / (reduce_cube(&mut shared, q, false) / f32::cast_from(width) + eps).sqrt();
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
    let mut shared = SharedMemory::<f32>::new(256usize);
    let lid = UNIT_POS as usize;
    let w = width as usize;
    let base = row * w;
    let mut m = f32::new(-3.4e38);
    let mut i = lid;
    while i < w {
        m = max(m, x[base + i]);
        i += WG;
    }
    let mx = reduce_cube(&mut shared, m, true);
    let mut s = 0.0f32;
    let mut i = lid;
    while i < w {
        s += (x[base + i] - mx).exp();
        i += WG;
    }
    let inv = 1.0f32 / reduce_cube(&mut shared, s, false);
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
    let mut shared = SharedMemory::<f32>::new(256usize);
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
    let mx = reduce_cube(&mut shared, m, true);
    let mut sum = 0.0f32;
    let mut j = lid;
    while j < k_len {
        let e = (sc[j] - mx).exp();
        sc[j] = e;
        sum += e;
        j += WG;
    }
    let inv = 1.0f32 / reduce_cube(&mut shared, sum, false);
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
