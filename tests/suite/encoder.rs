//! The ALIF encoder (three fusion rounds + six deformable layers) against the official module
//! (`RLIPv2_DeformableTransformerEncoder`, MSDA through its grid_sample twin): goldens from
//! `tools/official_encoder.py` on the image front of tests/image_front.rs (64×96 and 48×80, formula
//! weights) and 7 formula language tokens. Checked: the memory and the three language states.

use crate::common::{formula_lang, formula_weight, front_tokens, open_or_skip};
use rlipv2::backend::BackendKind;
use rlipv2::graph::encoder::Encoder;
use rlipv2::graph::front::ImageFront;
use rlipv2::graph::vars::Vars;
use rlipv2::problem::Gate;
use serde_json::Value;

fn check(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    let g: Value = serde_json::from_str(include_str!("../fixtures/encoder_golden.json")).unwrap();
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let vars = Vars::new(&get);
    let front = ImageFront::load(&vars).unwrap();
    let enc = Encoder::load(6, 4, 2048, 2, Gate::VXAc, &vars.pp("transformer.encoder")).unwrap();
    let t = g["t"].as_u64().unwrap() as usize;
    let lang = formula_lang(t);
    for c in g["cases"].as_array().unwrap() {
        let (h, w) = (c["height"].as_u64().unwrap() as usize, c["width"].as_u64().unwrap() as usize);
        let Some(mut tokens) = front_tokens(be.as_ref(), &front, "encoder", h, w) else { return };
        let (memory, states) = enc.forward(be.as_ref(), &mut tokens, &lang).unwrap();
        assert_eq!(states.len(), 3);
        assert_eq!(memory.len(), c["tokens"].as_u64().unwrap() as usize * 256);
        let worst = |got: &[f32], idx: &Value, want: &Value| -> f64 {
            idx.as_array()
                .unwrap()
                .iter()
                .zip(want.as_array().unwrap())
                .map(|(i, w)| (got[i.as_u64().unwrap() as usize] as f64 - w.as_f64().unwrap()).abs())
                .fold(0.0, f64::max)
        };
        let m = worst(&memory, &c["positions"], &c["memory"]);
        let l: Vec<f64> = (0..3).map(|r| worst(&states[r], &c["lang_positions"], &c["lang"][r])).collect();
        println!("{kind} {h}×{w}: memory max |diff| {m:.2e}, language states {:.2e} {:.2e} {:.2e}", l[0], l[1], l[2]);
        assert!(m <= 1e-4, "{kind}: memory max |diff| {m}");
        assert!(l.iter().all(|&d| d <= 1e-4), "{kind}: language states max |diff| {l:?}");
    }
}

#[test]
fn encoder_cpu_matches_official() {
    check(BackendKind::Cpu);
}

#[test]
fn encoder_reference_matches_official() {
    check(BackendKind::Reference);
}

#[test]
fn encoder_wgpu_matches_official() {
    check(BackendKind::Wgpu);
}

#[test]
fn encoder_cubecl_wgpu_matches_official() {
    check(BackendKind::CubeclWgpu);
}

#[test]
fn encoder_cubecl_cuda_matches_official() {
    check(BackendKind::CubeclCuda);
}
