//! `gemm`: `y [M,N] = act(x [M,K] · Wᵀ + b)`, with `W` stored `[N,K]` as PyTorch's `nn.Linear`
//! keeps it and `b [N]` optional. GELU is the exact-erf form.

pub(crate) mod bf16;
pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::GemmKernel;

use crate::error::{Error, Result};
use crate::problem::ms_deform_attn::MAX_ELEMENTS;

/// Op name in errors.
pub const OP: &str = "gemm";

/// The inputs' precision of the large matrix products (`gemm` and `conv2d`): f32 by default, the
/// bit-checked path; bf16 (opt-in, cpu backend) rounds both operands to bf16 and sums in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 inputs and sums.
    #[default]
    F32,
    /// bf16 inputs (round to nearest even), f32 sums: AVX512-BF16 where the CPU has it.
    Bf16,
}

impl Precision {
    /// Parses `f32` or `bf16` (the `--precision` values).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::limit(
                "precision",
                "--precision",
                format!("unknown precision `{other}` (expected f32 or bf16)"),
            )),
        }
    }
    /// The name `--precision` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Epilogue activation of GEMM and conv2d.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// `x · ½ · (1 + erf(x / √2))`
    Gelu,
}

impl Activation {
    /// The activation on the host, in f32 (the oracle has its own, generic one).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            // NaN stays NaN, as torch.relu keeps it (f32::max would return 0)
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::Gelu => x * 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }

    /// The kernels' epilogue code: 0 none, 1 ReLU, 2 GELU.
    pub fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
        }
    }
}

/// `y [M,N] = act(x [M,K] · Wᵀ + b)` with `W [N,K]` as PyTorch stores a Linear.
///
/// ```
/// use rlipv2::backend::Ops;
/// use rlipv2::problem::{Activation, GemmProblem};
/// let p = GemmProblem::linear(2, 3, 1).with_act(Activation::Relu);
/// let be = rlipv2::backend::open(rlipv2::backend::BackendKind::Cpu)?;
/// let y = be.gemm(&p, &[1., 2., 3., -1., -2., -3.], &[1., 1., 1.], Some(&[0.5]))?;
/// assert_eq!(y, [6.5, 0.0]); // ReLU clips the second row's −5.5
/// # Ok::<(), rlipv2::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmProblem {
    /// M rows.
    pub m: usize,
    /// K inputs.
    pub k: usize,
    /// N outputs.
    pub n: usize,
    /// Whether a bias is added.
    pub bias: bool,
    /// Epilogue activation.
    pub act: Activation,
}

impl GemmProblem {
    /// A Linear layer with bias and no activation.
    pub fn linear(m: usize, k: usize, n: usize) -> Self {
        GemmProblem { m, k, n, bias: true, act: Activation::None }
    }
    /// The same with activation `act`.
    pub fn with_act(self, act: Activation) -> Self {
        GemmProblem { act, ..self }
    }

    /// Checks the dimensions.
    pub fn validate(&self) -> Result<()> {
        if self.m == 0 || self.k == 0 || self.n == 0 {
            return Err(Error::limit(OP, "M, K, N", format!("all must be ≥ 1, got {}×{}×{}", self.m, self.k, self.n)));
        }
        for (what, n) in [
            ("x", self.m.checked_mul(self.k)),
            ("weight", self.n.checked_mul(self.k)),
            ("y", self.m.checked_mul(self.n)),
        ] {
            if n.is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(Error::limit(OP, what, format!("more than {MAX_ELEMENTS} elements")));
            }
        }
        Ok(())
    }

    /// Checks slice lengths: `x [M,K]`, `weight [N,K]`, `bias [N]` (present iff `self.bias`).
    pub fn check(&self, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<()> {
        self.validate()?;
        check_len(OP, "x", &[self.m, self.k], x.len())?;
        check_len(OP, "weight", &[self.n, self.k], weight.len())?;
        match (self.bias, bias) {
            (true, Some(b)) => check_len(OP, "bias", &[self.n], b.len()),
            (false, None) => Ok(()),
            (true, None) => Err(Error::limit(OP, "bias", "the problem has a bias but none was given")),
            (false, Some(_)) => Err(Error::limit(OP, "bias", "the problem has no bias but one was given")),
        }
    }

    /// 2·M·K·N.
    pub fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }
}

/// `Err(Shape)` unless `got` equals the element count of `shape`.
pub fn check_len(op: &'static str, what: &str, shape: &[usize], got: usize) -> Result<()> {
    if shape.iter().product::<usize>() != got {
        return Err(Error::shape(op, what, shape, format!("{got} elements")));
    }
    Ok(())
}
