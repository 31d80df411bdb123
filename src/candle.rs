//! `ms_deform_attn` as a candle `CustomOp3` (feature `candle`, candle-core 0.11), its `bwd`
//! wired to our deterministic backward: `loss.backward()` gives the gradients of `value`,
//! `sampling_locations` and `attention_weights`.
//!
//! Runs on candle's cpu device (our cpu kernels on candle's own storage, read in place). Not on
//! candle's CUDA or Metal devices: our GPU kernels run on cubecl's CUDA context or a wgpu device,
//! and neither can adopt memory allocated by another runtime (candle's cudarc buffers, its
//! `MTLBuffer`s) in the versions pinned here, so the op there answers candle's "no cuda/metal
//! implementation" error instead of copying through the host behind the caller's back.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use crate::backend::Ops as _;
use crate::error::Error;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem};

/// Op name in errors.
const OP: &str = "candle::ms_deform_attn";

/// The op for one problem (official form).
struct MsDeformAttn(MsDeformAttnProblem);

/// A contiguous f32 view of `s` as laid out by `l`.
fn f32_slice<'a>(what: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        return Err(candle_core::Error::msg(Error::DType {
            op: OP,
            what: what.into(),
            expected: "f32".into(),
            got: format!("{:?}", s.dtype()),
        }));
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => Err(candle_core::Error::msg(format!("{OP}: `{what}` must be contiguous"))),
    }
}

impl CustomOp3 for MsDeformAttn {
    fn name(&self) -> &'static str {
        "rlipv2-ms_deform_attn"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let pr = &self.0;
        let input = MsDeformAttnInput::Official {
            value: f32_slice("value", s1, l1)?,
            sampling_locations: f32_slice("sampling_locations", s2, l2)?,
            attention_weights: f32_slice("attention_weights", s3, l3)?,
        };
        let out = crate::backend::cpu::CpuBackend::new()
            .ms_deform_attn(pr, &input, DType::F32)
            .map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F32(out), Shape::from(pr.output_shape())))
    }

    fn bwd(
        &self,
        value: &Tensor,
        sampling_locations: &Tensor,
        attention_weights: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let pr = &self.0;
        let flat = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (v, loc, w, g) =
            (flat(value)?, flat(sampling_locations)?, flat(attention_weights)?, flat(&grad_res.contiguous()?)?);
        let input = MsDeformAttnInput::Official { value: &v, sampling_locations: &loc, attention_weights: &w };
        let grads = crate::backend::cpu::CpuBackend::new()
            .ms_deform_attn_backward(pr, &input, &g, DType::F32)
            .map_err(candle_core::Error::msg)?;
        let device = value.device();
        Ok((
            Some(Tensor::from_vec(grads.value, pr.value_shape(), device)?),
            Some(Tensor::from_vec(grads.sampling, pr.locations_shape(), device)?),
            Some(Tensor::from_vec(grads.attention, pr.weights_shape(), device)?),
        ))
    }
}

/// Multi-scale deformable attention on candle tensors (official semantics, spec §3):
/// `value [B,S,M,D]` with the levels' `spatial_shapes` `(H_l, W_l)` (S = Σ H_l·W_l),
/// `sampling_locations [B,Q,M,L,P,2]`, `attention_weights [B,Q,M,L,P]`, all f32 on the cpu
/// device → `output [B,Q,M·D]`, differentiable in all three (`Var`s get gradients from
/// `backward()`). Shapes, dtypes and limits are checked first: a mismatch is an error naming the
/// tensor.
pub fn ms_deform_attn(
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: &Tensor,
    attention_weights: &Tensor,
) -> candle_core::Result<Tensor> {
    let err = candle_core::Error::msg;
    let (b, s, m, d) = value.dims4().map_err(|_| err(Error::shape(OP, "value", "[B,S,M,D]", value.dims())))?;
    let loc_dims = sampling_locations.dims();
    if loc_dims.len() != 6 {
        return Err(err(Error::shape(OP, "sampling_locations", "[B,Q,M,L,P,2]", loc_dims)));
    }
    let pr = MsDeformAttnProblem::new(b, loc_dims[1], m, d, loc_dims[4], spatial_shapes, Form::Official);
    pr.validate().map_err(err)?;
    if s != pr.tokens {
        return Err(err(Error::shape(OP, "value", pr.value_shape(), value.dims())));
    }
    for (what, t, want) in [
        ("sampling_locations", sampling_locations, pr.locations_shape()),
        ("attention_weights", attention_weights, pr.weights_shape()),
    ] {
        if t.dims() != want.as_slice() {
            return Err(err(Error::shape(OP, what, want, t.dims())));
        }
    }
    for (what, t) in
        [("value", value), ("sampling_locations", sampling_locations), ("attention_weights", attention_weights)]
    {
        if t.dtype() != candle_core::DType::F32 {
            return Err(err(Error::DType {
                op: OP,
                what: what.into(),
                expected: "f32".into(),
                got: format!("{:?}", t.dtype()),
            }));
        }
    }
    value.contiguous()?.apply_op3(&sampling_locations.contiguous()?, &attention_weights.contiguous()?, MsDeformAttn(pr))
}
