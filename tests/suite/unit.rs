//! Small library checks that need no device: weight prefixes, the bench suite's plan.

use rlipv2::backend::BackendKind;
use rlipv2::bench::suite::{check_ops, count, levels_for_image, planned, SuiteOptions};
use rlipv2::bench::RLIPV2_LEVELS;
use rlipv2::graph::vars::Vars;
use rlipv2::problem::DType;
use rlipv2::Error;

#[test]
fn vars_join_prefixes_with_dots_and_errors_name_the_full_tensor() {
    let src = |name: &str, shape: &[usize]| -> rlipv2::Result<Vec<f32>> {
        if name == "a.b.w" && shape == [2] {
            Ok(vec![1.0, 2.0])
        } else {
            Err(Error::Format { file: "weights".into(), reason: format!("tensor `{name}` {shape:?} is missing") })
        }
    };
    let root = Vars::new(&src);
    let b = root.pp("a").pp("b");
    assert_eq!(b.path("w"), "a.b.w");
    assert_eq!(b.get("w", &[2]).unwrap(), [1.0, 2.0]);
    let e = b.get("w", &[3]).unwrap_err().to_string();
    assert!(e.contains("a.b.w") && e.contains("[3]"), "{e}");
    assert_eq!(root.pp(3).path("x"), "3.x");
    assert_eq!(b.tensor("w", &[2]).unwrap().len(), 2);
}

#[test]
fn image_levels_follow_the_r50_strides() {
    // 800×1333 → the RLIPv2 encoder levels of spec §2.1
    assert_eq!(levels_for_image(800, 1333), RLIPV2_LEVELS.to_vec());
    assert_eq!(levels_for_image(1, 1), vec![(1, 1); 4]);
}

#[test]
fn quick_suite_covers_every_op_and_both_sweeps() {
    let mut o = SuiteOptions {
        backends: vec![BackendKind::Cpu],
        dtypes: vec![DType::F32, DType::F16],
        repeat: 1,
        quick: true,
        detect: None,
        ops: Vec::new(),
        precision: rlipv2::problem::Precision::F32,
    };
    let c = planned(&o);
    for op in [
        "ms_deform_attn/official",
        "ms_deform_attn/fused-points",
        "ms_deform_attn/fused-boxes",
        "gemm",
        "gated_cross_attn",
        "sparse_fusion/fused",
    ] {
        assert!(c.iter().any(|(o, _)| o == op), "{op} missing");
    }
    assert_eq!(c.iter().filter(|(_, case)| case == "queries").count(), 3);
    assert_eq!(c.iter().filter(|(_, case)| case == "image").count(), 3);
    // 9 msda cells × 2 dtypes + 3 f32-only cells
    assert_eq!(count(&o), 9 * 2 + 3);
    // --ops narrows to op families
    o.ops = vec!["gemm".into(), "sparse_fusion".into()];
    assert_eq!(planned(&o).iter().map(|(op, _)| op.as_str()).collect::<Vec<_>>(), ["gemm", "sparse_fusion/fused"]);
    assert!(check_ops(&o.ops).is_ok());
    assert!(check_ops(&["conv".into()]).unwrap_err().to_string().contains("one of ms_deform_attn"));
}
