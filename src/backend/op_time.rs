//! Time per op kind, summed over the calls since [`enable`], for `detect --profile`'s per-stage
//! op table. Meaningful on host backends, whose ops compute when called; a GPU backend's call
//! only queues work, so the profile leaves the table out there. The sums are process-wide:
//! detections running concurrently in one process would share them (the CLI runs one at a time).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use web_time::Instant;

/// The op kinds the table splits a stage into; what none of them covers is the stage's rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `conv2d` (the backbone's convolutions).
    Conv2d,
    /// `gemm` (the linear layers).
    Gemm,
    /// `ms_deform_attn`.
    MsDeformAttn,
    /// `sparse_fusion` (the ALIF rounds with their text layers).
    Fusion,
    /// `attention` and `window_attention`.
    Attention,
}

impl OpKind {
    /// Every kind, in the table's column order.
    pub const ALL: [OpKind; 5] =
        [OpKind::Conv2d, OpKind::Gemm, OpKind::MsDeformAttn, OpKind::Fusion, OpKind::Attention];
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Conv2d => "conv2d",
            OpKind::Gemm => "gemm",
            OpKind::MsDeformAttn => "ms_deform_attn",
            OpKind::Fusion => "fusion",
            OpKind::Attention => "attention",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Starts (or stops) summing op times, process-wide.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Seconds summed per kind so far, in [`OpKind::ALL`] order.
pub fn snapshot() -> [f64; 5] {
    std::array::from_fn(|i| NANOS[i].load(Ordering::Relaxed) as f64 * 1e-9)
}

/// Runs `f`, adding its wall time to `kind` when enabled.
#[inline]
pub(crate) fn timed<T>(kind: OpKind, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    NANOS[kind as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}
