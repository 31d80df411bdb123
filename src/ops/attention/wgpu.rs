//! `attention` on the wgpu backend: `shaders/attention.wgsl`, one workgroup per (batch, head,
//! query row).

use super::{AttentionKernel, AttentionProblem, OP};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{BackendKind, Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    scale: f32,
    batch: u32,
    heads: u32,
    q_len: u32,
    k_len: u32,
    head_dim: u32,
    has_mask: u32,
    grid_x: u32,
}

impl AttentionKernel for WgpuBackend {
    fn launch_attention_t(
        &self,
        _: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        p.gpu_fits(BackendKind::Wgpu)?;
        let (gx, gy, grid_x) = self.row_grid(p.batch * p.heads * p.q_len);
        let params = AttentionParams {
            scale: p.scale,
            batch: p.batch as u32,
            heads: p.heads as u32,
            q_len: p.q_len as u32,
            k_len: p.k_len as u32,
            head_dim: p.head_dim as u32,
            has_mask: mask.is_some() as u32,
            grid_x,
        };
        self.run_new(
            Entry { op: OP, module: &self.attention, key: "attention.attention", name: "attention" },
            bytemuck::bytes_of(&params),
            &[("q", Some(q)), ("k", Some(k)), ("v", Some(v)), ("mask", mask)],
            q.len(),
            (gx, gy),
        )
    }
}
