//! The `ms_deform_attn` input file (official names and layouts).

use std::path::Path;

use safetensors::tensor::Dtype;

use super::{expect_shape, read_bytes, Reader};
use crate::error::{Error, Result};
use crate::problem::ms_deform_attn::{Level, OP};
use crate::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem};

/// Largest H or W of one level the CLI accepts (anything larger is surely a corrupt file).
pub const MAX_SIDE: i64 = 1 << 16;

/// The official-form inputs of `ms_deform_attn`, read from a file.
pub struct MsDeformAttnFile {
    /// The problem the tensors describe.
    pub problem: MsDeformAttnProblem,
    /// `value [B,S,M,D]`.
    pub value: Vec<f32>,
    /// `sampling_locations [B,Q,M,L,P,2]`.
    pub sampling_locations: Vec<f32>,
    /// `attention_weights [B,Q,M,L,P]`.
    pub attention_weights: Vec<f32>,
}

impl MsDeformAttnFile {
    /// The inputs as the backends take them.
    pub fn input(&self) -> MsDeformAttnInput<'_> {
        MsDeformAttnInput::Official {
            value: &self.value,
            sampling_locations: &self.sampling_locations,
            attention_weights: &self.attention_weights,
        }
    }
}

/// Reads `value`, `spatial_shapes`, `level_start_index`, `sampling_locations` and
/// `attention_weights` (official names and layouts) and checks them against each other.
pub fn read_ms_deform_attn(path: &Path) -> Result<MsDeformAttnFile> {
    let bytes = read_bytes(path)?;
    forward_inputs(OP, &Reader::parse(OP, path, &bytes)?)
}

/// Reads the forward's inputs (as [`read_ms_deform_attn`]) and `grad_output` f32 `[B,Q,M·D]`,
/// for `ms_deform_attn_backward`.
pub fn read_ms_deform_attn_backward(path: &Path) -> Result<(MsDeformAttnFile, Vec<f32>)> {
    const BWD: &str = crate::problem::ms_deform_attn_backward::OP;
    let bytes = read_bytes(path)?;
    let r = Reader::parse(BWD, path, &bytes)?;
    let file = forward_inputs(BWD, &r)?;
    let g = r.tensor("grad_output", Dtype::F32, 3)?;
    let pr = &file.problem;
    expect_shape(BWD, "grad_output", g.shape(), &[pr.batch, pr.queries, pr.heads * pr.channels])?;
    Ok((file, bytemuck::pod_collect_to_vec(g.data())))
}

/// The five forward tensors of `r`, checked against each other; errors name `op`.
fn forward_inputs(op: &'static str, r: &Reader) -> Result<MsDeformAttnFile> {
    let value = r.tensor("value", Dtype::F32, 4)?;
    let shapes = r.tensor("spatial_shapes", Dtype::I64, 2)?;
    let starts = r.tensor("level_start_index", Dtype::I64, 1)?;
    let loc = r.tensor("sampling_locations", Dtype::F32, 6)?;
    let aw = r.tensor("attention_weights", Dtype::F32, 5)?;

    let hw: Vec<i64> = bytemuck::pod_collect_to_vec(shapes.data());
    let st: Vec<i64> = bytemuck::pod_collect_to_vec(starts.data());
    let problem = official_problem(
        op,
        OfficialShapes {
            value: value.shape(),
            spatial_shapes: (shapes.shape(), &hw),
            level_start_index: (starts.shape(), &st),
            sampling_locations: loc.shape(),
            attention_weights: aw.shape(),
        },
    )?;
    Ok(MsDeformAttnFile {
        problem,
        value: bytemuck::pod_collect_to_vec(value.data()),
        sampling_locations: bytemuck::pod_collect_to_vec(loc.data()),
        attention_weights: bytemuck::pod_collect_to_vec(aw.data()),
    })
}

/// The shapes of the official form's five tensors, with the values of the two index tensors.
pub struct OfficialShapes<'a> {
    /// `value`: `[B,S,M,D]`.
    pub value: &'a [usize],
    /// `spatial_shapes`: its shape (`[L,2]`) and its (H, W) values, row-major.
    pub spatial_shapes: (&'a [usize], &'a [i64]),
    /// `level_start_index`: its shape (`[L]`) and values.
    pub level_start_index: (&'a [usize], &'a [i64]),
    /// `sampling_locations`: `[B,Q,M,L,P,2]`.
    pub sampling_locations: &'a [usize],
    /// `attention_weights`: `[B,Q,M,L,P]`.
    pub attention_weights: &'a [usize],
}

/// The problem the official form's tensors describe, checked against each other and the op's
/// limits; an error names `op` and the tensor. One check for the CLI's files and the Python
/// binding's arrays, so both say the same thing.
pub fn official_problem(op: &'static str, t: OfficialShapes) -> Result<MsDeformAttnProblem> {
    let [b, s, m, d] = <[usize; 4]>::try_from(t.value).map_err(|_| Error::shape(op, "value", "[B,S,M,D]", t.value))?;
    let (shape_dims, hw) = t.spatial_shapes;
    let (start_dims, st) = t.level_start_index;
    if shape_dims.len() != 2 {
        return Err(Error::shape(op, "spatial_shapes", "[L,2]", shape_dims));
    }
    let l = shape_dims[0];
    expect_shape(op, "spatial_shapes", shape_dims, &[l, 2])?;
    expect_shape(op, "level_start_index", start_dims, &[l])?;
    let loc = t.sampling_locations;
    if loc.len() != 6 {
        return Err(Error::shape(op, "sampling_locations", "[B,Q,M,L,P,2]", loc));
    }
    let (q, p) = (loc[1], loc[4]);
    expect_shape(op, "sampling_locations", loc, &[b, q, m, l, p, 2])?;
    expect_shape(op, "attention_weights", t.attention_weights, &[b, q, m, l, p])?;
    if hw.len() != 2 * l || st.len() != l {
        return Err(Error::limit(op, "spatial_shapes", "the values do not match the shapes given"));
    }
    let mut levels = Vec::with_capacity(l);
    for i in 0..l {
        let (h, w) = (hw[2 * i], hw[2 * i + 1]);
        if !(1..=MAX_SIDE).contains(&h) || !(1..=MAX_SIDE).contains(&w) {
            return Err(Error::limit(
                op,
                "spatial_shapes",
                format!("level {i} is {h}×{w}; H and W must be in 1..={MAX_SIDE}"),
            ));
        }
        if st[i] < 0 {
            return Err(Error::limit(op, "level_start_index", format!("level {i} starts at {}", st[i])));
        }
        levels.push(Level { h: h as usize, w: w as usize, start: st[i] as usize });
    }
    let problem = MsDeformAttnProblem {
        batch: b,
        queries: q,
        heads: m,
        channels: d,
        points: p,
        levels,
        tokens: s,
        form: Form::Official,
    };
    problem.validate()?;
    Ok(problem)
}
