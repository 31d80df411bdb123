//! How a backend runs `window_attention` on tensors, and the host backends' answer.

use crate::backend::{host_values, Checked, HostKernels, Tensor};
use crate::error::Result;
use crate::problem::WindowAttentionProblem;

/// The backend side of `window_attention`; [`crate::backend::Ops`] validates, then calls it.
pub trait WindowAttentionKernel {
    /// Swin's (shifted-)window attention of `qkv [H·W, 3C]`, the projection's `bias [3C]` (padded
    /// tokens) and the relative position bias `table`.
    fn launch_window_attention_t(
        &self,
        ok: Checked,
        p: &WindowAttentionProblem,
        qkv: &Tensor,
        bias: &Tensor,
        table: &Tensor,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> WindowAttentionKernel for H {
    fn launch_window_attention_t(
        &self,
        _: Checked,
        p: &WindowAttentionProblem,
        qkv: &Tensor,
        bias: &Tensor,
        table: &Tensor,
    ) -> Result<Tensor> {
        let kind = self.kind();
        let (qkv, bias) = (host_values(kind, "qkv", qkv)?, host_values(kind, "bias", bias)?);
        let table = host_values(kind, "table", table)?;
        Ok(Tensor::host(self.window_attention(p, qkv, bias, table)?))
    }
}
