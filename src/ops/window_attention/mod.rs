//! `window_attention`: Swin's (shifted-)window multi-head self-attention (variants spec §2.2,
//! `models/swin/swin_transformer.py:269-403`), fused: the cyclic shift, the window partition, the
//! relative position bias, the shift-region mask and the window reverse are index arithmetic
//! inside the kernel, so neither a shifted copy of the map nor a `[windows, heads, 49, 49]` score
//! or bias tensor exists in memory.
//!
//! `qkv [H·W, 3C]` is the qkv projection of an `H × W` map in its own row-major order (columns
//! q | k | v, each `heads × Dh`), `bias [3C]` that projection's bias, `table [(2w−1)², heads]`
//! the relative position bias table. The official block zero-pads the normalized map to Hp × Wp
//! (multiples of w) before the projection, so a padded token's q, k, v are the bias: the kernel
//! reads the bias there instead of a padded copy. Token (y, x) of the padded map sits, after
//! `roll(−s, −s)`, at (y', x') = ((y − s) mod Hp, (x − s) mod Wp) of the shifted map, whose
//! `w × w` windows attend within themselves:
//! `score(i, j) = scale·q_i·k_j + table[(Δy + w − 1)(2w − 1) + Δx + w − 1, h] + mask(i, j)`,
//! with Δ = i's window coordinate − j's and, when s > 0, mask −100 where i and j lie in
//! different shift regions of the shifted map (rows and columns split at Hp − w and Hp − s). The
//! output `[H·W, C]` is written at each real token's own (unshifted) row; padded queries are
//! cropped away, as the official block crops.

pub(crate) mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
mod cubecl;
pub(crate) mod kernel;
pub mod oracle;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use kernel::WindowAttentionKernel;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;

/// Op name in errors.
pub const OP: &str = "window_attention";

/// The additive score for token pairs in different shift regions (swin_transformer.py:532).
pub const REGION_MASK: f32 = -100.0;

/// One (shifted-)window attention over an `h × w` map, padded to window multiples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowAttentionProblem {
    /// H: map rows.
    pub h: usize,
    /// W: map columns.
    pub w: usize,
    /// Window side (7 in every RLIPv2 Swin).
    pub window: usize,
    /// Cyclic shift s (0, or window / 2 in odd blocks).
    pub shift: usize,
    /// Attention heads.
    pub heads: usize,
    /// Channels per head (32 in every RLIPv2 Swin).
    pub head_dim: usize,
    /// Score scale (`head_dim^−½`).
    pub scale: f32,
}

impl WindowAttentionProblem {
    /// C = heads · Dh.
    pub fn channels(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Tokens per window.
    pub fn window_len(&self) -> usize {
        self.window * self.window
    }

    /// Hp: rows padded to a multiple of the window.
    pub fn hp(&self) -> usize {
        self.h.div_ceil(self.window.max(1)) * self.window
    }

    /// Wp: columns padded to a multiple of the window.
    pub fn wp(&self) -> usize {
        self.w.div_ceil(self.window.max(1)) * self.window
    }

    /// Windows in the padded map.
    pub fn windows(&self) -> usize {
        (self.hp() / self.window.max(1)) * (self.wp() / self.window.max(1))
    }

    /// Rows of the relative position bias table, (2w − 1)².
    pub fn table_rows(&self) -> usize {
        (2 * self.window - 1).pow(2)
    }

    /// Checks every dimension and the element counts of `qkv`, `bias` and `table`.
    pub fn check_lens(&self, qkv: usize, bias: usize, table: usize) -> Result<()> {
        if [self.h, self.w, self.window, self.heads, self.head_dim].contains(&0) {
            return Err(Error::limit(OP, "H, W, window, heads, Dh", format!("all must be ≥ 1: {self:?}")));
        }
        if self.shift >= self.window {
            return Err(Error::limit(OP, "shift", format!("{} must be below the window {}", self.shift, self.window)));
        }
        check_len(OP, "qkv", &[self.h * self.w, 3 * self.channels()], qkv)?;
        check_len(OP, "bias", &[3 * self.channels()], bias)?;
        check_len(OP, "table", &[self.table_rows(), self.heads], table)
    }

    /// The map row (y·W + x) of token `j` of window `win` (windows row-major over the shifted
    /// padded map, tokens row-major in a window), or None where the token is padding.
    pub fn token(&self, win: usize, j: usize) -> Option<usize> {
        let (ys, xs) = self.shifted(win, j);
        let (y, x) = ((ys + self.shift) % self.hp(), (xs + self.shift) % self.wp());
        (y < self.h && x < self.w).then_some(y * self.w + x)
    }

    /// (y', x') of token `j` of window `win` in the shifted padded map.
    fn shifted(&self, win: usize, j: usize) -> (usize, usize) {
        let per_row = self.wp() / self.window;
        ((win / per_row) * self.window + j / self.window, (win % per_row) * self.window + j % self.window)
    }

    /// The shift region of token `j` of window `win` (0..9, row-major; the img_mask ids).
    pub fn region(&self, win: usize, j: usize) -> usize {
        let (ys, xs) = self.shifted(win, j);
        let part = |v: usize, n: usize| {
            if v < n - self.window {
                0
            } else if v < n - self.shift {
                1
            } else {
                2
            }
        };
        part(ys, self.hp()) * 3 + part(xs, self.wp())
    }

    /// The bias table row for query `i` and key `j` of one window (relative_position_index).
    pub fn bias_row(&self, i: usize, j: usize) -> usize {
        let w = self.window;
        let dy = i / w + w - 1 - j / w;
        let dx = i % w + w - 1 - j % w;
        dy * (2 * w - 1) + dx
    }

    /// Whether the GPU kernels (`shaders/window_attention.wgsl`, `kernels/window_attention.rs`)
    /// can run it: a window's keys and values of one head are staged in 16 KB of workgroup
    /// memory, a query's scores and row in registers.
    pub fn gpu_fits(&self, backend: crate::backend::BackendKind) -> Result<()> {
        let n = self.window_len();
        if n > GPU_MAX_WINDOW_LEN || self.head_dim > GPU_MAX_HEAD_DIM || n * self.head_dim > GPU_MAX_STAGED {
            return Err(Error::Unsupported {
                op: OP,
                backend: backend.name().into(),
                reason: format!(
                    "window {} and Dh = {}: this kernel takes windows of at most {GPU_MAX_WINDOW_LEN} tokens, \
                     {GPU_MAX_HEAD_DIM} channels per head and {GPU_MAX_STAGED} staged values",
                    self.window, self.head_dim
                ),
            });
        }
        Ok(())
    }

    /// Multiply-adds ×2 of the scores and of P·V.
    pub fn flops(&self) -> u64 {
        (4 * self.windows() * self.heads * self.window_len() * self.window_len() * self.head_dim) as u64
    }
}

/// Tokens per window the GPU kernels take (window ≤ 8).
pub const GPU_MAX_WINDOW_LEN: usize = 64;
/// Channels per head the GPU kernels take.
pub const GPU_MAX_HEAD_DIM: usize = 64;
/// Keys (and values) × channels of one (window, head) staged in workgroup memory.
pub const GPU_MAX_STAGED: usize = 2048;
