//! `ms_deform_attn_backward`: the oracle against central differences of the forward oracle, every
//! backend against the oracle on the seeded case table (edge coordinates, large logits, the
//! RLIPv2 encoder shapes), and determinism across runs and thread counts.

use rlipv2::backend::{Backend, BackendKind, Ops};
use rlipv2::problem::ms_deform_attn_backward::grad_names;
use rlipv2::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, MsdaGrads, RefKind};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as forward;
use rlipv2::reference::ms_deform_attn_backward::backward;
use rlipv2::seeded::{MsDeformAttnData, Rng};

use crate::common::{assert_close_flat, cases, Tolerance, FORMS};

/// `Σ g · forward(input)` in f64: the scalar whose gradient the backward computes.
fn loss(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, g: &[f32]) -> f64 {
    forward::<f64>(pr, input).iter().zip(g).map(|(y, &g)| y * g as f64).sum()
}

/// The input tensor `which` (0 value, 1 locations/offsets, 2 weights/logits) of `data`.
fn tensor(data: &mut MsDeformAttnData, which: usize) -> &mut Vec<f32> {
    match (which, data.form) {
        (0, _) => &mut data.value,
        (1, Form::Official) => &mut data.a,
        (1, _) => &mut data.b,
        (2, Form::Official) => &mut data.b,
        _ => &mut data.c,
    }
}

/// Whether moving sample coordinate `i` of `data` (tensor 1) between `lo` and `hi` keeps it in
/// the same bilinear cell and on the same side of the validity rule: the forward is linear there.
fn smooth_between(pr: &MsDeformAttnProblem, data: &MsDeformAttnData, i: usize, lo: f32, hi: f32) -> bool {
    let cell = |v: f32| {
        let mut d = data.clone();
        tensor(&mut d, 1)[i] = v;
        let (loc, _) = match pr.form {
            Form::Official => (d.a.iter().map(|&x| x as f64).collect::<Vec<_>>(), ()),
            Form::Fused(kind) => {
                let (l, _) = rlipv2::reference::ms_deform_attn::fused_to_official::<f64>(pr, kind, &d.a, &d.b, &d.c);
                (l, ())
            }
        };
        let s = i / 2;
        let l = (s / pr.points) % pr.num_levels();
        let lv = pr.levels[l];
        let size = if i.is_multiple_of(2) { lv.w } else { lv.h } as f64;
        let c = loc[i] * size - 0.5;
        (c.floor() as i64, c > -1.0 && c < size)
    };
    cell(lo) == cell(hi)
}

/// The oracle is the gradient of the forward oracle: central differences on every input element
/// of small cases of each form (linear pieces exactly, the softmax to O(h²)).
#[test]
fn oracle_matches_central_differences() {
    for form in FORMS {
        let pr = MsDeformAttnProblem::new(1, 4, 2, 8, 2, &[(3, 4), (2, 2)], form);
        let data = MsDeformAttnData::random(&pr, 31);
        let g = Rng::new(32).fill(pr.output_len(), -1.0, 1.0);
        let (gv, gs, ga) = backward::<f64>(&pr, &data.input(), &g);
        let [nv, ns, na] = grad_names(form);
        for (which, name, grad) in [(0, nv, &gv), (1, ns, &gs), (2, na, &ga)] {
            let h = if which == 2 && form != Form::Official { 1e-3 } else { 1e-4 };
            let (mut checked, mut skipped) = (0, 0);
            for (i, &want) in grad.iter().enumerate() {
                let x = tensor(&mut data.clone(), which)[i];
                let (lo, hi) = (x - h, x + h);
                if which == 1 && !smooth_between(&pr, &data, i, lo, hi) {
                    skipped += 1;
                    continue;
                }
                let at = |v: f32| {
                    let mut d = data.clone();
                    tensor(&mut d, which)[i] = v;
                    loss(&pr, &d.input(), &g)
                };
                let fd = (at(hi) - at(lo)) / (hi as f64 - lo as f64);
                let tol = if which == 2 && form != Form::Official { 1e-5 } else { 1e-8 };
                assert!(
                    (fd - want).abs() <= tol * (1.0 + fd.abs()),
                    "{form:?} {name}[{i}]: oracle {want:.9e}, central difference {fd:.9e}"
                );
                checked += 1;
            }
            assert!(
                checked > grad.len() * 9 / 10,
                "{form:?} {name}: only {checked} of {} checked ({skipped} at kinks)",
                grad.len()
            );
            assert!(grad.iter().any(|x| x.abs() > 1e-3), "{form:?} {name}: all gradients ~0, nothing tested");
        }
    }
}

/// A sample exactly on the validity threshold gets no gradient, as in the official kernel; one
/// just inside gets the bilinear derivative of its one in-bounds corner.
#[test]
fn validity_rule_and_zero_padding() {
    let pr = MsDeformAttnProblem::new(1, 1, 1, 8, 1, &[(2, 2)], Form::Official);
    let value: Vec<f32> = (0..4).flat_map(|pix| (0..8).map(move |d| (10 * pix + d) as f32)).collect();
    let g = vec![1.0f32; 8];
    let run = |x: f32, y: f32| {
        backward::<f64>(
            &pr,
            &MsDeformAttnInput::Official { value: &value, sampling_locations: &[x, y], attention_weights: &[0.5] },
            &g,
        )
    };
    // x = −0.25·2 − 0.5 = −1: dropped
    let (gv, gs, ga) = run(-0.25, 0.25);
    assert!(gv.iter().chain(&gs).chain(&ga).all(|&v| v == 0.0));
    // x = 0·2 − 0.5 = −0.5, y = 0.25·2 − 0.5 = 0: half of pixel (0,0); the left corners are padding
    let (gv, gs, ga) = run(0.0, 0.25);
    for (d, &v) in gv[..8].iter().enumerate() {
        assert!((v - 0.25).abs() < 1e-12, "grad_value[(0,0), {d}] = 0.5·0.5");
    }
    assert!(gv[8..].iter().all(|&v| v == 0.0), "no other cell: (1,0) is in bounds but has weight ly = 0");
    let sum_v0: f64 = (0..8).map(|d| d as f64).sum();
    assert!((ga[0] - 0.5 * sum_v0).abs() < 1e-12);
    // ∂/∂x: only the (0,0) corner is inside: weight (1−ly)·lx, so W·a·Σ_d v = 2·0.5·Σ_d v
    assert!((gs[0] - 2.0 * 0.5 * sum_v0).abs() < 1e-12, "{}", gs[0]);
}

fn check_backend(
    be: &dyn Backend,
    pr: &MsDeformAttnProblem,
    data: &MsDeformAttnData,
    g: &[f32],
    dtype: DType,
    label: &str,
    label_case: &str,
) -> Option<MsdaGrads> {
    let got = match be.ms_deform_attn_backward(pr, &data.input(), g, dtype) {
        Ok(got) => got,
        // every backend has the backward in f32; a device may lack a storage type
        Err(e @ rlipv2::Error::Unsupported { .. }) if dtype != DType::F32 => {
            println!("SKIP {}/ms_deform_attn_backward: {e}", be.kind());
            return None;
        }
        Err(e) => panic!("{label}: {e}"),
    };
    // the oracle of a case is computed once per test process and shared by the backends
    let key = format!("ms_deform_attn_backward oracle: {:?} {label_case} {dtype}", pr.form);
    let ((v64, s64, a64), (v32, s32, a32)) = crate::common::once(&key, || {
        let mut rounded = data.clone();
        rounded.value.iter_mut().for_each(|x| *x = rlipv2::backend::reference::round_to(*x, dtype));
        (backward::<f64>(pr, &rounded.input(), g), backward::<f32>(pr, &rounded.input(), g))
    });
    let names = grad_names(pr.form);
    let shapes = [pr.value_shape(), pr.locations_shape(), pr.weights_shape()];
    let tensors = [(&got.value, &v64, &v32), (&got.sampling, &s64, &s32), (&got.attention, &a64, &a32)];
    for (i, (got, r64, r32)) in tensors.into_iter().enumerate() {
        // value gradients to 1e-4 relative; the rest by the f32 policy (accumulation is f32)
        let rtol = if i == 0 { 1e-4 } else { 1e-6 };
        let tol = Tolerance { floor: 2e-6, k: 8.0, rtol };
        assert_close_flat(&format!("{label} / {}", names[i]), &shapes[i], got, r64, r32, &tol);
    }
    Some(got)
}

fn backends_match_oracle(be: &dyn Backend) {
    for form in FORMS {
        for case in cases(form) {
            let g = Rng::new(41).fill(case.problem.output_len(), -1.0, 1.0);
            let label = format!("{} / {form:?} / {}", be.kind(), case.name);
            check_backend(be, &case.problem, &case.data, &g, DType::F32, &label, case.name);
        }
    }
    // f16 storage: value rounded, f32 accumulation
    let case = cases(Form::Fused(RefKind::Points)).remove(3);
    let g = Rng::new(42).fill(case.problem.output_len(), -1.0, 1.0);
    check_backend(
        be,
        &case.problem,
        &case.data,
        &g,
        DType::F16,
        &format!("{} / f16 / {}", be.kind(), case.name),
        case.name,
    );
}

backend_tests! {
    backward_reference_matches_oracle: BackendKind::Reference, backends_match_oracle;
    backward_cpu_matches_oracle: BackendKind::Cpu, backends_match_oracle;
    backward_wgpu_matches_oracle: BackendKind::Wgpu, backends_match_oracle;
    backward_cubecl_wgpu_matches_oracle: BackendKind::CubeclWgpu, backends_match_oracle;
    backward_cubecl_cuda_matches_oracle: BackendKind::CubeclCuda, backends_match_oracle;
}

/// The same call gives bit-identical gradients run to run and in rayon pools of 1, 2 and 3
/// threads (the cpu backend's tasks each own their sums).
#[test]
fn cpu_backward_is_deterministic_across_threads() {
    let be = rlipv2::backend::cpu::CpuBackend::new();
    for form in [Form::Official, Form::Fused(RefKind::Boxes)] {
        let all = cases(form);
        for case in all.iter().filter(|c| c.name.starts_with("realistic") || c.name.starts_with("b2_m8")) {
            let g = Rng::new(43).fill(case.problem.output_len(), -1.0, 1.0);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| be.ms_deform_attn_backward(&case.problem, &case.data.input(), &g, DType::F32).unwrap())
            };
            let first = run(2);
            let bits = |m: &MsdaGrads| {
                [&m.value, &m.sampling, &m.attention].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            };
            for threads in [2, 1, 3] {
                assert!(bits(&run(threads)) == bits(&first), "{form:?} / {}: {threads} threads differ", case.name);
            }
        }
    }
}

/// The bits of every gradient of one call.
fn grad_bits(m: &MsdaGrads) -> [Vec<u32>; 3] {
    [&m.value, &m.sampling, &m.attention].map(|v| v.iter().map(|x| x.to_bits()).collect())
}

/// A GPU backend's gradients are bit-identical run to run and for every launch size `set`
/// accepts (`grad_value` is summed in 64-bit fixed point with integer atomics, exact in any
/// order; the sample gradients are each one invocation's fixed-order sum).
fn gpu_deterministic(be: &dyn Backend, set: &dyn Fn(u32), sizes: &[u32]) {
    // the RLIPv2 level table with 2000 queries (many samples per cell: the atomics contend),
    // and a batched many-head case in the fused box form
    for (form, name) in [(Form::Official, "realistic"), (Form::Fused(RefKind::Boxes), "b2_m8")] {
        let all = cases(form);
        for case in all.iter().filter(|c| c.name.starts_with(name)) {
            let g = Rng::new(44).fill(case.problem.output_len(), -1.0, 1.0);
            let run = |size: u32| {
                set(size);
                be.ms_deform_attn_backward(&case.problem, &case.data.input(), &g, DType::F32).unwrap()
            };
            let first = grad_bits(&run(sizes[0]));
            for &size in sizes {
                let again = grad_bits(&run(size));
                assert!(again == first, "{} / {form:?} / {}: launch size {size} differs", be.kind(), case.name);
            }
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_backward_is_deterministic_across_workgroup_sizes() {
    if crate::common::open_or_skip(BackendKind::Wgpu).is_none() {
        return;
    }
    let be = rlipv2::backend::wgpu::WgpuBackend::new().unwrap();
    gpu_deterministic(&be, &|n| be.set_backward_workgroup(n).unwrap(), &[64, 256, 13]);
    assert!(be.set_backward_workgroup(0).is_err() && be.set_backward_workgroup(1 << 20).is_err());
}

#[cfg(feature = "cubecl-wgpu")]
#[test]
fn cubecl_backward_is_deterministic_across_cube_sizes() {
    if crate::common::open_or_skip(BackendKind::CubeclWgpu).is_none() {
        return;
    }
    let be = rlipv2::backend::cubecl::CubeclBackend::new_wgpu().unwrap();
    gpu_deterministic(&be, &|n| be.set_backward_cube(n).unwrap(), &[128, 32, 256, 7]);
    assert!(be.set_backward_cube(0).is_err() && be.set_backward_cube(1 << 20).is_err());
}

/// A NaN in `grad_output` never turns into finite garbage: the cpu backend's `grad_value` is NaN
/// where that row's samples land (as the oracle's), a GPU backend's is NaN everywhere (its
/// fixed-point scale is undefined, see the WGSL module).
#[test]
fn nan_grad_output_gives_nan_not_garbage() {
    let case = cases(Form::Official).remove(3);
    let mut g = Rng::new(45).fill(case.problem.output_len(), -1.0, 1.0);
    g[0] = f32::NAN;
    for kind in BackendKind::ALL {
        let Some(be) = crate::common::open_or_skip(kind) else { continue };
        let m = be.ms_deform_attn_backward(&case.problem, &case.data.input(), &g, DType::F32).unwrap();
        let nan = m.value.iter().filter(|x| x.is_nan()).count();
        assert!(nan > 0, "{kind}: a NaN grad_output must give NaN value gradients");
        assert!(m.value.iter().all(|x| x.is_nan() || x.is_finite()), "{kind}");
        if matches!(kind, BackendKind::Wgpu | BackendKind::CubeclWgpu | BackendKind::CubeclCuda) {
            assert_eq!(nan, m.value.len(), "{kind}: all NaN");
        }
    }
}

/// PyTorch's autograd through the grid_sample formulation (`tools/msda_backward_torch.py golden`,
/// committed) agrees with the oracle and with every backend that has a backward, in f32: a
/// reference for the gradients that is not ours.
#[test]
fn gradients_match_pytorch_autograd() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("tests/fixtures/msda_backward_golden.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| j[k].as_u64().unwrap() as usize;
    let v = |k: &str| j[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>();
    let levels = crate::common::json_levels(&j["levels"]);
    let pr = MsDeformAttnProblem::new(
        n("batch"),
        n("queries"),
        n("heads"),
        n("channels"),
        n("points"),
        &levels,
        Form::Official,
    );
    let (value, loc, weights, g) = (v("value"), v("sampling_locations"), v("attention_weights"), v("grad_output"));
    let input = MsDeformAttnInput::Official { value: &value, sampling_locations: &loc, attention_weights: &weights };
    let torch = [v("grad_value"), v("grad_sampling_locations"), v("grad_attention_weights")];
    let outside = (0..pr.samples())
        .filter(|&s| {
            let lv = pr.levels[(s / pr.points) % pr.num_levels()];
            let (x, y) = (loc[2 * s] * lv.w as f32 - 0.5, loc[2 * s + 1] * lv.h as f32 - 0.5);
            !(x > -1.0 && y > -1.0 && x < lv.w as f32 && y < lv.h as f32)
        })
        .count();
    assert!(outside > 0, "the golden case must have samples outside the validity band");
    let compare = |who: &str, got: [&[f32]; 3]| {
        for ((name, got), want) in grad_names(Form::Official).iter().zip(got).zip(&torch) {
            let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.1, "{name}: the golden gradients must be non-trivial");
            let (i, err) = got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0f32), |m, (i, e)| {
                if e > m.1 {
                    (i, e)
                } else {
                    m
                }
            });
            assert!(
                err <= 1e-5 * scale,
                "{who} {name}[{i}]: {} vs PyTorch {} (|err| {err:.3e}, scale {scale:.3e})",
                got[i],
                want[i]
            );
        }
    };
    let (gv, gs, ga) = backward::<f64>(&pr, &input, &g);
    let lower = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    compare("oracle", [&lower(&gv), &lower(&gs), &lower(&ga)]);
    for kind in BackendKind::ALL {
        let Some(be) = crate::common::open_or_skip(kind) else { continue };
        let m = be.ms_deform_attn_backward(&pr, &input, &g, DType::F32).unwrap_or_else(|e| panic!("{kind}: {e}"));
        compare(kind.name(), [&m.value, &m.sampling, &m.attention]);
    }
}
