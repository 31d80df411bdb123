//! Pre-processing against the official eval transform (PIL `convert('RGB')`, `RandomResize([800],
//! max_size=1333)` with Pillow's antialiased bilinear, `ToTensor`, `Normalize`): goldens from
//! `tools/official_preprocess.py` on an RGB, an RGBA (alpha dropped), a grayscale and a wide PNG
//! that exercise upscaling, the short-side rule, the max-size rule, a portrait image and an
//! antialiased downscale. The resample is Pillow's algorithm, so every sample must be exact.

use std::path::Path;

use rlipv2::io::image::load_rgb;
use rlipv2::model::preprocess::{preprocess, target_size, STD};
use serde_json::Value;

#[test]
fn matches_the_official_transform() {
    let golden: Value = serde_json::from_str(include_str!("../fixtures/preprocess_golden.json")).unwrap();
    for case in golden["cases"].as_array().unwrap() {
        let name = case["image"].as_str().unwrap();
        let img = load_rgb(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name)).unwrap();
        let p = preprocess(&img);
        assert_eq!(
            (p.height, p.width),
            (case["height"].as_u64().unwrap() as usize, case["width"].as_u64().unwrap() as usize),
            "{name}: size"
        );
        let plane = p.height * p.width;
        let (mut exact, mut total, mut worst) = (0, 0, 0.0f64);
        for c in 0..3 {
            let sum: f64 = p.data[c * plane..(c + 1) * plane].iter().map(|&x| x as f64).sum();
            let want_sum = case["sum"][c].as_f64().unwrap();
            assert!(
                (sum - want_sum).abs() / plane as f64 <= 0.002,
                "{name}: channel {c} mean {} vs {}",
                sum / plane as f64,
                want_sum / plane as f64
            );
            for (pos, want) in case["positions"].as_array().unwrap().iter().zip(case["samples"][c].as_array().unwrap())
            {
                let d = (p.data[c * plane + pos.as_u64().unwrap() as usize] as f64 - want.as_f64().unwrap()).abs();
                worst = worst.max(d);
                exact += (d < 1e-5) as usize;
                total += 1;
            }
        }
        println!(
            "{name}: {}×{} → {}×{}, {exact}/{total} samples exact, worst {worst:.4}",
            img.width, img.height, p.width, p.height
        );
        assert_eq!(
            exact,
            total,
            "{name}: {exact}/{total} samples exact, worst {worst} (one 8-bit step is {})",
            1.0 / 255.0 / STD[1]
        );
    }
}

#[test]
fn size_rule_matches_the_official_formula() {
    // (w, h) → (h, w) as datasets/transforms.py computes it
    for ((w, h), want) in [
        ((640, 480), (800, 1066)),
        ((1333, 800), (800, 1333)),
        ((800, 600), (800, 1066)),
        ((100, 40), (533, 1332)),
        ((37, 53), (1145, 800)),
        ((1000, 1000), (800, 800)),
        ((3000, 500), (222, 1332)),
        ((800, 1200), (1200, 800)),
    ] {
        assert_eq!(target_size(w, h), want, "{w}×{h}");
    }
}

#[test]
fn bad_images_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let e = load_rgb(&text).unwrap_err().to_string();
    assert!(e.contains("notes.png"), "{e}");
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/rgb_64x48.png")).unwrap();
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).unwrap();
    assert!(load_rgb(&cut).unwrap_err().to_string().contains("cut.png"));
    // a PNG header that claims 200000 × 200000 pixels
    let mut huge = png.clone();
    huge[16..20].copy_from_slice(&200_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&200_000u32.to_be_bytes());
    let big = dir.path().join("huge.png");
    std::fs::write(&big, &huge).unwrap();
    let e = load_rgb(&big).unwrap_err().to_string();
    assert!(e.contains("limit") || e.contains("huge.png"), "{e}");
    assert!(load_rgb(&dir.path().join("absent.png")).is_err());
}
