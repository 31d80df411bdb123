//! Max pooling, GroupNorm and the level → token transpose on the wgpu backend
//! (`shaders/max_pool.wgsl`, `group_norm.wgsl`, `to_tokens.wgsl`).

use super::{pool_out, GroupNormShape, ImageKernel};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/max_pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MaxPoolParams {
    h: u32,
    w: u32,
    out_h: u32,
    out_w: u32,
    grid_x: u32,
    total: u32,
    _pad: [u32; 2],
}

/// Mirrors `P` in `shaders/group_norm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GroupNormParams {
    channels: u32,
    plane: u32,
    groups: u32,
    eps: f32,
}

/// Mirrors `P` in `shaders/patch_merge.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PatchMergeParams {
    h: u32,
    w: u32,
    c: u32,
    grid_x: u32,
    total: u32,
    _pad: [u32; 3],
}

/// Mirrors `P` in `shaders/to_tokens.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ToTokensParams {
    c: u32,
    plane: u32,
    row0: u32,
    grid_x: u32,
    total: u32,
    _pad: [u32; 3],
}

impl ImageKernel for WgpuBackend {
    fn launch_max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        let (oh, ow) = pool_out(h, w);
        let total = planes * oh * ow;
        let (gx, gy, grid_x) = self.row_grid(total.div_ceil(256));
        let params = MaxPoolParams {
            h: h as u32,
            w: w as u32,
            out_h: oh as u32,
            out_w: ow as u32,
            grid_x,
            total: total as u32,
            _pad: [0; 2],
        };
        self.run_new(
            Entry { op: "max_pool", module: &self.max_pool, key: "max_pool.max_pool", name: "max_pool" },
            bytemuck::bytes_of(&params),
            &[("x", Some(x))],
            total,
            (gx, gy),
        )
    }
    fn launch_group_norm_t(
        &self,
        _: Checked,
        s: &GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let params =
            GroupNormParams { channels: s.channels as u32, plane: s.plane as u32, groups: s.groups as u32, eps: s.eps };
        let (out, t) = self.output("group_norm", x.len())?;
        self.run_entry(
            Entry { op: "group_norm", module: &self.group_norm, key: "group_norm.group_norm", name: "group_norm" },
            bytemuck::bytes_of(&params),
            &[("x", Some(&x)), ("gamma", Some(gamma)), ("beta", Some(beta))],
            &out,
            (s.groups as u32, s.batch as u32, 1),
        )?;
        Ok(t)
    }
    fn launch_patch_merge_t(&self, _: Checked, x: &Tensor, h: usize, w: usize, c: usize) -> Result<Tensor> {
        let (oh, ow) = super::merge_out(h, w);
        let total = oh * ow * 4 * c;
        let (gx, gy, grid_x) = self.row_grid(total.div_ceil(256));
        let params =
            PatchMergeParams { h: h as u32, w: w as u32, c: c as u32, grid_x, total: total as u32, _pad: [0; 3] };
        self.run_new(
            Entry { op: "patch_merge", module: &self.patch_merge, key: "patch_merge.patch_merge", name: "patch_merge" },
            bytemuck::bytes_of(&params),
            &[("x", Some(x))],
            total,
            (gx, gy),
        )
    }
    fn launch_to_tokens_t(
        &self,
        _: Checked,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()> {
        let out = self.resident("to_tokens", "tokens", tokens)?;
        let total = c * plane;
        let (gx, gy, grid_x) = self.row_grid(total.div_ceil(256));
        let params = ToTokensParams {
            c: c as u32,
            plane: plane as u32,
            row0: row0 as u32,
            grid_x,
            total: total as u32,
            _pad: [0; 3],
        };
        self.run_entry(
            Entry { op: "to_tokens", module: &self.to_tokens, key: "to_tokens.to_tokens", name: "to_tokens" },
            bytemuck::bytes_of(&params),
            &[("level", Some(level))],
            &out,
            (gx, gy, 1),
        )
    }
}
