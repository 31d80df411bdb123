//! The RoBERTa text encoder against the official class (transformers 4.5.1 `RobertaModel`):
//! `tools/official_text_encoder.py` ran it at the real width (768, 12 heads, FFN 3072) with a
//! small vocabulary, 2 layers and formula weights, on 4 labels of different lengths (padded to the
//! longest, as the official batch encoding does). Every backend must give the same pooled
//! outputs within 2e-4 (the labels differ from one another by 6e-3 … 2e-2).

use crate::common::open_or_skip;
use rlipv2::backend::BackendKind;
use rlipv2::graph::text::TextEncoder;
use rlipv2::graph::vars::Vars;
use rlipv2::model::config::TextGeometry;
use serde_json::Value;

/// The generator's weight formula (f64, rounded to f32), keyed by the full state-dict name.
fn formula(name: &str, n: usize) -> Vec<f32> {
    let s: u64 = name.bytes().map(u64::from).sum();
    let scale = if name.contains("pooler") {
        0.005
    } else if name.contains(".query.") || name.contains(".key.") {
        0.002
    } else {
        0.04
    };
    (0..n as u64)
        .map(|j| {
            let v = (((j * 7919 + s * 104729) % 65521) as f64 / 65521.0 * 2.0 - 1.0) * scale;
            (if name.contains("LayerNorm.weight") { 1.0 + v } else { v }) as f32
        })
        .collect()
}

fn golden() -> Value {
    serde_json::from_str(include_str!("../fixtures/text_encoder_golden.json")).unwrap()
}

fn encoder() -> TextEncoder {
    let g = golden();
    let geometry = TextGeometry {
        vocab: g["vocab"].as_u64().unwrap() as usize,
        max_positions: g["positions"].as_u64().unwrap() as usize,
        type_vocab: 1,
        layers: g["layers"].as_u64().unwrap() as usize,
    };
    // transformers names the module without the `transformer.text_encoder.` prefix
    let get = |name: &str, shape: &[usize]| Ok(formula(name, shape.iter().product()));
    TextEncoder::load(geometry, &Vars::new(&get)).unwrap()
}

fn labels() -> Vec<Vec<u32>> {
    golden()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

fn check(kind: BackendKind) {
    let Some(be) = open_or_skip(kind) else { return };
    let got = encoder().encode(be.as_ref(), &labels()).unwrap();
    let want: Vec<f64> = golden()["pooled"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    println!("{kind}: pooled outputs of {} labels, max |diff| vs transformers {worst:.2e}", labels().len());
    assert!(worst <= 2e-4, "{kind}: max |diff| {worst}");
}

#[test]
fn text_encoder_cpu_matches_transformers() {
    check(BackendKind::Cpu);
}

#[test]
fn text_encoder_reference_matches_transformers() {
    check(BackendKind::Reference);
}

#[test]
fn text_encoder_wgpu_matches_transformers() {
    check(BackendKind::Wgpu);
}

#[test]
fn text_encoder_cubecl_wgpu_matches_transformers() {
    check(BackendKind::CubeclWgpu);
}

#[test]
fn text_encoder_cubecl_cuda_matches_transformers() {
    check(BackendKind::CubeclCuda);
}

#[test]
fn one_label_at_a_time_equals_the_batch() {
    let Some(be) = open_or_skip(BackendKind::Cpu) else { return };
    let enc = encoder();
    let batch = enc.encode(be.as_ref(), &labels()).unwrap();
    for (i, l) in labels().iter().enumerate() {
        let one = enc.encode(be.as_ref(), std::slice::from_ref(l)).unwrap();
        let d = one.iter().zip(&batch[i * 768..(i + 1) * 768]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "label {i}: alone vs in the padded batch differ by {d}");
    }
}

#[test]
fn bad_token_ids_and_lengths_are_refused() {
    let Some(be) = open_or_skip(BackendKind::Cpu) else { return };
    let enc = encoder();
    let e = enc.encode(be.as_ref(), &[vec![0, 50, 2]]).unwrap_err().to_string();
    assert!(e.contains("token id 50") && e.contains("vocabulary of 50"), "{e}");
    let e = enc.encode(be.as_ref(), &[vec![0; 17]]).unwrap_err().to_string();
    assert!(e.contains("17 tokens"), "{e}");
    assert!(enc.encode(be.as_ref(), &[]).is_err());
}
