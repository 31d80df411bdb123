//! `conv2d` (the backbone's building block): the oracle on a hand case, and every backend that
//! has it against the f64 oracle on seeded cases with the ResNet-50 shapes (1×1, 3×3 s1/s2,
//! 7×7 s2 stem, 1×1 s2 downsample, bias + residual + ReLU), odd sizes, B = 2, and one large
//! enough for the cpu backend to build its columns in several bands; `conv2d_accumulate` (output
//! in the residual's buffer) on the residual cases. Backends without it SKIP.

use crate::common::{assert_close_flat, open_or_skip, Tolerance};
use rlipv2::backend::{BackendKind, Ops};
use rlipv2::problem::{Activation, Conv2dProblem};
use rlipv2::reference::{self as oracle, lift};
use rlipv2::seeded::Rng;
use rlipv2::Error;

const TOL: Tolerance = Tolerance { floor: 1e-5, k: 8.0, rtol: 1e-5 };

#[test]
fn oracle_hand_case() {
    // 1×1×3×3 input 1..9, one 2×2 kernel of ones, stride 1, pad 0, bias 0.5
    let p = Conv2dProblem {
        batch: 1,
        in_c: 1,
        h: 3,
        w: 3,
        out_c: 1,
        kh: 2,
        kw: 2,
        stride: 1,
        pad: 0,
        act: Activation::None,
    };
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let y = oracle::conv2d::conv2d::<f64>(&p, &x, &[1.0; 4], &[0.5], None);
    assert_eq!(y, vec![12.5, 16.5, 24.5, 28.5]);
    // pad 1, stride 2: each output sees a 2×2 corner of the input; a −100 residual, then ReLU
    let p = Conv2dProblem { pad: 1, stride: 2, kh: 3, kw: 3, act: Activation::Relu, ..p };
    let y = oracle::conv2d::conv2d::<f64>(&p, &x, &[1.0; 9], &[0.0], Some(&[0.0, -100.0, 0.0, 0.0]));
    assert_eq!(y, vec![12.0, 0.0, 24.0, 28.0]);
}

pub(crate) fn cases() -> Vec<(&'static str, Conv2dProblem, bool)> {
    let base = Conv2dProblem {
        batch: 1,
        in_c: 16,
        h: 20,
        w: 27,
        out_c: 24,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
        act: Activation::None,
    };
    vec![
        ("1x1", base, false),
        ("3x3 s1 p1 relu", Conv2dProblem { kh: 3, kw: 3, pad: 1, act: Activation::Relu, ..base }, false),
        ("3x3 s2 p1", Conv2dProblem { kh: 3, kw: 3, stride: 2, pad: 1, ..base }, false),
        (
            "7x7 s2 p3 stem",
            Conv2dProblem {
                in_c: 3,
                h: 33,
                w: 45,
                out_c: 8,
                kh: 7,
                kw: 7,
                stride: 2,
                pad: 3,
                act: Activation::Relu,
                ..base
            },
            false,
        ),
        ("1x1 s2 downsample", Conv2dProblem { stride: 2, ..base }, false),
        // the im2col runs' edges: a kernel wider than the input (columns wholly in the padding),
        // and no padding at all
        (
            "7x7 s2 p3 on a 2-wide input",
            Conv2dProblem { in_c: 3, h: 9, w: 2, out_c: 4, kh: 7, kw: 7, stride: 2, pad: 3, ..base },
            false,
        ),
        ("3x3 p0", Conv2dProblem { in_c: 5, h: 6, w: 8, out_c: 7, kh: 3, kw: 3, pad: 0, ..base }, false),
        ("1x1 + residual + relu, B=2", Conv2dProblem { batch: 2, act: Activation::Relu, ..base }, true),
        (
            "3x3 + residual, odd",
            Conv2dProblem { in_c: 5, h: 7, w: 3, out_c: 3, kh: 3, kw: 3, pad: 1, act: Activation::Relu, ..base },
            true,
        ),
        // outputs large enough for the GPU backends' 128×128 tiles (backend::gemm_tile), partial tiles
        (
            "3x3 + residual + relu, B=2, 128-tiles",
            Conv2dProblem {
                batch: 2,
                in_c: 19,
                h: 45,
                w: 61,
                out_c: 200,
                kh: 3,
                kw: 3,
                pad: 1,
                act: Activation::Relu,
                ..base
            },
            true,
        ),
        (
            "1x1 s2 downsample, 128-tiles",
            Conv2dProblem { in_c: 33, h: 90, w: 121, out_c: 260, stride: 2, ..base },
            false,
        ),
        (
            "3x3 s2 p1, several column bands",
            Conv2dProblem { in_c: 64, h: 150, w: 200, out_c: 8, kh: 3, kw: 3, stride: 1, pad: 1, ..base },
            false,
        ),
    ]
}

fn check(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    for (i, (name, p, with_res)) in cases().into_iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        let x = rng.fill(p.input_shape().iter().product(), -1.0, 1.0);
        let w = rng.fill(p.weight_shape().iter().product(), -0.5, 0.5);
        let b = rng.fill(p.out_c, -0.5, 0.5);
        let r = with_res.then(|| rng.fill(p.output_shape().iter().product(), -1.0, 1.0));
        let got = match be.conv2d(&p, &x, &w, &b, r.as_deref()) {
            Ok(y) => y,
            Err(e @ Error::Unsupported { .. }) => {
                println!("SKIP {kind}/conv2d: {e}");
                return;
            }
            Err(e) => panic!("{kind}/conv2d {name}: {e}"),
        };
        let r64 = r.as_ref().map(|r| lift::<f64>(r));
        let y64 = oracle::conv2d::conv2d::<f64>(&p, &lift(&x), &w, &b, r64.as_deref());
        let y32 = oracle::conv2d::conv2d::<f32>(&p, &x, &w, &b, r.as_deref());
        assert_close_flat(&format!("{kind}/conv2d/{name}"), &p.output_shape(), &got, &y64, &y32, &TOL);
        // the in-place form (the bottleneck's last conv): the same result in the residual's buffer
        if let Some(r) = &r {
            let mut acc = r.clone();
            be.conv2d_accumulate(&p, &x, &w, &b, &mut acc)
                .unwrap_or_else(|e| panic!("{kind}/conv2d_accumulate {name}: {e}"));
            assert_close_flat(&format!("{kind}/conv2d_accumulate/{name}"), &p.output_shape(), &acc, &y64, &y32, &TOL);
        }
    }
}

#[test]
fn conv2d_reference_matches_oracle() {
    check(BackendKind::Reference);
}
#[test]
fn conv2d_cpu_matches_oracle() {
    check(BackendKind::Cpu);
}
#[test]
fn conv2d_wgpu_matches_oracle() {
    check(BackendKind::Wgpu);
}
#[test]
fn conv2d_cubecl_wgpu_matches_oracle() {
    check(BackendKind::CubeclWgpu);
}

#[test]
fn bad_shapes_name_the_tensor() {
    let be = rlipv2::backend::open(BackendKind::Cpu).unwrap();
    let p = cases()[1].1;
    let e = be.conv2d(&p, &[0.0; 3], &[], &[], None).unwrap_err().to_string();
    assert!(e.contains("`x`") || e.contains("x"), "{e}");
    let bad = Conv2dProblem { kh: 50, ..p };
    assert!(be.conv2d(&bad, &[], &[], &[], None).unwrap_err().to_string().contains("kernel"));
    let zero = Conv2dProblem { stride: 0, ..p };
    assert!(be.conv2d(&zero, &[], &[], &[], None).is_err());
    // an accumulator of the wrong size is refused before anything is written
    let (x, w, b) =
        (vec![0.0; p.input_shape().iter().product()], vec![0.0; p.weight_shape().iter().product()], vec![0.0; p.out_c]);
    let mut acc = vec![7.0; 5];
    let e = be.conv2d_accumulate(&p, &x, &w, &b, &mut acc).unwrap_err().to_string();
    assert!(e.contains("residual"), "{e}");
    assert_eq!(acc, vec![7.0; 5]);
}
