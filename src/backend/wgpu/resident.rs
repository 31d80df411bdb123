//! Resident ops of the wgpu backend: [`Tensor`]s are device buffers of this instance, each op
//! records its dispatch after the work already recorded (submitted in batches, never waited
//! for); only `download` waits. Host tensors given to an op are uploaded for that call.

use std::sync::atomic::Ordering;

use super::pool::PooledBuffer;
use super::{DenseDims, WgpuBackend};
use crate::backend::{BackendKind, Checked, DenseOps, Tensor};
use crate::error::{Error, Result};
use crate::problem::{Activation, AttentionProblem, GemmProblem, LayerNormProblem, SoftmaxProblem};

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
    pub(super) fn tensor_buffer<'t>(&self, t: &'t Tensor, what: &str) -> Result<&'t wgpu::Buffer> {
        Ok(&t.buffer::<PooledBuffer>(self.id, crate::backend::BackendKind::Wgpu.name(), what)?.buf)
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
    pub(super) fn submit(
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
                backend: crate::backend::BackendKind::Wgpu.name().into(),
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

    /// `dense.wgsl`'s `add` entry: flags bit 0 multiplies instead of adding, bits 1-2 the activation.
    fn elementwise(&self, op: &'static str, flags: u32, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(a.len().div_ceil(256));
        let dims = DenseDims { m: a.len() as u32, flags, grid_x, ..Default::default() };
        self.dense_t(op, "add", dims, &[("a", Some(a)), ("b", Some(b))], a.len(), (gx, gy))
    }

    /// Records a copy of `len` elements after the work already recorded (no wait).
    pub(super) fn copy(
        &self,
        src: &wgpu::Buffer,
        from: usize,
        dst: &wgpu::Buffer,
        to: usize,
        len: usize,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.record("copy", |enc| enc.copy_buffer_to_buffer(src, from as u64 * 4, dst, to as u64 * 4, len as u64 * 4))
    }

    pub(super) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}

impl DenseOps for WgpuBackend {
    fn gemm_t(
        &self,
        _: Checked,
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
    fn add_t(&self, _: Checked, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.elementwise("add", 0, a, b)
    }
    fn mul_t(&self, _: Checked, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        self.elementwise("mul", 1 | (act.code() << 1), a, b)
    }
    fn layer_norm_t(
        &self,
        _: Checked,
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
    fn softmax_t(&self, _: Checked, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        let (gx, gy, grid_x) = self.row_grid(p.rows);
        let dims = DenseDims { rows: p.rows as u32, width: p.width as u32, grid_x, ..Default::default() };
        self.dense_t(crate::problem::softmax::OP, "softmax", dims, &[("x", Some(x))], x.len(), (gx, gy))
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
        p.gpu_fits(BackendKind::Wgpu)?;
        let (gx, gy, grid_x) = self.row_grid(p.batch * p.heads * p.q_len);
        let dims = DenseDims {
            scale: p.scale,
            batch: p.batch as u32,
            heads: p.heads as u32,
            q_len: p.q_len as u32,
            k_len: p.k_len as u32,
            head_dim: p.head_dim as u32,
            has_mask: mask.is_some() as u32,
            grid_x,
            ..Default::default()
        };
        self.dense_t(
            OP,
            "attention",
            dims,
            &[("q", Some(q)), ("k", Some(k)), ("v", Some(v)), ("mask", mask)],
            q.len(),
            (gx, gy),
        )
    }
}
