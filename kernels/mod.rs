//! cubecl device code (`#[cube]`), compiled at run time to WGSL/SPIR-V (wgpu runtime) or CUDA C++
//! (CUDA runtime). Mounted into the crate from `src/lib.rs`; launchers live in `src/backend/cubecl.rs`.

pub mod dense;
pub mod image;
pub mod ms_deform_attn;
pub mod ms_deform_attn_backward;
pub mod sparse_fusion;
pub mod tile;
pub mod window_attention;
