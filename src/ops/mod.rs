//! One folder per op: its problem (shapes, layout contract, validation, cost) in `mod.rs`, the
//! f64 oracle in `oracle.rs`, the cpu backend's code in `cpu.rs`, the op's backend trait and the
//! host backends' answer in `kernel.rs`, and the host side of the GPU launches in `wgpu.rs` and
//! `cubecl.rs`. The device code is in `shaders/` (WGSL, one module per op or op group) and
//! `kernels/` (cubecl); see ARCHITECTURE.md for adding an op.

pub mod attention;
pub mod conv2d;
pub mod elementwise;
pub mod gated_cross_attn;
pub mod gemm;
pub mod image;
pub mod layer_norm;
pub mod ms_deform_attn;
pub mod ms_deform_attn_backward;
pub mod softmax;
pub mod sparse_fusion;
pub mod window_attention;
