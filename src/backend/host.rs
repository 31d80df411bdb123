//! Backends that compute in host memory (`reference`, `cpu`) implement [`HostKernels`]: the ops on
//! slices. Everything else of a [`super::Backend`] follows from it once: the [`Device`] here (host
//! tensors are shared `Arc`s, binding copies nothing), and each op's kernel trait in its folder
//! (`ops/<op>/kernel.rs`: the slice kernel on the tensors' values).

use super::{BackendKind, Checked, Device, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::WindowAttentionProblem;
use crate::problem::{
    AttentionProblem, BertLayerWeights, Conv2dProblem, DType, GatedCrossAttnProblem, GatedCrossAttnWeights,
    GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, MsdaGrads, SoftmaxProblem,
    SparseFusionProblem,
};

/// The ops of a host backend on slices, inputs already validated (by [`super::Ops`]).
#[allow(clippy::too_many_arguments)] // an ALIF round's inputs
pub trait HostKernels: Sync {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// What it runs on.
    fn device(&self) -> String;
    /// `rlipv2 info` lines (see [`Device::details`]).
    fn details(&self) -> Vec<(&'static str, String)>;
    /// The inputs copied (value rounded to `dtype`) for repeated runs.
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>>;
    /// One run on the caller's slices.
    fn ms_deform_attn(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>>;
    /// The gradients of `ms_deform_attn` (value rounded to `dtype`).
    fn ms_deform_attn_backward(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads>;
    /// `act(x·Wᵀ + b)`.
    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>>;
    /// `acc ← act(conv2d(x, W) + b [+ acc])`: `residual` says whether `acc` holds one on entry
    /// (else its values are overwritten).
    fn conv2d_into(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        acc: &mut Vec<f32>,
        residual: bool,
    ) -> Result<()>;
    /// Row LayerNorm.
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>>;
    /// Row softmax.
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>>;
    /// Multi-head attention, optional key mask.
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>>;
    /// Swin's (shifted-)window attention.
    fn window_attention(
        &self,
        p: &WindowAttentionProblem,
        qkv: &[f32],
        bias: &[f32],
        table: &[f32],
    ) -> Result<Vec<f32>>;
    /// ALIF gated cross-attention.
    fn gated_cross_attn(
        &self,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)>;
    /// One ALIF round, `memory` fused in place.
    fn sparse_fusion(
        &self,
        p: &SparseFusionProblem,
        memory: &mut [f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Vec<f32>>;
}

/// The host values of `t`, for a backend that computes on host tensors (a device tensor is
/// refused, naming it).
pub(crate) fn host_values<'t>(kind: BackendKind, what: &str, t: &'t Tensor) -> Result<&'t [f32]> {
    t.as_host().ok_or_else(|| foreign_tensor(kind, what))
}

/// The error for a device tensor given to a host backend.
pub(crate) fn foreign_tensor(kind: BackendKind, what: &str) -> Error {
    Error::Device {
        backend: kind.name().into(),
        reason: format!("tensor `{what}` is a device tensor of another backend; download it first"),
    }
}

impl<H: HostKernels> Device for H {
    fn kind(&self) -> BackendKind {
        HostKernels::kind(self)
    }
    fn device(&self) -> String {
        HostKernels::device(self)
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        HostKernels::details(self)
    }
    fn dispatch_count(&self) -> Option<u64> {
        None
    }
    fn submission_count(&self) -> Option<u64> {
        None
    }
    fn recycled_outputs(&self) -> Option<u64> {
        None
    }
    fn uploaded_bytes(&self) -> Option<u64> {
        None
    }
    fn owner_id(&self) -> u64 {
        0
    }
    fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        host_values(HostKernels::kind(self), what, t)?;
        Ok(t.clone())
    }
    fn wait(&self) -> Result<()> {
        Ok(())
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(host_values(HostKernels::kind(self), "tensor", t)?.to_vec())
    }
    fn empty_tensor(&self, _: Checked, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(vec![0.0; len]))
    }
    fn slice_tensor(&self, _: Checked, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(host_values(HostKernels::kind(self), "tensor", t)?[start..start + len].to_vec()))
    }
    fn write_tensor(&self, _: Checked, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let k = HostKernels::kind(self);
        let src = host_values(k, "src", src)?;
        dst.as_host_mut().ok_or_else(|| foreign_tensor(k, "dst"))?[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }
}
