//! The image front on the device (f32, NCHW), the same mapping as `shaders/image.wgsl`: conv2d
//! as an implicit GEMM `y[b] = W · cols(x[b])` (`[Co, Ho·Wo]`, one 256-unit cube per 64×64 tile,
//! the columns gathered while staging), 3×3/s2 max pooling and the flatten into token rows one
//! unit per output element, GroupNorm one cube per (group, image).

use cubecl::prelude::*;

use super::dense::{flat_pos, reduce_cube, slab_fma, slab_fma8, V4};

const WG: usize = 256;

/// Column `k` of output pixel `n`: `x[ci, oy·s + ky − pad, ox·s + kx − pad]` of image base `xb`, or 0.
#[cube]
#[allow(clippy::too_many_arguments)]
fn col(
    x: &Array<f32>,
    xb: usize,
    n: usize,
    k: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    out_w: usize,
) -> f32 {
    let ci = k / (kh * kw);
    let ky = (k / kw) % kh;
    let kx = k % kw;
    let iy = ((n / out_w) * stride + ky) as i32 - pad as i32;
    let ix = ((n % out_w) * stride + kx) as i32 - pad as i32;
    let mut v = 0.0f32;
    if iy >= 0 && ix >= 0 && iy < h as i32 && ix < w as i32 {
        v = x[xb + (ci * h + iy as usize) * w + ix as usize];
    }
    v
}

/// `y = act(W·cols(x) + b [+ res])`, act = ReLU when `relu`; cube (x, y, z) = (pixel tile,
/// channel tile, image).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &Array<f32>,
    wt: &Array<f32>,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    in_c: u32,
    h: u32,
    w: u32,
    out_c: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    out_h: u32,
    out_w: u32,
    #[comptime] relu: bool,
    #[comptime] has_res: bool,
) {
    let mut xs = SharedMemory::<V4>::new(256usize);
    let mut ws = SharedMemory::<V4>::new(256usize);
    let lid = UNIT_POS as usize;
    let (h, w, kh, kw, stride, pad, out_w) =
        (h as usize, w as usize, kh as usize, kw as usize, stride as usize, pad as usize, out_w as usize);
    let m = out_c as usize;
    let n = out_h as usize * out_w;
    let k = in_c as usize * kh * kw;
    let b = CUBE_POS_Z as usize;
    let xb = b * in_c as usize * h * w;
    let row0 = CUBE_POS_Y as usize * 64;
    let col0 = CUBE_POS_X as usize * 64;
    let ty = lid / 16;
    let tx = lid % 16;
    let mut acc = Array::<V4>::new(4usize);
    #[unroll]
    for i in 0..4usize {
        acc[i] = V4::new(0.0f32);
    }
    let kk = lid % 16;
    let q4 = lid / 16;
    let mut k0 = 0usize;
    while k0 < k {
        let kc = k0 + kk;
        let mut av = V4::new(0.0f32);
        let mut bv = V4::new(0.0f32);
        #[unroll]
        for q in 0..4usize {
            let i = q4 * 4 + q;
            if row0 + i < m && kc < k {
                av[q] = wt[(row0 + i) * k + kc];
            }
            if col0 + i < n && kc < k {
                bv[q] = col(x, xb, col0 + i, kc, h, w, kh, kw, stride, pad, out_w);
            }
        }
        xs[kk * 16 + q4] = av;
        ws[kk * 16 + q4] = bv;
        sync_cube();
        slab_fma(&xs, &ws, ty, tx, &mut acc);
        sync_cube();
        k0 += 16;
    }
    #[unroll]
    for i in 0..4usize {
        #[unroll]
        for j in 0..4usize {
            conv_out(
                acc[i][j],
                bias,
                res,
                y,
                (b * m + row0 + ty * 4 + i) * n,
                row0 + ty * 4 + i,
                col0 + tx * 4 + j,
                m,
                n,
                relu,
                has_res,
            );
        }
    }
}

/// Writes output channel `row`, pixel `px` (at `base + px`): bias, the residual, then ReLU.
#[cube]
#[allow(clippy::too_many_arguments)]
fn conv_out(
    v: f32,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    base: usize,
    row: usize,
    px: usize,
    m: usize,
    n: usize,
    #[comptime] relu: bool,
    #[comptime] has_res: bool,
) {
    if row < m && px < n {
        let at = base + px;
        let mut out = v + bias[row];
        if comptime![has_res] {
            out += res[at];
        }
        if comptime![relu] {
            // NaN stays NaN, as torch.relu keeps it
            if out < 0.0f32 {
                out = 0.0f32;
            }
        }
        y[at] = out;
    }
}

/// `conv` for large outputs (see `backend::gemm_tile`): 128×128 tiles, each unit an 8×8 block
/// as `dense::gemm128`, K in 8-deep slabs; the columns are staged with pixels along the units,
/// so neighbouring units read neighbouring pixels of one input plane.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn conv128(
    x: &Array<f32>,
    wt: &Array<f32>,
    bias: &Array<f32>,
    res: &Array<f32>,
    y: &mut Array<f32>,
    in_c: u32,
    h: u32,
    w: u32,
    out_c: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    out_h: u32,
    out_w: u32,
    #[comptime] relu: bool,
    #[comptime] has_res: bool,
) {
    let mut xs = SharedMemory::<V4>::new(256usize); // [k (8)][channel / 4 (32)]
    let mut ws = SharedMemory::<V4>::new(256usize); // [k (8)][pixel / 4 (32)]
    let lid = UNIT_POS as usize;
    let (h, w, kh, kw, stride, pad, out_w) =
        (h as usize, w as usize, kh as usize, kw as usize, stride as usize, pad as usize, out_w as usize);
    let m = out_c as usize;
    let n = out_h as usize * out_w;
    let k = in_c as usize * kh * kw;
    let b = CUBE_POS_Z as usize;
    let xb = b * in_c as usize * h * w;
    let row0 = CUBE_POS_Y as usize * 128;
    let col0 = CUBE_POS_X as usize * 128;
    let ty = lid / 16;
    let tx = lid % 16;
    let mut acc = Array::<V4>::new(16usize);
    #[unroll]
    for i in 0..16usize {
        acc[i] = V4::new(0.0f32);
    }
    // weights: k = k0 + kk of channels q4·4 .. + 4; columns: k = k0 + kb of pixels p4·4 .. + 4
    let kk = lid % 8;
    let q4 = lid / 8;
    let kb = lid / 32;
    let p4 = lid % 32;
    let mut k0 = 0usize;
    while k0 < k {
        let mut av = V4::new(0.0f32);
        let mut bv = V4::new(0.0f32);
        #[unroll]
        for q in 0..4usize {
            let i = q4 * 4 + q;
            if row0 + i < m && k0 + kk < k {
                av[q] = wt[(row0 + i) * k + k0 + kk];
            }
            let px = col0 + p4 * 4 + q;
            if px < n && k0 + kb < k {
                bv[q] = col(x, xb, px, k0 + kb, h, w, kh, kw, stride, pad, out_w);
            }
        }
        xs[kk * 32 + q4] = av;
        ws[kb * 32 + p4] = bv;
        sync_cube();
        slab_fma8(&xs, &ws, ty, tx, &mut acc);
        sync_cube();
        k0 += 8;
    }
    #[unroll]
    for i in 0..8usize {
        let row = row0 + (i / 4) * 64 + ty * 4 + i % 4;
        #[unroll]
        for hh in 0..2usize {
            #[unroll]
            for j in 0..4usize {
                conv_out(
                    acc[2 * i + hh][j],
                    bias,
                    res,
                    y,
                    (b * m + row) * n,
                    row,
                    col0 + hh * 64 + tx * 4 + j,
                    m,
                    n,
                    relu,
                    has_res,
                );
            }
        }
    }
}

/// 3×3 max pooling, stride 2, padding 1, over `total` outputs of `h × w` planes.
#[cube(launch_unchecked)]
pub fn max_pool(x: &Array<f32>, y: &mut Array<f32>, h: u32, w: u32, out_h: u32, out_w: u32, total: u32) {
    let i = flat_pos();
    if i >= total as usize {
        terminate!();
    }
    let (h, w, out_h, out_w) = (h as usize, w as usize, out_h as usize, out_w as usize);
    let ox = i % out_w;
    let oy = (i / out_w) % out_h;
    let plane = i / (out_w * out_h);
    let mut m = f32::new(-3.4e38);
    for ky in 0..3usize {
        let iy = (oy * 2 + ky) as i32 - 1;
        for kx in 0..3usize {
            let ix = (ox * 2 + kx) as i32 - 1;
            if iy >= 0 && iy < h as i32 && ix >= 0 && ix < w as i32 {
                m = max(m, x[(plane * h + iy as usize) * w + ix as usize]);
            }
        }
    }
    y[i] = m;
}

/// GroupNorm of `x [B, C, plane]`: cube (x, y) = (group, image); biased variance.
#[cube(launch_unchecked)]
pub fn group_norm(
    x: &Array<f32>,
    gamma: &Array<f32>,
    beta: &Array<f32>,
    y: &mut Array<f32>,
    channels: u32,
    plane: u32,
    groups: u32,
    eps: f32,
) {
    let mut shared = SharedMemory::<f32>::new(256usize);
    let lid = UNIT_POS as usize;
    let g = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let plane = plane as usize;
    let per_c = channels as usize / groups as usize;
    let n = per_c * plane;
    let base = (b * channels as usize + g * per_c) * plane;
    let mut s = 0.0f32;
    let mut i = lid;
    while i < n {
        s += x[base + i];
        i += WG;
    }
    let mean = reduce_cube(&mut shared, s, false) / f32::cast_from(n as u32);
    let mut q = 0.0f32;
    let mut i = lid;
    while i < n {
        let d = x[base + i] - mean;
        q += d * d;
        i += WG;
    }
    let rstd = 1.0f32 / (reduce_cube(&mut shared, q, false) / f32::cast_from(n as u32) + eps).sqrt();
    let mut i = lid;
    while i < n {
        let ch = g * per_c + i / plane;
        y[base + i] = (x[base + i] - mean) * rstd * gamma[ch] + beta[ch];
        i += WG;
    }
}

/// `tokens[(row0 + t)·C + ch] = level[ch·plane + t]` over `total = C·plane` elements.
#[cube(launch_unchecked)]
pub fn to_tokens(level: &Array<f32>, tokens: &mut Array<f32>, c: u32, plane: u32, row0: u32, total: u32) {
    let i = flat_pos();
    if i >= total as usize {
        terminate!();
    }
    let c = c as usize;
    let ch = i % c;
    let t = i / c;
    tokens[(row0 as usize + t) * c + ch] = level[ch * plane as usize + t];
}
