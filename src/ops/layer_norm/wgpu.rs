//! `layer_norm` on the wgpu backend: `shaders/layer_norm.wgsl`, one workgroup per row.

use super::{LayerNormKernel, LayerNormProblem, OP};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/layer_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LayerNormParams {
    rows: u32,
    width: u32,
    eps: f32,
    grid_x: u32,
}

impl LayerNormKernel for WgpuBackend {
    fn launch_layer_norm_t(
        &self,
        _: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(p.rows);
        let params = LayerNormParams { rows: p.rows as u32, width: p.width as u32, eps: p.eps, grid_x };
        self.run_new(
            Entry { op: OP, module: &self.layer_norm, key: "layer_norm.layer_norm", name: "layer_norm" },
            bytemuck::bytes_of(&params),
            &[("x", Some(x)), ("gamma", Some(gamma)), ("beta", Some(beta))],
            x.len(),
            (gx, gy),
        )
    }
}
