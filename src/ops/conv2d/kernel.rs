//! How a backend runs `conv2d` on tensors, and the host backends' answer.

use crate::backend::{foreign_tensor, host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::Conv2dProblem;

/// The backend side of `conv2d`; [`crate::backend::Ops`] validates, then calls it.
pub trait Conv2dKernel {
    /// `y = act(conv2d(x, W) + b [+ residual])`, NCHW. `residual` is consumed: a host backend
    /// accumulates the output into its buffer (no third feature map).
    fn launch_conv2d_t(
        &self,
        ok: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> Conv2dKernel for H {
    fn launch_conv2d_t(
        &self,
        _: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        let k = self.kind();
        let (x, w, b) = (host_values(k, "x", x)?, host_values(k, "weight", weight)?, host_values(k, "bias", bias)?);
        let has_residual = residual.is_some();
        let mut acc = match residual {
            Some(r) => r.into_host().map_err(|_| foreign_tensor(k, "residual"))?,
            None => vec![0.0; p.output_shape().iter().product()],
        };
        self.conv2d_into(p, x, w, b, &mut acc, has_residual)?;
        Ok(Tensor::host(acc))
    }
}
