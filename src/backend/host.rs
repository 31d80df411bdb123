//! Backends that compute in host memory (`reference`, `cpu`) implement [`HostKernels`]: the ops on
//! slices. Everything else of a [`Backend`] follows from it here, once: host tensors are shared
//! `Arc`s (binding copies nothing), and each tensor op runs the slice kernel on them.

use super::families::{DenseOps, FusionOps, ImageOps, MsdaOps};
use super::image::{self, GroupNormShape};
use super::{Backend, BackendKind, Checked, Device, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::{
    Activation, AttentionProblem, BertLayerWeights, Conv2dProblem, DType, GatedCrossAttnProblem, GatedCrossAttnWeights,
    GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, SoftmaxProblem, SparseFusionProblem,
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

/// The host values of `t`, for a backend that computes on host tensors.
fn host<'t>(kind: BackendKind, what: &str, t: &'t Tensor) -> Result<&'t [f32]> {
    t.as_host().ok_or_else(|| foreign(kind, what))
}

fn foreign(kind: BackendKind, what: &str) -> Error {
    Error::Device {
        backend: kind.name().into(),
        reason: format!("tensor `{what}` is a device tensor of another backend; download it first"),
    }
}

/// A host backend has no device-resident variant to time: its host-to-host call is resident.
fn not_resident(kind: BackendKind, op: &'static str) -> Error {
    Error::Unsupported {
        op,
        backend: kind.name().into(),
        reason: "a host backend computes in place; time the host-to-host op".into(),
    }
}

impl<H: HostKernels> Backend for H {
    fn msda(&self) -> &dyn MsdaOps {
        self
    }
    fn dense(&self) -> &dyn DenseOps {
        self
    }
    fn image(&self) -> &dyn ImageOps {
        self
    }
    fn fusion(&self) -> &dyn FusionOps {
        self
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
        host(HostKernels::kind(self), what, t)?;
        Ok(t.clone())
    }
    fn wait(&self) -> Result<()> {
        Ok(())
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(host(HostKernels::kind(self), "tensor", t)?.to_vec())
    }
    fn empty_tensor(&self, _: Checked, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(vec![0.0; len]))
    }
    fn slice_tensor(&self, _: Checked, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(host(HostKernels::kind(self), "tensor", t)?[start..start + len].to_vec()))
    }
    fn write_tensor(&self, _: Checked, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let k = HostKernels::kind(self);
        let src = host(k, "src", src)?;
        dst.as_host_mut().ok_or_else(|| foreign(k, "dst"))?[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }
}

impl<H: HostKernels> MsdaOps for H {
    fn supports(&self, _dtype: DType) -> Result<()> {
        Ok(())
    }
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        _: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        HostKernels::prepare_ms_deform_attn(self, problem, input, dtype)
    }
    fn ms_deform_attn(
        &self,
        _: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        HostKernels::ms_deform_attn(self, problem, input, dtype)
    }
    fn ms_deform_attn_t(
        &self,
        _: Checked,
        pr: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let input = MsDeformAttnInput::Fused {
            value: host(k, "value", value)?,
            reference: host(k, "reference", reference)?,
            sampling_offsets: host(k, "sampling_offsets", offsets)?,
            attention_logits: host(k, "attention_logits", logits)?,
        };
        Ok(Tensor::host(HostKernels::ms_deform_attn(self, pr, &input, DType::F32)?))
    }
}

impl<H: HostKernels> DenseOps for H {
    fn gemm_t(
        &self,
        _: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let b = bias.map(|b| host(k, "bias", b)).transpose()?;
        let mut y = HostKernels::gemm(self, p, host(k, "x", x)?, host(k, "weight", weight)?, b)?;
        if let Some(r) = residual {
            y.iter_mut().zip(host(k, "residual", r)?).for_each(|(y, r)| *y += r);
        }
        Ok(Tensor::host(y))
    }
    fn add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        Ok(Tensor::host(host(k, "a", a)?.iter().zip(host(k, "b", b)?).map(|(a, b)| a + b).collect()))
    }
    fn mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        Ok(Tensor::host(host(k, "a", a)?.iter().zip(host(k, "b", b)?).map(|(a, b)| act.apply(a * b)).collect()))
    }
    fn layer_norm_t(
        &self,
        _: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let y = HostKernels::layer_norm(self, p, host(k, "x", x)?, host(k, "gamma", gamma)?, host(k, "beta", beta)?)?;
        Ok(Tensor::host(y))
    }
    fn softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::host(HostKernels::softmax(self, p, host(HostKernels::kind(self), "x", x)?)?))
    }
    fn attention_t(
        &self,
        _: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let kind = HostKernels::kind(self);
        let mask = mask.map(|m| host(kind, "mask", m)).transpose()?;
        let y = HostKernels::attention(self, p, host(kind, "q", q)?, host(kind, "k", k)?, host(kind, "v", v)?, mask)?;
        Ok(Tensor::host(y))
    }
}

impl<H: HostKernels> ImageOps for H {
    fn conv2d_t(
        &self,
        _: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let (x, w, b) = (host(k, "x", x)?, host(k, "weight", weight)?, host(k, "bias", bias)?);
        let has_residual = residual.is_some();
        let mut acc = match residual {
            Some(r) => r.into_host().map_err(|_| foreign(k, "residual"))?,
            None => vec![0.0; p.output_shape().iter().product()],
        };
        HostKernels::conv2d_into(self, p, x, w, b, &mut acc, has_residual)?;
        Ok(Tensor::host(acc))
    }
    fn max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        Ok(Tensor::host(image::max_pool_3x3_s2(host(HostKernels::kind(self), "x", x)?, planes, h, w)))
    }
    fn group_norm_t(&self, _: Checked, s: &GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let mut v = x.into_host().map_err(|_| foreign(k, "x"))?;
        image::group_norm(&mut v, s, host(k, "gamma", gamma)?, host(k, "beta", beta)?);
        Ok(Tensor::host(v))
    }
    fn to_tokens_t(
        &self,
        _: Checked,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()> {
        let k = HostKernels::kind(self);
        let level = host(k, "level", level)?;
        image::to_tokens(tokens.as_host_mut().ok_or_else(|| foreign(k, "tokens"))?, row0, level, c, plane);
        Ok(())
    }
}

impl<H: HostKernels> FusionOps for H {
    fn gated_cross_attn(
        &self,
        _: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        HostKernels::gated_cross_attn(self, p, v, pos, l, w)
    }
    fn sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        memory: &mut [f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Vec<f32>> {
        HostKernels::sparse_fusion(self, p, memory, pos, lang, mask, fw, bw)
    }
    fn prepare_sparse_fusion<'a>(
        &'a self,
        _: Checked,
        _p: &SparseFusionProblem,
        _memory: &[f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(not_resident(HostKernels::kind(self), crate::problem::sparse_fusion::OP))
    }
    fn prepare_sparse_fusion_unfused<'a>(
        &'a self,
        _: Checked,
        _p: &SparseFusionProblem,
        _memory: &[f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(not_resident(HostKernels::kind(self), crate::problem::sparse_fusion::OP))
    }
    fn bind_sparse_fusion(
        &self,
        _: Checked,
        _p: &SparseFusionProblem,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        Ok(None) // the kernels read the host structs
    }
    fn sparse_fusion_t(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
        _bound: Option<&Tensor>,
    ) -> Result<Tensor> {
        let k = HostKernels::kind(self);
        let (pos, lang) = (host(k, "pos", pos)?, host(k, "lang", lang)?);
        let memory = memory.as_host_mut().ok_or_else(|| foreign(k, "memory"))?;
        Ok(Tensor::host(HostKernels::sparse_fusion(self, p, memory, pos, lang, None, fw, bw)?))
    }
}
