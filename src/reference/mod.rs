//! The oracle: naive loops, generic over f32/f64, the formula in each doc comment. This is the
//! only definition of "correct"; it never copies a kernel's tiling or fusion. Each op's oracle is
//! `crate::ops::<op>::oracle`, re-exported here by op name; the arithmetic they share is below.

pub use crate::ops::attention::oracle as attention;
pub use crate::ops::conv2d::oracle as conv2d;
pub use crate::ops::gated_cross_attn::oracle as gated_cross_attn;
pub use crate::ops::gemm::oracle as gemm;
pub use crate::ops::layer_norm::oracle as layer_norm;
pub use crate::ops::ms_deform_attn::oracle as ms_deform_attn;
pub use crate::ops::ms_deform_attn_backward::oracle as ms_deform_attn_backward;
pub use crate::ops::softmax::oracle as softmax;
pub use crate::ops::sparse_fusion::oracle as sparse_fusion;
pub use crate::ops::window_attention::oracle as window_attention;

/// The arithmetic the oracle needs, implemented for f32 and f64.
pub trait Real:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::AddAssign
    + Send
    + Sync
    + 'static
{
    /// `x` in this type.
    fn of(x: f64) -> Self;
    /// `x` in this type.
    fn from_f32(x: f32) -> Self;
    /// The value as f64.
    fn to_f64(self) -> f64;
    /// ⌊x⌋
    fn floor(self) -> Self;
    /// eˣ
    fn exp(self) -> Self;
    /// √x
    fn sqrt(self) -> Self;
    /// The error function.
    fn erf(self) -> Self;
    /// The larger of the two.
    fn max(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn floor(self) -> Self {
        f32::floor(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn from_f32(x: f32) -> Self {
        x as f64
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn floor(self) -> Self {
        f64::floor(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// Converts f32 host data to the oracle's precision.
pub fn lift<T: Real>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}
