//! How a backend runs `softmax` on tensors, and the host backends' answer.

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::SoftmaxProblem;

/// The backend side of `softmax`; [`crate::backend::Ops`] validates, then calls it.
pub trait SoftmaxKernel {
    /// Row softmax of `x [R,C]`.
    fn launch_softmax_t(&self, ok: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor>;
}

impl<H: HostKernels> SoftmaxKernel for H {
    fn launch_softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::host(self.softmax(p, host_values(self.kind(), "x", x)?)?))
    }
}
