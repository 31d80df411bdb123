//! The op families a backend implements, one trait each. Every method takes a [`Checked`]: the
//! public entry points of [`super::Ops`] validate the inputs and then call the method of the same
//! name here. No method has a default body, so a backend that lacks one does not compile; a
//! backend without a kernel for an op says so in its body (`Error::Unsupported`).
//!
//! The host-slice methods (`&[f32]` in, `Vec<f32>` out) are the older launch path of the GPU
//! backends, kept where the graph's resident ([`Tensor`]) form does not cover the op yet.

use super::image::GroupNormShape;
use super::{Checked, Prepared, Tensor};
use crate::error::Result;
use crate::problem::{
    Activation, AttentionProblem, BertLayerWeights, Conv2dProblem, DType, GatedCrossAttnProblem, GatedCrossAttnWeights,
    GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, SoftmaxProblem, SparseFusionProblem,
};

/// Multi-scale deformable attention.
pub trait MsdaOps {
    /// Whether this backend can run `ms_deform_attn` in `dtype`.
    fn supports(&self, dtype: DType) -> Result<()>;
    /// Uploads the inputs and builds the kernel, for repeated runs.
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>>;
    /// One run host to host: `[B,Q,M·D]` as f32.
    fn ms_deform_attn(
        &self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>>;
    /// The fused form on tensors, f32.
    fn ms_deform_attn_t(
        &self,
        ok: Checked,
        problem: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor>;
}

/// Products, norms, attention and elementwise ops, on tensors.
pub trait DenseOps {
    /// `y [M,N] = act(x [M,K]·Wᵀ + b [+ residual])`: `residual [M,N]` is added after the activation.
    fn gemm_t(
        &self,
        ok: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor>;
    /// Elementwise `a + b`.
    fn add_t(&self, ok: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// Elementwise `act(a · b)`.
    fn mul_t(&self, ok: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor>;
    /// Row LayerNorm of `x [R,C]`.
    fn layer_norm_t(
        &self,
        ok: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor>;
    /// Row softmax of `x [R,C]`.
    fn softmax_t(&self, ok: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor>;
    /// Multi-head attention on packed `[B,L,H·Dh]` projections, optional additive key mask
    /// `[B,Lk]`.
    fn attention_t(
        &self,
        ok: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor>;
}

/// The backbone's image ops, on tensors.
pub trait ImageOps {
    /// `y = act(conv2d(x, W) + b [+ residual])`, NCHW. `residual` is consumed: a host backend
    /// accumulates the output into its buffer (no third feature map).
    fn conv2d_t(
        &self,
        ok: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor>;
    /// 3×3 max pooling, stride 2, padding 1, of `planes` planes `h × w`.
    fn max_pool_t(&self, ok: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor>;
    /// GroupNorm of `x [B, C, plane]` with per-channel `gamma`, `beta` (host backends in place).
    fn group_norm_t(&self, ok: Checked, s: &GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor)
        -> Result<Tensor>;
    /// Writes `level [C, plane]` transposed into rows `row0 ..` of `tokens [S, C]` (this backend's).
    fn to_tokens_t(
        &self,
        ok: Checked,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()>;
}

/// The ALIF language-image fusion ops.
#[allow(clippy::too_many_arguments)] // an ALIF round's inputs are its problem, three states and two weight sets
pub trait FusionOps {
    /// Gated bi-directional cross-attention, host to host: `(v' [B,Nv,Cv], l' [B,T,Cl])`.
    fn gated_cross_attn(
        &self,
        ok: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)>;
    /// One round host to host: fuses `memory`'s last level in place, returns the new language
    /// state. `mask [B,T]`: 1 = label, 0 = padding.
    fn sparse_fusion(
        &self,
        ok: Checked,
        p: &SparseFusionProblem,
        memory: &mut [f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Vec<f32>>;
    /// A round kept on the device for timed runs (`Unsupported` where there is none).
    fn prepare_sparse_fusion<'a>(
        &'a self,
        ok: Checked,
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>>;
    /// The same round op by op, resident: the side-by-side baseline of the fused round
    /// (`Unsupported` where there is none).
    fn prepare_sparse_fusion_unfused<'a>(
        &'a self,
        ok: Checked,
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>>;
    /// One round's weights laid out for this backend's fused kernels and uploaded once (`p`
    /// gives the widths). `None` where the backend reads the host structs.
    fn bind_sparse_fusion(
        &self,
        ok: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>>;
    /// A round on tensors (every label valid): fuses `memory` (this backend's) in place, returns
    /// the new language state. `bound`: this round's [`FusionOps::bind_sparse_fusion`], made by
    /// the entry point when the caller has none.
    fn sparse_fusion_t(
        &self,
        ok: Checked,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
        bound: Option<&Tensor>,
    ) -> Result<Tensor>;
}
