//! Max pooling, GroupNorm and the level → token transpose on the wgpu backend (`shaders/image.wgsl`).

use super::{pool_out, GroupNormShape, ImageKernel};
use crate::backend::wgpu::{Entry, ImageParams, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;

/// `image.wgsl`'s entry point `name`, for the op of the same name.
fn entry<'m>(name: &'static str, module: &'m wgpu::ShaderModule) -> Entry<'m> {
    let key = match name {
        "max_pool" => "image.max_pool",
        "group_norm" => "image.group_norm",
        _ => "image.to_tokens",
    };
    Entry { op: name, module, key, name }
}

impl ImageKernel for WgpuBackend {
    fn launch_max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        let (oh, ow) = pool_out(h, w);
        let total = planes * oh * ow;
        let (gx, gy, grid_x) = self.row_grid(total.div_ceil(256));
        let params = ImageParams {
            h: h as u32,
            w: w as u32,
            out_h: oh as u32,
            out_w: ow as u32,
            grid_x,
            total: total as u32,
            ..Default::default()
        };
        let (out, t) = self.output("max_pool", total)?;
        self.run_entry(
            entry("max_pool", &self.image),
            bytemuck::bytes_of(&params),
            &[("x", Some(x))],
            &out,
            (gx, gy, 1),
        )?;
        Ok(t)
    }
    fn launch_group_norm_t(
        &self,
        _: Checked,
        s: &GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let params = ImageParams {
            in_c: s.channels as u32,
            h: 1,
            w: s.plane as u32,
            groups: s.groups as u32,
            eps: s.eps,
            ..Default::default()
        };
        let (out, t) = self.output("group_norm", x.len())?;
        self.run_entry(
            entry("group_norm", &self.image),
            bytemuck::bytes_of(&params),
            &[("x", Some(&x)), ("gamma", Some(gamma)), ("beta", Some(beta))],
            &out,
            (s.groups as u32, s.batch as u32, 1),
        )?;
        Ok(t)
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
        let params = ImageParams {
            in_c: c as u32,
            h: 1,
            w: plane as u32,
            row0: row0 as u32,
            grid_x,
            total: total as u32,
            ..Default::default()
        };
        self.run_entry(
            entry("to_tokens", &self.image),
            bytemuck::bytes_of(&params),
            &[("level", Some(level))],
            &out,
            (gx, gy, 1),
        )
    }
}
