//! `rlipv2 op gated_cross_attn` and `rlipv2 op sparse_fusion`: outputs match the oracle; weights
//! are found by official name under a prefix; bad files exit non-zero, name the tensor and write
//! no output.

use std::path::Path;
use std::process::Command;

use rlipv2::problem::{BertLayerProblem, GatedCrossAttnProblem, OwnedWeights, SparseFusionProblem};
use rlipv2::reference::{gated_cross_attn::gated_cross_attn, lift, sparse_fusion::sparse_fusion};
use rlipv2::seeded::Rng;
use safetensors::tensor::{Dtype, TensorView};

type Named = (String, Dtype, Vec<usize>, Vec<u8>);

fn f32t(name: &str, shape: Vec<usize>, data: &[f32]) -> Named {
    (name.to_string(), Dtype::F32, shape, bytemuck::cast_slice(data).to_vec())
}

fn write(path: &Path, tensors: &[Named]) {
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

fn weights(w: &OwnedWeights, shapes: Vec<(&'static str, Vec<usize>)>, prefix: &str) -> Vec<Named> {
    shapes.into_iter().zip(&w.tensors).map(|((n, s), t)| f32t(&format!("{prefix}{n}"), s, t)).collect()
}

fn run(dir: &Path, args: &[&str]) -> (bool, String, bool) {
    let out = dir.join("out.safetensors");
    let _ = std::fs::remove_file(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_rlipv2"))
        .args(args)
        .arg("--input")
        .arg(dir.join("in.safetensors"))
        .arg("--weights")
        .arg(dir.join("w.safetensors"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    (o.status.success(), text, out.exists())
}

fn read_out(dir: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir.join("out.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    bytemuck::pod_collect_to_vec(st.tensor(name).unwrap().data())
}

fn max_err(got: &[f32], exp: &[f64]) -> f64 {
    assert_eq!(got.len(), exp.len());
    got.iter().zip(exp).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max)
}

#[test]
fn gated_cross_attn_cli_matches_oracle_and_rejects_bad_weights() {
    let dir = tempfile::tempdir().unwrap();
    let p = GatedCrossAttnProblem::rlipv2(2, 13, 9);
    let w = OwnedWeights::seeded(p.weight_shapes(), 1);
    let mut rng = Rng::new(2);
    let (v, pos, l) =
        (rng.fill(2 * 13 * 256, -1.0, 1.0), rng.fill(2 * 13 * 256, -1.0, 1.0), rng.fill(2 * 9 * 768, -1.0, 1.0));
    write(
        &dir.path().join("in.safetensors"),
        &[f32t("v", vec![2, 13, 256], &v), f32t("pos", vec![2, 13, 256], &pos), f32t("l", vec![2, 9, 768], &l)],
    );
    let prefix = "transformer.encoder.VLFuse_layers.1.";
    write(&dir.path().join("w.safetensors"), &weights(&w, p.weight_shapes(), prefix));
    let (v64, l64) = gated_cross_attn::<f64>(&p, &lift(&v), &lift(&pos), &lift(&l), &w.as_fusion());
    for backend in ["cpu", "reference"] {
        let (ok, text, exists) =
            run(dir.path(), &["op", "gated_cross_attn", "--backend", backend, "--prefix", prefix, "--repeat", "2"]);
        assert!(ok && exists, "{backend}: {text}");
        assert!(text.contains("median"), "{text}");
        assert!(
            max_err(&read_out(dir.path(), "v_out"), &v64) < 1e-4
                && max_err(&read_out(dir.path(), "l_out"), &l64) < 1e-4,
            "{backend}"
        );
    }
    // without the prefix the names are not found: the first missing tensor is named
    let (ok, text, exists) = run(dir.path(), &["op", "gated_cross_attn", "--backend", "cpu"]);
    assert!(!ok && !exists && text.contains("b_attn.attn.v_proj.weight") && text.contains("missing"), "{text}");
    // a mis-shaped weight is named with expected and actual shapes
    let mut bad = weights(&w, p.weight_shapes(), prefix);
    let i = bad.iter().position(|t| t.0.ends_with("out_l_proj.weight")).unwrap();
    bad[i] = f32t(&bad[i].0.clone(), vec![768, 2047], &vec![0.0; 768 * 2047]);
    write(&dir.path().join("w.safetensors"), &bad);
    let (ok, text, exists) = run(dir.path(), &["op", "gated_cross_attn", "--backend", "cpu", "--prefix", prefix]);
    assert!(
        !ok && !exists
            && text.contains("out_l_proj.weight")
            && text.contains("[768, 2048]")
            && text.contains("[768, 2047]"),
        "{text}"
    );
    // heads that do not divide E
    write(&dir.path().join("w.safetensors"), &weights(&w, p.weight_shapes(), prefix));
    let (ok, text, exists) =
        run(dir.path(), &["op", "gated_cross_attn", "--backend", "cpu", "--prefix", prefix, "--heads", "7"]);
    assert!(!ok && !exists && text.contains("not a multiple of heads"), "{text}");
}

#[test]
fn sparse_fusion_cli_matches_oracle_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (b, s, start, t) = (1usize, 40usize, 19usize, 7usize);
    let p = SparseFusionProblem::rlipv2(b, s, start, t);
    let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 3);
    let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(b, t).weight_shapes(), 4);
    let mut rng = Rng::new(5);
    let (memory, pos, lang) =
        (rng.fill(s * 256, -1.0, 1.0), rng.fill(s * 256, -1.0, 1.0), rng.fill(t * 768, -1.0, 1.0));
    let mask: Vec<f32> = (0..t).map(|j| if j == 3 { 0.0 } else { 1.0 }).collect();
    let starts: Vec<i64> = vec![0, 10, start as i64];
    let mut input = vec![
        f32t("memory", vec![b, s, 256], &memory),
        f32t("pos", vec![b, s, 256], &pos),
        f32t("lang", vec![b, t, 768], &lang),
        f32t("lang_mask", vec![b, t], &mask),
    ];
    input.push(("level_start_index".into(), Dtype::I64, vec![3], bytemuck::cast_slice(&starts).to_vec()));
    write(&dir.path().join("in.safetensors"), &input);
    let mut all = weights(&fw, p.fusion.weight_shapes(), "");
    all.extend(weights(&bw, p.lang.weight_shapes(), ""));
    write(&dir.path().join("w.safetensors"), &all);
    let mut m64 = lift::<f64>(&memory);
    let l64 =
        sparse_fusion::<f64>(&p, &mut m64, &lift(&pos), &lift(&lang), Some(&mask), &fw.as_fusion(), &bw.as_bert());
    let (ok, text, exists) = run(dir.path(), &["op", "sparse_fusion", "--backend", "cpu"]);
    assert!(ok && exists, "{text}");
    assert!(max_err(&read_out(dir.path(), "lang_out"), &l64) < 1e-4);
    assert!(max_err(&read_out(dir.path(), "memory"), &m64) < 1e-4);
    // a level start outside S is named
    let mut bad = input.clone();
    bad[4] = ("level_start_index".into(), Dtype::I64, vec![3], bytemuck::cast_slice(&[0i64, 10, 40]).to_vec());
    write(&dir.path().join("in.safetensors"), &bad);
    let (ok, text, exists) = run(dir.path(), &["op", "sparse_fusion", "--backend", "cpu"]);
    assert!(!ok && !exists && text.contains("level_start_index"), "{text}");
    // pos with the wrong shape
    let mut bad = input.clone();
    bad[1] = f32t("pos", vec![b, s - 1, 256], &pos[..(s - 1) * 256]);
    write(&dir.path().join("in.safetensors"), &bad);
    let (ok, text, exists) = run(dir.path(), &["op", "sparse_fusion", "--backend", "cpu"]);
    assert!(!ok && !exists && text.contains("`pos`") && text.contains("[1, 40, 256]"), "{text}");
    // a missing language weight
    write(&dir.path().join("in.safetensors"), &input);
    write(&dir.path().join("w.safetensors"), &all[..all.len() - 1]);
    let (ok, text, exists) = run(dir.path(), &["op", "sparse_fusion", "--backend", "cpu"]);
    assert!(!ok && !exists && text.contains("output.LayerNorm.bias"), "{text}");
}
