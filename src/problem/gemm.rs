//! `gemm`: `y [M,N] = act(x [M,K] · Wᵀ + b)`, with `W` stored `[N,K]` as PyTorch's `nn.Linear`
//! keeps it and `b [N]` optional. GELU is the exact-erf form.

use crate::error::{Error, Result};
use crate::problem::ms_deform_attn::MAX_ELEMENTS;

pub const OP: &str = "gemm";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    None,
    Relu,
    /// `x · ½ · (1 + erf(x / √2))`
    Gelu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmProblem {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub bias: bool,
    pub act: Activation,
}

impl GemmProblem {
    pub fn linear(m: usize, k: usize, n: usize) -> Self {
        GemmProblem { m, k, n, bias: true, act: Activation::None }
    }
    pub fn with_act(self, act: Activation) -> Self {
        GemmProblem { act, ..self }
    }

    pub fn validate(&self) -> Result<()> {
        if self.m == 0 || self.k == 0 || self.n == 0 {
            return Err(Error::limit(OP, "M, K, N", format!("all must be ≥ 1, got {}×{}×{}", self.m, self.k, self.n)));
        }
        for (what, n) in [("x", self.m.checked_mul(self.k)), ("weight", self.n.checked_mul(self.k)), ("y", self.m.checked_mul(self.n))] {
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
