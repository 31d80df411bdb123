//! The cpu backend's row softmax.

use rayon::prelude::*;

/// In-place max-subtracted softmax of one row.
#[inline]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in row.iter_mut() {
        // A term below f32's normal range is 0: it cannot move a sum that holds the max's 1,
        // and as a subnormal it would slow every product it enters (Swin's shift mask, −100,
        // made a quarter of window attention's time on the realistic Swin-T model).
        let e = (*v - mx).exp();
        *v = if e < f32::MIN_POSITIVE { 0.0 } else { e };
        s += *v;
    }
    let inv = 1.0 / s;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax of each `width`-wide row of `x`.
pub(crate) fn softmax(width: usize, x: &[f32]) -> Vec<f32> {
    let mut y = x.to_vec();
    y.par_chunks_mut(width).for_each(softmax_row);
    y
}
