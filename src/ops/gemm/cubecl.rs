//! `gemm` on the cubecl backend: `kernels/dense.rs`'s tiled `gemm` (64- or 128-wide tiles).

use cubecl::prelude::*;

use super::GemmKernel;
use crate::backend::cubecl::{arg, CubeclBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::problem::GemmProblem;

impl<R: Runtime> GemmKernel for CubeclBackend<R> {
    fn launch_gemm_t(
        &self,
        _: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::gemm::OP;
        let (x, w) = (self.resident(OP, "x", x)?, self.resident(OP, "weight", weight)?);
        let b = match bias {
            Some(b) => self.resident(OP, "bias", b)?,
            None => x.clone(),
        };
        let r = match residual {
            Some(r) => self.resident(OP, "residual", r)?,
            None => x.clone(),
        };
        let y = self.out(OP, p.m * p.n)?;
        // SAFETY: lengths checked by `gemm_t`.
        self.enqueue(|| unsafe {
            crate::backend::cubecl::launch_gemm(
                &self.client,
                p,
                arg(&x),
                arg(&w),
                arg(&b),
                arg(&r),
                arg(&y),
                bias.is_some(),
                residual.is_some(),
            )
        })?;
        Ok(self.tensor(y))
    }
}
