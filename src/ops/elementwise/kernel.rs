//! How a backend runs the elementwise ops, and the host backends' answer (f32, in one pass).

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::Activation;

/// The backend side of `add` and `mul`; [`crate::backend::Ops`] checks the lengths, then calls it.
pub trait ElementwiseKernel {
    /// Elementwise `a + b`.
    fn launch_add_t(&self, ok: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// Elementwise `act(a · b)`.
    fn launch_mul_t(&self, ok: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor>;
}

impl<H: HostKernels> ElementwiseKernel for H {
    fn launch_add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let k = self.kind();
        let (a, b) = (host_values(k, "a", a)?, host_values(k, "b", b)?);
        Ok(Tensor::host(a.iter().zip(b).map(|(a, b)| a + b).collect()))
    }
    fn launch_mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        let k = self.kind();
        let (a, b) = (host_values(k, "a", a)?, host_values(k, "b", b)?);
        Ok(Tensor::host(a.iter().zip(b).map(|(a, b)| act.apply(a * b)).collect()))
    }
}
