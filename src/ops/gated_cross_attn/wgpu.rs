//! `gated_cross_attn` on the wgpu backend: the round planned by `backend::fusion_plan`, three
//! launches of `shaders/sparse_fusion.wgsl` over one arena (`backend::wgpu::fusion` runs it).

use super::{GatedCrossAttnKernel, GatedCrossAttnProblem, GatedCrossAttnWeights, OP};
use crate::backend::fusion_plan;
use crate::backend::wgpu::WgpuBackend;
use crate::backend::{BackendKind, Checked};
use crate::error::Result;

impl GatedCrossAttnKernel for WgpuBackend {
    fn launch_gated_cross_attn(
        &self,
        _: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run_round(OP, fusion_plan::gated_cross_attn(BackendKind::Wgpu.name(), p, v, pos, l, w)?)
    }
}
