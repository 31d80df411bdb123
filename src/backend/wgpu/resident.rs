//! How the wgpu backend's ops launch on resident tensors: [`Tensor`]s are device buffers of this
//! instance; each op (its launch in `ops/<op>/wgpu.rs`) records its dispatch after the work
//! already recorded (submitted in batches, never waited for); only `download` waits. Host
//! tensors given to an op are uploaded for that call.

use std::sync::atomic::Ordering;

use super::pool::PooledBuffer;
use super::WgpuBackend;
use crate::backend::Tensor;
use crate::error::{Error, Result};

/// One entry point of a module: `op` names the op in errors, `key` caches its pipeline
/// ("file.entry").
#[derive(Clone, Copy)]
pub(crate) struct Entry<'m> {
    pub op: &'static str,
    pub module: &'m wgpu::ShaderModule,
    pub key: &'static str,
    pub name: &'static str,
}

/// Usage of every tensor buffer: bound to kernels, copied in and out.
pub(crate) const TENSOR_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl WgpuBackend {
    /// The device buffer of `t`: this instance's own, or `t`'s host values uploaded now.
    pub(crate) fn resident(&self, op: &'static str, what: &str, t: &Tensor) -> Result<wgpu::Buffer> {
        match t.as_host() {
            Some(v) => {
                self.buffer(op, what, bytemuck::cast_slice(if v.is_empty() { &[0f32] } else { v }), TENSOR_USAGE)
            }
            None => Ok(self.tensor_buffer(t, what)?.clone()),
        }
    }

    /// The device buffer of this instance's tensor `t`.
    pub(crate) fn tensor_buffer<'t>(&self, t: &'t Tensor, what: &str) -> Result<&'t wgpu::Buffer> {
        Ok(&t.buffer::<PooledBuffer>(self.id, crate::backend::BackendKind::Wgpu.name(), what)?.buf)
    }

    /// A device tensor of `len` elements for `op`'s output (its values undefined until written):
    /// an idle buffer of that size from the pool, or a new one.
    pub(crate) fn output(&self, op: &'static str, len: usize) -> Result<(wgpu::Buffer, Tensor)> {
        let bytes = (len.max(1) * 4) as u64;
        let buf = match self.pool.take(bytes) {
            Some(buf) => buf,
            None => self.empty(op, "output", bytes, TENSOR_USAGE)?,
        };
        Ok((buf.clone(), Tensor::device(self.id, len, PooledBuffer::new(buf, Some(&self.pool)))))
    }

    /// Records one dispatch of `pipeline` after the work already recorded (no wait).
    pub(crate) fn submit(
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

    /// Records one dispatch of `e` writing `out`: `params` as its uniform at binding 0, `inputs` at
    /// bindings 1.. (`None`: an unused binding's placeholder), `out` at binding 5; no wait.
    pub(crate) fn run_entry(
        &self,
        e: Entry,
        params: &[u8],
        inputs: &[(&str, Option<&Tensor>)],
        out: &wgpu::Buffer,
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Unsupported {
                op: e.op,
                backend: crate::backend::BackendKind::Wgpu.name().into(),
                reason: format!("{groups:?} workgroups exceed the adapter's {max} per dimension"),
            });
        }
        let mut bufs = Vec::with_capacity(inputs.len());
        for (what, t) in inputs {
            bufs.push(match t {
                Some(t) => self.resident(e.op, what, t)?,
                None => self.placeholder.clone(),
            });
        }
        let (pipeline, bind) =
            self.bind_module(e.module, e.key, e.name, params, &bufs.iter().collect::<Vec<_>>(), out)?;
        self.submit(e.name, &pipeline, &bind, groups)
    }

    /// [`Self::run_entry`] into a fresh output of `out_len` elements, on a 2-D grid.
    pub(crate) fn run_new(
        &self,
        e: Entry,
        params: &[u8],
        inputs: &[(&str, Option<&Tensor>)],
        out_len: usize,
        groups: (u32, u32),
    ) -> Result<Tensor> {
        let (out, tensor) = self.output(e.op, out_len)?;
        self.run_entry(e, params, inputs, &out, (groups.0, groups.1, 1))?;
        Ok(tensor)
    }

    /// Records a copy of `len` elements after the work already recorded (no wait).
    pub(crate) fn copy(
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

    pub(crate) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }
}
