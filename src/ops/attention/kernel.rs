//! How a backend runs `attention` on tensors, and the host backends' answer.

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::AttentionProblem;

/// The backend side of `attention`; [`crate::backend::Ops`] validates, then calls it.
pub trait AttentionKernel {
    /// Multi-head attention on packed `[B,L,H·Dh]` projections, optional additive key mask
    /// `[B,Lk]`.
    fn launch_attention_t(
        &self,
        ok: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> AttentionKernel for H {
    fn launch_attention_t(
        &self,
        _: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let kind = self.kind();
        let mask = mask.map(|m| host_values(kind, "mask", m)).transpose()?;
        let (q, k, v) = (host_values(kind, "q", q)?, host_values(kind, "k", k)?, host_values(kind, "v", v)?);
        Ok(Tensor::host(self.attention(p, q, k, v, mask)?))
    }
}
