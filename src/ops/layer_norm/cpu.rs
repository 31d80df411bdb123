//! The cpu backend's row LayerNorm: one rayon task per row chunk.

use rayon::prelude::*;

use super::LayerNormProblem;

/// LayerNorm of each `p.width`-wide row of `x` (f32 statistics, as PyTorch on CPU).
pub(crate) fn layer_norm(p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(p.width).zip(x.par_chunks(p.width)).for_each(|(out, row)| {
        let n = p.width as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + p.eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(row).zip(gamma).zip(beta) {
            *o = (v - mean) * inv * g + b;
        }
    });
    y
}
