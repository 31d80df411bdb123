//! `rlipv2::burn` (feature `burn`): the op on burn tensors against the f64 oracle, forward and
//! through burn's autodiff, on burn's cubecl wgpu backend (Mesa lavapipe in CI) and on NdArray.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Distribution, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use cubecl::wgpu::WgpuRuntime;
use rlipv2::burn::{ms_deform_attn, MsDeformAttnBackend};
use rlipv2::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as oracle_forward;
use rlipv2::reference::ms_deform_attn_backward::backward as oracle_backward;
use rlipv2::seeded::{MsDeformAttnData, Rng};

type Wgpu = CubeBackend<WgpuRuntime, f32, i32, u32>;

const LEVELS: [(usize, usize); 3] = [(9, 11), (5, 6), (1, 1)];

fn problem() -> MsDeformAttnProblem {
    MsDeformAttnProblem::new(2, 37, 4, 16, 3, &LEVELS, Form::Official)
}

fn tensor<B: burn::tensor::backend::Backend, const D: usize>(
    v: &[f32],
    shape: Vec<usize>,
    dev: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), dev)
}

fn values<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().into_vec::<f32>().unwrap()
}

/// `|got − want| ≤ 2e-6 + rtol·|want|` element by element.
fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(((g as f64) - w).abs() <= 2e-6 + rtol * w.abs(), "{what}[{i}]: {g} vs oracle {w}");
    }
}

/// Forward and autodiff gradients of `loss = Σ output ⊙ G` on backend `B` against the oracle.
fn matches_oracle<B: burn::tensor::backend::AutodiffBackend + MsDeformAttnBackend>(dev: &B::Device)
where
    B::InnerBackend: MsDeformAttnBackend,
{
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 7);
    let g = Rng::new(8).fill(pr.output_len(), -1.0, 1.0);
    let value = tensor::<B, 4>(&data.value, pr.value_shape(), dev).require_grad();
    let loc = tensor::<B, 6>(&data.a, pr.locations_shape(), dev).require_grad();
    let w = tensor::<B, 5>(&data.b, pr.weights_shape(), dev).require_grad();
    let out = ms_deform_attn(value.clone(), &LEVELS, loc.clone(), w.clone()).unwrap();
    let input =
        MsDeformAttnInput::Official { value: &data.value, sampling_locations: &data.a, attention_weights: &data.b };
    assert_close("output", &values(out.clone()), &oracle_forward::<f64>(&pr, &input), 1e-5);
    let loss = (out * tensor::<B, 3>(&g, pr.output_shape(), dev)).sum();
    let grads = loss.backward();
    let (gv, gl, gw) = oracle_backward::<f64>(&pr, &input, &g);
    assert_close("grad_value", &values(value.grad(&grads).unwrap()), &gv, 1e-4);
    assert_close("grad_sampling_locations", &values(loc.grad(&grads).unwrap()), &gl, 1e-4);
    assert_close("grad_attention_weights", &values(w.grad(&grads).unwrap()), &gw, 1e-4);
}

#[test]
fn wgpu_autodiff_matches_the_oracle_without_host_reads() {
    let before = rlipv2::burn::host_reads();
    matches_oracle::<Autodiff<Wgpu>>(&Default::default());
    assert_eq!(rlipv2::burn::host_reads(), before, "the cubecl path must not read tensors to the host");
}

#[test]
fn ndarray_autodiff_matches_the_oracle() {
    let before = rlipv2::burn::host_reads();
    matches_oracle::<Autodiff<NdArray<f32>>>(&Default::default());
    // the counter sees host reads: forward 3 inputs, backward 3 inputs + grad_output
    assert_eq!(rlipv2::burn::host_reads() - before, 7);
}

/// A strided (non-contiguous) input is made contiguous on the device first, and gives the same
/// output as its contiguous copy.
#[test]
fn wgpu_strided_input_is_handled() {
    let dev = Default::default();
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 9);
    let value = tensor::<Wgpu, 4>(&data.value, pr.value_shape(), &dev);
    let loc = tensor::<Wgpu, 6>(&data.a, pr.locations_shape(), &dev);
    let w = tensor::<Wgpu, 5>(&data.b, pr.weights_shape(), &dev);
    // the same values stored [B,M,S,D], seen [B,S,M,D] through a transposed (strided) view
    let (b_n, s_n, m_n, d_n) = (pr.batch, pr.tokens, pr.heads, pr.channels);
    let mut bmsd = vec![0f32; data.value.len()];
    for b in 0..b_n {
        for s in 0..s_n {
            for m in 0..m_n {
                for d in 0..d_n {
                    bmsd[((b * m_n + m) * s_n + s) * d_n + d] = data.value[((b * s_n + s) * m_n + m) * d_n + d];
                }
            }
        }
    }
    let strided = tensor::<Wgpu, 4>(&bmsd, vec![b_n, m_n, s_n, d_n], &dev).swap_dims(1, 2);
    let a = values(ms_deform_attn(value, &LEVELS, loc.clone(), w.clone()).unwrap());
    let b = values(ms_deform_attn(strided, &LEVELS, loc, w).unwrap());
    assert_eq!(a, b);
}

/// Bad shapes and dtypes are errors naming the tensor, before anything runs.
#[test]
fn bad_inputs_are_errors() {
    let dev = Default::default();
    let pr = problem();
    let value = Tensor::<NdArray<f32>, 4>::random(pr.value_shape(), Distribution::Default, &dev);
    let loc = Tensor::<NdArray<f32>, 6>::random(pr.locations_shape(), Distribution::Default, &dev);
    let w = Tensor::<NdArray<f32>, 5>::random(pr.weights_shape(), Distribution::Default, &dev);
    let e = ms_deform_attn(value.clone(), &LEVELS[..2], loc.clone(), w.clone()).unwrap_err().to_string();
    assert!(e.contains("value") || e.contains("sampling_locations"), "{e}");
    let short = w.clone().narrow(4, 0, 2);
    let e = ms_deform_attn(value.clone(), &LEVELS, loc.clone(), short).unwrap_err().to_string();
    assert!(e.contains("attention_weights"), "{e}");
    let odd = Tensor::<NdArray<f32>, 4>::zeros([2, pr.tokens, 4, 12], &dev);
    let e = ms_deform_attn(odd, &LEVELS, loc, w).unwrap_err().to_string();
    assert!(e.contains("multiple of 8"), "{e}");
}
