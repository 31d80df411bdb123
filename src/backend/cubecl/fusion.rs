//! The cubecl runner of an ALIF round planned in `backend::fusion_plan` (the launches of
//! `kernels/sparse_fusion.rs` over one arena), shared by `ops::gated_cross_attn` (3 launches) and
//! `ops::sparse_fusion` (8).

use std::mem::{offset_of, size_of};

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{catch, CubeclBackend};
use crate::backend::fusion_plan::{FusionParams, Job, Kernel, Round};
use crate::backend::Prepared;
use crate::error::{Error, Result};
use crate::kernels::sparse_fusion as k;

// The kernels read the parameter block as u32 words at these positions.
const _: () = assert!(
    offset_of!(FusionParams, off) / 4 == k::P_OFF
        && offset_of!(FusionParams, jobs) / 4 == k::P_JOBS
        && size_of::<Job>() / 4 == k::JOB_WORDS
);
const _: () = assert!(
    offset_of!(FusionParams, lscale) / 4 == k::P_LSCALE
        && offset_of!(FusionParams, eps) / 4 == k::P_EPS
        && offset_of!(FusionParams, total) / 4 == k::P_TOTAL
);

/// A round resident on the device: the arena and one parameter block per launch. Running it
/// again re-fuses the already fused image rows in place (same work), so repeated runs time the
/// kernels with nothing uploaded.
pub(crate) struct CubeclRound<'a, R: Runtime> {
    be: &'a CubeclBackend<R>,
    op: &'static str,
    arena: (Handle, usize),
    launches: Vec<(Kernel, Handle, CubeCount)>,
    labels: Vec<&'static str>,
    v_out: (u32, usize),
    l_out: (u32, usize),
}

impl<R: Runtime> CubeclBackend<R> {
    pub(crate) fn prepare_round(&self, op: &'static str, r: Round) -> Result<CubeclRound<'_, R>> {
        let bytes = r.arena_bytes();
        let max = self.client.properties().memory.max_page_size;
        if bytes > max {
            return Err(Error::Unsupported { op, backend: self.kind.name().into(), reason: format!("the round's arena (inputs, weights and intermediates) needs {bytes} bytes, but the device allocates at most {max} bytes per buffer") });
        }
        let arena = catch("upload", self.kind, || self.client.create_from_slice(bytemuck::cast_slice(&r.arena.0)))?;
        let launches = self.round_params(&r)?;
        let labels = r.launches.iter().map(|l| l.label).collect();
        Ok(CubeclRound {
            be: self,
            op,
            arena: (arena, r.arena.0.len()),
            launches,
            labels,
            v_out: r.v_out,
            l_out: r.l_out,
        })
    }

    pub(crate) fn run_round(&self, op: &'static str, r: Round) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut round = self.prepare_round(op, r)?;
        round.run()?;
        Ok((round.region(round.v_out)?, round.region(round.l_out)?))
    }
}

impl<R: Runtime> CubeclRound<'_, R> {
    pub(crate) fn device_err(&self, e: impl std::fmt::Debug) -> Error {
        Error::Device { backend: self.be.kind.name().into(), reason: format!("{}: {e:?}", self.op) }
    }

    /// `n` f32 values at element offset `o` of the arena.
    pub(crate) fn region(&self, (o, n): (u32, usize)) -> Result<Vec<f32>> {
        let total = self.arena.1 as u64 * 4;
        let (start, end) = (o as u64 * 4, (o as u64 + n as u64) * 4);
        let h = self.arena.0.clone().offset_start(start).offset_end(total - end);
        let bytes = catch("read", self.be.kind, || self.be.client.read_one(h))?.map_err(|e| self.device_err(e))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

impl<R: Runtime> CubeclRound<'_, R> {
    pub(crate) fn launch(&self, i: usize) -> Result<()> {
        let (kernel, params, cubes) = &self.launches[i];
        self.be.launch_round_kernel(*kernel, &self.arena, params, cubes.clone())
    }
}

impl<R: Runtime> CubeclBackend<R> {
    /// Enqueues one kernel of a round on `arena` (handle, f32 length) with parameter block `params`.
    pub(crate) fn launch_round_kernel(
        &self,
        kernel: Kernel,
        arena: &(Handle, usize),
        params: &Handle,
        cubes: CubeCount,
    ) -> Result<()> {
        let arena = super::resident::arg(arena);
        let p = super::resident::arg(&(params.clone(), size_of::<FusionParams>() / 4));
        let (client, dim) = (&self.client, CubeDim::new_1d(256));
        // SAFETY: every offset in the parameter block lies inside the arena (the plan
        // allocated each region), and every kernel bounds-checks its cube index.
        catch("launch", self.kind, || unsafe {
            match kernel {
                Kernel::GemmJobs => k::gemm_jobs::launch_unchecked::<R>(client, cubes, dim, arena, p),
                Kernel::Attend => k::attend::launch_unchecked::<R>(client, cubes, dim, arena, p),
                Kernel::LangAttend => k::lang_attend::launch_unchecked::<R>(client, cubes, dim, arena, p),
                Kernel::NormRows => k::norm_rows::launch_unchecked::<R>(client, cubes, dim, arena, p),
            }
        })?;
        self.count_launch();
        Ok(())
    }

    /// Parameter blocks and grids of every launch of `r`.
    pub(crate) fn round_params(&self, r: &Round) -> Result<Vec<(Kernel, Handle, CubeCount)>> {
        let mut launches = Vec::new();
        for (i, l) in r.launches.iter().enumerate() {
            let cubes = self.row_cubes(l.items);
            let grid_x = match cubes {
                CubeCount::Static(x, _, _) => x,
                _ => unreachable!("row_cubes is static"),
            };
            let params = r.params(i, grid_x);
            let h = catch("upload", self.kind, || self.client.create_from_slice(bytemuck::bytes_of(&params)))?;
            launches.push((l.kernel, h, cubes));
        }
        Ok(launches)
    }
}

impl<R: Runtime> Prepared for CubeclRound<'_, R> {
    fn enqueue(&mut self) -> Result<()> {
        (0..self.launches.len()).try_for_each(|i| self.launch(i))
    }

    fn stages(&self) -> Vec<&'static str> {
        self.labels.clone()
    }

    fn enqueue_stage(&mut self, i: usize) -> Result<()> {
        self.launch(i)
    }

    fn wait(&mut self) -> Result<()> {
        self.be.sync(self.op)
    }

    /// The language output of the last run.
    fn output(&mut self) -> Result<Vec<f32>> {
        self.region(self.l_out)
    }
}
