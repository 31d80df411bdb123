//! # rlipv2
//!
//! Kernels and inference for RLIPv2 (relational language-image pre-training for HOI detection,
//! arXiv 2308.09351) on any GPU or CPU.
//!
//! ## Dimension glossary (used in every comment and variable)
//! B batch, Q queries, M heads, D channels per head, L levels, P points per level,
//! S = Σ H_l·W_l flattened tokens, T text tokens, C model width.
//!
//! ## Layers (dependencies flow one way)
//! 1. [`problem`]: shapes, layout contracts, validation, cost; [`model`]: the RLIPv2
//!    configuration and checkpoint schema. No device.
//! 2. [`reference`]: the naive CPU oracle, generic over f32/f64 — the definition of correct.
//! 3. [`backend`]: `reference`, `cpu` (rayon), `wgpu` (WGSL from `shaders/`), `cubecl` (kernels
//!    from `kernels/`, on cubecl's wgpu and CUDA runtimes).
//! 4. [`io`]: safetensors files for the op CLI and the pickle-free torch checkpoint reader;
//!    [`convert`]: official checkpoint → safetensors; [`graph`]: the inference graph from
//!    backend ops; [`seeded`]: seeded inputs and weights;
//!    [`bench`]: side-by-side timing.
//! 5. the `rlipv2` binary (`src/main.rs`): thin CLI over the above.

pub mod backend;
pub mod bench;
pub mod convert;
pub mod detect;
pub mod error;
pub mod graph;
pub mod io;
pub mod model;
pub mod problem;
pub mod reference;
pub mod seeded;
pub mod shaders;

#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
#[path = "../kernels/mod.rs"]
pub mod kernels;

pub use error::{Error, Result};
