//! `layer_norm`: each row of `x [R,C]` normalized with biased variance, then `·γ + β`
//! (`γ, β [C]`): `y = (x − mean) / √(var + eps) · γ + β`.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::LayerNormKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "layer_norm";

/// Row LayerNorm of `x [rows, width]` with affine `gamma`, `beta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormProblem {
    /// Rows.
    pub rows: usize,
    /// Width normalized over.
    pub width: usize,
    /// Variance epsilon.
    pub eps: f32,
}

impl LayerNormProblem {
    /// Checks the dimensions and slice lengths.
    pub fn check(&self, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<()> {
        if self.rows == 0 || self.width == 0 || self.eps.is_nan() || self.eps <= 0.0 {
            return Err(Error::limit(
                OP,
                "rows, width, eps",
                format!("need rows, width ≥ 1 and eps > 0, got {}, {}, {}", self.rows, self.width, self.eps),
            ));
        }
        check_len(OP, "x", &[self.rows, self.width], x.len())?;
        check_len(OP, "gamma", &[self.width], gamma.len())?;
        check_len(OP, "beta", &[self.width], beta.len())
    }
}
