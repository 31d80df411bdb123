//! One folder per op: its problem (shapes, layout contract, validation, cost) in `mod.rs`, the
//! f64 oracle in `oracle.rs`, the cpu backend's code in `cpu.rs`. The device code is in
//! `kernels/<family>.rs` (cubecl) and `shaders/<family>.wgsl` (WGSL); see ARCHITECTURE.md for
//! adding an op.

pub mod attention;
pub mod conv2d;
pub mod gated_cross_attn;
pub mod gemm;
pub mod image;
pub mod layer_norm;
pub mod ms_deform_attn;
pub mod softmax;
pub mod sparse_fusion;
