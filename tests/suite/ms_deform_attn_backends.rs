//! Every backend against the f64 oracle on the seeded case table, in both entry forms and every
//! dtype the backend supports; then the backends against each other.

use crate::common::{assert_close, cases, expected, open_or_skip, tolerance, FORMS};
use rlipv2::backend::{BackendKind, Ops};
use rlipv2::problem::DType;

fn matches_reference(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    for dtype in [DType::F32, DType::F16, DType::Bf16] {
        if let Err(e) = be.supports(dtype) {
            println!("SKIP {kind}/{dtype}: {e}");
            continue;
        }
        for form in FORMS {
            for case in cases(form) {
                let got = be
                    .ms_deform_attn(&case.problem, &case.data.input(), dtype)
                    .unwrap_or_else(|e| panic!("{kind} {} {dtype}: {e}", case.name));
                let what = format!("{kind}/{dtype}/{}", case.problem.form_name());
                assert_close(&what, &case, &got, &expected(&case, dtype), &tolerance(dtype));
            }
        }
    }
}

#[test]
fn ms_deform_attn_reference_backend_matches_reference() {
    matches_reference(BackendKind::Reference);
}

#[test]
fn ms_deform_attn_cpu_matches_reference() {
    matches_reference(BackendKind::Cpu);
}

#[test]
fn ms_deform_attn_wgpu_matches_reference() {
    matches_reference(BackendKind::Wgpu);
}

#[test]
fn ms_deform_attn_cubecl_wgpu_matches_reference() {
    matches_reference(BackendKind::CubeclWgpu);
}

#[test]
fn ms_deform_attn_cubecl_cuda_matches_reference() {
    matches_reference(BackendKind::CubeclCuda);
}

/// All available backends give the same answer as the cpu backend on every case: each may be
/// off the f64 oracle by its tolerance, so two may differ by twice that.
#[test]
fn ms_deform_attn_backends_agree() {
    let cpu = rlipv2::backend::open(BackendKind::Cpu).expect("cpu backend always opens");
    let others: Vec<_> = [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda]
        .into_iter()
        .filter_map(open_or_skip)
        .collect();
    let tol = tolerance(DType::F32);
    for form in FORMS {
        for case in cases(form) {
            let exp = expected(&case, DType::F32);
            let base = cpu.ms_deform_attn(&case.problem, &case.data.input(), DType::F32).expect("cpu run");
            for be in &others {
                let got = be
                    .ms_deform_attn(&case.problem, &case.data.input(), DType::F32)
                    .unwrap_or_else(|e| panic!("{}: {e}", be.kind()));
                crate::common::assert_agree(&format!("{} vs cpu", be.kind()), &case, &got, &base, &exp, &tol);
            }
        }
    }
}

/// A value tensor larger than lavapipe's 128 MiB binding limit: a GPU backend either runs it
/// correctly (a device with larger buffers) or answers `Unsupported` naming the tensor — never a
/// panic, a hang or cubecl's `ServerUnhealthy`.
#[test]
fn ms_deform_attn_oversized_value_is_a_clear_error_or_correct() {
    use rlipv2::problem::{Form, MsDeformAttnProblem};
    use rlipv2::seeded::MsDeformAttnData;
    // one 363×363 level × 8 heads × 32 channels = 33.7 M f32 = 135 MB
    let pr = MsDeformAttnProblem::new(1, 7, 8, 32, 2, &[(363, 363)], Form::Official);
    let data = MsDeformAttnData::random(&pr, 77);
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda] {
        let Some(be) = open_or_skip(kind) else { continue };
        match be.ms_deform_attn(&pr, &data.input(), DType::F32) {
            Ok(got) => {
                let case = crate::common::Case { name: "oversized_value", problem: pr.clone(), data: data.clone() };
                assert_close(
                    &format!("{kind}/f32/official"),
                    &case,
                    &got,
                    &expected(&case, DType::F32),
                    &tolerance(DType::F32),
                );
                println!("{kind}: ran the 135 MB value tensor");
            }
            Err(e @ rlipv2::Error::Unsupported { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("`value`") && msg.contains("bytes"), "{kind}: {msg}");
                println!("{kind}: {msg}");
            }
            Err(e) => panic!("{kind}: expected success or Unsupported, got: {e}"),
        }
    }
}
