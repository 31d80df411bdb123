//! How a backend runs `ms_deform_attn_backward`, and the host backends' answer.

use super::MsdaGrads;
use crate::backend::{Checked, HostKernels};
use crate::error::Result;
use crate::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};

/// The backend side of `ms_deform_attn_backward`; [`crate::backend::Ops`] validates, then calls it.
pub trait MsdaBackwardKernel {
    /// The gradients of `ms_deform_attn` at `input` for `grad_output [B,Q,M·D]`, host to host,
    /// `value` in `dtype`'s precision, f32 accumulation and output.
    fn launch_ms_deform_attn_backward(
        &self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads>;
}

impl<H: HostKernels> MsdaBackwardKernel for H {
    fn launch_ms_deform_attn_backward(
        &self,
        _: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        self.ms_deform_attn_backward(problem, input, grad_output, dtype)
    }
}
