//! `conv2d` on the wgpu backend: `shaders/conv2d.wgsl`'s implicit-GEMM `conv` / `conv128` entry
//! (the columns gathered while the tile is staged; no column buffer).

use super::Conv2dKernel;
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::{Error, Result};
use crate::problem::{Activation, Conv2dProblem};

/// Mirrors `P` in `shaders/conv2d.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
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
    /// bit 0 ReLU, bit 3 residual
    flags: u32,
    _pad: u32,
}

impl Conv2dKernel for WgpuBackend {
    fn launch_conv2d_t(
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
                    reason: "conv2d.wgsl's conv has ReLU and identity epilogues only".into(),
                })
            }
        };
        let (oh, ow) = (p.out_h(), p.out_w());
        let params = ConvParams {
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
            _pad: 0,
        };
        let (out, t) = self.output(OP, p.batch * p.out_c * oh * ow)?;
        let tile = crate::backend::gemm_tile(p.out_c, oh * ow);
        let groups = ((oh * ow).div_ceil(tile) as u32, p.out_c.div_ceil(tile) as u32, p.batch as u32);
        let (key, name) = if tile == 128 { ("conv2d.conv128", "conv128") } else { ("conv2d.conv", "conv") };
        self.run_entry(
            Entry { op: OP, module: &self.conv2d, key, name },
            bytemuck::bytes_of(&params),
            &[("x", Some(x)), ("weight", Some(weight)), ("bias", Some(bias)), ("residual", residual.as_ref())],
            &out,
            groups,
        )?;
        Ok(t)
    }
}
