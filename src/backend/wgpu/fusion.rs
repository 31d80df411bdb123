//! The wgpu runner of an ALIF round planned in `backend::fusion_plan` (the launches of
//! `shaders/sparse_fusion.wgsl` over one arena buffer, recorded in one compute pass), shared by
//! `ops::gated_cross_attn` (3 launches) and `ops::sparse_fusion` (8).

use wgpu::util::DeviceExt;

use super::{device_err, WgpuBackend};
use crate::backend::fusion_plan::{Kernel, Round};
use crate::backend::Prepared;
use crate::error::Result;

impl WgpuBackend {
    /// Uploads the arena, records every launch in one compute pass, runs it and reads back the
    /// two output regions.
    pub(crate) fn run_round(&self, op: &'static str, r: Round) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut prepared = self.prepare_round(op, r)?;
        prepared.run()?;
        prepared.regions()
    }

    /// Uploads the arena and builds every launch's pipeline and bind group; nothing runs yet.
    pub(crate) fn prepare_round(&self, op: &'static str, r: Round) -> Result<PreparedRound<'_>> {
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
    pub(crate) fn bind_round(&self, op: &'static str, r: &Round, arena: &wgpu::Buffer) -> Result<Vec<Recorded>> {
        let bind_all = || -> Result<Vec<Recorded>> {
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
            Ok(recorded)
        };
        self.scoped(wgpu::ErrorFilter::Validation, bind_all, move |e| device_err(format!("{op}: {e}")))?
    }
}

type Recorded = (wgpu::ComputePipeline, wgpu::BindGroup, (u32, u32));

/// A round resident on the device: its arena (inputs, weights, intermediates) and its launches.
/// Running it again re-fuses the already fused image rows in place, which costs the same work,
/// so repeated runs time the kernels with nothing uploaded.
pub(crate) struct PreparedRound<'a> {
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
    pub(crate) fn regions(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let read = |(o, n): (u32, usize)| self.be.read_f32(&self.arena, o as u64 * 4, (n * 4) as u64);
        Ok((read(self.v_out)?, read(self.l_out)?))
    }
}

impl PreparedRound<'_> {
    /// Records launches `range` in one compute pass after the work already recorded.
    pub(crate) fn submit(&self, range: std::ops::Range<usize>) -> Result<()> {
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
