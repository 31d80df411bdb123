//! `window_attention` on the wgpu backend: `shaders/window_attention.wgsl`, one workgroup per
//! (window, head).

use super::{WindowAttentionKernel, WindowAttentionProblem, OP};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{BackendKind, Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/window_attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WindowAttentionParams {
    scale: f32,
    h: u32,
    w: u32,
    window: u32,
    shift: u32,
    heads: u32,
    head_dim: u32,
    grid_x: u32,
}

impl WindowAttentionKernel for WgpuBackend {
    fn launch_window_attention_t(
        &self,
        _: Checked,
        p: &WindowAttentionProblem,
        qkv: &Tensor,
        bias: &Tensor,
        table: &Tensor,
    ) -> Result<Tensor> {
        p.gpu_fits(BackendKind::Wgpu)?;
        let (gx, gy, grid_x) = self.row_grid(p.windows() * p.heads);
        let params = WindowAttentionParams {
            scale: p.scale,
            h: p.h as u32,
            w: p.w as u32,
            window: p.window as u32,
            shift: p.shift as u32,
            heads: p.heads as u32,
            head_dim: p.head_dim as u32,
            grid_x,
        };
        self.run_new(
            Entry { op: OP, module: &self.window_attention, key: "window_attention", name: "window_attention" },
            bytemuck::bytes_of(&params),
            &[("qkv", Some(qkv)), ("bias", Some(bias)), ("table", Some(table))],
            p.h * p.w * p.channels(),
            (gx, gy),
        )
    }
}
