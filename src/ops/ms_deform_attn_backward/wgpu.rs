//! `ms_deform_attn_backward` on the wgpu backend (`shaders/ms_deform_attn_backward.wgsl`): three
//! dispatches — the sample gradients row by row, `grad_value` scattered as 64-bit fixed point
//! with integer atomics (exact, so deterministic), then converted to f32.

use super::{MsdaBackwardKernel, MsdaGrads, OP};
use crate::backend::wgpu::WgpuBackend;
use crate::backend::Checked;
use crate::error::Result;
use crate::ops::ms_deform_attn::wgpu::{msda_constants, MsdaParams};
use crate::ops::ms_deform_attn::MsdaKernel;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem};
use wgpu::util::DeviceExt;

/// One dispatch: entry point, invocations, (binding, buffer) after the uniform.
type Dispatch<'a> = (&'static str, u64, &'a [(u32, &'a wgpu::Buffer)]);

impl MsdaBackwardKernel for WgpuBackend {
    fn launch_ms_deform_attn_backward(
        &self,
        _: Checked,
        pr: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        self.msda_supports(dtype)?;
        let storage = wgpu::BufferUsages::STORAGE;
        let out_usage = storage | wgpu::BufferUsages::COPY_SRC;
        let (samples, value_len) = (pr.samples(), input.value().len());
        let value = self.buffer(OP, "value", &crate::backend::pack(input.value(), dtype), storage)?;
        let gout = self.buffer(OP, "grad_output", bytemuck::cast_slice(grad_output), storage)?;
        let (names, ref_dim, sampling, attention, reference) = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
                (["sampling_locations", "attention_weights"], 0, sampling_locations, attention_weights, None)
            }
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
                let dim = match pr.form {
                    Form::Fused(kind) => kind.dim() as u32,
                    Form::Official => 2,
                };
                (["sampling_offsets", "attention_logits"], dim, sampling_offsets, attention_logits, Some(reference))
            }
        };
        let samp = self.buffer(OP, names[0], bytemuck::cast_slice(sampling), storage)?;
        let attn = self.buffer(OP, names[1], bytemuck::cast_slice(attention), storage)?;
        let refp = match reference {
            Some(r) => self.buffer(OP, "reference", bytemuck::cast_slice(r), storage)?,
            None => self.placeholder.clone(),
        };
        let gsamp = self.empty(OP, "grad_sampling", (samples * 8) as u64, out_usage)?;
        let gattn = self.empty(OP, "grad_attention", (samples * 4) as u64, out_usage)?;
        let gvalue = self.empty(OP, "grad_value", (value_len.max(1) * 4) as u64, out_usage)?;
        let acc = self.empty(
            OP,
            "grad_value (fixed point)",
            (value_len.max(1) * 8) as u64,
            storage | wgpu::BufferUsages::COPY_DST,
        )?;
        let bound = self.buffer(OP, "bound", bytemuck::cast_slice(&[0u32]), storage)?;
        self.record("ms_deform_attn_backward: clear", |enc| enc.clear_buffer(&acc, 0, None))?;

        let wg = self.backward_workgroup.load(std::sync::atomic::Ordering::Relaxed);
        let constants = msda_constants(wg, dtype, ref_dim, pr);
        let rows = (pr.batch * pr.queries * pr.heads) as u64;
        let dispatches: [Dispatch; 3] = [
            (
                "sample_grads",
                rows,
                &[(1, &value), (2, &gout), (3, &samp), (4, &attn), (5, &refp), (6, &gsamp), (7, &gattn), (9, &bound)],
            ),
            (
                "scatter_value",
                rows * (pr.channels / 8) as u64,
                &[(2, &gout), (3, &samp), (4, &attn), (5, &refp), (8, &acc), (9, &bound)],
            ),
            ("finish_value", value_len as u64, &[(8, &acc), (9, &bound), (10, &gvalue)]),
        ];
        for (entry, total, bufs) in dispatches {
            let (gx, gy) = self.invocation_grid(OP, total, wg)?;
            let params = MsdaParams::new(pr, total as u32, gx * wg);
            let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let pipeline = self.specialized_pipeline(&self.msda_backward, entry, &constants)?;
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            entries.extend(
                bufs.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }),
            );
            let bind = self.bind_group(&pipeline, entry, &entries)?;
            self.submit(entry, &pipeline, &bind, (gx, gy, 1))?;
        }
        Ok(MsdaGrads {
            value: self.read_f32(&gvalue, 0, (value_len * 4) as u64)?,
            sampling: self.read_f32(&gsamp, 0, (samples * 8) as u64)?,
            attention: self.read_f32(&gattn, 0, (samples * 4) as u64)?,
        })
    }
}
