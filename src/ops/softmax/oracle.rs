//! Oracle: row softmax, max-subtracted: `exp(x − max) / Σ exp(x − max)`.

use crate::problem::SoftmaxProblem;
use crate::reference::Real;

/// Row softmax, max-subtracted.
pub fn softmax<T: Real>(p: &SoftmaxProblem, x: &[T]) -> Vec<T> {
    x.chunks(p.width).flat_map(softmax_row).collect()
}

/// Softmax of one row.
pub fn softmax_row<T: Real>(row: &[T]) -> Vec<T> {
    let mx = row.iter().fold(row[0], |a, &b| a.max(b));
    let e: Vec<T> = row.iter().map(|&v| (v - mx).exp()).collect();
    let mut s = T::of(0.0);
    for &v in &e {
        s += v;
    }
    e.into_iter().map(|v| v / s).collect()
}
