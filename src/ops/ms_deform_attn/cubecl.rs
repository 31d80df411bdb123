//! `ms_deform_attn` on cubecl: the launch geometry of one problem, the public launcher for
//! callers that own their cubecl client and buffers, and the prepared run of the backend.

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::MsdaKernel;
use crate::backend::cubecl::{arg, catch, CubeclBackend, CUBE, UNIT_CHANNELS};
use crate::backend::{Checked, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::kernels::ms_deform_attn::ms_deform_attn;
use crate::problem::ms_deform_attn::OP;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};

/// Device buffers of one `ms_deform_attn` call, in the layouts of [`MsDeformAttnProblem`]:
/// `value [B,S,M,D]` and `output [B,Q,M·D]` in the storage dtype, the rest f32.
pub struct MsDeformAttnHandles {
    /// `value [B,S,M,D]` in the storage dtype.
    pub value: Handle,
    /// official form: `sampling_locations [B,Q,M,L,P,2]`; fused: `sampling_offsets`, same shape
    pub sampling: Handle,
    /// official form: `attention_weights [B,Q,M,L,P]`; fused: `attention_logits [B,Q,M,L·P]`
    pub attention: Handle,
    /// fused form only: `reference [B,Q,L,2]` points or `[B,Q,L,4]` boxes
    pub reference: Option<Handle>,
    /// `output [B,Q,M·D]` in the storage dtype, written by the kernel.
    pub output: Handle,
}

/// Enqueues `ms_deform_attn` for `pr` on the caller's own cubecl `client` and buffers (no copy,
/// no sync: read `h.output` when the stream is done). Checks the problem, the dtype against the
/// device and every buffer's size first; a mismatch is an error naming the tensor.
pub fn launch_ms_deform_attn<R: Runtime>(
    client: &ComputeClient<R>,
    pr: &MsDeformAttnProblem,
    dtype: DType,
    h: &MsDeformAttnHandles,
) -> Result<()> {
    pr.validate()?;
    check_device_dtype(client, dtype)?;
    pr.check_buffers(dtype, |what| {
        let h = match what {
            "value" => &h.value,
            "sampling" => &h.sampling,
            "attention" => &h.attention,
            "reference" => h.reference.as_ref()?,
            _ => &h.output,
        };
        Some(h.size_in_used())
    })?;
    let refp = h.reference.clone().filter(|_| pr.form != Form::Official);
    let plan = MsdaPlan::new(client, pr, dtype);
    let shapes = level_table(client, pr).0;
    let args = plan.args(
        h.value.clone(),
        shapes,
        h.sampling.clone(),
        h.attention.clone(),
        refp.unwrap_or_else(|| client.create_from_slice(&[0u8; 4])),
        h.output.clone(),
        pr,
    );
    catch("launch", crate::backend::BackendKind::CubeclWgpu, || plan.launch(client, &args)).map_err(|e| match e {
        Error::BackendUnavailable { reason, .. } => Error::Device { backend: "cubecl".into(), reason },
        other => other,
    })
}

/// An error unless `client`'s device has the storage type `dtype`.
pub(crate) fn check_device_dtype<R: Runtime>(client: &ComputeClient<R>, dtype: DType) -> Result<()> {
    let features = &client.properties().features;
    let ok = match dtype {
        DType::F32 => true,
        DType::F16 => features.supports_type(cubecl::ir::FloatKind::F16),
        DType::Bf16 => features.supports_type(cubecl::ir::FloatKind::BF16),
    };
    if !ok {
        return Err(Error::Unsupported {
            op: OP,
            backend: "cubecl".into(),
            reason: format!("this device has no {dtype} type"),
        });
    }
    Ok(())
}

/// The `[L,3]` (H, W, start) level table the forward and backward kernels read, and its length.
pub(crate) fn level_table<R: Runtime>(client: &ComputeClient<R>, pr: &MsDeformAttnProblem) -> (Handle, usize) {
    let shapes: Vec<u32> = pr.levels.iter().flat_map(|l| [l.h as u32, l.w as u32, l.start as u32]).collect();
    (client.create_from_slice(bytemuck::cast_slice(&shapes)), shapes.len())
}

/// A 2-D grid of `cube`-unit cubes covering `total` units (numbered `y · x · cube + x` by
/// ABSOLUTE_POS), within the device's cube count per dimension.
pub(crate) fn cube_grid<R: Runtime>(client: &ComputeClient<R>, total: usize, cube: u32) -> CubeCount {
    let needed = total.div_ceil(cube as usize).max(1) as u32;
    let max = client.properties().hardware.max_cube_count.0.min(65535);
    CubeCount::Static(needed.min(max), needed.div_ceil(max), 1)
}

/// Launch geometry of one problem on one client: 8 channels per unit, one 16-byte load for
/// f16/bf16 where the device has 8-wide vectors, else two 4-wide loads (D is a multiple of 8).
pub(crate) struct MsdaPlan {
    dims: [u32; 6],
    points: usize,
    vector: usize,
    form: Form,
    dtype: DType,
    cubes: CubeCount,
}

impl MsdaPlan {
    pub(crate) fn new<R: Runtime>(client: &ComputeClient<R>, pr: &MsDeformAttnProblem, dtype: DType) -> Self {
        let max_vec = client.properties().hardware.max_vector_size;
        let vector = if dtype != DType::F32 && max_vec >= 8 { 8 } else { 4 };
        tracing::debug!(%dtype, form = pr.form_name(), vector, "ms_deform_attn kernel variant");
        let groups = pr.channels / UNIT_CHANNELS;
        let total = pr.batch * pr.queries * pr.heads * groups;
        let cubes = cube_grid(client, total, CUBE);
        MsdaPlan {
            dims: [
                pr.queries as u32,
                pr.heads as u32,
                groups as u32,
                pr.tokens as u32,
                pr.num_levels() as u32,
                total as u32,
            ],
            points: pr.points,
            vector,
            form: pr.form,
            dtype,
            cubes,
        }
    }

    /// The six kernel arrays with their lengths in elements (value/output in vectors).
    #[allow(clippy::too_many_arguments)] // the six arrays of one launch and their owners
    pub(crate) fn args(
        &self,
        value: Handle,
        shapes: Handle,
        samp: Handle,
        attn: Handle,
        refp: Handle,
        out: Handle,
        pr: &MsDeformAttnProblem,
    ) -> [(Handle, usize); 6] {
        let vector_len = |n: usize| n / self.vector;
        let samples = pr.samples();
        let ref_len = match pr.form {
            Form::Official => 1,
            Form::Fused(k) => pr.batch * pr.queries * pr.num_levels() * k.dim(),
        };
        [
            (value, vector_len(pr.batch * pr.tokens * pr.heads * pr.channels)),
            (shapes, pr.num_levels() * 3),
            (samp, samples * 2),
            (attn, samples),
            (refp, ref_len),
            (out, vector_len(pr.output_len())),
        ]
    }

    pub(crate) fn launch<R: Runtime>(&self, client: &ComputeClient<R>, args: &[(Handle, usize); 6]) {
        match self.dtype {
            DType::F32 => self.launch_typed::<f32, R>(client, args),
            DType::F16 => self.launch_typed::<half::f16, R>(client, args),
            DType::Bf16 => self.launch_typed::<half::bf16, R>(client, args),
        }
    }

    fn launch_typed<F: Float + CubeElement, R: Runtime>(&self, client: &ComputeClient<R>, a: &[(Handle, usize); 6]) {
        let [queries, heads, groups, tokens, levels, total] = self.dims;
        let (fused, boxes) = match self.form {
            Form::Official => (false, false),
            Form::Fused(k) => (true, k == RefKind::Boxes),
        };
        // SAFETY: every array length was derived from the validated problem (and, for callers'
        // buffers, checked against their sizes), and the kernel bounds-checks its unit index.
        unsafe {
            ms_deform_attn::launch_unchecked::<F, R>(
                client,
                self.cubes.clone(),
                CubeDim::new_1d(CUBE),
                self.vector,
                arg(&a[0]),
                arg(&a[1]),
                arg(&a[2]),
                arg(&a[3]),
                arg(&a[4]),
                arg(&a[5]),
                queries,
                heads,
                groups,
                tokens,
                levels,
                total,
                self.points,
                self.vector == 4,
                fused,
                boxes,
            )
        }
    }
}

/// The backend's prepared run: inputs uploaded once, launched on demand.
pub(crate) struct CubeclRun<'a, R: Runtime> {
    pub(crate) be: &'a CubeclBackend<R>,
    pub(crate) plan: MsdaPlan,
    pub(crate) args: [(Handle, usize); 6],
}

impl<R: Runtime> Prepared for CubeclRun<'_, R> {
    fn enqueue(&mut self) -> Result<()> {
        catch("launch", self.be.kind, || self.plan.launch(&self.be.client, &self.args))?;
        self.be.count_launch();
        Ok(())
    }

    fn wait(&mut self) -> Result<()> {
        self.be.sync(OP)
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        let bytes = self.be.read_bytes(OP, self.args[5].0.clone())?;
        Ok(crate::backend::unpack(&bytes, self.plan.dtype))
    }
}

impl<R: Runtime> MsdaKernel for CubeclBackend<R> {
    fn msda_supports(&self, dtype: DType) -> Result<()> {
        if !self.supports_type(dtype) {
            return Err(Error::Unsupported {
                op: OP,
                backend: self.kind.name().into(),
                reason: format!("{} has no {dtype} support", self.device),
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
        let plan = MsdaPlan::new(&self.client, pr, dtype);
        let (samp, attn, refp): (&[f32], &[f32], &[f32]) = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
                (sampling_locations, attention_weights, &[0.0])
            }
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
                (sampling_offsets, attention_logits, reference)
            }
        };
        let out_bytes = pr.output_len() * dtype.size();
        if out_bytes as u64 > self.client.properties().memory.max_page_size {
            return Err(Error::Unsupported {
                op: OP,
                backend: self.kind.name().into(),
                reason: format!("output needs {out_bytes} bytes, more than the device allocates per buffer"),
            });
        }
        let up = |what: &str, data: &[f32]| self.upload(what, bytemuck::cast_slice(data));
        let value = self.upload("value", &crate::backend::pack(input.value(), dtype))?;
        let args = plan.args(
            value,
            level_table(&self.client, pr).0,
            up("sampling", samp)?,
            up("attention", attn)?,
            up("reference", refp)?,
            self.client.empty(out_bytes),
            pr,
        );
        Ok(Box::new(CubeclRun { be: self, plan, args }))
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
        let y = self.out(OP, pr.output_len())?;
        let h = MsDeformAttnHandles {
            value: self.resident(OP, "value", value)?.0,
            sampling: self.resident(OP, "sampling_offsets", offsets)?.0,
            attention: self.resident(OP, "attention_logits", logits)?.0,
            reference: Some(self.resident(OP, "reference", reference)?.0),
            output: y.0.clone(),
        };
        launch_ms_deform_attn(&self.client, pr, DType::F32, &h)?;
        self.count_launch();
        Ok(self.tensor(y))
    }
}
