//! The cpu backend's window attention: one rayon task per window, all heads; a window's q, k, v
//! rows gathered once (the shift and partition are the gather's indices), scores with the bias
//! and region mask added in the score loop, the row softmax, P·V, and the rows scattered back.

use rayon::prelude::*;

use super::{WindowAttentionProblem, REGION_MASK};
use crate::ops::softmax::cpu::softmax_row;

/// Window attention of `qkv [H·W, 3C]` (projection bias `qkv_bias [3C]`, what padded tokens
/// hold) with the bias `table [(2w−1)², heads]` → `[H·W, C]`.
pub(crate) fn window_attention(p: &WindowAttentionProblem, qkv: &[f32], qkv_bias: &[f32], table: &[f32]) -> Vec<f32> {
    let (c, dh, n) = (p.channels(), p.head_dim, p.window_len());
    // the bias of each (head, i, j), shared by every window
    let bias: Vec<f32> =
        (0..p.heads).flat_map(|h| (0..n * n).map(move |ij| table[p.bias_row(ij / n, ij % n) * p.heads + h])).collect();
    let windows: Vec<Vec<f32>> = (0..p.windows())
        .into_par_iter()
        .map(|win| {
            let tokens: Vec<Option<usize>> = (0..n).map(|j| p.token(win, j)).collect();
            let rows: Vec<&[f32]> = tokens.iter().map(|t| t.map_or(qkv_bias, |r| &qkv[r * 3 * c..][..3 * c])).collect();
            let regions: Vec<usize> = (0..n).map(|j| p.region(win, j)).collect();
            let mut out = vec![0f32; n * c];
            let mut scores = vec![0f32; n];
            for h in 0..p.heads {
                // padded queries are cropped away: only real tokens' rows are computed
                for i in (0..n).filter(|&i| tokens[i].is_some()) {
                    let q: Vec<f32> = rows[i][h * dh..][..dh].iter().map(|v| v * p.scale).collect();
                    for (j, s) in scores.iter_mut().enumerate() {
                        let k = &rows[j][c + h * dh..][..dh];
                        let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                        let apart = p.shift > 0 && regions[i] != regions[j];
                        *s = dot + bias[(h * n + i) * n + j] + if apart { REGION_MASK } else { 0.0 };
                    }
                    softmax_row(&mut scores);
                    let o = &mut out[i * c + h * dh..][..dh];
                    for (j, &pj) in scores.iter().enumerate() {
                        let v = &rows[j][2 * c + h * dh..][..dh];
                        o.iter_mut().zip(v).for_each(|(od, vd)| *od += pj * vd);
                    }
                }
            }
            out
        })
        .collect();
    let mut out = vec![0f32; p.h * p.w * c];
    for (win, rows) in windows.iter().enumerate() {
        for (j, row) in rows.chunks_exact(c).enumerate() {
            if let Some(r) = p.token(win, j) {
                out[r * c..][..c].copy_from_slice(row);
            }
        }
    }
    out
}
