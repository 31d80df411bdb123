//! Oracle: Swin's window attention as the official block computes it, step by step on the whole
//! map: zero-pad to window multiples before the qkv projection (so a padded token's q, k, v are
//! the projection's bias), `roll(−s, −s)`, window partition, per window and head the scores with
//! the relative position bias and (shifted blocks) the region mask, softmax, P·V, window
//! reverse, `roll(+s, +s)`, crop (see the formula in [`super`]).

use super::{WindowAttentionProblem, REGION_MASK};
use crate::ops::softmax::oracle::softmax_row;
use crate::reference::Real;

/// Window attention of `qkv [H·W, 3C]` (projection bias `bias [3C]`) with the bias table
/// `table [(2w−1)², heads]` → `[H·W, C]`.
pub fn window_attention<T: Real>(p: &WindowAttentionProblem, qkv: &[T], bias: &[T], table: &[T]) -> Vec<T> {
    let (c, dh, n, ws) = (p.channels(), p.head_dim, p.window_len(), p.window);
    let (hp, wp, s) = (p.h.div_ceil(ws) * ws, p.w.div_ceil(ws) * ws, p.shift);
    // the padded projection: real rows, then the bias for every padded cell
    let mut padded = Vec::with_capacity(hp * wp * 3 * c);
    for y in 0..hp {
        for x in 0..wp {
            padded.extend_from_slice(if y < p.h && x < p.w { &qkv[(y * p.w + x) * 3 * c..][..3 * c] } else { bias });
        }
    }
    // the shifted map: shifted[y'][x'] = padded[(y' + s) mod Hp][(x' + s) mod Wp]
    let shifted_row = |ys: usize, xs: usize| ((ys + s) % hp) * wp + (xs + s) % wp;
    // the img_mask region of a shifted-map cell
    let part = |v: usize, len: usize| {
        if v < len - ws {
            0
        } else if v < len - s {
            1
        } else {
            2
        }
    };
    let mut out = vec![T::of(0.0); hp * wp * c];
    for wy in 0..hp / ws {
        for wx in 0..wp / ws {
            let cells: Vec<(usize, usize)> = (0..n).map(|t| (wy * ws + t / ws, wx * ws + t % ws)).collect();
            for h in 0..p.heads {
                for &(yi, xi) in &cells {
                    let qi = &padded[shifted_row(yi, xi) * 3 * c + h * dh..][..dh];
                    let scores: Vec<T> = cells
                        .iter()
                        .map(|&(yj, xj)| {
                            let kj = &padded[shifted_row(yj, xj) * 3 * c + c + h * dh..][..dh];
                            let mut sc = T::of(0.0);
                            for (&a, &b) in qi.iter().zip(kj) {
                                sc += a * T::of(p.scale as f64) * b;
                            }
                            let (dy, dx) = (yi + ws - 1 - yj, xi + ws - 1 - xj);
                            let rel = table[(dy * (2 * ws - 1) + dx) * p.heads + h];
                            let apart = s > 0 && (part(yi, hp), part(xi, wp)) != (part(yj, hp), part(xj, wp));
                            sc + rel + if apart { T::of(REGION_MASK as f64) } else { T::of(0.0) }
                        })
                        .collect();
                    let probs = softmax_row(&scores);
                    let o = &mut out[shifted_row(yi, xi) * c + h * dh..][..dh];
                    for (&pj, &(yj, xj)) in probs.iter().zip(&cells) {
                        let vj = &padded[shifted_row(yj, xj) * 3 * c + 2 * c + h * dh..][..dh];
                        for (od, &vd) in o.iter_mut().zip(vj) {
                            *od += pj * vd;
                        }
                    }
                }
            }
        }
    }
    // the crop
    (0..p.h).flat_map(|y| out[y * wp * c..][..p.w * c].to_vec()).collect()
}
