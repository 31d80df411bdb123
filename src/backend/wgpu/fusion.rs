//! wgpu ALIF ops from `shaders/sparse_fusion.wgsl`: the round planned in `backend::fusion_plan`
//! (`gated_cross_attn` in 3 launches, a whole `sparse_fusion` round in 8), recorded in one
//! compute pass over one arena buffer.

use wgpu::util::DeviceExt;

use super::resident::TENSOR_USAGE;
use super::{device_err, Prepared, WgpuBackend};
use crate::backend::fusion_plan::{self, Kernel, Round, WeightOffsets};
use crate::backend::{Checked, FusionOps, Tensor};
use crate::error::{Error, Result};
use crate::problem::{BertLayerWeights, GatedCrossAttnProblem, GatedCrossAttnWeights, SparseFusionProblem};

impl WgpuBackend {
    /// Uploads the arena, records every launch in one compute pass, runs it and reads back the
    /// two output regions.
    fn run_round(&self, op: &'static str, r: Round) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut prepared = self.prepare_round(op, r)?;
        prepared.run()?;
        prepared.regions()
    }

    /// Uploads the arena and builds every launch's pipeline and bind group; nothing runs yet.
    fn prepare_round(&self, op: &'static str, r: Round) -> Result<PreparedRound<'_>> {
        self.check_size(op, "arena (inputs, weights and intermediates)", r.arena_bytes())?;
        let arena = self.buffer(
            op,
            "arena",
            bytemuck::cast_slice(&r.arena.0),
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let recorded = self.bind_round(op, &r, &arena)?;
        let labels = r.launches.iter().map(|l| l.label).collect();
        Ok(PreparedRound { be: self, op, arena, recorded, labels, v_out: r.v_out, l_out: r.l_out })
    }

    /// Every launch of `r` on `arena`: pipeline, bind group, workgroups.
    fn bind_round(&self, op: &'static str, r: &Round, arena: &wgpu::Buffer) -> Result<Vec<Recorded>> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut recorded = Vec::new();
        for (i, l) in r.launches.iter().enumerate() {
            let key = match l.kernel {
                Kernel::GemmJobs => "sparse_fusion.gemm_jobs",
                Kernel::Attend => "sparse_fusion.attend",
                Kernel::LangAttend => "sparse_fusion.lang_attend",
                Kernel::NormRows => "sparse_fusion.norm_rows",
            };
            let entry = l.kernel.entry();
            let pipeline = self.pipeline(&self.fusion, key, entry)?;
            let (gx, gy, grid_x) = self.row_grid(l.items);
            let params = r.params(i, grid_x);
            let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(entry),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: arena.as_entire_binding() },
                ],
            });
            recorded.push((pipeline, bind, (gx, gy)));
        }
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(device_err(format!("{op}: {e}"))),
            None => Ok(recorded),
        }
    }
}

type Recorded = (wgpu::ComputePipeline, wgpu::BindGroup, (u32, u32));

/// A round resident on the device: its arena (inputs, weights, intermediates) and its launches.
/// Running it again re-fuses the already fused image rows in place, which costs the same work,
/// so repeated runs time the kernels with nothing uploaded.
pub(super) struct PreparedRound<'a> {
    be: &'a WgpuBackend,
    op: &'static str,
    arena: wgpu::Buffer,
    recorded: Vec<Recorded>,
    labels: Vec<&'static str>,
    v_out: (u32, usize),
    l_out: (u32, usize),
}

impl PreparedRound<'_> {
    /// (fused image rows, language output) of the last run.
    fn regions(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let read = |(o, n): (u32, usize)| self.be.read_f32(&self.arena, o as u64 * 4, (n * 4) as u64);
        Ok((read(self.v_out)?, read(self.l_out)?))
    }
}

impl PreparedRound<'_> {
    /// Records launches `range` in one compute pass after the work already recorded.
    fn submit(&self, range: std::ops::Range<usize>) -> Result<()> {
        let be = self.be;
        be.record(self.op, |enc| {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(self.op), timestamp_writes: None });
            for (pipeline, bind, groups) in &self.recorded[range] {
                be.dispatch(&mut pass, pipeline, bind, *groups);
            }
        })
    }
}

impl Prepared for PreparedRound<'_> {
    fn enqueue(&mut self) -> Result<()> {
        self.submit(0..self.recorded.len())
    }

    fn stages(&self) -> Vec<&'static str> {
        self.labels.clone()
    }

    fn enqueue_stage(&mut self, i: usize) -> Result<()> {
        self.submit(i..i + 1)
    }

    fn wait(&mut self) -> Result<()> {
        self.be.wait_idle()
    }

    /// The language output of the last run.
    fn output(&mut self) -> Result<Vec<f32>> {
        self.be.read_f32(&self.arena, self.l_out.0 as u64 * 4, (self.l_out.1 * 4) as u64)
    }
}

pub(super) fn gated_cross_attn(
    be: &WgpuBackend,
    p: &GatedCrossAttnProblem,
    v: &[f32],
    pos: &[f32],
    l: &[f32],
    w: &GatedCrossAttnWeights,
) -> Result<(Vec<f32>, Vec<f32>)> {
    const OP: &str = crate::problem::gated_cross_attn::OP;
    be.run_round(OP, fusion_plan::gated_cross_attn(crate::backend::BackendKind::Wgpu.name(), p, v, pos, l, w)?)
}

const SF_OP: &str = crate::problem::sparse_fusion::OP;

#[allow(clippy::too_many_arguments)] // an ALIF round's inputs
pub(super) fn sparse_fusion(
    be: &WgpuBackend,
    p: &SparseFusionProblem,
    memory: &mut [f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<Vec<f32>> {
    let r = fusion_plan::sparse_fusion(crate::backend::BackendKind::Wgpu.name(), p, memory, pos, lang, mask, fw, bw)?;
    let (v_new, lang_out) = be.run_round(SF_OP, r)?;
    p.scatter_level(memory, &v_new);
    Ok(lang_out)
}

/// A resident round for repeated timed runs (see [`PreparedRound`]).
#[allow(clippy::too_many_arguments)] // an ALIF round's inputs
pub(super) fn prepare_sparse_fusion<'a>(
    be: &'a WgpuBackend,
    p: &SparseFusionProblem,
    memory: &[f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<PreparedRound<'a>> {
    be.prepare_round(
        SF_OP,
        fusion_plan::sparse_fusion(crate::backend::BackendKind::Wgpu.name(), p, memory, pos, lang, mask, fw, bw)?,
    )
}

/// A `sparse_fusion` round's weights on the device (the arena's head, uploaded once) and the
/// last arena built on them, reused while the token counts stay the same.
pub(super) struct BoundRound {
    weights: wgpu::Buffer,
    offsets: WeightOffsets,
    arena: std::sync::Mutex<Option<wgpu::Buffer>>,
}

impl WgpuBackend {}

impl FusionOps for WgpuBackend {
    fn gated_cross_attn(
        &self,
        _: Checked,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self::gated_cross_attn(self, p, v, pos, l, w)
    }
    fn sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        memory: &mut [f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Vec<f32>> {
        self::sparse_fusion(self, p, memory, pos, lang, mask, fw, bw)
    }
    fn prepare_sparse_fusion<'a>(
        &'a self,
        _: Checked,
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Ok(Box::new(self::prepare_sparse_fusion(self, p, memory, pos, lang, mask, fw, bw)?))
    }
    fn prepare_sparse_fusion_unfused<'a>(
        &'a self,
        _: Checked,
        _p: &SparseFusionProblem,
        _memory: &[f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(Error::Unsupported {
            op: crate::problem::sparse_fusion::OP,
            backend: crate::backend::BackendKind::Wgpu.name().into(),
            reason: "no op-by-op round here (cubecl-wgpu has one)".into(),
        })
    }
    /// Uploads one round's weights in the fused kernels' layout.
    fn bind_sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        let (host, offsets) = fusion_plan::sparse_fusion_weights(p, fw, bw);
        let weights = self.buffer(SF_OP, "round weights", bytemuck::cast_slice(&host), TENSOR_USAGE)?;
        Ok(Some(Tensor::device(self.id, host.len(), BoundRound { weights, offsets, arena: Default::default() })))
    }
    /// One round on device tensors: the last level's rows, positions and language state are
    /// copied into the arena after the bound weights, the 8 launches run, the fused rows are
    /// copied back over `memory`'s last level and the language output into a new tensor; recorded
    /// as one batch command, no wait.
    fn sparse_fusion_t(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
        bound: Option<&Tensor>,
    ) -> Result<Tensor> {
        let bound = bound.ok_or_else(|| device_err("sparse_fusion: the round's weights are not bound"))?;
        let br = bound.buffer::<BoundRound>(self.id, crate::backend::BackendKind::Wgpu.name(), "round weights")?;
        let r = fusion_plan::sparse_fusion_layout(crate::backend::BackendKind::Wgpu.name(), p, &br.offsets)?;
        let bytes = r.arena_bytes();
        self.check_size(SF_OP, "arena (inputs, weights and intermediates)", bytes)?;
        let mem = self.resident(SF_OP, "memory", memory)?;
        let (posb, langb) = (self.resident(SF_OP, "pos", pos)?, self.resident(SF_OP, "lang", lang)?);
        let mut cached = br.arena.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.as_ref().is_none_or(|a| a.size() != bytes);
        if fresh {
            *cached = Some(self.empty(SF_OP, "arena", bytes, TENSOR_USAGE)?);
        }
        let arena = cached.clone().expect("set above");
        drop(cached);
        let recorded = self.bind_round(SF_OP, &r, &arena)?;
        let l_len = r.l_out.1;
        let (out, out_tensor) = self.output(SF_OP, l_len)?;
        let f = &p.fusion;
        let rows = (f.nv * f.v_dim * 4) as u64;
        let wbytes = br.offsets.len as u64 * 4;
        self.record(SF_OP, |enc| {
            if fresh {
                enc.copy_buffer_to_buffer(&br.weights, 0, &arena, 0, wbytes);
            }
            enc.clear_buffer(&arena, wbytes, None);
            for b in 0..f.batch {
                let at = p.level(b).start as u64 * 4;
                let dst = |o: u32| o as u64 * 4 + b as u64 * rows;
                enc.copy_buffer_to_buffer(&mem, at, &arena, dst(r.v_in), rows);
                enc.copy_buffer_to_buffer(&posb, at, &arena, dst(r.pos_in), rows);
            }
            enc.copy_buffer_to_buffer(&langb, 0, &arena, r.l_in as u64 * 4, (lang.len() * 4) as u64);
            {
                let mut pass =
                    enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(SF_OP), timestamp_writes: None });
                for (pipeline, bind, groups) in &recorded {
                    self.dispatch(&mut pass, pipeline, bind, *groups);
                }
            }
            for b in 0..f.batch {
                enc.copy_buffer_to_buffer(
                    &arena,
                    r.v_out.0 as u64 * 4 + b as u64 * rows,
                    &mem,
                    p.level(b).start as u64 * 4,
                    rows,
                );
            }
            enc.copy_buffer_to_buffer(&arena, r.l_out.0 as u64 * 4, &out, 0, (l_len * 4) as u64);
        })?;
        Ok(out_tensor)
    }
}
