//! The problems of every op under one path: each is defined in its op's folder
//! (`crate::ops::<op>`, with every dimension, the memory-layout contract, `validate()`, `flops()`
//! and `bytes()`) and re-exported here, with the types shared by several ops (`DType`, weights).

pub use crate::ops::{
    attention, conv2d, gated_cross_attn, gemm, layer_norm, ms_deform_attn, ms_deform_attn_backward, softmax,
    sparse_fusion, window_attention,
};
pub mod weights;

pub use attention::AttentionProblem;
pub use conv2d::Conv2dProblem;
pub use gated_cross_attn::{Gate, GatedCrossAttnProblem, GatedCrossAttnWeights, Linear, Norm};
pub use gemm::{Activation, GemmProblem, Precision};
pub use layer_norm::LayerNormProblem;
pub use ms_deform_attn::{Form, Level, MsDeformAttnInput, MsDeformAttnProblem, RefKind};
pub use ms_deform_attn_backward::MsdaGrads;
pub use softmax::SoftmaxProblem;
pub use sparse_fusion::{BertLayerProblem, BertLayerWeights, SparseFusionProblem};
pub use weights::OwnedWeights;
pub use window_attention::WindowAttentionProblem;

/// Element type of the value tensor and output of an op. Sampling inputs stay f32 and
/// accumulation is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }
    /// `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::Bf16),
            other => Err(format!("unknown dtype `{other}` (expected f32, f16 or bf16)")),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
