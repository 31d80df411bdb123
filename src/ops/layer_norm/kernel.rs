//! How a backend runs `layer_norm` on tensors, and the host backends' answer.

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::LayerNormProblem;

/// The backend side of `layer_norm`; [`crate::backend::Ops`] validates, then calls it.
pub trait LayerNormKernel {
    /// Row LayerNorm of `x [R,C]`.
    fn launch_layer_norm_t(
        &self,
        ok: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> LayerNormKernel for H {
    fn launch_layer_norm_t(
        &self,
        _: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let k = self.kind();
        let (x, g, b) = (host_values(k, "x", x)?, host_values(k, "gamma", gamma)?, host_values(k, "beta", beta)?);
        Ok(Tensor::host(self.layer_norm(p, x, g, b)?))
    }
}
