//! `ms_deform_attn_backward`: the gradients of [`crate::ops::ms_deform_attn`] with the official
//! CUDA op's semantics (`ms_deform_attn_col2im_bilinear`): a sample contributes only when
//! `−1 < y < H_l` and `−1 < x < W_l` (no gradient otherwise), corners outside the level read and
//! receive zero, and the location gradient is the bilinear weights' derivative scaled by the level
//! size (`x = loc_x·W_l − 0.5`).
//!
//! Official form: `grad_value [B,S,M,D]`, `grad_sampling_locations [B,Q,M,L,P,2]`,
//! `grad_attention_weights [B,Q,M,L,P]`. Fused form: `grad_value`, `grad_sampling_offsets`
//! `[B,Q,M,L,P,2]` (through `loc = ref + off/(W,H)`, or `ref_xy + off/P·ref_wh·0.5` for boxes) and
//! `grad_attention_logits [B,Q,M,L·P]` (through the softmax). The reference gets none (the
//! official model detaches it).
//!
//! Deterministic by construction on every backend that has it: each gradient element is a sum in
//! a fixed order, whatever the thread count (the official op scatters `grad_value` with float
//! `atomicAdd`, whose order, and so whose rounding, changes from run to run).

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::MsdaBackwardKernel;

use crate::error::{Error, Result};
use crate::problem::{Form, MsDeformAttnProblem};

/// Op name in errors.
pub const OP: &str = "ms_deform_attn_backward";

/// The gradients of one call, f32, each in the layout of the input it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct MsdaGrads {
    /// `grad_value [B,S,M,D]`
    pub value: Vec<f32>,
    /// official form: `grad_sampling_locations [B,Q,M,L,P,2]`; fused: `grad_sampling_offsets`
    pub sampling: Vec<f32>,
    /// official form: `grad_attention_weights [B,Q,M,L,P]`; fused: `grad_attention_logits [B,Q,M,L·P]`
    pub attention: Vec<f32>,
}

/// The names of the three gradients of `form`, as the official autograd function calls the
/// official form's (and as the op CLI writes them).
pub fn grad_names(form: Form) -> [&'static str; 3] {
    match form {
        Form::Official => ["grad_value", "grad_sampling_locations", "grad_attention_weights"],
        Form::Fused(_) => ["grad_value", "grad_sampling_offsets", "grad_attention_logits"],
    }
}

/// Checks that `grad_output` has the forward output's `[B,Q,M·D]` elements.
pub fn check_grad_output(pr: &MsDeformAttnProblem, len: usize) -> Result<()> {
    if len != pr.output_len() {
        return Err(Error::shape(OP, "grad_output", pr.output_shape(), format!("{len} elements")));
    }
    Ok(())
}
