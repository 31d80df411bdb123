//! The image front on the device (f32, NCHW), the same mapping as
//! `shaders/{conv2d,max_pool,group_norm,to_tokens}.wgsl`: conv2d as an implicit GEMM
//! `y[b] = W · cols(x[b])` (`[Co, Ho·Wo]`, one 256-unit cube per 64×64 tile, the columns gathered
//! while staging), 3×3/s2 max pooling and the flatten into token rows one unit per output
//! element, GroupNorm one cube per (group, image).

use cubecl::prelude::*;

use super::dense::flat_pos;
use super::tile::{block_row, reduce, tile_block, Cols, V1, V4};

const WG: usize = 256;

/// The product's sizes for image `CUBE_POS_Z`: `(Co, Ho·Wo, Ci·Kh·Kw, image, its columns)`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn conv_dims(
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
) -> (usize, usize, usize, usize, Cols) {
    let (h, w, kh, kw) = (h as usize, w as usize, kh as usize, kw as usize);
    let b = CUBE_POS_Z as usize;
    let cols = Cols {
        xb: b * in_c as usize * h * w,
        h,
        w,
        kh,
        kw,
        stride: stride as usize,
        pad: pad as usize,
        out_w: out_w as usize,
    };
    (out_c as usize, out_h as usize * out_w as usize, in_c as usize * kh * kw, b, cols)
}

/// `y = act(W·cols(x) + b [+ res])`, act = ReLU when `relu`; cube (x, y, z) = (pixel tile,
/// channel tile, image); `tile` 64 or 128 as `dense::gemm`. The 128 tile stages the columns with
/// pixels along the units, so neighbouring units read neighbouring pixels of one input plane.
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
    #[comptime] tile: usize,
    #[comptime] relu: bool,
    #[comptime] has_res: bool,
) {
    let (m, n, k, b, cols) = conv_dims(in_c, h, w, out_c, kh, kw, stride, pad, out_h, out_w);
    let row0 = CUBE_POS_Y as usize * tile;
    let col0 = CUBE_POS_X as usize * tile;
    let mut acc = Array::<V4>::new(comptime![tile * tile / 1024]);
    tile_block(wt, x, &cols, row0, col0, m, n, k, &mut acc, tile, true);
    let lid = UNIT_POS as usize;
    let (ty, tx) = (lid / 16, lid % 16);
    let halves = comptime![tile / 64];
    #[unroll]
    for i in 0..comptime![4 * tile / 64] {
        let row = row0 + block_row(ty, i);
        #[unroll]
        for hh in 0..halves {
            #[unroll]
            for j in 0..4usize {
                let v = acc[i * halves + hh][j];
                conv_out(v, bias, res, y, (b * m + row) * n, row, col0 + hh * 64 + tx * 4 + j, m, n, relu, has_res);
            }
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
    let mut shared = SharedMemory::<V1>::new(256usize);
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
    let mean = reduce(&mut shared, s, false) / f32::cast_from(n as u32);
    let mut q = 0.0f32;
    let mut i = lid;
    while i < n {
        let d = x[base + i] - mean;
        q += d * d;
        i += WG;
    }
    let rstd = 1.0f32 / (reduce(&mut shared, q, false) / f32::cast_from(n as u32) + eps).sqrt();
    let mut i = lid;
    while i < n {
        let ch = g * per_c + i / plane;
        y[base + i] = (x[base + i] - mean) * rstd * gamma[ch] + beta[ch];
        i += WG;
    }
}

/// Swin's patch merging gather, one unit per output element: `out[(i·⌈w/2⌉ + j)·4C + k·C + ch]`
/// = `x[(2i + k mod 2)·w + 2j + ⌊k/2⌋, ch]`, 0 past an odd edge (`crate::ops::image::patch_merge`).
#[cube(launch_unchecked)]
#[allow(clippy::manual_div_ceil)] // no div_ceil in #[cube]
pub fn patch_merge(x: &Array<f32>, out: &mut Array<f32>, h: u32, w: u32, c: u32, total: u32) {
    let i = flat_pos();
    if i >= total as usize {
        terminate!();
    }
    let (h, w, c) = (h as usize, w as usize, c as usize);
    let ow = (w + 1) / 2;
    let ch = i % (4 * c);
    let o = i / (4 * c);
    let k = ch / c;
    // k = 0: (even row, even col), 1: (odd, even), 2: (even, odd), 3: (odd, odd)
    let y = 2 * (o / ow) + k % 2;
    let xx = 2 * (o % ow) + k / 2;
    let mut v = 0.0f32;
    if y < h && xx < w {
        v = x[(y * w + xx) * c + ch % c];
    }
    out[i] = v;
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
