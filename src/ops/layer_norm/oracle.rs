//! Oracle: `y = (x − mean) / √(var + eps) · γ + β` per row, biased variance.

use crate::problem::LayerNormProblem;
use crate::reference::Real;

/// LayerNorm with biased variance, as PyTorch.
pub fn layer_norm<T: Real>(p: &LayerNormProblem, x: &[T], gamma: &[f32], beta: &[f32]) -> Vec<T> {
    let n = T::of(p.width as f64);
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(p.width) {
        let mut mean = T::of(0.0);
        for &v in row {
            mean += v;
        }
        mean = mean / n;
        let mut var = T::of(0.0);
        for &v in row {
            var += (v - mean) * (v - mean);
        }
        let inv = T::of(1.0) / (var / n + T::of(p.eps as f64)).sqrt();
        for (c, &v) in row.iter().enumerate() {
            y.push((v - mean) * inv * T::from_f32(gamma[c]) + T::from_f32(beta[c]));
        }
    }
    y
}
