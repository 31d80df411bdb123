//! `gated_cross_attn` on the cubecl backend: the round planned by `backend::fusion_plan`, three
//! launches of `kernels/sparse_fusion.rs` over one arena (`backend::cubecl::fusion` runs it).

use cubecl::prelude::*;

use super::{GatedCrossAttnKernel, GatedCrossAttnProblem, GatedCrossAttnWeights, OP};
use crate::backend::cubecl::CubeclBackend;
use crate::backend::fusion_plan;
use crate::backend::Checked;
use crate::error::Result;

impl<R: Runtime> GatedCrossAttnKernel for CubeclBackend<R> {
    fn launch_gated_cross_attn(
        &self,
        _: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.run_round(OP, fusion_plan::gated_cross_attn(self.kind.name(), p, v, pos, l, w)?)
    }
}
