//! `--precision bf16` (cpu backend): `gemm` and `conv2d` round both operands to bf16 (nearest
//! even, as PyTorch's `.bfloat16()`) and sum in f32. Held to the f64 oracle run on the rounded
//! operands, under the gemm/conv2d tests' tolerance (`TOL`): any other rounding (truncation is
//! ≈ 1e-3 off at k = 2048), a lost k-pair or a misplaced tile is far outside it. Each case also checks that the rounding happened (the result is not the f32 one).

use crate::common::{assert_close_flat, Tolerance};
use rlipv2::backend::{select_at, Backend, BackendKind, Ops};
use rlipv2::problem::{Activation, GemmProblem, Precision};
use rlipv2::reference::{self as oracle, lift};
use rlipv2::seeded::Rng;

const TOL: Tolerance = Tolerance { floor: 1e-5, k: 8.0, rtol: 1e-5 };

fn bf16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect()
}

fn cpu_bf16() -> Box<dyn Backend> {
    let (be, why) = select_at("cpu", Precision::Bf16).expect("cpu bf16");
    println!("RUN  {why}");
    be
}

/// The largest |bf16 result − f32 oracle| over the f32 budget: > 1 when the inputs were rounded.
fn rounded(got: &[f32], f32_ref: &[f32]) -> f64 {
    got.iter().zip(f32_ref).map(|(&g, &r)| (g - r).abs() as f64 / (1e-5 + 1e-5 * r.abs() as f64)).fold(0.0, f64::max)
}

#[test]
fn bf16_gemm_is_the_oracle_on_rounded_inputs() {
    let be = cpu_bf16();
    // partial register tiles (12 rows × 32 columns), odd k (a half-empty last pair), row blocks
    // of 96 split across tasks, and the encoder's FFN shapes
    let cases = [
        (1, 1, 1, true, Activation::None),
        (7, 13, 5, true, Activation::Relu),
        (13, 33, 31, false, Activation::None),
        (25, 8, 16, true, Activation::None),
        (97, 64, 33, true, Activation::Gelu),
        (273, 256, 2048, true, Activation::None),
        (200, 2048, 256, true, Activation::None),
    ];
    for (i, &(m, k, n, bias, act)) in cases.iter().enumerate() {
        let p = GemmProblem { m, k, n, bias, act };
        let mut rng = Rng::new(700 + i as u64);
        let x = rng.fill(m * k, -2.0, 2.0);
        let w = rng.fill(n * k, -1.0 / (k as f32).sqrt(), 1.0 / (k as f32).sqrt());
        let b = rng.fill(n, -0.5, 0.5);
        let bias = bias.then_some(b.as_slice());
        let got = be.gemm(&p, &x, &w, bias).unwrap();
        let (xr, wr) = (bf16(&x), bf16(&w));
        let label = format!("cpu bf16/gemm/{m}x{k}x{n}/{act:?}");
        let r64 = oracle::gemm::gemm::<f64>(&p, &lift(&xr), &wr, bias);
        let r32 = oracle::gemm::gemm::<f32>(&p, &xr, &wr, bias);
        assert_close_flat(&label, &[m, n], &got, &r64, &r32, &TOL);
        if k > 1 {
            let f32_ref = oracle::gemm::gemm::<f32>(&p, &x, &w, bias);
            assert!(rounded(&got, &f32_ref) > 1.0, "{label}: the result equals the f32 one: were the inputs rounded?");
        }
    }
}

#[test]
fn bf16_conv2d_is_the_oracle_on_rounded_inputs() {
    let be = cpu_bf16();
    for (i, (name, p, with_res)) in crate::conv2d::cases().into_iter().enumerate() {
        let mut rng = Rng::new(800 + i as u64);
        let x = rng.fill(p.input_shape().iter().product(), -1.0, 1.0);
        let w = rng.fill(p.weight_shape().iter().product(), -0.5, 0.5);
        let b = rng.fill(p.out_c, -0.5, 0.5);
        let r = with_res.then(|| rng.fill(p.output_shape().iter().product(), -1.0, 1.0));
        let got = be.conv2d(&p, &x, &w, &b, r.as_deref()).unwrap();
        let (xr, wr) = (bf16(&x), bf16(&w));
        let r64 = r.as_ref().map(|r| lift::<f64>(r));
        let y64 = oracle::conv2d::conv2d::<f64>(&p, &lift(&xr), &wr, &b, r64.as_deref());
        let y32 = oracle::conv2d::conv2d::<f32>(&p, &xr, &wr, &b, r.as_deref());
        let label = format!("cpu bf16/conv2d/{name}");
        assert_close_flat(&label, &p.output_shape(), &got, &y64, &y32, &TOL);
        let f32_ref = oracle::conv2d::conv2d::<f32>(&p, &x, &w, &b, r.as_deref());
        assert!(rounded(&got, &f32_ref) > 1.0, "{label}: the result equals the f32 one");
        if let Some(r) = &r {
            let mut acc = r.clone();
            be.conv2d_accumulate(&p, &x, &w, &b, &mut acc).unwrap();
            assert_close_flat(&format!("{label} (accumulate)"), &p.output_shape(), &acc, &y64, &y32, &TOL);
        }
    }
}

#[test]
fn bf16_is_cpu_only_and_auto_picks_cpu() {
    let (be, why) = select_at("auto", Precision::Bf16).unwrap();
    assert_eq!(be.kind(), BackendKind::Cpu, "{why}");
    assert!(why.contains("bf16"), "{why}");
    for name in ["reference", "wgpu", "cubecl-wgpu", "cubecl-cuda"] {
        let e = select_at(name, Precision::Bf16).err().expect("refused").to_string();
        assert!(e.contains("--precision bf16") && e.contains("--backend cpu") && e.contains(name), "{e}");
    }
    assert!(Precision::parse("fp8").unwrap_err().to_string().contains("f32 or bf16"));
    let details = be.details();
    let line = details.iter().find(|(k, _)| *k == "precisions").expect("precisions line");
    assert!(line.1.contains("runs bf16"), "{line:?}");
}

/// The whole ParSeDA graph with bf16 products against the official f32 model's goldens (formula
/// weights, 64×96 and 48×80 images): the drift bf16 brings, held to the stated bf16 tolerance —
/// logits ≤ 0.15, boxes ≤ 0.04 of the image size, at least 16 of the top-20 triplets the same
/// (measured: logits ≤ 0.088, boxes ≤ 0.024, 20 of 20; f32 is held to 1e-3 / 1e-4 / all 20).
#[test]
fn bf16_detect_graph_stays_within_its_tolerance_of_the_official_f32_model() {
    use crate::common::{formula_lang, formula_weight, front_tokens, golden_labels};
    use rlipv2::graph::decoder::{Decoders, Memory};
    use rlipv2::graph::encoder::Encoder;
    use rlipv2::graph::front::ImageFront;
    use rlipv2::graph::vars::Vars;
    use rlipv2::model::config::Variant;
    use rlipv2::model::postprocess::{postprocess, HeadOutputs, PostConfig};
    use rlipv2::problem::Gate;
    use serde_json::Value;

    let g: Value = serde_json::from_str(include_str!("../fixtures/detect_golden.json")).unwrap();
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let vars = Vars::new(&get);
    let front = ImageFront::load_for("resnet50", &vars).unwrap();
    let enc = Encoder::load(6, 4, 2048, 2, Gate::VXAc, &vars.pp(Variant::ParSeDA.encoder_prefix())).unwrap();
    let dec = Decoders::load(Variant::ParSeDA, 128, 3, 4, 2048, &vars).unwrap();
    let (objects, verbs) = (g["objects"].as_u64().unwrap() as usize, g["verbs"].as_u64().unwrap() as usize);
    let lang = formula_lang(objects + verbs);
    let labels = golden_labels(objects, verbs);
    let be = cpu_bf16();
    for c in g["cases"].as_array().unwrap() {
        let (h, w) = (c["height"].as_u64().unwrap() as usize, c["width"].as_u64().unwrap() as usize);
        let mut tokens = front_tokens(be.as_ref(), &front, "bf16 detect graph", h, w).unwrap();
        let (memory, states) = enc.forward_t(be.as_ref(), &mut tokens, &lang).unwrap();
        let out = dec.forward(be.as_ref(), &Memory::of(&memory, &tokens), states.last().unwrap(), objects).unwrap();
        let want =
            |k: &str| -> Vec<f32> { c[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
        let mut report = Vec::new();
        for (name, got, tol) in [
            ("pred_sub_logits", &out.sub_logits, 0.15),
            ("pred_obj_logits", &out.obj_logits, 0.15),
            ("pred_verb_logits", &out.verb_logits, 0.15),
            ("pred_sub_boxes", &out.sub_boxes, 0.04),
            ("pred_obj_boxes", &out.obj_boxes, 0.04),
        ] {
            let worst = got.iter().zip(want(name)).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            report.push(format!("{name} {worst:.1e}"));
            assert!(worst <= tol, "bf16 {h}×{w}: {name} max |diff| {worst} > {tol}");
        }
        let top = |o: &[f32], v: &[f32], sb: &[f32], ob: &[f32], sl: &[f32]| -> Vec<(usize, usize, usize)> {
            let heads =
                HeadOutputs { obj_logits: o, verb_logits: v, sub_boxes: sb, obj_boxes: ob, sub_logits: Some(sl) };
            let all = postprocess(&heads, &labels, (480, 640), &PostConfig::default());
            all.iter().take(20).map(|d| (d.pair, d.object_label, d.verb)).collect()
        };
        let ours = top(&out.obj_logits, &out.verb_logits, &out.sub_boxes, &out.obj_boxes, &out.sub_logits);
        let official = top(
            &want("pred_obj_logits"),
            &want("pred_verb_logits"),
            &want("pred_sub_boxes"),
            &want("pred_obj_boxes"),
            &want("pred_sub_logits"),
        );
        let same = ours.iter().filter(|t| official.contains(t)).count();
        println!("cpu bf16 ParSeDA {h}×{w}: max |diff| vs the official f32 model: {}; top-20 triplets in common: {same} of {}", report.join(", "), official.len());
        assert!(official.len() == 20 && same >= 16, "bf16 {h}×{w}: only {same} of the top-20 triplets in common");
    }
}
