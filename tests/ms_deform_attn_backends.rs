//! Every backend against the f64 oracle on the seeded case table, in both entry forms and every
//! dtype the backend supports; then the backends against each other.

mod common;

use common::{assert_close, cases, expected, open_or_skip, tolerance, FORMS};
use rlipv2::backend::BackendKind;
use rlipv2::problem::DType;

fn matches_reference(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    for form in FORMS {
        for case in cases(form) {
            for dtype in [DType::F32, DType::F16] {
                if let Err(e) = be.supports(dtype) {
                    println!("SKIP {kind}/{dtype}: {e}");
                    continue;
                }
                let got = be.ms_deform_attn(&case.problem, &case.data.input(), dtype).unwrap_or_else(|e| panic!("{kind} {} {dtype}: {e}", case.name));
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

/// All available backends give the same answer as the cpu backend on every case, within the
/// sum of their two oracle tolerances.
#[test]
fn ms_deform_attn_backends_agree() {
    let cpu = rlipv2::backend::open(BackendKind::Cpu).expect("cpu backend always opens");
    let others: Vec<_> = [BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda].into_iter().filter_map(open_or_skip).collect();
    for form in FORMS {
        for case in cases(form) {
            let exp = expected(&case, DType::F32);
            let tol = tolerance(DType::F32);
            let base = cpu.ms_deform_attn(&case.problem, &case.data.input(), DType::F32).expect("cpu run");
            for be in &others {
                let got = be.ms_deform_attn(&case.problem, &case.data.input(), DType::F32).unwrap_or_else(|e| panic!("{}: {e}", be.kind()));
                // Compare to cpu's output with twice the oracle budget (each side may use it).
                let as_ref = common::Expected { ref64: base.iter().map(|&x| x as f64).collect(), ref32: exp.ref32.clone() };
                let doubled = common::Tolerance { floor: 2.0 * tol.floor, k: 2.0 * tol.k, rtol: 2.0 * tol.rtol };
                let f32_err = exp.ref32.iter().zip(&exp.ref64).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
                let _ = f32_err;
                assert_close(&format!("{} vs cpu", be.kind()), &case, &got, &as_ref, &doubled);
            }
        }
    }
}
