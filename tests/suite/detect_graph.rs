//! The whole image graph against the official model end to end (hoi.py forward with
//! `encode_and_save` then the memory cache, as engine.py evaluates): image front → ALIF encoder →
//! ho_decoder, MBF, verb decoder → heads, for 64×96 and 48×80 images, formula weights (N = 128) and
//! 10 formula language tokens (6 object texts, 4 verb texts). Goldens from
//! `tools/official_detect.py`. Checked: every logit (≤ 1e-3) and box (≤ 1e-4) of the 64 pairs, and
//! identical post-processed top-20 triplets (pair, object, verb) from our heads and the official ones.

use crate::common::{formula_lang, formula_weight, front_tokens, open_or_skip};
use rlipv2::backend::BackendKind;
use rlipv2::graph::decoder::{Decoders, Memory};
use rlipv2::graph::encoder::Encoder;
use rlipv2::graph::front::ImageFront;
use rlipv2::graph::vars::Vars;
use rlipv2::model::labels::LabelSet;
use rlipv2::model::postprocess::{postprocess, HeadOutputs, PostConfig};
use rlipv2::problem::Gate;
use serde_json::Value;

fn check(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    let g: Value = serde_json::from_str(include_str!("../fixtures/detect_golden.json")).unwrap();
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let vars = Vars::new(&get);
    let front = ImageFront::load(&vars).unwrap();
    let enc = Encoder::load(6, 4, 2048, 2, Gate::VXAc, &vars).unwrap();
    let dec = Decoders::load(128, 3, 4, 2048, &vars).unwrap();
    let (objects, verbs) = (g["objects"].as_u64().unwrap() as usize, g["verbs"].as_u64().unwrap() as usize);
    let t = objects + verbs;
    let lang = formula_lang(t);
    for c in g["cases"].as_array().unwrap() {
        let (h, w) = (c["height"].as_u64().unwrap() as usize, c["width"].as_u64().unwrap() as usize);
        let Some(mut tokens) = front_tokens(be.as_ref(), &front, "detect graph", h, w) else { return };
        // the memory stays where the backend computes, as in `detect`
        let (memory, states) = enc.forward_t(be.as_ref(), &mut tokens, &lang).unwrap();
        let out = dec
            .forward(be.as_ref(), &Memory { data: &memory, shapes: &tokens.shapes }, states.last().unwrap(), objects)
            .unwrap();
        let mut report = Vec::new();
        for (name, got, tol) in [
            ("pred_sub_logits", &out.sub_logits, 1e-3),
            ("pred_obj_logits", &out.obj_logits, 1e-3),
            ("pred_verb_logits", &out.verb_logits, 1e-3),
            ("pred_sub_boxes", &out.sub_boxes, 1e-4),
            ("pred_obj_boxes", &out.obj_boxes, 1e-4),
        ] {
            let want: Vec<f64> = c[name].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(got.len(), want.len(), "{name}: length");
            let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            report.push(format!("{name} {worst:.1e}"));
            assert!(worst <= tol, "{kind} {h}×{w}: {name} max |diff| {worst} > {tol}");
        }
        println!("{kind} {h}×{w}: max |diff| vs the official model: {}", report.join(", "));
        // the post-processed top-20 triplets of our heads and of the official heads are the same
        let labels = LabelSet {
            name: "golden".into(),
            objects: (0..objects - 1).map(|i| format!("object {i}")).collect(),
            verbs: (0..verbs).map(|i| format!("verb {i}")).collect(),
            valid_pairs: None,
        };
        let want: Vec<Vec<f32>> =
            ["pred_obj_logits", "pred_verb_logits", "pred_sub_boxes", "pred_obj_boxes", "pred_sub_logits"]
                .iter()
                .map(|k| c[*k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
                .collect();
        let heads = |o: &[f32], v: &[f32], sb: &[f32], ob: &[f32], sl: &[f32]| -> Vec<(usize, usize, usize)> {
            let out = HeadOutputs { obj_logits: o, verb_logits: v, sub_boxes: sb, obj_boxes: ob, sub_logits: Some(sl) };
            postprocess(&out, &labels, (480, 640), &PostConfig::default())
                .iter()
                .take(20)
                .map(|d| (d.pair, d.object_label, d.verb))
                .collect()
        };
        let ours = heads(&out.obj_logits, &out.verb_logits, &out.sub_boxes, &out.obj_boxes, &out.sub_logits);
        let official = heads(&want[0], &want[1], &want[2], &want[3], &want[4]);
        assert_eq!(ours.len(), 20);
        assert_eq!(ours, official, "{kind} {h}×{w}: top-20 triplets differ");
    }
}

#[test]
fn detect_graph_cpu_matches_official() {
    check(BackendKind::Cpu);
}

#[test]
fn detect_graph_reference_matches_official() {
    check(BackendKind::Reference);
}

#[test]
fn detect_graph_wgpu_matches_official() {
    check(BackendKind::Wgpu);
}

#[test]
fn detect_graph_cubecl_wgpu_matches_official() {
    check(BackendKind::CubeclWgpu);
}

#[test]
fn detect_graph_cubecl_cuda_matches_official() {
    check(BackendKind::CubeclCuda);
}
