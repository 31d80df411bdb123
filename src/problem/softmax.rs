//! `softmax` over the last axis of `x [R,C]`, max-subtracted: `y = exp(x − max) / Σ exp(x − max)`.

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

pub const OP: &str = "softmax";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxProblem {
    pub rows: usize,
    pub width: usize,
}

impl SoftmaxProblem {
    pub fn check(&self, x: &[f32]) -> Result<()> {
        if self.rows == 0 || self.width == 0 {
            return Err(Error::limit(OP, "rows, width", format!("need ≥ 1, got {}×{}", self.rows, self.width)));
        }
        check_len(OP, "x", &[self.rows, self.width], x.len())
    }
}
