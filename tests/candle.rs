//! `rlipv2::candle` (feature `candle`): the CustomOp3 forward and its backward through candle's
//! autograd against the f64 oracle, and its errors.

use candle_core::{DType, Device, Tensor, Var};
use rlipv2::candle::ms_deform_attn;
use rlipv2::problem::{Form, MsDeformAttnInput, MsDeformAttnProblem};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as oracle_forward;
use rlipv2::reference::ms_deform_attn_backward::backward as oracle_backward;
use rlipv2::seeded::{MsDeformAttnData, Rng};

const LEVELS: [(usize, usize); 3] = [(9, 11), (5, 6), (1, 1)];

fn problem() -> MsDeformAttnProblem {
    MsDeformAttnProblem::new(2, 37, 4, 16, 3, &LEVELS, Form::Official)
}

/// `|got − want| ≤ 2e-6 + rtol·|want|` element by element.
fn assert_close(what: &str, got: &Tensor, want: &[f64], rtol: f64) {
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(((g as f64) - w).abs() <= 2e-6 + rtol * w.abs(), "{what}[{i}]: {g} vs oracle {w}");
    }
}

#[test]
fn forward_and_backward_match_the_oracle() {
    let dev = Device::Cpu;
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 7);
    let g = Rng::new(8).fill(pr.output_len(), -1.0, 1.0);
    let value = Var::from_vec(data.value.clone(), pr.value_shape(), &dev).unwrap();
    let loc = Var::from_vec(data.a.clone(), pr.locations_shape(), &dev).unwrap();
    let w = Var::from_vec(data.b.clone(), pr.weights_shape(), &dev).unwrap();
    let out = ms_deform_attn(value.as_tensor(), &LEVELS, loc.as_tensor(), w.as_tensor()).unwrap();
    let input =
        MsDeformAttnInput::Official { value: &data.value, sampling_locations: &data.a, attention_weights: &data.b };
    assert_close("output", &out, &oracle_forward::<f64>(&pr, &input), 1e-5);
    let loss = (out * Tensor::from_vec(g.clone(), pr.output_shape(), &dev).unwrap()).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let (gv, gl, gw) = oracle_backward::<f64>(&pr, &input, &g);
    assert_close("grad_value", grads.get(&value).unwrap(), &gv, 1e-4);
    assert_close("grad_sampling_locations", grads.get(&loc).unwrap(), &gl, 1e-4);
    assert_close("grad_attention_weights", grads.get(&w).unwrap(), &gw, 1e-4);
}

/// A strided input (a transposed view) gives the same output as its contiguous copy.
#[test]
fn strided_input_is_handled() {
    let dev = Device::Cpu;
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 9);
    let value = Tensor::from_vec(data.value.clone(), pr.value_shape(), &dev).unwrap();
    let strided = value.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
    assert!(!strided.is_contiguous());
    let loc = Tensor::from_vec(data.a.clone(), pr.locations_shape(), &dev).unwrap();
    let w = Tensor::from_vec(data.b.clone(), pr.weights_shape(), &dev).unwrap();
    let a = ms_deform_attn(&value, &LEVELS, &loc, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = ms_deform_attn(&strided, &LEVELS, &loc, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
}

/// Bad shapes and dtypes are errors naming the tensor.
#[test]
fn bad_inputs_are_errors() {
    let dev = Device::Cpu;
    let pr = problem();
    let value = Tensor::zeros(pr.value_shape(), DType::F32, &dev).unwrap();
    let loc = Tensor::zeros(pr.locations_shape(), DType::F32, &dev).unwrap();
    let w = Tensor::zeros(pr.weights_shape(), DType::F32, &dev).unwrap();
    let e = ms_deform_attn(&value, &LEVELS[..2], &loc, &w).unwrap_err().to_string();
    assert!(e.contains("value") || e.contains("sampling_locations"), "{e}");
    let e = ms_deform_attn(&value, &LEVELS, &loc, &w.narrow(4, 0, 2).unwrap()).unwrap_err().to_string();
    assert!(e.contains("attention_weights"), "{e}");
    let e = ms_deform_attn(&value.to_dtype(DType::F64).unwrap(), &LEVELS, &loc, &w).unwrap_err().to_string();
    assert!(e.contains("value") && e.contains("f32"), "{e}");
    let odd = Tensor::zeros((2, pr.tokens, 4, 12), DType::F32, &dev).unwrap();
    let e = ms_deform_attn(&odd, &LEVELS, &loc, &w).unwrap_err().to_string();
    assert!(e.contains("multiple of 8"), "{e}");
}
