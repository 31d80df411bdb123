//! How a backend runs a `sparse_fusion` round, and the host backends' answer.

use super::SparseFusionProblem;
use crate::backend::{foreign_tensor, host_values, Checked, HostKernels, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::{BertLayerWeights, GatedCrossAttnWeights};

/// The backend side of `sparse_fusion`; [`crate::backend::Ops`] validates, then calls it.
#[allow(clippy::too_many_arguments)] // a round's inputs: its problem, three states and two weight sets
pub trait SparseFusionKernel {
    /// One round host to host: fuses `memory`'s last level in place, returns the new language
    /// state. `mask [B,T]`: 1 = label, 0 = padding.
    fn launch_sparse_fusion(
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
    fn launch_prepare_sparse_fusion<'a>(
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
    fn launch_prepare_sparse_fusion_unfused<'a>(
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
    fn launch_bind_sparse_fusion(
        &self,
        ok: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>>;
    /// A round on tensors (every label valid): fuses `memory` (this backend's) in place, returns
    /// the new language state. `bound`: this round's bound weights, made by the entry point when
    /// the caller has none.
    fn launch_sparse_fusion_t(
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

/// A host backend has no device-resident variant to time: its host-to-host call is resident.
fn not_resident(backend: &str) -> Error {
    Error::Unsupported {
        op: super::OP,
        backend: backend.into(),
        reason: "a host backend computes in place; time the host-to-host op".into(),
    }
}

impl<H: HostKernels> SparseFusionKernel for H {
    fn launch_sparse_fusion(
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
        self.sparse_fusion(p, memory, pos, lang, mask, fw, bw)
    }
    fn launch_prepare_sparse_fusion<'a>(
        &'a self,
        _: Checked,
        _: &SparseFusionProblem,
        _: &[f32],
        _: &[f32],
        _: &[f32],
        _: Option<&[f32]>,
        _: &GatedCrossAttnWeights,
        _: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(not_resident(self.kind().name()))
    }
    fn launch_prepare_sparse_fusion_unfused<'a>(
        &'a self,
        _: Checked,
        _: &SparseFusionProblem,
        _: &[f32],
        _: &[f32],
        _: &[f32],
        _: Option<&[f32]>,
        _: &GatedCrossAttnWeights,
        _: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(not_resident(self.kind().name()))
    }
    fn launch_bind_sparse_fusion(
        &self,
        _: Checked,
        _: &SparseFusionProblem,
        _: &GatedCrossAttnWeights,
        _: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        Ok(None) // the kernels read the host structs
    }
    fn launch_sparse_fusion_t(
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
        let k = self.kind();
        let (pos, lang) = (host_values(k, "pos", pos)?, host_values(k, "lang", lang)?);
        let memory = memory.as_host_mut().ok_or_else(|| foreign_tensor(k, "memory"))?;
        Ok(Tensor::host(self.sparse_fusion(p, memory, pos, lang, None, fw, bw)?))
    }
}
