//! cubecl ALIF ops: the round planned in `backend::fusion_plan` (`gated_cross_attn` in 3 launches,
//! a whole `sparse_fusion` round in 8), launched from `kernels/sparse_fusion.rs` over one arena.

use std::mem::{offset_of, size_of};

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::resident::Buf;
use super::{catch, retag, CubeclBackend};
use crate::backend::fusion_plan::{self, FusionParams, Job, Kernel, Round, WeightOffsets};
use crate::backend::{Checked, FusionOps, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::kernels::sparse_fusion as k;
use crate::problem::{BertLayerWeights, GatedCrossAttnProblem, GatedCrossAttnWeights, SparseFusionProblem};

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
pub(super) struct CubeclRound<'a, R: Runtime> {
    be: &'a CubeclBackend<R>,
    op: &'static str,
    arena: (Handle, usize),
    launches: Vec<(Kernel, Handle, CubeCount)>,
    labels: Vec<&'static str>,
    v_out: (u32, usize),
    l_out: (u32, usize),
}

impl<R: Runtime> CubeclBackend<R> {
    fn prepare_round(&self, op: &'static str, r: Round) -> Result<CubeclRound<'_, R>> {
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

    fn run_round(&self, op: &'static str, r: Round) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut round = self.prepare_round(op, r)?;
        round.run()?;
        Ok((round.region(round.v_out)?, round.region(round.l_out)?))
    }
}

impl<R: Runtime> CubeclRound<'_, R> {
    fn device_err(&self, e: impl std::fmt::Debug) -> Error {
        Error::Device { backend: self.be.kind.name().into(), reason: format!("{}: {e:?}", self.op) }
    }

    /// `n` f32 values at element offset `o` of the arena.
    fn region(&self, (o, n): (u32, usize)) -> Result<Vec<f32>> {
        let total = self.arena.1 as u64 * 4;
        let (start, end) = (o as u64 * 4, (o as u64 + n as u64) * 4);
        let h = self.arena.0.clone().offset_start(start).offset_end(total - end);
        let bytes = catch("read", self.be.kind, || self.be.client.read_one(h))?.map_err(|e| self.device_err(e))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

impl<R: Runtime> CubeclRound<'_, R> {
    fn launch(&self, i: usize) -> Result<()> {
        let (kernel, params, cubes) = &self.launches[i];
        self.be.launch_round_kernel(*kernel, &self.arena, params, cubes.clone())
    }
}

impl<R: Runtime> CubeclBackend<R> {
    /// Enqueues one kernel of a round on `arena` (handle, f32 length) with parameter block `params`.
    pub(super) fn launch_round_kernel(
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
    pub(super) fn round_params(&self, r: &Round) -> Result<Vec<(Kernel, Handle, CubeCount)>> {
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

pub(super) fn gated_cross_attn<R: Runtime>(
    be: &CubeclBackend<R>,
    p: &GatedCrossAttnProblem,
    v: &[f32],
    pos: &[f32],
    l: &[f32],
    w: &GatedCrossAttnWeights,
) -> Result<(Vec<f32>, Vec<f32>)> {
    be.run_round(crate::problem::gated_cross_attn::OP, fusion_plan::gated_cross_attn(be.kind.name(), p, v, pos, l, w)?)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn sparse_fusion<R: Runtime>(
    be: &CubeclBackend<R>,
    p: &SparseFusionProblem,
    memory: &mut [f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<Vec<f32>> {
    let (v_new, lang_out) = be.run_round(
        crate::problem::sparse_fusion::OP,
        fusion_plan::sparse_fusion(be.kind.name(), p, memory, pos, lang, mask, fw, bw)?,
    )?;
    p.scatter_level(memory, &v_new);
    Ok(lang_out)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn prepare_sparse_fusion<'a, R: Runtime>(
    be: &'a CubeclBackend<R>,
    p: &SparseFusionProblem,
    memory: &[f32],
    pos: &[f32],
    lang: &[f32],
    mask: Option<&[f32]>,
    fw: &GatedCrossAttnWeights,
    bw: &BertLayerWeights,
) -> Result<CubeclRound<'a, R>> {
    be.prepare_round(
        crate::problem::sparse_fusion::OP,
        fusion_plan::sparse_fusion(be.kind.name(), p, memory, pos, lang, mask, fw, bw)?,
    )
}

const SF_OP: &str = crate::problem::sparse_fusion::OP;

/// A round's weights on the device (the arena's head, uploaded once) and the last arena built
/// on them, reused while the token counts stay the same.
struct BoundRound {
    weights: Buf,
    offsets: WeightOffsets,
    arena: std::sync::Mutex<Option<Buf>>,
}

impl<R: Runtime> FusionOps for CubeclBackend<R> {
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
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Ok(Box::new(super::unfused::prepare(self, p, memory, pos, lang, mask, fw, bw)?))
    }
    fn bind_sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        let (host, offsets) = fusion_plan::sparse_fusion_weights(p, fw, bw);
        let weights =
            (self.upload("round weights", bytemuck::cast_slice(&host)).map_err(|e| retag(e, SF_OP))?, host.len());
        Ok(Some(Tensor::device(self.id, host.len(), BoundRound { weights, offsets, arena: Default::default() })))
    }
    /// One round on device tensors, as the wgpu backend's: rows, positions and language copied
    /// into the arena after the bound weights, the 8 launches, the fused rows copied back over
    /// `memory`'s last level and the language output into a new tensor; no sync.
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
        let bound = bound.ok_or_else(|| Error::Device {
            backend: self.kind.name().into(),
            reason: "sparse_fusion: the round's weights are not bound".into(),
        })?;
        let br = bound.buffer::<BoundRound>(self.id, self.kind.name(), "round weights")?;
        let r = fusion_plan::sparse_fusion_layout(self.kind.name(), p, &br.offsets)?;
        let bytes = r.arena_bytes();
        let max = self.client.properties().memory.max_page_size;
        if bytes > max {
            return Err(Error::Unsupported { op: SF_OP, backend: self.kind.name().into(), reason: format!("the round's arena (inputs, weights and intermediates) needs {bytes} bytes, but the device allocates at most {max} bytes per buffer") });
        }
        let mem = self.resident(SF_OP, "memory", memory)?;
        let (posb, langb) = (self.resident(SF_OP, "pos", pos)?, self.resident(SF_OP, "lang", lang)?);
        let len = (bytes / 4) as usize;
        let mut cached = br.arena.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.as_ref().is_none_or(|a| a.1 != len);
        if fresh {
            *cached = Some((self.client.empty(bytes as usize), len));
        }
        let arena = cached.clone().expect("set above");
        drop(cached);
        if fresh {
            self.copy(&br.weights, 0, &arena, 0, br.weights.1)?;
        }
        let f = &p.fusion;
        let rows = f.nv * f.v_dim;
        for b in 0..f.batch {
            let at = p.level(b).start;
            self.copy(&mem, at, &arena, r.v_in as usize + b * rows, rows)?;
            self.copy(&posb, at, &arena, r.pos_in as usize + b * rows, rows)?;
        }
        self.copy(&langb, 0, &arena, r.l_in as usize, langb.1.min(lang.len()))?;
        for (kernel, params, cubes) in self.round_params(&r)? {
            self.launch_round_kernel(kernel, &arena, &params, cubes)?;
        }
        for b in 0..f.batch {
            self.copy(&arena, r.v_out.0 as usize + b * rows, &mem, p.level(b).start, rows)?;
        }
        let out = self.out(SF_OP, r.l_out.1)?;
        self.copy(&arena, r.l_out.0 as usize, &out, 0, r.l_out.1)?;
        Ok(self.tensor(out))
    }
}
