//! Resident ops of the cubecl backend: [`Tensor`]s are handles of this instance's client, each
//! op enqueues its kernels on the calling thread's stream without syncing; only
//! `download` waits. Host tensors given to an op are uploaded for that call.

use std::sync::atomic::Ordering;

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{catch, retag, CubeclBackend};
use crate::backend::{Checked, DenseOps, Tensor};
use crate::error::Result;
use crate::kernels::dense;
use crate::problem::{Activation, AttentionProblem, GemmProblem, LayerNormProblem, SoftmaxProblem};

/// A device array: a handle and the elements it holds (f32, or the storage dtype of an MSDA
/// value). The only way this backend hands a handle to a kernel is [`arg`].
pub(super) type Buf = (Handle, usize);

/// The kernel argument of `b`.
pub(super) fn arg<R: Runtime>(b: &Buf) -> ArrayArg<R> {
    // SAFETY: the one place a raw handle becomes a kernel array. Every `Buf` is made with the
    // element count its handle holds (`upload`, `f32_out` and the arena planner allocate exactly
    // that many, at least one), so the array's length never exceeds the allocation.
    unsafe { ArrayArg::from_raw_parts(b.0.clone(), b.1.max(1)) }
}

impl<R: Runtime> CubeclBackend<R> {
    /// The handle of `t`: this instance's own, or `t`'s host values uploaded now.
    pub(super) fn resident(&self, op: &'static str, what: &str, t: &Tensor) -> Result<Buf> {
        match t.as_host() {
            Some(v) => {
                let v: &[f32] = if v.is_empty() { &[0.0] } else { v };
                Ok((self.upload(what, bytemuck::cast_slice(v)).map_err(|e| retag(e, op))?, v.len()))
            }
            None => Ok((t.buffer::<Handle>(self.id, self.kind.name(), what)?.clone(), t.len())),
        }
    }

    /// A fresh output handle of `len` elements.
    pub(super) fn out(&self, op: &'static str, len: usize) -> Result<Buf> {
        Ok((self.f32_out(op, len)?, len))
    }

    pub(super) fn tensor(&self, b: Buf) -> Tensor {
        Tensor::device(self.id, b.1, b.0)
    }

    /// Enqueues `launch` (one kernel) and counts it.
    fn enqueue(&self, launch: impl FnOnce()) -> Result<()> {
        catch("launch", self.kind, launch)?;
        self.count_launch();
        Ok(())
    }

    /// Enqueues a copy of `n` elements from `src[from..]` to `dst[to..]`.
    pub(super) fn copy(&self, src: &Buf, from: usize, dst: &Buf, to: usize, n: usize) -> Result<()> {
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

    /// `a + b`, or `act(a · b)` when `mul` (one kernel, `dense::add`).
    fn elementwise(&self, op: &'static str, a: &Tensor, b: &Tensor, mul: bool, act: Activation) -> Result<Tensor> {
        let (a, b) = (self.resident(op, "a", a)?, self.resident(op, "b", b)?);
        let y = self.out(op, a.1)?;
        let cubes = self.row_cubes(a.1.div_ceil(256));
        // SAFETY: equal lengths checked by `add_t` / `mul_t`; the kernel stops at n.
        self.enqueue(|| unsafe {
            dense::add::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&a),
                arg(&b),
                arg(&y),
                a.1 as u32,
                mul,
                act.code(),
            )
        })?;
        Ok(self.tensor(y))
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

impl<R: Runtime> DenseOps for CubeclBackend<R> {
    fn gemm_t(
        &self,
        _: Checked,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::gemm::OP;
        let (x, w) = (self.resident(OP, "x", x)?, self.resident(OP, "weight", weight)?);
        let b = match bias {
            Some(b) => self.resident(OP, "bias", b)?,
            None => x.clone(),
        };
        let r = match residual {
            Some(r) => self.resident(OP, "residual", r)?,
            None => x.clone(),
        };
        let y = self.out(OP, p.m * p.n)?;
        // SAFETY: lengths checked by `gemm_t`.
        self.enqueue(|| unsafe {
            super::launch_gemm(
                &self.client,
                p,
                arg(&x),
                arg(&w),
                arg(&b),
                arg(&r),
                arg(&y),
                bias.is_some(),
                residual.is_some(),
            )
        })?;
        Ok(self.tensor(y))
    }
    fn add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.elementwise("add", a, b, false, Activation::None)
    }
    fn mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        self.elementwise("mul", a, b, true, act)
    }
    fn layer_norm_t(
        &self,
        _: Checked,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::layer_norm::OP;
        let (x, g, b) =
            (self.resident(OP, "x", x)?, self.resident(OP, "gamma", gamma)?, self.resident(OP, "beta", beta)?);
        let y = self.out(OP, x.1)?;
        let cubes = self.row_cubes(p.rows);
        // SAFETY: lengths checked by `layer_norm_t`; one cube per row, extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::layer_norm::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&x),
                arg(&g),
                arg(&b),
                arg(&y),
                p.rows as u32,
                p.width as u32,
                p.eps,
            )
        })?;
        Ok(self.tensor(y))
    }
    fn softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        const OP: &str = crate::problem::softmax::OP;
        let x = self.resident(OP, "x", x)?;
        let y = self.out(OP, x.1)?;
        let cubes = self.row_cubes(p.rows);
        // SAFETY: lengths checked by `softmax_t`; one cube per row, extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::softmax::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&x),
                arg(&y),
                p.rows as u32,
                p.width as u32,
            )
        })?;
        Ok(self.tensor(y))
    }
    fn attention_t(
        &self,
        _: Checked,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::attention::OP;
        p.gpu_fits(self.kind)?;
        let (qb, kb, vb) = (self.resident(OP, "q", q)?, self.resident(OP, "k", k)?, self.resident(OP, "v", v)?);
        let mb = match mask {
            Some(m) => self.resident(OP, "mask", m)?,
            None => qb.clone(),
        };
        let y = self.out(OP, qb.1)?;
        let cubes = self.row_cubes(p.batch * p.heads * p.q_len);
        // SAFETY: lengths checked by `attention_t`; one cube per (b, h, query row), extra cubes terminate.
        self.enqueue(|| unsafe {
            dense::attention::launch_unchecked::<R>(
                &self.client,
                cubes,
                CubeDim::new_1d(256),
                arg(&qb),
                arg(&kb),
                arg(&vb),
                arg(&mb),
                arg(&y),
                p.batch as u32,
                p.heads as u32,
                p.q_len as u32,
                p.k_len as u32,
                p.head_dim as u32,
                p.scale,
                mask.is_some(),
            )
        })?;
        Ok(self.tensor(y))
    }
}
