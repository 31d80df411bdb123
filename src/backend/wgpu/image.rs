//! The image front's ops on the wgpu backend (`shaders/image.wgsl`), on resident tensors: conv2d
//! as an implicit GEMM (no column buffer), max pooling, GroupNorm, flatten into token rows.

use super::WgpuBackend;
use crate::backend::image::{pool_out, GroupNormShape};
use crate::backend::{Checked, ImageOps, Tensor};
use crate::error::{Error, Result};
use crate::problem::{Activation, Conv2dProblem};

/// Mirrors `P` in `shaders/image.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct ImageParams {
    in_c: u32,
    h: u32,
    w: u32,
    out_c: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    out_h: u32,
    out_w: u32,
    flags: u32,
    grid_x: u32,
    groups: u32,
    row0: u32,
    total: u32,
    eps: f32,
}

impl WgpuBackend {
    /// One `image.wgsl` entry point on tensors, writing `out`.
    fn image_op(
        &self,
        op: &'static str,
        entry: &'static str,
        params: ImageParams,
        inputs: &[(&str, Option<&Tensor>)],
        out: &wgpu::Buffer,
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let key = match entry {
            "conv" => "image.conv",
            "conv128" => "image.conv128",
            "max_pool" => "image.max_pool",
            "group_norm" => "image.group_norm",
            _ => "image.to_tokens",
        };
        self.run_entry(op, &self.image, key, entry, bytemuck::bytes_of(&params), inputs, out, groups)
    }
}

impl ImageOps for WgpuBackend {
    fn conv2d_t(
        &self,
        _: Checked,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::conv2d::OP;
        let relu = match p.act {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => {
                return Err(Error::Unsupported {
                    op: OP,
                    backend: crate::backend::BackendKind::Wgpu.name().into(),
                    reason: "image.wgsl's conv has ReLU and identity epilogues only".into(),
                })
            }
        };
        let (oh, ow) = (p.out_h(), p.out_w());
        let params = ImageParams {
            in_c: p.in_c as u32,
            h: p.h as u32,
            w: p.w as u32,
            out_c: p.out_c as u32,
            kh: p.kh as u32,
            kw: p.kw as u32,
            stride: p.stride as u32,
            pad: p.pad as u32,
            out_h: oh as u32,
            out_w: ow as u32,
            flags: relu | ((residual.is_some() as u32) << 3),
            ..Default::default()
        };
        let (out, t) = self.output(OP, p.batch * p.out_c * oh * ow)?;
        let tile = crate::backend::gemm_tile(p.out_c, oh * ow);
        let groups = ((oh * ow).div_ceil(tile) as u32, p.out_c.div_ceil(tile) as u32, p.batch as u32);
        self.image_op(
            OP,
            if tile == 128 { "conv128" } else { "conv" },
            params,
            &[("x", Some(x)), ("weight", Some(weight)), ("bias", Some(bias)), ("residual", residual.as_ref())],
            &out,
            groups,
        )?;
        Ok(t)
    }
    fn max_pool_t(&self, _: Checked, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
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
        self.image_op("max_pool", "max_pool", params, &[("x", Some(x))], &out, (gx, gy, 1))?;
        Ok(t)
    }
    fn group_norm_t(&self, _: Checked, s: &GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let params = ImageParams {
            in_c: s.channels as u32,
            h: 1,
            w: s.plane as u32,
            groups: s.groups as u32,
            eps: s.eps,
            ..Default::default()
        };
        let (out, t) = self.output("group_norm", x.len())?;
        self.image_op(
            "group_norm",
            "group_norm",
            params,
            &[("x", Some(&x)), ("gamma", Some(gamma)), ("beta", Some(beta))],
            &out,
            (s.groups as u32, s.batch as u32, 1),
        )?;
        Ok(t)
    }
    fn to_tokens_t(
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
        self.image_op("to_tokens", "to_tokens", params, &[("level", Some(level))], &out, (gx, gy, 1))
    }
}
