//! The `rlipv2 op ms_deform_attn` and `ms_deform_attn_backward` contract: a good file gives
//! `output` [B,Q,M·D] (or the three gradients) equal to the oracle; bad input exits non-zero,
//! names the tensor and the expected vs actual shape, and writes no output file.

use std::path::Path;
use std::process::Command;

use rlipv2::backend::BackendKind;
use rlipv2::problem::{Form, MsDeformAttnProblem};
use rlipv2::reference::ms_deform_attn::ms_deform_attn as oracle;
use rlipv2::seeded::MsDeformAttnData;
use safetensors::tensor::{Dtype, TensorView};

struct T {
    name: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32t(name: &'static str, shape: Vec<usize>, data: &[f32]) -> T {
    T { name, dtype: Dtype::F32, shape, bytes: bytemuck::cast_slice(data).to_vec() }
}
fn i64t(name: &'static str, shape: Vec<usize>, data: &[i64]) -> T {
    T { name, dtype: Dtype::I64, shape, bytes: bytemuck::cast_slice(data).to_vec() }
}

fn write(path: &Path, tensors: &[T]) {
    let views: Vec<_> = tensors
        .iter()
        .map(|t| (t.name.to_string(), TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

fn problem() -> MsDeformAttnProblem {
    MsDeformAttnProblem::new(2, 7, 2, 16, 2, &[(5, 6), (2, 3)], Form::Official)
}

fn good_tensors(pr: &MsDeformAttnProblem, data: &MsDeformAttnData) -> Vec<T> {
    vec![
        f32t("value", pr.value_shape(), &data.value),
        i64t("spatial_shapes", vec![2, 2], &[5, 6, 2, 3]),
        i64t("level_start_index", vec![2], &[0, 30]),
        f32t("sampling_locations", pr.locations_shape(), &data.a),
        f32t("attention_weights", pr.weights_shape(), &data.b),
    ]
}

fn run(dir: &Path, backend: &str, extra: &[&str]) -> (bool, String, bool) {
    run_op(dir, "ms_deform_attn", backend, extra)
}

fn run_op(dir: &Path, op: &str, backend: &str, extra: &[&str]) -> (bool, String, bool) {
    let out = dir.join("out.safetensors");
    let _ = std::fs::remove_file(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_rlipv2"))
        .args(["op", op, "--backend", backend, "--input"])
        .arg(dir.join("in.safetensors"))
        .arg("--output")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    (o.status.success(), text, out.exists())
}

/// The CLI on every backend that opens here, both dtypes: the written `output` matches the oracle.
#[test]
fn cli_writes_output_matching_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 21);
    write(&dir.path().join("in.safetensors"), &good_tensors(&pr, &data));
    let exp = oracle::<f64>(&pr, &data.input());
    assert!(exp.iter().any(|x| x.abs() > 0.1), "the case must produce non-trivial output");
    for kind in BackendKind::ALL {
        if rlipv2::backend::open(kind).is_err() {
            println!("SKIP cli {kind}: backend unavailable here");
            continue;
        }
        for (dtype, tol) in [("f32", 1e-5), ("f16", 2e-3)] {
            let (ok, text, exists) = run(dir.path(), kind.name(), &["--dtype", dtype, "--repeat", "3"]);
            assert!(ok && exists, "{kind} {dtype}: {text}");
            assert!(text.contains("median") && text.contains("min"), "--repeat prints timings: {text}");
            let bytes = std::fs::read(dir.path().join("out.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let t = st.tensor("output").unwrap();
            assert_eq!(t.dtype(), Dtype::F32);
            assert_eq!(t.shape(), &[2, 7, 32]);
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(t.data());
            let err = got.iter().zip(&exp).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(err < tol, "{kind} {dtype}: max err {err}");
        }
    }
}

#[test]
fn cli_rejects_bad_input_without_writing_output() {
    let dir = tempfile::tempdir().unwrap();
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 22);
    type Corrupt<T> = Box<dyn Fn(&mut Vec<T>)>;
    let cases: Vec<(&str, Corrupt<T>, Vec<&str>)> = vec![
        (
            "S ≠ Σ H·W",
            Box::new(|t: &mut Vec<T>| t[1] = i64t("spatial_shapes", vec![2, 2], &[5, 6, 2, 4])),
            vec!["Σ H·W"],
        ),
        (
            "inconsistent level_start_index",
            Box::new(|t: &mut Vec<T>| t[2] = i64t("level_start_index", vec![2], &[0, 29])),
            vec!["level_start_index"],
        ),
        (
            "missing tensor",
            Box::new(|t: &mut Vec<T>| {
                t.remove(4);
            }),
            vec!["attention_weights", "missing"],
        ),
        ("wrong rank", Box::new(|t: &mut Vec<T>| t[0].shape = vec![2 * 36, 2, 16]), vec!["value", "rank 4"]),
        (
            "wrong dtype",
            Box::new(|t: &mut Vec<T>| {
                t[1] = T {
                    name: "spatial_shapes",
                    dtype: Dtype::I32,
                    shape: vec![2, 2],
                    bytes: bytemuck::cast_slice(&[5i32, 6, 2, 3]).to_vec(),
                }
            }),
            vec!["spatial_shapes", "I64", "I32"],
        ),
        (
            "weights shape",
            Box::new(|t: &mut Vec<T>| {
                t[4].shape = vec![2, 7, 2, 2, 2];
                t[4].bytes.truncate(2 * 7 * 2 * 2 * 2 * 4);
                t[4].shape = vec![2, 7, 2, 1, 4];
            }),
            vec!["attention_weights", "[2, 7, 2, 2, 2]", "[2, 7, 2, 1, 4]"],
        ),
        (
            "absurd level size",
            Box::new(|t: &mut Vec<T>| t[1] = i64t("spatial_shapes", vec![2, 2], &[1 << 40, 6, 2, 3])),
            vec!["spatial_shapes", "level 0"],
        ),
        (
            "negative level size",
            Box::new(|t: &mut Vec<T>| t[1] = i64t("spatial_shapes", vec![2, 2], &[-5, 6, 2, 3])),
            vec!["spatial_shapes"],
        ),
        ("unsupported D", Box::new(|t: &mut Vec<T>| t[0].shape = vec![2, 36, 4, 8]), vec!["sampling_locations"]),
    ];
    let grad = rlipv2::seeded::Rng::new(23).fill(pr.output_len(), -1.0, 1.0);
    for (what, edit, needles) in &cases {
        for op in ["ms_deform_attn", "ms_deform_attn_backward"] {
            let mut t = good_tensors(&pr, &data);
            if op == "ms_deform_attn_backward" {
                t.push(f32t("grad_output", pr.output_shape(), &grad));
            }
            edit(&mut t);
            write(&dir.path().join("in.safetensors"), &t);
            let (ok, text, exists) = run_op(dir.path(), op, "cpu", &[]);
            assert!(!ok, "{op} {what}: must fail: {text}");
            assert!(!exists, "{op} {what}: must not write output");
            for n in needles {
                assert!(text.contains(n), "{op} {what}: message must mention `{n}`: {text}");
            }
            assert!(!text.contains("panicked"), "{op} {what}: panicked: {text}");
        }
    }
    // the backward's own input: grad_output missing or of the wrong shape
    type BadGrad<'a> = (&'a str, Option<Vec<usize>>, &'a [&'a str]);
    let bad_grads: [BadGrad; 2] = [
        ("missing grad_output", None, &["grad_output", "missing"]),
        ("grad_output shape", Some(vec![2, 7, 16]), &["grad_output", "[2, 7, 32]", "[2, 7, 16]"]),
    ];
    for (what, shape, needles) in bad_grads {
        let mut t = good_tensors(&pr, &data);
        if let Some(shape) = shape {
            let n = shape.iter().product();
            t.push(f32t("grad_output", shape, &grad[..n]));
        }
        write(&dir.path().join("in.safetensors"), &t);
        let (ok, text, exists) = run_op(dir.path(), "ms_deform_attn_backward", "cpu", &[]);
        assert!(!ok && !exists, "{what}: must fail without output: {text}");
        for n in needles {
            assert!(text.contains(n), "{what}: message must mention `{n}`: {text}");
        }
        assert!(!text.contains("panicked"), "{what}: panicked: {text}");
    }
    // not a safetensors file at all
    std::fs::write(dir.path().join("in.safetensors"), b"garbage").unwrap();
    let (ok, text, exists) = run(dir.path(), "cpu", &[]);
    assert!(!ok && !exists && text.contains("safetensors"), "{text}");
    // unknown backend
    write(&dir.path().join("in.safetensors"), &good_tensors(&pr, &data));
    let (ok, text, exists) = run(dir.path(), "nope", &[]);
    assert!(!ok && !exists && text.contains("unknown backend"), "{text}");
}

#[test]
fn cli_unsupported_channels_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pr = MsDeformAttnProblem::new(1, 3, 2, 12, 1, &[(2, 2)], Form::Official);
    let data = MsDeformAttnData {
        value: vec![0.5; 4 * 2 * 12],
        a: vec![0.5; 3 * 2 * 2],
        b: vec![1.0; 3 * 2],
        c: vec![],
        form: Form::Official,
    };
    write(
        &dir.path().join("in.safetensors"),
        &[
            f32t("value", pr.value_shape(), &data.value),
            i64t("spatial_shapes", vec![1, 2], &[2, 2]),
            i64t("level_start_index", vec![1], &[0]),
            f32t("sampling_locations", pr.locations_shape(), &data.a),
            f32t("attention_weights", pr.weights_shape(), &data.b),
        ],
    );
    let (ok, text, exists) = run(dir.path(), "cpu", &[]);
    assert!(!ok && !exists && text.contains("channels per head = 12"), "{text}");
}

/// The backward CLI on every backend: the three gradients under the official names match the
/// f64 oracle.
#[test]
fn cli_backward_writes_gradients_matching_the_oracle() {
    use rlipv2::reference::ms_deform_attn_backward::backward;
    let dir = tempfile::tempdir().unwrap();
    let pr = problem();
    let data = MsDeformAttnData::random(&pr, 24);
    let grad = rlipv2::seeded::Rng::new(25).fill(pr.output_len(), -1.0, 1.0);
    let mut t = good_tensors(&pr, &data);
    t.push(f32t("grad_output", pr.output_shape(), &grad));
    write(&dir.path().join("in.safetensors"), &t);
    let (ev, es, ea) = backward::<f64>(&pr, &data.input(), &grad);
    assert!(ev.iter().chain(&es).chain(&ea).any(|x| x.abs() > 0.1), "the case must produce non-trivial gradients");
    for kind in BackendKind::ALL {
        if rlipv2::backend::open(kind).is_err() {
            println!("SKIP cli backward {kind}: backend unavailable here");
            continue;
        }
        let (ok, text, exists) = run_op(dir.path(), "ms_deform_attn_backward", kind.name(), &["--repeat", "2"]);
        assert!(ok && exists, "{kind}: {text}");
        assert!(text.contains("ms_deform_attn_backward") && text.contains("median"), "{kind}: {text}");
        let bytes = std::fs::read(dir.path().join("out.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, shape, exp) in [
            ("grad_value", pr.value_shape(), &ev),
            ("grad_sampling_locations", pr.locations_shape(), &es),
            ("grad_attention_weights", pr.weights_shape(), &ea),
        ] {
            let v = st.tensor(name).unwrap();
            assert_eq!(v.shape(), shape.as_slice(), "{kind} {name}");
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(v.data());
            let worst =
                got.iter().zip(exp.iter()).map(|(&g, &e)| (g as f64 - e).abs() / (1e-4 + e.abs())).fold(0.0, f64::max);
            assert!(worst < 1e-4, "{kind} {name}: worst scaled error {worst:.3e}");
        }
    }
}
