//! Resident ops of the cubecl backend: [`Tensor`]s are handles of this instance's client, each
//! op enqueues its kernels on the calling thread's stream without syncing; only
//! [`CubeclBackend::download_tensor`] waits. Host tensors given to an op are uploaded for that call.

use std::sync::atomic::Ordering;

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{catch, retag, CubeclBackend, MsDeformAttnHandles};
use crate::backend::fusion_plan::{self, WeightOffsets};
use crate::backend::Tensor;
use crate::error::{Error, Result};
use crate::kernels::dense;
use crate::problem::{
    Activation, BertLayerWeights, DType, GatedCrossAttnWeights, GemmProblem, LayerNormProblem, MsDeformAttnProblem,
    SparseFusionProblem,
};

const SF_OP: &str = crate::problem::sparse_fusion::OP;

/// A handle and the f32 elements it holds.
type Buf = (Handle, usize);

pub(super) fn arg<R: Runtime>(b: &Buf) -> ArrayArg<R> {
    // SAFETY: every `Buf` is built with the element count its handle holds.
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

    pub(super) fn bind_tensor(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        if t.as_host().is_none() {
            t.buffer::<Handle>(self.id, self.kind.name(), what)?;
            return Ok(t.clone());
        }
        Ok(Tensor::device(self.id, t.len(), self.resident("bind", what, t)?.0))
    }

    pub(super) fn download_tensor(&self, t: &Tensor) -> Result<Vec<f32>> {
        if let Some(v) = t.as_host() {
            return Ok(v.to_vec());
        }
        if t.is_empty() {
            return Ok(Vec::new());
        }
        let h = t.buffer::<Handle>(self.id, self.kind.name(), "tensor")?.clone();
        self.sync("download")?;
        let kind = self.kind;
        let bytes = catch("read", kind, || self.client.read_one(h))?
            .map_err(|e| Error::Device { backend: kind.name().into(), reason: format!("download: {e:?}") })?;
        let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }

    /// A fresh output handle of `len` elements.
    fn out(&self, op: &'static str, len: usize) -> Result<Buf> {
        Ok((self.f32_out(op, len)?, len))
    }

    fn tensor(&self, b: Buf) -> Tensor {
        Tensor::device(self.id, b.1, b.0)
    }

    /// Enqueues `launch` (one kernel) and counts it.
    fn enqueue(&self, launch: impl FnOnce()) -> Result<()> {
        catch("launch", self.kind, launch)?;
        self.count_launch();
        Ok(())
    }

    /// Enqueues a copy of `n` elements from `src[from..]` to `dst[to..]`.
    fn copy(&self, src: &Buf, from: usize, dst: &Buf, to: usize, n: usize) -> Result<()> {
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

    pub(super) fn gemm_tensor(
        &self,
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

    pub(super) fn add_tensor(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.elementwise("add", a, b, false, Activation::None)
    }

    pub(super) fn mul_tensor(&self, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        self.elementwise("mul", a, b, true, act)
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

    pub(super) fn attention_tensor(
        &self,
        p: &crate::problem::AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::attention::OP;
        if p.k_len > super::ATTENTION_MAX_KEYS || p.head_dim > super::ATTENTION_MAX_HEAD_DIM {
            return Err(Error::Unsupported {
                op: OP,
                backend: self.kind.name().into(),
                reason: format!(
                    "Lk = {} and Dh = {}: this kernel stages at most {} keys and {} channels per head",
                    p.k_len,
                    p.head_dim,
                    super::ATTENTION_MAX_KEYS,
                    super::ATTENTION_MAX_HEAD_DIM
                ),
            });
        }
        let (qb, kb, vb) = (self.resident(OP, "q", q)?, self.resident(OP, "k", k)?, self.resident(OP, "v", v)?);
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
                arg(&qb),
                arg(&y),
                p.batch as u32,
                p.heads as u32,
                p.q_len as u32,
                p.k_len as u32,
                p.head_dim as u32,
                p.scale,
                false,
            )
        })?;
        Ok(self.tensor(y))
    }

    pub(super) fn layer_norm_tensor(
        &self,
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

    pub(super) fn ms_deform_attn_tensor(
        &self,
        pr: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        use crate::problem::ms_deform_attn::OP;
        let y = self.out(OP, pr.output_len())?;
        let h = MsDeformAttnHandles {
            value: self.resident(OP, "value", value)?.0,
            sampling: self.resident(OP, "sampling_offsets", offsets)?.0,
            attention: self.resident(OP, "attention_logits", logits)?.0,
            reference: Some(self.resident(OP, "reference", reference)?.0),
            output: y.0.clone(),
        };
        super::launch_ms_deform_attn(&self.client, pr, DType::F32, &h)?;
        self.count_launch();
        Ok(self.tensor(y))
    }

    pub(super) fn slice_tensor(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let src = self.resident("slice", "tensor", t)?;
        let y = self.out("slice", len)?;
        self.copy(&src, start, &y, 0, len)?;
        Ok(self.tensor(y))
    }

    pub(super) fn write_tensor(&self, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let (d, s) = (self.resident("write", "dst", dst)?, self.resident("write", "src", src)?);
        self.copy(&s, 0, &d, at, s.1.min(src.len()))
    }

    pub(super) fn bind_round_weights(
        &self,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Tensor> {
        let (host, offsets) = fusion_plan::sparse_fusion_weights(p, fw, bw);
        let weights =
            (self.upload("round weights", bytemuck::cast_slice(&host)).map_err(|e| retag(e, SF_OP))?, host.len());
        Ok(Tensor::device(self.id, host.len(), BoundRound { weights, offsets, arena: Default::default() }))
    }

    /// One round on device tensors, as the wgpu backend's: rows, positions and language copied
    /// into the arena after the bound weights, the 8 launches, the fused rows copied back over
    /// `memory`'s last level and the language output into a new tensor; no sync.
    pub(super) fn sparse_fusion_tensor(
        &self,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        bound: Option<&Tensor>,
    ) -> Result<Tensor> {
        let bound = bound.ok_or_else(|| Error::Device {
            backend: self.kind.name().into(),
            reason: "sparse_fusion: the round's weights are not bound".into(),
        })?;
        let br = bound.buffer::<BoundRound>(self.id, self.kind.name(), "round weights")?;
        let r = fusion_plan::sparse_fusion_layout(self.kind.name(), p, &br.offsets)?;
        let bytes = r.arena_bytes();
        let max = self.client.properties().memory.max_page_size;
        if bytes > max {
            return Err(Error::Unsupported { op: SF_OP, backend: self.kind.name().into(), reason: format!("the round's arena (inputs, weights and intermediates) needs {bytes} bytes, but the device allocates at most {max} bytes per buffer") });
        }
        let mem = self.resident(SF_OP, "memory", memory)?;
        let (posb, langb) = (self.resident(SF_OP, "pos", pos)?, self.resident(SF_OP, "lang", lang)?);
        let len = (bytes / 4) as usize;
        let mut cached = br.arena.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.as_ref().is_none_or(|a| a.1 != len);
        if fresh {
            *cached = Some((self.client.empty(bytes as usize), len));
        }
        let arena = cached.clone().expect("set above");
        drop(cached);
        if fresh {
            self.copy(&br.weights, 0, &arena, 0, br.weights.1)?;
        }
        let f = &p.fusion;
        let rows = f.nv * f.v_dim;
        for b in 0..f.batch {
            let at = p.level(b).start;
            self.copy(&mem, at, &arena, r.v_in as usize + b * rows, rows)?;
            self.copy(&posb, at, &arena, r.pos_in as usize + b * rows, rows)?;
        }
        self.copy(&langb, 0, &arena, r.l_in as usize, langb.1.min(lang.len()))?;
        for (kernel, params, cubes) in self.round_params(&r)? {
            self.launch_round_kernel(kernel, &arena, &params, cubes)?;
        }
        for b in 0..f.batch {
            self.copy(&arena, r.v_out.0 as usize + b * rows, &mem, p.level(b).start, rows)?;
        }
        let out = self.out(SF_OP, r.l_out.1)?;
        self.copy(&arena, r.l_out.0 as usize, &out, 0, r.l_out.1)?;
        Ok(self.tensor(out))
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

/// A round's weights on the device (the arena's head, uploaded once) and the last arena built
/// on them, reused while the token counts stay the same.
struct BoundRound {
    weights: Buf,
    offsets: WeightOffsets,
    arena: std::sync::Mutex<Option<Buf>>,
}
