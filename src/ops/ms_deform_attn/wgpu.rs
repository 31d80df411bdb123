//! `ms_deform_attn` on the wgpu backend (`shaders/ms_deform_attn.wgsl`, official and fused forms,
//! f32 or f16 storage): the pipeline and bind group of one problem, the public encoder for callers
//! that own their device and buffers, the prepared run and the op on tensors.

use wgpu::util::DeviceExt;

use super::MsdaKernel;
use crate::backend::wgpu::WgpuBackend;
use crate::backend::{Checked, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::ms_deform_attn::{MAX_LEVELS, OP};
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem};

/// Mirrors `Params` in `shaders/msda.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MsdaParams {
    batch: u32,
    queries: u32,
    heads: u32,
    groups: u32,
    tokens: u32,
    total: u32,
    grid_x: u32,
    _pad: [u32; 5],
    shapes: [[u32; 4]; MAX_LEVELS],
}

impl MsdaParams {
    /// The uniform of one dispatch of `pr`: `total` invocations do work, `grid_x` per grid row.
    pub(crate) fn new(pr: &MsDeformAttnProblem, total: u32, grid_x: u32) -> Self {
        let mut shapes = [[0u32; 4]; MAX_LEVELS];
        for (s, lv) in shapes.iter_mut().zip(&pr.levels) {
            *s = [lv.h as u32, lv.w as u32, lv.start as u32, 0];
        }
        MsdaParams {
            batch: pr.batch as u32,
            queries: pr.queries as u32,
            heads: pr.heads as u32,
            groups: (pr.channels / 8) as u32,
            tokens: pr.tokens as u32,
            total,
            grid_x,
            _pad: [0; 5],
            shapes,
        }
    }
}

/// The values of `msda.wgsl`'s overrides for `pr`: workgroup size, f16 storage, reference width
/// (0 = the official form), L and P.
pub(crate) fn msda_constants(
    wg: u32,
    dtype: DType,
    ref_dim: u32,
    pr: &MsDeformAttnProblem,
) -> [(&'static str, u32); 5] {
    [
        ("WG", wg),
        ("HALF", (dtype == DType::F16) as u32),
        ("REF_DIM", ref_dim),
        ("LEVELS", pr.num_levels() as u32),
        ("POINTS", pr.points as u32),
    ]
}

/// Invocations per workgroup (the shader's `WG` override).
const WORKGROUP: u32 = 128;

/// One prepared `ms_deform_attn` dispatch on resident buffers.
struct WgpuRun<'a> {
    be: &'a WgpuBackend,
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    out: wgpu::Buffer,
    out_bytes: u64,
    groups: (u32, u32),
    dtype: DType,
}

/// Buffers of one `ms_deform_attn` call on the caller's device, in the layouts of
/// [`MsDeformAttnProblem`] (`STORAGE` usage; `value` and `output` in the storage dtype, f16 as
/// packed pairs; the rest f32).
pub struct MsDeformAttnBuffers<'a> {
    /// `value [B,S,M,D]` in the storage dtype.
    pub value: &'a wgpu::Buffer,
    /// official form: `sampling_locations [B,Q,M,L,P,2]`; fused: `sampling_offsets`, same shape
    pub sampling: &'a wgpu::Buffer,
    /// official form: `attention_weights [B,Q,M,L,P]`; fused: `attention_logits [B,Q,M,L·P]`
    pub attention: &'a wgpu::Buffer,
    /// fused form only: `reference [B,Q,L,2]` points or `[B,Q,L,4]` boxes
    pub reference: Option<&'a wgpu::Buffer>,
    /// `output [B,Q,M·D]` in the storage dtype, written by the kernel.
    pub output: &'a wgpu::Buffer,
}

impl WgpuBackend {
    /// Records `ms_deform_attn` for `pr` into the caller's `encoder`, reading and writing the
    /// caller's buffers (nothing is copied or submitted). Checks the problem, the dtype and every
    /// buffer's size first; a mismatch is an error naming the tensor.
    pub fn encode_ms_deform_attn(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pr: &MsDeformAttnProblem,
        dtype: DType,
        bufs: &MsDeformAttnBuffers,
    ) -> Result<()> {
        pr.validate()?;
        self.msda_supports(dtype)?;
        let (pipeline, bind, groups) = self.msda_bind(pr, dtype, bufs)?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ms_deform_attn"), timestamp_writes: None });
        self.dispatch(&mut pass, &pipeline, &bind, groups);
        Ok(())
    }

    /// Pipeline, bind group and grid of one problem on `bufs` (sizes checked here).
    fn msda_bind(
        &self,
        pr: &MsDeformAttnProblem,
        dtype: DType,
        bufs: &MsDeformAttnBuffers,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroup, (u32, u32))> {
        let groups = (pr.channels / 8) as u32;
        let total = (pr.batch * pr.queries * pr.heads) as u64 * groups as u64;
        let (gx, gy) = self.invocation_grid(OP, total, WORKGROUP)?;
        let (entry, ref_dim) = match pr.form {
            Form::Official => ("main_official", 2),
            Form::Fused(kind) => ("main_fused", kind.dim() as u32),
        };
        let by_name = |what: &str| match what {
            "value" => Some(bufs.value),
            "sampling" => Some(bufs.sampling),
            "attention" => Some(bufs.attention),
            "reference" => bufs.reference,
            _ => Some(bufs.output),
        };
        pr.check_buffers(dtype, |what| by_name(what).map(|b| b.size()))?;
        for (what, bytes) in pr.buffer_bytes(dtype) {
            self.check_size(OP, what, bytes)?;
        }
        let params = MsdaParams::new(pr, total as u32, gx * WORKGROUP);
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let constants = msda_constants(WORKGROUP, dtype, ref_dim, pr);
        let pipeline = self.specialized_pipeline(&self.module, entry, &constants)?;
        let mut entries = vec![
            wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: bufs.value.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: bufs.output.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: bufs.sampling.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: bufs.attention.as_entire_binding() },
        ];
        if let (Form::Fused(_), Some(r)) = (pr.form, bufs.reference) {
            entries.push(wgpu::BindGroupEntry { binding: 5, resource: r.as_entire_binding() });
        }
        let bind = self.bind_group(&pipeline, entry, &entries)?;
        Ok((pipeline, bind, (gx, gy)))
    }
}

impl Prepared for WgpuRun<'_> {
    fn enqueue(&mut self) -> Result<()> {
        let be = self.be;
        be.record(self.label, |enc| {
            let mut pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(self.label), timestamp_writes: None });
            be.dispatch(&mut pass, &self.pipeline, &self.bind, self.groups);
        })
    }

    fn wait(&mut self) -> Result<()> {
        self.be.wait_idle()
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(crate::backend::unpack(&self.be.read_bytes(&self.out, 0, self.out_bytes)?, self.dtype))
    }
}

impl MsdaKernel for WgpuBackend {
    fn msda_supports(&self, dtype: DType) -> Result<()> {
        if dtype == DType::Bf16 {
            return Err(Error::Unsupported {
                op: OP,
                backend: crate::backend::BackendKind::Wgpu.name().into(),
                reason: "WGSL has no bf16 type".into(),
            });
        }
        Ok(())
    }
    fn launch_prepare_ms_deform_attn<'a>(
        &'a self,
        _: Checked,
        pr: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        let storage = wgpu::BufferUsages::STORAGE;
        let value = self.buffer(OP, "value", &crate::backend::pack(input.value(), dtype), storage)?;
        let out_bytes = (pr.output_len() * dtype.size()) as u64;
        let out = self.empty(OP, "output", out_bytes, storage | wgpu::BufferUsages::COPY_SRC)?;
        let (samp, attn, refp) = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => (
                self.buffer(OP, "sampling_locations", bytemuck::cast_slice(sampling_locations), storage)?,
                self.buffer(OP, "attention_weights", bytemuck::cast_slice(attention_weights), storage)?,
                None,
            ),
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => (
                self.buffer(OP, "sampling_offsets", bytemuck::cast_slice(sampling_offsets), storage)?,
                self.buffer(OP, "attention_logits", bytemuck::cast_slice(attention_logits), storage)?,
                Some(self.buffer(OP, "reference", bytemuck::cast_slice(reference), storage)?),
            ),
        };
        let bufs = MsDeformAttnBuffers {
            value: &value,
            sampling: &samp,
            attention: &attn,
            reference: refp.as_ref(),
            output: &out,
        };
        let (pipeline, bind, groups) = self.msda_bind(pr, dtype, &bufs)?;
        Ok(Box::new(WgpuRun { be: self, label: "ms_deform_attn", pipeline, bind, out, out_bytes, groups, dtype }))
    }
    fn launch_ms_deform_attn_t(
        &self,
        _: Checked,
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
}
