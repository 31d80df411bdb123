//! `attention`: small-sequence multi-head attention on packed projections.
//!
//! `q [B,Lq,H·Dh]`, `k, v [B,Lk,H·Dh]` (head h in channels `h·Dh..(h+1)·Dh`), optional additive
//! key mask `[B,Lk]`: `out[b,i,h] = Σ_j softmax_j(scale · q_i·k_j + mask[b,j]) · v_j` → `[B,Lq,H·Dh]`.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::AttentionKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "attention";

/// Multi-head attention over packed projections `q [B,Lq,H·Dh]`, `k`/`v [B,Lk,H·Dh]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionProblem {
    /// B
    pub batch: usize,
    /// H heads.
    pub heads: usize,
    /// Lq queries.
    pub q_len: usize,
    /// Lk keys.
    pub k_len: usize,
    /// Dh channels per head.
    pub head_dim: usize,
    /// Score scale (usually Dh^−½).
    pub scale: f32,
}

impl AttentionProblem {
    /// H·Dh, the packed width.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Checks every dimension and slice length.
    pub fn check(&self, q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>) -> Result<()> {
        self.check_lens(q.len(), k.len(), v.len(), mask.map(<[f32]>::len))
    }

    /// Checks every dimension and the element counts of `q`, `k`, `v` and the mask.
    pub fn check_lens(&self, q: usize, k: usize, v: usize, mask: Option<usize>) -> Result<()> {
        if [self.batch, self.heads, self.q_len, self.k_len, self.head_dim].contains(&0) {
            return Err(Error::limit(OP, "B, H, Lq, Lk, Dh", format!("all must be ≥ 1: {self:?}")));
        }
        let w = self.width();
        check_len(OP, "q", &[self.batch, self.q_len, w], q)?;
        check_len(OP, "k", &[self.batch, self.k_len, w], k)?;
        check_len(OP, "v", &[self.batch, self.k_len, w], v)?;
        if let Some(m) = mask {
            check_len(OP, "mask", &[self.batch, self.k_len], m)?;
        }
        Ok(())
    }

    /// Whether the GPU kernels (`shaders/attention.wgsl`, `kernels/dense.rs`) can run it: both stage
    /// one query's scores for all keys and one head's channels in workgroup memory.
    pub fn gpu_fits(&self, backend: crate::backend::BackendKind) -> Result<()> {
        if self.k_len > GPU_MAX_KEYS || self.head_dim > GPU_MAX_HEAD_DIM {
            return Err(Error::Unsupported {
                op: OP,
                backend: backend.name().into(),
                reason: format!(
                    "Lk = {} and Dh = {}: this kernel stages at most {GPU_MAX_KEYS} keys and \
                     {GPU_MAX_HEAD_DIM} channels per head",
                    self.k_len, self.head_dim
                ),
            });
        }
        Ok(())
    }
}

/// Keys the GPU attention kernels stage per query row.
pub const GPU_MAX_KEYS: usize = 2048;
/// Channels per head the GPU attention kernels stage.
pub const GPU_MAX_HEAD_DIM: usize = 256;
