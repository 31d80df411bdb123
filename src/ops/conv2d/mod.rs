//! `conv2d`: `y [B,Co,Ho,Wo] = act(conv(x [B,Ci,H,W], W [Co,Ci,Kh,Kw]) + b [+ residual])`, NCHW as
//! PyTorch keeps it, square stride and zero padding, no dilation or groups (what ResNet-50, the
//! input projections and the stride-64 level need). `residual [B,Co,Ho,Wo]` is added before the
//! activation (a ResNet bottleneck's `relu(bn3(conv3(x)) + identity)` with BatchNorm folded).

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::Conv2dKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;
use crate::problem::ms_deform_attn::MAX_ELEMENTS;
use crate::problem::Activation;

/// Op name in errors.
pub const OP: &str = "conv2d";

/// A 2-D convolution, NCHW, square stride and padding, fused bias, optional residual and activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dProblem {
    /// N
    pub batch: usize,
    /// Input channels.
    pub in_c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub pad: usize,
    /// Activation after bias and residual.
    pub act: Activation,
}

impl Conv2dProblem {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad).saturating_sub(self.kh) / self.stride.max(1) + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad).saturating_sub(self.kw) / self.stride.max(1) + 1
    }
    /// `[N, C_in, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_c, self.h, self.w]
    }
    /// `[C_out, C_in, kh, kw]` (PyTorch layout).
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_c, self.in_c, self.kh, self.kw]
    }
    /// `[N, C_out, H_out, W_out]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_c, self.out_h(), self.out_w()]
    }

    /// Checks the dimensions (all ≥ 1, output non-empty, sizes < 2³¹).
    pub fn validate(&self) -> Result<()> {
        let dims = [self.batch, self.in_c, self.h, self.w, self.out_c, self.kh, self.kw, self.stride];
        if dims.contains(&0) {
            return Err(Error::limit(OP, "shape", format!("every dimension and the stride must be ≥ 1, got {self:?}")));
        }
        if self.h + 2 * self.pad < self.kh || self.w + 2 * self.pad < self.kw {
            return Err(Error::limit(
                OP,
                "kernel",
                format!(
                    "{}×{} kernel larger than the padded {}×{} input",
                    self.kh,
                    self.kw,
                    self.h + 2 * self.pad,
                    self.w + 2 * self.pad
                ),
            ));
        }
        for (what, shape) in [("x", self.input_shape()), ("weight", self.weight_shape()), ("y", self.output_shape())] {
            if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(Error::limit(OP, what, format!("shape {shape:?} has more than {MAX_ELEMENTS} elements")));
            }
        }
        Ok(())
    }

    /// Checks slice lengths: `x`, `weight`, `bias [Co]`, optional `residual` (output shape).
    pub fn check(&self, x: &[f32], weight: &[f32], bias: &[f32], residual: Option<&[f32]>) -> Result<()> {
        self.validate()?;
        check_len(OP, "x", &self.input_shape(), x.len())?;
        check_len(OP, "weight", &self.weight_shape(), weight.len())?;
        check_len(OP, "bias", &[self.out_c], bias.len())?;
        if let Some(r) = residual {
            check_len(OP, "residual", &self.output_shape(), r.len())?;
        }
        Ok(())
    }

    /// Multiply-adds × 2.
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.out_c * self.out_h() * self.out_w() * self.in_c * self.kh * self.kw) as u64
    }
}
