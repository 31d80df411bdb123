//! `gemm` on the wgpu backend: `shaders/gemm.wgsl`'s `gemm` / `gemm128` entry on tensors.

use super::{GemmKernel, GemmProblem, OP};
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{gemm_tile, Checked, Tensor};
use crate::error::Result;

/// Mirrors `P` in `shaders/gemm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    k: u32,
    n: u32,
    /// bit 0 bias, bits 1-2 the activation code, bit 3 residual
    flags: u32,
}

impl GemmKernel for WgpuBackend {
    fn launch_gemm_t(
        &self,
        _: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let flags = bias.is_some() as u32 | (p.act.code() << 1) | ((residual.is_some() as u32) << 3);
        let params = GemmParams { m: p.m as u32, k: p.k as u32, n: p.n as u32, flags };
        let tile = gemm_tile(p.m, p.n);
        let (key, name) = if tile == 128 { ("gemm.gemm128", "gemm128") } else { ("gemm.gemm", "gemm") };
        self.run_new(
            Entry { op: OP, module: &self.gemm, key, name },
            bytemuck::bytes_of(&params),
            &[("x", Some(x)), ("weight", Some(weight)), ("bias", bias), ("residual", residual)],
            p.m * p.n,
            (p.n.div_ceil(tile) as u32, p.m.div_ceil(tile) as u32),
        )
    }
}
