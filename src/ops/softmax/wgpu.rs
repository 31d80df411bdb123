//! `softmax` on the wgpu backend: `shaders/softmax.wgsl`, one workgroup per row.

use super::{SoftmaxKernel, SoftmaxProblem, OP};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/softmax.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SoftmaxParams {
    rows: u32,
    width: u32,
    grid_x: u32,
    _pad: u32,
}

impl SoftmaxKernel for WgpuBackend {
    fn launch_softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(p.rows);
        let params = SoftmaxParams { rows: p.rows as u32, width: p.width as u32, grid_x, _pad: 0 };
        self.run_new(
            Entry { op: OP, module: &self.softmax, key: "softmax.softmax", name: "softmax" },
            bytemuck::bytes_of(&params),
            &[("x", Some(x))],
            x.len(),
            (gx, gy),
        )
    }
}
