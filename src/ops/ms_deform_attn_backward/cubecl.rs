//! `ms_deform_attn_backward` on cubecl (`kernels/ms_deform_attn_backward.rs`): the public
//! launcher for callers that own their client and buffers (burn's tensors, say), and the
//! backend's host-to-host run on top of it.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{MsdaBackwardKernel, MsdaGrads, OP};
use crate::backend::cubecl::{arg, catch, CubeclBackend, UNIT_CHANNELS};
use crate::backend::Checked;
use crate::error::{Error, Result};
use crate::kernels::ms_deform_attn_backward::{msda_finish_value, msda_sample_grads, msda_scatter_value};
use crate::ops::ms_deform_attn::cubecl::{cube_grid, level_table};
use crate::ops::ms_deform_attn::MsdaKernel;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};

/// Device buffers of one backward call: the forward's inputs (as
/// [`crate::ops::ms_deform_attn::cubecl::MsDeformAttnHandles`], `value` in the storage dtype, the
/// rest f32), `grad_output [B,Q,M·D]` f32, and the three f32 gradients the kernels write, each in
/// the layout of its input.
pub struct MsDeformAttnBackwardHandles {
    /// `value [B,S,M,D]` in the storage dtype.
    pub value: Handle,
    /// official form: `sampling_locations [B,Q,M,L,P,2]`; fused: `sampling_offsets`, same shape
    pub sampling: Handle,
    /// official form: `attention_weights [B,Q,M,L,P]`; fused: `attention_logits [B,Q,M,L·P]`
    pub attention: Handle,
    /// fused form only: `reference [B,Q,L,2]` points or `[B,Q,L,4]` boxes
    pub reference: Option<Handle>,
    /// `grad_output [B,Q,M·D]`, f32.
    pub grad_output: Handle,
    /// `grad_value [B,S,M,D]`, f32, written.
    pub grad_value: Handle,
    /// `grad_sampling_locations` / `grad_sampling_offsets`, f32, written.
    pub grad_sampling: Handle,
    /// `grad_attention_weights` / `grad_attention_logits`, f32, written.
    pub grad_attention: Handle,
}

/// Enqueues the backward of `ms_deform_attn` for `pr` on the caller's `client` and buffers (no
/// copy of theirs, no sync; two scratch buffers of its own: `grad_value` in 64-bit fixed point
/// and one word), `cube` units per cube. Checks the problem, the dtype and every buffer's size
/// first; a mismatch is an error naming the tensor.
pub fn launch_ms_deform_attn_backward<R: Runtime>(
    client: &ComputeClient<R>,
    pr: &MsDeformAttnProblem,
    dtype: DType,
    h: &MsDeformAttnBackwardHandles,
    cube: u32,
) -> Result<()> {
    pr.validate()?;
    crate::ops::ms_deform_attn::cubecl::check_device_dtype(client, dtype)?;
    let value_len = pr.batch * pr.tokens * pr.heads * pr.channels;
    pr.check_buffers(dtype, |what| {
        let h = match what {
            "value" => &h.value,
            "sampling" => &h.sampling,
            "attention" => &h.attention,
            "reference" => h.reference.as_ref()?,
            _ => return Some(u64::MAX), // the forward's output: none here
        };
        Some(h.size_in_used())
    })?;
    for (what, handle, len) in [
        ("grad_output", &h.grad_output, pr.output_len()),
        ("grad_value", &h.grad_value, value_len),
        ("grad_sampling", &h.grad_sampling, pr.samples() * 2),
        ("grad_attention", &h.grad_attention, pr.samples()),
    ] {
        if handle.size_in_used() < (len * 4) as u64 {
            return Err(Error::limit(
                OP,
                what,
                format!("buffer holds {} bytes, the problem needs {} (f32)", handle.size_in_used(), len * 4),
            ));
        }
    }
    let refp = match pr.form {
        Form::Official => client.create_from_slice(&[0u8; 4]),
        // present: check_buffers requires it for the fused form
        Form::Fused(_) => h.reference.clone().unwrap_or_else(|| client.create_from_slice(&[0u8; 4])),
    };
    let plan = BackwardPlan { pr: pr.clone(), dtype, cube, value_len };
    catch("launch", crate::backend::BackendKind::CubeclWgpu, || plan.launch(client, h, refp)).map_err(|e| match e {
        Error::BackendUnavailable { reason, .. } => Error::Device { backend: "cubecl".into(), reason },
        other => other,
    })
}

/// One backward call's launches.
struct BackwardPlan {
    pr: MsDeformAttnProblem,
    dtype: DType,
    cube: u32,
    value_len: usize,
}

impl BackwardPlan {
    /// A 2-D grid of this plan's cubes covering `total` units.
    fn cubes<R: Runtime>(&self, client: &ComputeClient<R>, total: usize) -> CubeCount {
        cube_grid(client, total, self.cube)
    }

    fn launch<R: Runtime>(&self, client: &ComputeClient<R>, h: &MsDeformAttnBackwardHandles, refp: Handle) {
        let pr = &self.pr;
        let (fused, boxes, ref_len) = match pr.form {
            Form::Official => (false, false, 1),
            Form::Fused(k) => (true, k == RefKind::Boxes, pr.batch * pr.queries * pr.num_levels() * k.dim()),
        };
        let shapes = level_table(client, pr);
        let samples = pr.samples();
        let acc = (client.empty(self.value_len.max(1) * 8), self.value_len.max(1) * 2);
        let bound = (client.create_from_slice(&[0u8; 4]), 1);
        let rows = pr.batch * pr.queries * pr.heads;
        let groups = pr.channels / UNIT_CHANNELS;
        // 2^(60 − qb) · Q · max mass < 2^61 with Q < 2^qb
        let k_base = 60 - (32 - (pr.queries as u32).leading_zeros()) as i32;
        let dim = CubeDim::new_1d(self.cube);
        let (q, m, s, l) = (pr.queries as u32, pr.heads as u32, pr.tokens as u32, pr.num_levels() as u32);
        let samp = (h.sampling.clone(), samples * 2);
        let attn = (h.attention.clone(), samples);
        let refp = (refp, ref_len);
        // SAFETY (all four launches): every array length is derived from the validated problem
        // and checked against the caller's buffer sizes above; the kernels bound-check their
        // unit index, and every other index stays inside the problem's extents.
        unsafe {
            crate::kernels::ms_deform_attn_backward::msda_clear::launch_unchecked::<R>(
                client,
                self.cubes(client, acc.1),
                dim,
                arg(&acc),
                acc.1 as u32,
            );
            match self.dtype {
                DType::F32 => self.sample_grads::<f32, R>(client, h, &shapes, &samp, &attn, &refp, &bound, rows),
                DType::F16 => self.sample_grads::<half::f16, R>(client, h, &shapes, &samp, &attn, &refp, &bound, rows),
                DType::Bf16 => {
                    self.sample_grads::<half::bf16, R>(client, h, &shapes, &samp, &attn, &refp, &bound, rows)
                }
            }
            msda_scatter_value::launch_unchecked::<R>(
                client,
                self.cubes(client, rows * groups),
                dim,
                arg(&(h.grad_output.clone(), pr.output_len())),
                arg(&shapes),
                arg(&samp),
                arg(&attn),
                arg(&refp),
                arg(&acc),
                arg(&bound),
                q,
                m,
                groups as u32,
                s,
                l,
                (rows * groups) as u32,
                k_base,
                UNIT_CHANNELS,
                pr.points,
                fused,
                boxes,
            );
            msda_finish_value::launch_unchecked::<R>(
                client,
                self.cubes(client, self.value_len),
                dim,
                arg(&acc),
                arg(&bound),
                arg(&(h.grad_value.clone(), self.value_len)),
                self.value_len as u32,
                k_base,
            );
        }
    }

    /// Step 1 with `value` read as `F` in 4-wide vectors.
    ///
    /// # Safety
    /// As [`BackwardPlan::launch`]'s.
    #[allow(clippy::too_many_arguments)]
    unsafe fn sample_grads<F: Float + CubeElement, R: Runtime>(
        &self,
        client: &ComputeClient<R>,
        h: &MsDeformAttnBackwardHandles,
        shapes: &(Handle, usize),
        samp: &(Handle, usize),
        attn: &(Handle, usize),
        refp: &(Handle, usize),
        bound: &(Handle, usize),
        rows: usize,
    ) {
        let pr = &self.pr;
        let (fused, boxes) = match pr.form {
            Form::Official => (false, false),
            Form::Fused(k) => (true, k == RefKind::Boxes),
        };
        // SAFETY: the caller's
        unsafe {
            msda_sample_grads::launch_unchecked::<F, R>(
                client,
                self.cubes(client, rows),
                CubeDim::new_1d(self.cube),
                4,
                arg(&(h.value.clone(), self.value_len / 4)),
                arg(&(h.grad_output.clone(), pr.output_len() / 4)),
                arg(shapes),
                arg(samp),
                arg(attn),
                arg(refp),
                arg(&(h.grad_sampling.clone(), pr.samples() * 2)),
                arg(&(h.grad_attention.clone(), pr.samples())),
                arg(bound),
                pr.queries as u32,
                pr.heads as u32,
                (pr.channels / 4) as u32,
                pr.tokens as u32,
                pr.num_levels() as u32,
                rows as u32,
                pr.points,
                fused,
                boxes,
            )
        }
    }
}

impl<R: Runtime> MsdaBackwardKernel for CubeclBackend<R> {
    fn launch_ms_deform_attn_backward(
        &self,
        _: Checked,
        pr: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        self.msda_supports(dtype)?;
        let (samp, attn, refp) = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
                (sampling_locations, attention_weights, None)
            }
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
                (sampling_offsets, attention_logits, Some(reference))
            }
        };
        let up = |what: &str, data: &[f32]| self.upload(what, bytemuck::cast_slice(data)).map_err(retag);
        let value_len = input.value().len();
        let h = MsDeformAttnBackwardHandles {
            value: self.upload("value", &crate::backend::pack(input.value(), dtype)).map_err(retag)?,
            sampling: up("sampling", samp)?,
            attention: up("attention", attn)?,
            reference: refp.map(|r| up("reference", r)).transpose()?,
            grad_output: up("grad_output", grad_output)?,
            grad_value: self.f32_out(OP, value_len)?,
            grad_sampling: self.f32_out(OP, pr.samples() * 2)?,
            grad_attention: self.f32_out(OP, pr.samples())?,
        };
        let cube = self.backward_cube.load(std::sync::atomic::Ordering::Relaxed);
        launch_ms_deform_attn_backward(&self.client, pr, dtype, &h, cube)?;
        for _ in 0..4 {
            self.count_launch();
        }
        let read = |handle: &Handle, len: usize| -> Result<Vec<f32>> {
            let bytes = self.read_bytes(OP, handle.clone())?;
            Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..len * 4]))
        };
        Ok(MsdaGrads {
            value: read(&h.grad_value, value_len)?,
            sampling: read(&h.grad_sampling, pr.samples() * 2)?,
            attention: read(&h.grad_attention, pr.samples())?,
        })
    }
}

/// Puts this op's name on an upload error.
fn retag(e: Error) -> Error {
    crate::backend::cubecl::retag(e, OP)
}
