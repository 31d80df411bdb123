//! Readers of strangers' files never panic: seeded mutations (truncation, bit flips, byte
//! overwrites, spliced chunks) of a real model-file header and of real PNG/JPEG images go through
//! `WeightFile::open` + `get` and `load_rgb`; each must return a value or a clear error.
//! 10 000 cases per reader (`RLIPV2_FUZZ_CASES` for more). The pickle reader's fuzz is in convert.rs.

use std::path::Path;

use rlipv2::io::image::load_rgb;
use rlipv2::io::weights::WeightFile;
use rlipv2::seeded::Rng;

fn cases() -> usize {
    std::env::var("RLIPV2_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn mutate(base: &[u8], rng: &mut Rng, prefix: usize) -> Vec<u8> {
    let mut p = base.to_vec();
    let r = rng.next_u64();
    let span = prefix.min(p.len()).max(1);
    match r % 4 {
        0 => p.truncate((r >> 8) as usize % p.len()),
        1 => {
            for k in 0..1 + (r >> 60) as usize {
                let i = rng.next_u64() as usize % span;
                p[i] ^= 1 << (k % 8);
            }
        }
        2 => {
            let i = (r >> 8) as usize % span;
            p[i] = (r >> 40) as u8;
        }
        _ => {
            let i = (r >> 8) as usize % span;
            let j = rng.next_u64() as usize % span;
            let chunk = p[i.min(j)..i.max(j).min(i.min(j) + 32)].to_vec();
            p.splice(i..i, chunk);
        }
    }
    p
}

/// A small safetensors file with metadata, written by the safetensors crate.
fn model_file() -> Vec<u8> {
    let a: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let b: Vec<f32> = vec![0.5; 12];
    let views = [("w.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 8], bytemuck::cast_slice(&a)).unwrap()), ("w.bias", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], bytemuck::cast_slice(&b)).unwrap())];
    let meta = std::collections::HashMap::from([("rlipv2.config".to_string(), "{}".to_string())]);
    safetensors::tensor::serialize(views, Some(meta)).unwrap()
}

#[test]
fn mutated_model_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let base = model_file();
    let header = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let path = dir.path().join("m.safetensors");
    // the intact file reads
    std::fs::write(&path, &base).unwrap();
    let f = WeightFile::open(&path).unwrap();
    assert_eq!(f.get("w.bias", &[3, 4]).unwrap(), vec![0.5; 12]);
    assert!(f.get("w.bias", &[12]).unwrap_err().to_string().contains("w.bias"));
    let mut rng = Rng::new(77);
    let (mut opened, mut refused) = (0, 0);
    for _ in 0..cases() {
        std::fs::write(&path, mutate(&base, &mut rng, header)).unwrap();
        match WeightFile::open(&path) {
            Ok(f) => {
                opened += 1;
                let _ = f.get("w.weight", &[8, 8]);
                let _ = f.get("w.bias", &[3, 4]);
            }
            Err(e) => {
                assert!(e.to_string().contains("m.safetensors"), "{e}");
                refused += 1;
            }
        }
    }
    println!("{} mutated model files: {opened} opened, {refused} refused, 0 panics", cases());
}

#[test]
fn mutated_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let png = std::fs::read(root.join("rgb_64x48.png")).unwrap();
    // a JPEG of the same image, written here
    let img = load_rgb(&root.join("rgb_64x48.png")).unwrap();
    let jpg_path = dir.path().join("x.jpg");
    image::save_buffer(&jpg_path, &img.data, img.width as u32, img.height as u32, image::ColorType::Rgb8).unwrap();
    let jpg = std::fs::read(&jpg_path).unwrap();
    let mut rng = Rng::new(78);
    let (mut decoded, mut refused) = (0, 0);
    let path = dir.path().join("m.img");
    for i in 0..cases() {
        let base = if i % 2 == 0 { &png } else { &jpg };
        std::fs::write(&path, mutate(base, &mut rng, base.len())).unwrap();
        match load_rgb(&path) {
            Ok(im) => {
                assert_eq!(im.data.len(), im.width * im.height * 3);
                decoded += 1;
            }
            Err(_) => refused += 1,
        }
    }
    println!("{} mutated PNG/JPEG files: {decoded} decoded, {refused} refused, 0 panics", cases());
}
