//! The one register-blocked GEMM mainloop of the cubecl kernels, for both tile sizes (the twin of
//! `shaders/tile.wgsl`), and the one cube-wide reduction, generic over the vector width.
//!
//! A tile computes `C[row, col] = Σ_k A[row, k] · B[col, k]` with `A` a row-major `[M, K]` array
//! and `B` either a row-major `[N, K]` array (a GEMM's weight) or, when `conv` (comptime), the
//! implicit-GEMM columns of one image (`cols`: never stored, gathered while staging).
//!
//! `tile_block` runs either tile size (comptime):
//! - 64: one 256-unit cube per 64×64 tile; the unit at (ty, tx) = (lid / 16, lid % 16)
//!   accumulates rows ty·4 + i in `acc[i]`, columns tx·4 .. + 4; K in 16-deep slabs staged as
//!   vec4s [k][row (column) quad].
//! - 128: 128×128, an 8×8 block per unit (rows ty·4 + i: `acc[2i + h]`, 64 + ty·4 + i:
//!   `acc[8 + 2i + h]`, against column quads tx (h = 0) and 16 + tx (h = 1)); K in 8-deep slabs.
//!   A conv stages its columns with pixels along the units (neighbouring units read neighbouring
//!   pixels of one plane); a GEMM stages k along the units (a weight row is contiguous in k).

use cubecl::prelude::*;

/// A 4-wide f32 vector: the tiles stage K slabs as vec4s.
pub(crate) type V4 = Vector<f32, Const<4>>;
/// A 1-wide f32 vector: the element of scalar reductions.
pub(crate) type V1 = Vector<f32, Const<1>>;

/// Where a convolution's columns come from: image base `xb` of `x [Ci, H, W]` planes and the
/// geometry (unused by a plain GEMM).
#[derive(CubeType, Clone, Copy)]
pub(crate) struct Cols {
    pub xb: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub out_w: usize,
}

/// Column `k` of output pixel `n`: `x[ci, oy·s + ky − pad, ox·s + kx − pad]` of image `c.xb`, or 0.
#[cube]
fn conv_col(x: &Array<f32>, c: &Cols, n: usize, k: usize) -> f32 {
    let ci = k / (c.kh * c.kw);
    let ky = (k / c.kw) % c.kh;
    let kx = k % c.kw;
    let iy = ((n / c.out_w) * c.stride + ky) as i32 - c.pad as i32;
    let ix = ((n % c.out_w) * c.stride + kx) as i32 - c.pad as i32;
    let mut v = 0.0f32;
    if iy >= 0 && ix >= 0 && iy < c.h as i32 && ix < c.w as i32 {
        v = x[c.xb + (ci * c.h + iy as usize) * c.w + ix as usize];
    }
    v
}

/// `A[row, k]`, 0 outside `[m, kdim]`.
#[cube]
fn load_a(a: &Array<f32>, row: usize, k: usize, m: usize, kdim: usize) -> f32 {
    let mut v = 0.0f32;
    if row < m && k < kdim {
        v = a[row * kdim + k];
    }
    v
}

/// `B[col, k]`: the weight row, or the conv column; 0 outside `[n, kdim]`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_b(b: &Array<f32>, cols: &Cols, j: usize, k: usize, n: usize, kdim: usize, #[comptime] conv: bool) -> f32 {
    let mut v = 0.0f32;
    if j < n && k < kdim {
        if comptime![conv] {
            v = conv_col(b, cols, j, k);
        } else {
            v = b[j * kdim + k];
        }
    }
    v
}

/// Rows `row .. row + 4` of A at `k`, as one vec4 (zeros outside A).
#[cube]
fn quad_a(a: &Array<f32>, row: usize, k: usize, m: usize, kdim: usize) -> V4 {
    let mut v = V4::new(0.0f32);
    #[unroll]
    for q in 0..4usize {
        v[q] = load_a(a, row + q, k, m, kdim);
    }
    v
}

/// Columns `col .. col + 4` of B at `k`, as one vec4 (zeros outside B).
#[cube]
#[allow(clippy::too_many_arguments)]
fn quad_b(b: &Array<f32>, cols: &Cols, col: usize, k: usize, n: usize, kdim: usize, #[comptime] conv: bool) -> V4 {
    let mut v = V4::new(0.0f32);
    #[unroll]
    for q in 0..4usize {
        v[q] = load_b(b, cols, col + q, k, n, kdim, conv);
    }
    v
}

/// The 64×64 tile's inner loop over one staged 16-deep slab: `xs`, `ws` hold [16 k][16 row
/// (column) quads]; the unit at (ty, tx) accumulates rows ty·4 + i (acc[i]) and columns tx·4 ..
/// tx·4 + 4. Two vec4 reads per 16 FMAs (on a software adapter every divergent load is a per-lane
/// loop). Also the mainloop of `sparse_fusion::gemm_jobs`, which stages its own A (LayerNorm
/// prologue).
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

/// The 128×128 tile's inner loop over one staged 8-deep slab: four vec4 reads per 64 FMAs.
#[cube]
fn slab_fma8(xs: &SharedMemory<V4>, ws: &SharedMemory<V4>, ty: usize, tx: usize, acc: &mut Array<V4>) {
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

/// The `tile`×`tile` output tile at (row0, col0) (comptime: 64, or 128 for large products):
/// `acc` (`tile²/1024` vec4s, zeroed here) gets this unit's block — 4×4 for 64, 8×8 for 128
/// (see the module docs for which rows and columns).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn tile_block(
    a: &Array<f32>,
    b: &Array<f32>,
    cols: &Cols,
    row0: usize,
    col0: usize,
    m: usize,
    n: usize,
    kdim: usize,
    acc: &mut Array<V4>,
    #[comptime] tile: usize,
    #[comptime] conv: bool,
) {
    let big = comptime![tile == 128];
    let depth = comptime![if tile == 128 { 8usize } else { 16usize }]; // K slab depth
    let quads = comptime![tile / 4]; // row (column) quads per slab row
    let mut xs = SharedMemory::<V4>::new(256usize); // [k][row quad]
    let mut ws = SharedMemory::<V4>::new(256usize); // [k][column quad]
    let lid = UNIT_POS as usize;
    let ty = lid / 16;
    let tx = lid % 16;
    #[unroll]
    for i in 0..comptime![tile * tile / 1024] {
        acc[i] = V4::new(0.0f32);
    }
    // A: this unit stages k = k0 + kk of rows q4·4 .. + 4; B: k = k0 + kb of columns p4·4 .. + 4
    // (a conv's 128 tile puts pixels along the units instead)
    let kk = lid % depth;
    let q4 = lid / depth;
    let mut kb = kk;
    let mut p4 = q4;
    if comptime![big && conv] {
        kb = lid / 32;
        p4 = lid % 32;
    }
    let mut k0 = 0usize;
    while k0 < kdim {
        xs[kk * quads + q4] = quad_a(a, row0 + q4 * 4, k0 + kk, m, kdim);
        ws[kb * quads + p4] = quad_b(b, cols, col0 + p4 * 4, k0 + kb, n, kdim, conv);
        sync_cube();
        if comptime![big] {
            slab_fma8(&xs, &ws, ty, tx, acc);
        } else {
            slab_fma(&xs, &ws, ty, tx, acc);
        }
        sync_cube();
        k0 += depth;
    }
}

/// Row `i` of a unit's block (0 .. 4 in a 64 tile, 0 .. 8 in a 128 tile): its offset in the tile.
#[cube]
pub(crate) fn block_row(ty: usize, i: usize) -> usize {
    (i / 4) * 64 + ty * 4 + i % 4
}

/// Sum (or max) over the cube's 256 units of one `N`-wide vector each, lane by lane; every unit
/// gets the result.
#[cube]
pub(crate) fn reduce_cube<N: Size>(
    shared: &mut SharedMemory<Vector<f32, N>>,
    v: Vector<f32, N>,
    #[comptime] is_max: bool,
) -> Vector<f32, N> {
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

/// [`reduce_cube`] of one scalar per unit.
#[cube]
pub(crate) fn reduce(shared: &mut SharedMemory<V1>, v: f32, #[comptime] is_max: bool) -> f32 {
    reduce_cube::<Const<1>>(shared, V1::new(v), is_max)[0]
}
