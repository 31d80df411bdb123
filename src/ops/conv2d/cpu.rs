//! CPU `conv2d`: im2col + the `gemm` crate. A 1×1 stride-1 convolution is a plain matrix product
//! on the input; otherwise columns are built for a band of output rows at a time (≤ 2 M floats),
//! so R50's 7×7 stem at 800×1333 does not need a 160 MB column buffer.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::gemm::cpu::{epilogue, matmul_at, View};
use crate::problem::conv2d::Conv2dProblem;
use crate::problem::Precision;

const MAX_COLUMN_FLOATS: usize = 2 << 20;

/// `y ← act(conv2d(x) + b [+ y])`: the product accumulates onto `y` when it holds the residual,
/// so a bottleneck's last conv writes into its residual's buffer. The product's inputs are at
/// `precision`.
pub(crate) fn conv2d_into(
    p: &Conv2dProblem,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    y: &mut [f32],
    residual: bool,
    precision: Precision,
) {
    let (ho, wo) = (p.out_h(), p.out_w());
    let k = p.in_c * p.kh * p.kw;
    let plane = ho * wo;
    let par = if rayon::current_num_threads() > 1 { Parallelism::Rayon(0) } else { Parallelism::None };
    let w = View { data: weight, rs: k, cs: 1 };
    for b in 0..p.batch {
        let xb = &x[b * p.in_c * p.h * p.w..(b + 1) * p.in_c * p.h * p.w];
        let yb = &mut y[b * p.out_c * plane..(b + 1) * p.out_c * plane];
        if p.kh == 1 && p.kw == 1 && p.stride == 1 && p.pad == 0 {
            matmul_at(precision, p.out_c, plane, k, yb, plane, w, View { data: xb, rs: plane, cs: 1 }, par, residual);
            continue;
        }
        let rows_per_band = (MAX_COLUMN_FLOATS / (k * wo).max(1)).clamp(1, ho);
        let mut col = vec![0f32; k * rows_per_band * wo];
        for r0 in (0..ho).step_by(rows_per_band) {
            let rows = rows_per_band.min(ho - r0);
            let n = rows * wo;
            // col [k, n]: row (c, ky, kx), column (oy − r0, ox); per output row, the columns whose
            // input lies inside the image are one run (a copy at stride 1), zeros around it
            col[..k * n].par_chunks_mut(n).enumerate().for_each(|(kk, crow)| {
                let (c, ky, kx) = (kk / (p.kh * p.kw), (kk / p.kw) % p.kh, kk % p.kw);
                // ox in [lo, hi) reads ix = ox·stride + kx − pad inside [0, w)
                let first = |ix0: usize| ix0.div_ceil(p.stride);
                let lo = first(p.pad.saturating_sub(kx)).min(wo);
                let hi = first((p.w + p.pad).saturating_sub(kx)).clamp(lo, wo);
                for (r, out) in crow.chunks_exact_mut(wo).enumerate() {
                    let iy = ((r0 + r) * p.stride + ky) as isize - p.pad as isize;
                    if iy < 0 || iy >= p.h as isize || lo == hi {
                        out.fill(0.0);
                        continue;
                    }
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    let src = &xb[(c * p.h + iy as usize) * p.w..][..p.w];
                    let ix0 = lo * p.stride + kx - p.pad;
                    if p.stride == 1 {
                        out[lo..hi].copy_from_slice(&src[ix0..ix0 + hi - lo]);
                    } else {
                        for (o, ix) in out[lo..hi].iter_mut().zip((ix0..).step_by(p.stride)) {
                            *o = src[ix];
                        }
                    }
                }
            });
            // y[:, r0·wo .. r0·wo + n] (+)= W [Co, k] · col [k, n]
            matmul_at(
                precision,
                p.out_c,
                n,
                k,
                &mut yb[r0 * wo..],
                plane,
                w,
                View { data: &col[..k * n], rs: n, cs: 1 },
                par,
                residual,
            );
        }
    }
    // epilogue: bias (the residual is already in), activation
    y.par_chunks_mut(plane).enumerate().for_each(|(bo, out)| {
        let b = bias[bo % p.out_c];
        epilogue(out, |_| b, p.act);
    });
}
