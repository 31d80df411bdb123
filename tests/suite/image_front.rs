//! The image front (ResNet-50 with FrozenBN folded, or Swin-T; input projections + GroupNorm,
//! sine positions + level embed, flattening) against the official modules: goldens from
//! `tools/official_image_front.py [--backbone swin_tiny]` on 64×96 and 48×80 images with formula
//! weights (`formula_weight`). Every backend runs it (on the GPU backends every stage stays on the
//! device until read here).

use crate::common::{formula_weight, front_tokens, open_or_skip};
use rlipv2::backend::BackendKind;
use rlipv2::graph::front::{sine_position, ImageFront};
use rlipv2::graph::vars::Vars;
use serde_json::Value;

fn golden(backbone: &str) -> Value {
    serde_json::from_str(match backbone {
        "swin_tiny" => include_str!("../fixtures/image_front_golden_swin_tiny.json"),
        _ => include_str!("../fixtures/image_front_golden.json"),
    })
    .unwrap()
}

fn check(kind: BackendKind) {
    check_backbone(kind, "resnet50");
}

fn check_backbone(kind: BackendKind, backbone: &str) {
    let Some(be) = open_or_skip(kind) else { return };
    let get = |name: &str, shape: &[usize]| Ok(formula_weight(name, shape));
    let front = ImageFront::load_for(backbone, &Vars::new(&get)).unwrap();
    for g in golden(backbone)["cases"].as_array().unwrap() {
        let (h, w) = (g["height"].as_u64().unwrap() as usize, g["width"].as_u64().unwrap() as usize);
        let Some(tokens) = front_tokens(be.as_ref(), &front, "image front", h, w) else { return };
        let (src, pos) = (be.download(&tokens.src).unwrap(), be.download(&tokens.pos).unwrap());
        let shapes: Vec<Vec<u64>> = g["spatial_shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect())
            .collect();
        assert_eq!(tokens.shapes.iter().map(|&(a, b)| vec![a as u64, b as u64]).collect::<Vec<_>>(), shapes);
        let starts: Vec<usize> =
            shapes.iter().scan(0, |acc, s| Some(std::mem::replace(acc, *acc + (s[0] * s[1]) as usize))).collect();
        assert_eq!(tokens.level_start, starts);
        let mut worst = [0.0f64; 2];
        for (k, at) in g["positions"].as_array().unwrap().iter().enumerate() {
            let i = at.as_u64().unwrap() as usize;
            worst[0] = worst[0].max((src[i] as f64 - g["src"][k].as_f64().unwrap()).abs());
            worst[1] = worst[1].max((pos[i] as f64 - g["pos"][k].as_f64().unwrap()).abs());
        }
        let src_sum: f64 = src.iter().map(|&x| x as f64).sum();
        println!(
            "{kind} {backbone} {h}×{w}: src max |diff| {:.2e}, pos max |diff| {:.2e}, sum {src_sum:.4} vs {:.4}",
            worst[0],
            worst[1],
            g["src_sum"].as_f64().unwrap()
        );
        // src went through 53 convolutions with BatchNorm folded into the weights (values O(1)): ≤ 9e-6 seen
        assert!(worst[0] <= 1e-4, "{kind}: src max |diff| {}", worst[0]);
        assert!(worst[1] <= 1e-6, "{kind}: pos max |diff| {}", worst[1]);
        assert!((src_sum - g["src_sum"].as_f64().unwrap()).abs() <= 1e-3 * g["src_abs_sum"].as_f64().unwrap());
    }
}

#[test]
fn image_front_swin_tiny_matches_official_on_cpu() {
    // every backend runs the Swin-T front inside the whole graph (tests/detect_graph.rs); this
    // golden localizes a front error
    check_backbone(BackendKind::Cpu, "swin_tiny");
}

#[test]
fn image_front_cpu_matches_official() {
    check(BackendKind::Cpu);
}

#[test]
fn image_front_reference_matches_official() {
    check(BackendKind::Reference);
}

#[test]
fn image_front_wgpu_matches_official() {
    check(BackendKind::Wgpu);
}

#[test]
fn image_front_cubecl_wgpu_matches_official() {
    check(BackendKind::CubeclWgpu);
}

#[test]
fn image_front_cubecl_cuda_matches_official() {
    check(BackendKind::CubeclCuda);
}

#[test]
fn sine_positions_are_bounded_and_y_first() {
    let p = sine_position(2, 3);
    assert_eq!(p.len(), 256 * 6);
    assert!(p.iter().all(|v| v.abs() <= 1.0));
    // channel 0 = sin(y-embed): the same along a row, channel 128 = sin(x-embed): the same down a column
    assert_eq!(p[0], p[1]);
    assert_eq!(p[128 * 6], p[128 * 6 + 3]);
}
