//! How a backend runs `gated_cross_attn`, and the host backends' answer.

use super::{GatedCrossAttnProblem, GatedCrossAttnWeights};
use crate::backend::{Checked, HostKernels};
use crate::error::Result;

/// The backend side of `gated_cross_attn` (host to host: the graph runs it inside the fused
/// `sparse_fusion` round); [`crate::backend::Ops`] validates, then calls it.
pub trait GatedCrossAttnKernel {
    /// Gated bi-directional cross-attention: `(v' [B,Nv,Cv], l' [B,T,Cl])`.
    fn launch_gated_cross_attn(
        &self,
        ok: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)>;
}

impl<H: HostKernels> GatedCrossAttnKernel for H {
    fn launch_gated_cross_attn(
        &self,
        _: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.gated_cross_attn(p, v, pos, l, w)
    }
}
