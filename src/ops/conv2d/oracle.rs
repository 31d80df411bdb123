//! Oracle: direct convolution, `y = act(Σ x·W + b [+ residual])`, zero padding.

use rayon::prelude::*;

use crate::ops::gemm::oracle::activate;
use crate::problem::conv2d::Conv2dProblem;
use crate::reference::Real;

/// conv2d + bias (+ residual) then the activation, accumulated in `T`.
pub fn conv2d<T: Real>(p: &Conv2dProblem, x: &[T], weight: &[f32], bias: &[f32], residual: Option<&[T]>) -> Vec<T> {
    let (ho, wo) = (p.out_h(), p.out_w());
    let mut y = vec![T::of(0.0); p.batch * p.out_c * ho * wo];
    y.par_chunks_mut(ho * wo).enumerate().for_each(|(bo, plane)| {
        let (b, o) = (bo / p.out_c, bo % p.out_c);
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = T::from_f32(bias[o]);
                for c in 0..p.in_c {
                    for ky in 0..p.kh {
                        let iy = (oy * p.stride + ky) as isize - p.pad as isize;
                        if iy < 0 || iy >= p.h as isize {
                            continue;
                        }
                        for kx in 0..p.kw {
                            let ix = (ox * p.stride + kx) as isize - p.pad as isize;
                            if ix < 0 || ix >= p.w as isize {
                                continue;
                            }
                            let xv = x[((b * p.in_c + c) * p.h + iy as usize) * p.w + ix as usize];
                            acc += xv * T::from_f32(weight[((o * p.in_c + c) * p.kh + ky) * p.kw + kx]);
                        }
                    }
                }
                if let Some(r) = residual {
                    acc += r[bo * ho * wo + oy * wo + ox];
                }
                plane[oy * wo + ox] = activate(acc, p.act);
            }
        }
    });
    y
}
