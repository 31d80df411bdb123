//! `add` and `mul`: elementwise `a + b` and `act(a · b)` on equal-length tensors (the gates and
//! residuals of the graph). Their host form is one line each, so there is no separate oracle.

#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::ElementwiseKernel;
