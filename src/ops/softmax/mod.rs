//! `softmax` over the last axis of `x [R,C]`, max-subtracted: `y = exp(x − max) / Σ exp(x − max)`.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::SoftmaxKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "softmax";

/// Row softmax of `x [rows, width]` (max-subtracted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxProblem {
    /// Rows.
    pub rows: usize,
    /// Width.
    pub width: usize,
}

impl SoftmaxProblem {
    /// Checks the dimensions and the slice length.
    pub fn check(&self, x: &[f32]) -> Result<()> {
        if self.rows == 0 || self.width == 0 {
            return Err(Error::limit(OP, "rows, width", format!("need ≥ 1, got {}×{}", self.rows, self.width)));
        }
        check_len(OP, "x", &[self.rows, self.width], x.len())
    }
}
