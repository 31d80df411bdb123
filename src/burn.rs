//! `ms_deform_attn` on burn tensors (feature `burn`, burn 0.21), with a backward through our
//! deterministic backward kernels:
//! - burn's cubecl backends (`CubeBackend<R, …>`: `burn::backend::Wgpu` built without burn's
//!   `fusion` feature, CUDA) launch our cubecl kernels on burn's own device buffers — no copies,
//!   no host round trip, no sync;
//! - `burn::backend::NdArray` runs our cpu kernels on the tensors' host values;
//! - `burn::backend::Autodiff<B>` over either records the op, so `loss.backward()` gives the
//!   gradients of `value`, `sampling_locations` and `attention_weights`.
//!
//! The official form (the official autograd function's inputs), f32 tensors.

use ::burn::backend::autodiff::checkpoint::base::Checkpointer;
use ::burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use ::burn::backend::autodiff::grads::Gradients;
use ::burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use ::burn::backend::autodiff::Autodiff;
use ::burn::backend::NdArray;
use ::burn::tensor::backend::{AutodiffBackend, Backend};
use ::burn::tensor::ops::{FloatTensor, FloatTensorOps};
use ::burn::tensor::{Shape, Tensor, TensorData, TensorPrimitive};
use burn_cubecl::element::BoolElement;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeRuntime, FloatElement, IntElement};

use crate::backend::cubecl::{
    launch_ms_deform_attn, launch_ms_deform_attn_backward, MsDeformAttnBackwardHandles, MsDeformAttnHandles,
};
use crate::backend::Ops as _;
use crate::error::{Error, Result};
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem};

/// Op name in errors.
const OP: &str = "burn::ms_deform_attn";

/// A burn backend that runs `ms_deform_attn` and its backward. Inputs are contiguous-or-not f32
/// tensors already checked against `problem` by [`ms_deform_attn`].
pub trait MsDeformAttnBackend: Backend {
    /// `output [B,Q,M·D]` of `value [B,S,M,D]`, `sampling_locations [B,Q,M,L,P,2]`,
    /// `attention_weights [B,Q,M,L,P]`.
    fn ms_deform_attn(
        problem: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `[grad_value, grad_sampling_locations, grad_attention_weights]` for `grad_output [B,Q,M·D]`.
    fn ms_deform_attn_backward(
        problem: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
        grad_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// Multi-scale deformable attention on burn tensors (official semantics, spec §3):
/// `value [B,S,M,D]` with the levels' `spatial_shapes` `(H_l, W_l)` (S = Σ H_l·W_l, level `l`
/// starting at token Σ_{k<l} H_k·W_k), `sampling_locations [B,Q,M,L,P,2]` normalized (x, y),
/// `attention_weights [B,Q,M,L,P]` → `output [B,Q,M·D]`. Under `Autodiff` it is differentiable
/// in all three tensors. Shapes, dtypes (f32) and the problem's limits are checked here: a
/// mismatch is an error naming the tensor, before anything runs.
pub fn ms_deform_attn<B: MsDeformAttnBackend>(
    value: Tensor<B, 4>,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: Tensor<B, 6>,
    attention_weights: Tensor<B, 5>,
) -> Result<Tensor<B, 3>> {
    let [b, s, m, d] = value.dims();
    let [_, q, _, l, p, _] = sampling_locations.dims();
    let pr = MsDeformAttnProblem::new(b, q, m, d, p, spatial_shapes, Form::Official);
    pr.validate()?;
    if s != pr.tokens {
        return Err(Error::shape(OP, "value", pr.value_shape(), value.dims()));
    }
    if l != pr.num_levels() || sampling_locations.dims().to_vec() != pr.locations_shape() {
        return Err(Error::shape(OP, "sampling_locations", pr.locations_shape(), sampling_locations.dims()));
    }
    if attention_weights.dims().to_vec() != pr.weights_shape() {
        return Err(Error::shape(OP, "attention_weights", pr.weights_shape(), attention_weights.dims()));
    }
    for (what, dtype) in [
        ("value", value.dtype()),
        ("sampling_locations", sampling_locations.dtype()),
        ("attention_weights", attention_weights.dtype()),
    ] {
        if dtype != ::burn::tensor::DType::F32 {
            return Err(Error::DType { op: OP, what: what.into(), expected: "F32".into(), got: format!("{dtype:?}") });
        }
    }
    let out = B::ms_deform_attn(
        &pr,
        value.into_primitive().tensor(),
        sampling_locations.into_primitive().tensor(),
        attention_weights.into_primitive().tensor(),
    );
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

/// A device error inside a burn op, which cannot return one: burn's own ops panic the same way.
fn fail(e: Error) -> ! {
    panic!("rlipv2 {OP}: {e}")
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> MsDeformAttnBackend for CubeBackend<R, F, I, BT> {
    fn ms_deform_attn(
        pr: &MsDeformAttnProblem,
        value: CubeTensor<R>,
        sampling_locations: CubeTensor<R>,
        attention_weights: CubeTensor<R>,
    ) -> CubeTensor<R> {
        let (value, loc, w) =
            (into_contiguous(value), into_contiguous(sampling_locations), into_contiguous(attention_weights));
        let out = f32_like(&value, pr.output_shape());
        let h = MsDeformAttnHandles {
            value: value.handle.clone(),
            sampling: loc.handle.clone(),
            attention: w.handle.clone(),
            reference: None,
            output: out.handle.clone(),
        };
        launch_ms_deform_attn(&value.client, pr, DType::F32, &h).unwrap_or_else(|e| fail(e));
        out
    }

    fn ms_deform_attn_backward(
        pr: &MsDeformAttnProblem,
        value: CubeTensor<R>,
        sampling_locations: CubeTensor<R>,
        attention_weights: CubeTensor<R>,
        grad_output: CubeTensor<R>,
    ) -> [CubeTensor<R>; 3] {
        let (value, loc, w) =
            (into_contiguous(value), into_contiguous(sampling_locations), into_contiguous(attention_weights));
        let g = into_contiguous(grad_output);
        let grads = [pr.value_shape(), pr.locations_shape(), pr.weights_shape()].map(|s| f32_like(&value, s));
        let h = MsDeformAttnBackwardHandles {
            value: value.handle.clone(),
            sampling: loc.handle.clone(),
            attention: w.handle.clone(),
            reference: None,
            grad_output: g.handle.clone(),
            grad_value: grads[0].handle.clone(),
            grad_sampling: grads[1].handle.clone(),
            grad_attention: grads[2].handle.clone(),
        };
        launch_ms_deform_attn_backward(&value.client, pr, DType::F32, &h, crate::backend::cubecl::CUBE)
            .unwrap_or_else(|e| fail(e));
        grads
    }
}

/// A new contiguous f32 tensor of `shape` on `like`'s client and device (contents undefined
/// until a kernel writes them).
fn f32_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Vec<usize>) -> CubeTensor<R> {
    let shape = Shape::from(shape);
    let handle = like.client.empty(shape.num_elements().max(1) * 4);
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), shape, handle, ::burn::tensor::DType::F32)
}

thread_local! {
    /// Tensors this module has read back to the host (the NdArray path reads its inputs; the
    /// cubecl path never does — it only binds burn's device handles).
    static HOST_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many tensors this module has read to the host so far on this thread: a caller can check
/// that a cubecl-backed training step made none.
pub fn host_reads() -> u64 {
    HOST_READS.get()
}

/// The f32 values of a host backend's tensor.
fn host_values<B: Backend>(t: FloatTensor<B>) -> Vec<f32> {
    HOST_READS.set(HOST_READS.get() + 1);
    let data = pollster::block_on(B::float_into_data(t))
        .unwrap_or_else(|e| fail(Error::Device { backend: "burn".into(), reason: format!("reading a tensor: {e:?}") }));
    data.into_vec::<f32>().unwrap_or_else(|e| fail(Error::Device { backend: "burn".into(), reason: format!("{e:?}") }))
}

impl MsDeformAttnBackend for NdArray<f32> {
    fn ms_deform_attn(
        pr: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let device = Self::float_device(&value);
        let [v, loc, w] = [value, sampling_locations, attention_weights].map(host_values::<Self>);
        let input = MsDeformAttnInput::Official { value: &v, sampling_locations: &loc, attention_weights: &w };
        let out =
            crate::backend::cpu::CpuBackend::new().ms_deform_attn(pr, &input, DType::F32).unwrap_or_else(|e| fail(e));
        Self::float_from_data(TensorData::new(out, pr.output_shape()), &device)
    }

    fn ms_deform_attn_backward(
        pr: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
        grad_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let device = Self::float_device(&value);
        let [v, loc, w, g] = [value, sampling_locations, attention_weights, grad_output].map(host_values::<Self>);
        let input = MsDeformAttnInput::Official { value: &v, sampling_locations: &loc, attention_weights: &w };
        let grads = crate::backend::cpu::CpuBackend::new()
            .ms_deform_attn_backward(pr, &input, &g, DType::F32)
            .unwrap_or_else(|e| fail(e));
        let tensor = |data: Vec<f32>, shape: Vec<usize>| Self::float_from_data(TensorData::new(data, shape), &device);
        [
            tensor(grads.value, pr.value_shape()),
            tensor(grads.sampling, pr.locations_shape()),
            tensor(grads.attention, pr.weights_shape()),
        ]
    }
}

/// The autodiff node of one call: the inputs it needs for the backward, kept as primitives.
#[derive(Debug)]
struct MsdaBackward;

impl<B: MsDeformAttnBackend> Backward<B, 3> for MsdaBackward {
    type State = (MsDeformAttnProblem, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_value, node_loc, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (pr, value, loc, w) = ops.state;
        let [g_value, g_loc, g_w] = B::ms_deform_attn_backward(&pr, value, loc, w, grad);
        for (node, g) in [(node_value, g_value), (node_loc, g_loc), (node_w, g_w)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: MsDeformAttnBackend, C: CheckpointStrategy> MsDeformAttnBackend for Autodiff<B, C> {
    fn ms_deform_attn(
        pr: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let parents = [value.node.clone(), sampling_locations.node.clone(), attention_weights.node.clone()];
        match MsdaBackward.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (v, loc, w) = (value.primitive, sampling_locations.primitive, attention_weights.primitive);
                let out = B::ms_deform_attn(pr, v.clone(), loc.clone(), w.clone());
                prep.finish((pr.clone(), v, loc, w), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::ms_deform_attn(
                pr,
                value.primitive,
                sampling_locations.primitive,
                attention_weights.primitive,
            )),
        }
    }

    fn ms_deform_attn_backward(
        pr: &MsDeformAttnProblem,
        value: FloatTensor<Self>,
        sampling_locations: FloatTensor<Self>,
        attention_weights: FloatTensor<Self>,
        grad_output: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        // the gradients as plain (untracked) values: no second-order graph through the op
        let [v, l, w] = B::ms_deform_attn_backward(
            pr,
            value.primitive,
            sampling_locations.primitive,
            attention_weights.primitive,
            grad_output.primitive,
        );
        [v, l, w].map(<Self as AutodiffBackend>::from_inner)
    }
}
