//! `sparse_fusion` on the wgpu backend: a whole ALIF round (`backend::fusion_plan`) in 8 launches
//! of `shaders/sparse_fusion.wgsl` over one arena, host to host, prepared, or on tensors with the
//! round's weights bound once.

use super::{SparseFusionKernel, SparseFusionProblem, OP};
use crate::backend::fusion_plan::{self, WeightOffsets};
use crate::backend::wgpu::{device_err, WgpuBackend, TENSOR_USAGE};
use crate::backend::{BackendKind, Checked, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::{BertLayerWeights, GatedCrossAttnWeights};

/// A `sparse_fusion` round's weights on the device (the arena's head, uploaded once) and the
/// last arena built on them, reused while the token counts stay the same.
struct BoundRound {
    weights: wgpu::Buffer,
    offsets: WeightOffsets,
    arena: std::sync::Mutex<Option<wgpu::Buffer>>,
}

impl SparseFusionKernel for WgpuBackend {
    fn launch_sparse_fusion(
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
        let r = fusion_plan::sparse_fusion(BackendKind::Wgpu.name(), p, memory, pos, lang, mask, fw, bw)?;
        let (v_new, lang_out) = self.run_round(OP, r)?;
        p.scatter_level(memory, &v_new);
        Ok(lang_out)
    }
    /// A resident round for repeated timed runs.
    fn launch_prepare_sparse_fusion<'a>(
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
        let r = fusion_plan::sparse_fusion(BackendKind::Wgpu.name(), p, memory, pos, lang, mask, fw, bw)?;
        Ok(Box::new(self.prepare_round(OP, r)?))
    }
    fn launch_prepare_sparse_fusion_unfused<'a>(
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
            op: OP,
            backend: BackendKind::Wgpu.name().into(),
            reason: "no op-by-op round here (cubecl-wgpu has one)".into(),
        })
    }
    fn launch_bind_sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        let (host, offsets) = fusion_plan::sparse_fusion_weights(p, fw, bw);
        let weights = self.buffer(OP, "round weights", bytemuck::cast_slice(&host), TENSOR_USAGE)?;
        Ok(Some(Tensor::device(self.id, host.len(), BoundRound { weights, offsets, arena: Default::default() })))
    }
    fn launch_sparse_fusion_t(
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
        let br = bound.buffer::<BoundRound>(self.id, BackendKind::Wgpu.name(), "round weights")?;
        let r = fusion_plan::sparse_fusion_layout(BackendKind::Wgpu.name(), p, &br.offsets)?;
        let bytes = r.arena_bytes();
        self.check_size(OP, "arena (inputs, weights and intermediates)", bytes)?;
        let mem = self.resident(OP, "memory", memory)?;
        let (posb, langb) = (self.resident(OP, "pos", pos)?, self.resident(OP, "lang", lang)?);
        let mut cached = br.arena.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cached.as_ref().is_none_or(|a| a.size() != bytes);
        if fresh {
            *cached = Some(self.empty(OP, "arena", bytes, TENSOR_USAGE)?);
        }
        let arena = cached.clone().expect("set above");
        drop(cached);
        let recorded = self.bind_round(OP, &r, &arena)?;
        let l_len = r.l_out.1;
        let (out, out_tensor) = self.output(OP, l_len)?;
        let f = &p.fusion;
        let rows = (f.nv * f.v_dim * 4) as u64;
        let wbytes = br.offsets.len as u64 * 4;
        self.record(OP, |enc| {
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
                    enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(OP), timestamp_writes: None });
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
