//! How a backend runs `ms_deform_attn`, and the host backends' answer (their slice kernels).

use crate::backend::{host_values, Checked, HostKernels, Prepared, Tensor};
use crate::error::Result;
use crate::problem::{DType, MsDeformAttnInput, MsDeformAttnProblem};

/// The backend side of `ms_deform_attn`; [`crate::backend::Ops`] validates, then calls it.
pub trait MsdaKernel {
    /// Whether this backend can run `ms_deform_attn` in `dtype`.
    fn msda_supports(&self, dtype: DType) -> Result<()>;
    /// Uploads the inputs and builds the kernel, for repeated runs.
    fn launch_prepare_ms_deform_attn<'a>(
        &'a self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>>;
    /// One run host to host, `[B,Q,M·D]` as f32: the prepared run once, unless a backend has a
    /// cheaper way (the cpu backend reads the caller's slices).
    fn launch_ms_deform_attn(
        &self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        self.launch_prepare_ms_deform_attn(ok, problem, input, dtype)?.run_once()
    }
    /// The fused form on tensors, f32.
    fn launch_ms_deform_attn_t(
        &self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor>;
}

impl<H: HostKernels> MsdaKernel for H {
    fn msda_supports(&self, _dtype: DType) -> Result<()> {
        Ok(())
    }
    fn launch_prepare_ms_deform_attn<'a>(
        &'a self,
        _: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        self.prepare_ms_deform_attn(problem, input, dtype)
    }
    fn launch_ms_deform_attn(
        &self,
        _: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        self.ms_deform_attn(problem, input, dtype)
    }
    fn launch_ms_deform_attn_t(
        &self,
        _: Checked,
        pr: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        let k = self.kind();
        let input = MsDeformAttnInput::Fused {
            value: host_values(k, "value", value)?,
            reference: host_values(k, "reference", reference)?,
            sampling_offsets: host_values(k, "sampling_offsets", offsets)?,
            attention_logits: host_values(k, "attention_logits", logits)?,
        };
        Ok(Tensor::host(self.ms_deform_attn(pr, &input, DType::F32)?))
    }
}
