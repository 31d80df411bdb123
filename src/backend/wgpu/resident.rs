//! Resident ops of the wgpu backend: [`Tensor`]s are device buffers of this instance, each op
//! records its dispatch after the work already recorded (submitted in batches, never waited
//! for); only [`WgpuBackend::download_tensor`] waits. Host tensors given to an op are uploaded for that call.

use std::sync::atomic::Ordering;

use super::pool::PooledBuffer;
use super::{DenseDims, MsDeformAttnBuffers, WgpuBackend};
use crate::backend::Tensor;
use crate::error::{Error, Result};
use crate::problem::{Activation, DType, GemmProblem, LayerNormProblem, MsDeformAttnProblem};

/// Usage of every tensor buffer: bound to kernels, copied in and out.
pub(super) const TENSOR_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl WgpuBackend {
    /// The device buffer of `t`: this instance's own, or `t`'s host values uploaded now.
    pub(super) fn resident(&self, op: &'static str, what: &str, t: &Tensor) -> Result<wgpu::Buffer> {
        match t.as_host() {
            Some(v) => {
                self.buffer(op, what, bytemuck::cast_slice(if v.is_empty() { &[0f32] } else { v }), TENSOR_USAGE)
            }
            None => Ok(self.tensor_buffer(t, what)?.clone()),
        }
    }

    /// The device buffer of this instance's tensor `t`.
    fn tensor_buffer<'t>(&self, t: &'t Tensor, what: &str) -> Result<&'t wgpu::Buffer> {
        Ok(&t.buffer::<PooledBuffer>(self.id, "wgpu", what)?.buf)
    }

    /// `t` as a device tensor of this instance (uploaded if it is a host tensor).
    pub(super) fn bind_tensor(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        if t.as_host().is_none() {
            self.tensor_buffer(t, what)?;
            return Ok(t.clone());
        }
        // bound tensors (weights) are freed with their last handle, not pooled
        Ok(Tensor::device(self.id, t.len(), PooledBuffer::new(self.resident("bind", what, t)?, None)))
    }

    /// The values of `t`, after the work that writes it has finished.
    pub(super) fn download_tensor(&self, t: &Tensor) -> Result<Vec<f32>> {
        if let Some(v) = t.as_host() {
            return Ok(v.to_vec());
        }
        if t.is_empty() {
            return Ok(Vec::new());
        }
        self.read_f32(self.tensor_buffer(t, "tensor")?, 0, (t.len() * 4) as u64)
    }

    /// A device tensor of `len` elements for `op`'s output (its values undefined until written):
    /// an idle buffer of that size from the pool, or a new one.
    pub(super) fn output(&self, op: &'static str, len: usize) -> Result<(wgpu::Buffer, Tensor)> {
        let bytes = (len.max(1) * 4) as u64;
        let buf = match self.pool.take(bytes) {
            Some(buf) => buf,
            None => self.empty(op, "output", bytes, TENSOR_USAGE)?,
        };
        Ok((buf.clone(), Tensor::device(self.id, len, PooledBuffer::new(buf, Some(&self.pool)))))
    }

    /// Records one dispatch of `pipeline` after the work already recorded (no wait).
    fn submit(
        &self,
        label: &'static str,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: (u32, u32, u32),
    ) -> Result<()> {
        self.record(label, |enc| {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
            self.dispatch3(&mut pass, pipeline, bind, groups);
        })
    }

    /// One entry point of `dense.wgsl` or `image.wgsl` (`module`, pipeline key `key`) on tensors,
    /// writing `out`: `inputs` at bindings 1.. (`None`: an unused binding's placeholder), submitted
    /// without waiting.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_entry(
        &self,
        op: &'static str,
        module: &wgpu::ShaderModule,
        key: &'static str,
        entry: &'static str,
        params: &[u8],
        inputs: &[(&str, Option<&Tensor>)],
        out: &wgpu::Buffer,
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Unsupported {
                op,
                backend: "wgpu".into(),
                reason: format!("{groups:?} workgroups exceed the adapter's {max} per dimension"),
            });
        }
        let mut bufs = Vec::with_capacity(inputs.len());
        for (what, t) in inputs {
            bufs.push(match t {
                Some(t) => self.resident(op, what, t)?,
                None => self.placeholder.clone(),
            });
        }
        let (pipeline, bind) = self.bind_module(module, key, entry, params, &bufs.iter().collect::<Vec<_>>(), out)?;
        self.submit(entry, &pipeline, &bind, groups)
    }

    /// One `dense.wgsl` entry point on tensors into a fresh `out_len` output.
    fn dense_t(
        &self,
        op: &'static str,
        entry: &'static str,
        dims: DenseDims,
        inputs: &[(&str, Option<&Tensor>)],
        out_len: usize,
        groups: (u32, u32),
    ) -> Result<Tensor> {
        let (out, tensor) = self.output(op, out_len)?;
        self.run_entry(
            op,
            &self.dense,
            super::dense_key(entry),
            entry,
            bytemuck::bytes_of(&dims),
            inputs,
            &out,
            (groups.0, groups.1, 1),
        )?;
        Ok(tensor)
    }

    pub(super) fn gemm_tensor(
        &self,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let act = p.act.code();
        let flags = bias.is_some() as u32 | (act << 1) | ((residual.is_some() as u32) << 3);
        let dims = DenseDims { m: p.m as u32, k: p.k as u32, n: p.n as u32, flags, ..Default::default() };
        let (entry, groups) = super::gemm_entry(p);
        self.dense_t(
            crate::problem::gemm::OP,
            entry,
            dims,
            &[("x", Some(x)), ("weight", Some(weight)), ("bias", bias), ("residual", residual)],
            p.m * p.n,
            groups,
        )
    }

    pub(super) fn add_tensor(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.elementwise("add", 0, a, b)
    }

    pub(super) fn mul_tensor(&self, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        self.elementwise("mul", 1 | (act.code() << 1), a, b)
    }

    /// `dense.wgsl`'s `add` entry: flags bit 0 multiplies instead of adding, bits 1-2 the activation.
    fn elementwise(&self, op: &'static str, flags: u32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(a.len().div_ceil(256));
        let dims = DenseDims { m: a.len() as u32, flags, grid_x, ..Default::default() };
        self.dense_t(op, "add", dims, &[("a", Some(a)), ("b", Some(b))], a.len(), (gx, gy))
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
                backend: "wgpu".into(),
                reason: format!(
                    "Lk = {} and Dh = {}: this kernel stages at most {} keys and {} channels per head",
                    p.k_len,
                    p.head_dim,
                    super::ATTENTION_MAX_KEYS,
                    super::ATTENTION_MAX_HEAD_DIM
                ),
            });
        }
        let (gx, gy, grid_x) = self.row_grid(p.batch * p.heads * p.q_len);
        let dims = DenseDims {
            scale: p.scale,
            batch: p.batch as u32,
            heads: p.heads as u32,
            q_len: p.q_len as u32,
            k_len: p.k_len as u32,
            head_dim: p.head_dim as u32,
            has_mask: 0,
            grid_x,
            ..Default::default()
        };
        self.dense_t(
            OP,
            "attention",
            dims,
            &[("q", Some(q)), ("k", Some(k)), ("v", Some(v)), ("mask", None)],
            q.len(),
            (gx, gy),
        )
    }

    pub(super) fn layer_norm_tensor(
        &self,
        p: &LayerNormProblem,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(p.rows);
        let dims = DenseDims { rows: p.rows as u32, width: p.width as u32, eps: p.eps, grid_x, ..Default::default() };
        self.dense_t(
            crate::problem::layer_norm::OP,
            "layer_norm",
            dims,
            &[("x", Some(x)), ("gamma", Some(gamma)), ("beta", Some(beta))],
            x.len(),
            (gx, gy),
        )
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
        let value = self.resident(OP, "value", value)?;
        let reference = self.resident(OP, "reference", reference)?;
        let sampling = self.resident(OP, "sampling_offsets", offsets)?;
        let attention = self.resident(OP, "attention_logits", logits)?;
        let (output, tensor) = self.output(OP, pr.output_len())?;
        let bufs = MsDeformAttnBuffers {
            value: &value,
            sampling: &sampling,
            attention: &attention,
            reference: Some(&reference),
            output: &output,
        };
        let (pipeline, bind, groups) = self.msda_bind(pr, DType::F32, &bufs)?;
        self.submit("ms_deform_attn", &pipeline, &bind, (groups.0, groups.1, 1))?;
        Ok(tensor)
    }

    pub(super) fn slice_tensor(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let src = self.resident("slice", "tensor", t)?;
        let (dst, tensor) = self.output("slice", len)?;
        self.copy(&src, start, &dst, 0, len)?;
        Ok(tensor)
    }

    pub(super) fn write_tensor(&self, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let d = self.resident("write", "dst", dst)?;
        let s = self.resident("write", "src", src)?;
        self.copy(&s, 0, &d, at, src.len())
    }

    /// Records a copy of `len` elements after the work already recorded (no wait).
    fn copy(&self, src: &wgpu::Buffer, from: usize, dst: &wgpu::Buffer, to: usize, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.record("copy", |enc| enc.copy_buffer_to_buffer(src, from as u64 * 4, dst, to as u64 * 4, len as u64 * 4))
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}
