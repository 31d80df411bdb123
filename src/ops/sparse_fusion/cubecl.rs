//! `sparse_fusion` on the cubecl backend: a whole ALIF round (`backend::fusion_plan`) in 8
//! launches of `kernels/sparse_fusion.rs` over one arena, host to host, prepared, or on tensors
//! with the round's weights bound once; and the same round op by op (the side-by-side baseline).

use cubecl::prelude::*;

use super::{SparseFusionKernel, SparseFusionProblem, OP};
use crate::backend::cubecl::{retag, Buf, CubeclBackend};
use crate::backend::fusion_plan::{self, WeightOffsets};
use crate::backend::{Checked, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::{BertLayerWeights, GatedCrossAttnWeights};

/// A round's weights on the device (the arena's head, uploaded once) and the last arena built
/// on them, reused while the token counts stay the same.
struct BoundRound {
    weights: Buf,
    offsets: WeightOffsets,
    arena: std::sync::Mutex<Option<Buf>>,
}

impl<R: Runtime> SparseFusionKernel for CubeclBackend<R> {
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
        let r = fusion_plan::sparse_fusion(self.kind.name(), p, memory, pos, lang, mask, fw, bw)?;
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
        let r = fusion_plan::sparse_fusion(self.kind.name(), p, memory, pos, lang, mask, fw, bw)?;
        Ok(Box::new(self.prepare_round(OP, r)?))
    }
    fn launch_prepare_sparse_fusion_unfused<'a>(
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
    fn launch_bind_sparse_fusion(
        &self,
        _: Checked,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        let (host, offsets) = fusion_plan::sparse_fusion_weights(p, fw, bw);
        let weights =
            (self.upload("round weights", bytemuck::cast_slice(&host)).map_err(|e| retag(e, OP))?, host.len());
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
        let bound = bound.ok_or_else(|| Error::Device {
            backend: self.kind.name().into(),
            reason: "sparse_fusion: the round's weights are not bound".into(),
        })?;
        let br = bound.buffer::<BoundRound>(self.id, self.kind.name(), "round weights")?;
        let r = fusion_plan::sparse_fusion_layout(self.kind.name(), p, &br.offsets)?;
        let bytes = r.arena_bytes();
        let max = self.client.properties().memory.max_page_size;
        if bytes > max {
            return Err(Error::Unsupported { op: OP, backend: self.kind.name().into(), reason: format!("the round's arena (inputs, weights and intermediates) needs {bytes} bytes, but the device allocates at most {max} bytes per buffer") });
        }
        let mem = self.resident(OP, "memory", memory)?;
        let (posb, langb) = (self.resident(OP, "pos", pos)?, self.resident(OP, "lang", lang)?);
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
        let out = self.out(OP, r.l_out.1)?;
        self.copy(&arena, r.l_out.0 as usize, &out, 0, r.l_out.1)?;
        Ok(self.tensor(out))
    }
}
