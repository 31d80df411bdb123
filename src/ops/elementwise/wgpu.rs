//! `add` and `mul` on the wgpu backend: `shaders/elementwise.wgsl` (a flag picks the op).

use super::ElementwiseKernel;
use crate::backend::wgpu::{Entry, WgpuBackend};
use crate::backend::{Checked, Tensor};
use crate::error::Result;
use crate::problem::Activation;

/// Mirrors `P` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ElementwiseParams {
    len: u32,
    /// bit 0 multiplies instead of adding, bits 1-2 the activation code
    flags: u32,
    grid_x: u32,
    _pad: u32,
}

/// One dispatch over `a`, `b`.
fn elementwise(be: &WgpuBackend, op: &'static str, flags: u32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (gx, gy, grid_x) = be.row_grid(a.len().div_ceil(256));
    let params = ElementwiseParams { len: a.len() as u32, flags, grid_x, _pad: 0 };
    be.run_new(
        Entry { op, module: &be.elementwise, key: "elementwise.add", name: "add" },
        bytemuck::bytes_of(&params),
        &[("a", Some(a)), ("b", Some(b))],
        a.len(),
        (gx, gy),
    )
}

impl ElementwiseKernel for WgpuBackend {
    fn launch_add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        elementwise(self, "add", 0, a, b)
    }
    fn launch_mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        elementwise(self, "mul", 1 | (act.code() << 1), a, b)
    }
}
