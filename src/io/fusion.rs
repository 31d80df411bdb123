//! Input and weight files of `gated_cross_attn` and `sparse_fusion`. Weights carry their official
//! state-dict names with a caller-given module prefix (empty = already stripped), e.g.
//! `b_attn.attn.v_proj.weight`, `b_attn.gamma_v`, `attention.self.query.weight`.

use std::path::Path;

use safetensors::tensor::Dtype;

use super::{read_bytes, Reader};
use crate::error::{Error, Result};
use crate::problem::{BertLayerProblem, Gate, GatedCrossAttnProblem, OwnedWeights, SparseFusionProblem};

/// The inputs and weights of `rlipv2 op gated_cross_attn`, checked.
pub struct GatedCrossAttnFile {
    /// Sizes read from the tensors.
    pub problem: GatedCrossAttnProblem,
    /// `v [B,Nv,Cv]`.
    pub v: Vec<f32>,
    /// `pos [B,Nv,Cv]`.
    pub pos: Vec<f32>,
    /// `l [B,T,Cl]`.
    pub l: Vec<f32>,
    /// The 18 `b_attn.*` tensors.
    pub weights: OwnedWeights,
}

/// The inputs and weights of `rlipv2 op sparse_fusion`, checked.
pub struct SparseFusionFile {
    /// Sizes read from the tensors.
    pub problem: SparseFusionProblem,
    /// `memory [B,S,C]`.
    pub memory: Vec<f32>,
    /// `pos [B,S,C]`.
    pub pos: Vec<f32>,
    /// `lang [B,T,Cl]`.
    pub lang: Vec<f32>,
    /// `[B,T]`, 1 = label, 0 = padding
    pub lang_mask: Option<Vec<f32>>,
    /// The fusion tensors.
    pub fusion: OwnedWeights,
    /// The language-layer tensors.
    pub lang_weights: OwnedWeights,
}

/// Loads every tensor of `shapes` as `{prefix}{name}`, each checked for its exact shape.
fn load(r: &Reader, prefix: &str, shapes: Vec<(&'static str, Vec<usize>)>) -> Result<OwnedWeights> {
    let mut w = OwnedWeights { names: Vec::new(), tensors: Vec::new() };
    for (name, shape) in shapes {
        w.tensors.push(r.f32_shaped(&format!("{prefix}{name}"), &shape)?);
        w.names.push(name);
    }
    Ok(w)
}

/// The fusion problem from the activations' shapes and the width of `v_proj`.
#[allow(clippy::too_many_arguments)]
fn fusion_problem(
    op: &'static str,
    w: &Reader,
    prefix: &str,
    batch: usize,
    nv: usize,
    t: usize,
    v_dim: usize,
    l_dim: usize,
    heads: usize,
    gate: Gate,
) -> Result<GatedCrossAttnProblem> {
    let name = format!("{prefix}b_attn.attn.v_proj.weight");
    let (shape, _) = w.f32(&name, 2)?;
    if shape[1] != v_dim {
        return Err(Error::Shape { op, what: name, expected: format!("[E, {v_dim}]"), got: format!("{shape:?}") });
    }
    let p = GatedCrossAttnProblem { batch, nv, t, v_dim, l_dim, embed: shape[0], heads, gate };
    p.validate()?;
    Ok(p)
}

/// Reads `v [B,Nv,Cv]`, `pos [B,Nv,Cv]`, `l [B,T,Cl]` from `input` and the 18 fusion weights from
/// `weights`.
pub fn read_gated_cross_attn(
    input: &Path,
    weights: &Path,
    prefix: &str,
    heads: usize,
    gate: Gate,
) -> Result<GatedCrossAttnFile> {
    const OP: &str = crate::problem::gated_cross_attn::OP;
    let (ib, wb) = (read_bytes(input)?, read_bytes(weights)?);
    let (i, w) = (Reader::parse(OP, input, &ib)?, Reader::parse(OP, weights, &wb)?);
    let (vs, v) = i.f32("v", 3)?;
    let pos = i.f32_shaped("pos", &vs)?;
    let (ls, l) = i.f32("l", 3)?;
    if ls[0] != vs[0] {
        return Err(Error::shape(OP, "l", [vs[0], ls[1], ls[2]], ls));
    }
    let problem = fusion_problem(OP, &w, prefix, vs[0], vs[1], ls[1], vs[2], ls[2], heads, gate)?;
    let weights = load(&w, prefix, problem.weight_shapes())?;
    Ok(GatedCrossAttnFile { problem, v, pos, l, weights })
}

/// Reads `memory [B,S,C]`, `pos [B,S,C]`, `lang [B,T,Cl]`, `level_start_index` i64 `[L]` (the
/// last entry is where the fused level starts) and optional `lang_mask [B,T]` from `input`; the
/// fusion weights under `fusion_prefix` and the language layer under `lang_prefix` from `weights`.
#[allow(clippy::too_many_arguments)]
pub fn read_sparse_fusion(
    input: &Path,
    weights: &Path,
    fusion_prefix: &str,
    lang_prefix: &str,
    heads: usize,
    lang_heads: usize,
    gate: Gate,
) -> Result<SparseFusionFile> {
    const OP: &str = crate::problem::sparse_fusion::OP;
    let (ib, wb) = (read_bytes(input)?, read_bytes(weights)?);
    let (i, w) = (Reader::parse(OP, input, &ib)?, Reader::parse(OP, weights, &wb)?);
    let (ms, memory) = i.f32("memory", 3)?;
    let pos = i.f32_shaped("pos", &ms)?;
    let (ls, lang) = i.f32("lang", 3)?;
    let (b, s, c) = (ms[0], ms[1], ms[2]);
    if ls[0] != b {
        return Err(Error::shape(OP, "lang", [b, ls[1], ls[2]], ls));
    }
    let starts = i.tensor("level_start_index", Dtype::I64, 1)?;
    let starts: Vec<i64> = bytemuck::pod_collect_to_vec(starts.data());
    let start = match starts.last() {
        Some(&x) if x >= 0 && (x as usize) < s => x as usize,
        other => {
            return Err(Error::limit(
                OP,
                "level_start_index",
                format!("last level must start inside the S = {s} tokens, got {other:?}"),
            ))
        }
    };
    let lang_mask = if i.contains("lang_mask") { Some(i.f32_shaped("lang_mask", &[b, ls[1]])?) } else { None };
    let fusion = fusion_problem(OP, &w, fusion_prefix, b, s - start, ls[1], c, ls[2], heads, gate)?;
    let ffn_name = format!("{lang_prefix}intermediate.dense.weight");
    let (ffn_shape, _) = w.f32(&ffn_name, 2)?;
    let lang_p = BertLayerProblem { batch: b, t: ls[1], hidden: ls[2], heads: lang_heads, ffn: ffn_shape[0] };
    let problem = SparseFusionProblem { tokens: s, start, fusion, lang: lang_p };
    problem.validate()?;
    Ok(SparseFusionFile {
        problem,
        memory,
        pos,
        lang,
        lang_mask,
        fusion: load(&w, fusion_prefix, fusion.weight_shapes())?,
        lang_weights: load(&w, lang_prefix, lang_p.weight_shapes())?,
    })
}
