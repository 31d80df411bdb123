//! How the cubecl backend's ops launch on resident tensors: [`Tensor`]s are handles of this
//! instance's client; each op (its launch in `ops/<op>/cubecl.rs`) enqueues its kernels on the
//! calling thread's stream without syncing; only `download` waits. Host tensors given to an op
//! are uploaded for that call.

use std::sync::atomic::Ordering;

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{catch, retag, CubeclBackend};
use crate::backend::Tensor;
use crate::error::Result;
use crate::kernels::dense;

/// A device array: a handle and the elements it holds (f32, or the storage dtype of an MSDA
/// value). The only way this backend hands a handle to a kernel is [`arg`].
pub(crate) type Buf = (Handle, usize);

/// The kernel argument of `b`.
pub(crate) fn arg<R: Runtime>(b: &Buf) -> ArrayArg<R> {
    // SAFETY: the one place a raw handle becomes a kernel array. Every `Buf` is made with the
    // element count its handle holds (`upload`, `f32_out` and the arena planner allocate exactly
    // that many, at least one), so the array's length never exceeds the allocation.
    unsafe { ArrayArg::from_raw_parts(b.0.clone(), b.1.max(1)) }
}

impl<R: Runtime> CubeclBackend<R> {
    /// The handle of `t`: this instance's own, or `t`'s host values uploaded now.
    pub(crate) fn resident(&self, op: &'static str, what: &str, t: &Tensor) -> Result<Buf> {
        match t.as_host() {
            Some(v) => {
                let v: &[f32] = if v.is_empty() { &[0.0] } else { v };
                Ok((self.upload(what, bytemuck::cast_slice(v)).map_err(|e| retag(e, op))?, v.len()))
            }
            None => Ok((t.buffer::<Handle>(self.id, self.kind.name(), what)?.clone(), t.len())),
        }
    }

    /// A fresh output handle of `len` elements.
    pub(crate) fn out(&self, op: &'static str, len: usize) -> Result<Buf> {
        Ok((self.f32_out(op, len)?, len))
    }

    pub(crate) fn tensor(&self, b: Buf) -> Tensor {
        Tensor::device(self.id, b.1, b.0)
    }

    /// Enqueues `launch` (one kernel) and counts it.
    pub(crate) fn enqueue(&self, launch: impl FnOnce()) -> Result<()> {
        catch("launch", self.kind, launch)?;
        self.count_launch();
        Ok(())
    }

    /// Enqueues a copy of `n` elements from `src[from..]` to `dst[to..]`.
    pub(crate) fn copy(&self, src: &Buf, from: usize, dst: &Buf, to: usize, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let cubes = self.row_cubes(n.div_ceil(256));
        // SAFETY: callers keep from + n ≤ src.1 and to + n ≤ dst.1; the kernel stops at n.
        self.enqueue(|| unsafe {
            dense::copy::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(src),
                arg(dst),
                from as u32,
                to as u32,
                n as u32,
            )
        })
    }

    pub(crate) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}
