//! How a backend runs `gemm` on tensors, and the host backends' answer.

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::GemmProblem;

/// The backend side of `gemm`; [`crate::backend::Ops`] validates, then calls it.
pub trait GemmKernel {
    /// `y [M,N] = act(x [M,K]·Wᵀ + b [+ residual])`: `residual [M,N]` is added after the activation.
    fn launch_gemm_t(
        &self,
        ok: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> GemmKernel for H {
    fn launch_gemm_t(
        &self,
        _: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let k = self.kind();
        let b = bias.map(|b| host_values(k, "bias", b)).transpose()?;
        let mut y = self.gemm(p, host_values(k, "x", x)?, host_values(k, "weight", weight)?, b)?;
        if let Some(r) = residual {
            y.iter_mut().zip(host_values(k, "residual", r)?).for_each(|(y, r)| *y += r);
        }
        Ok(Tensor::host(y))
    }
}
