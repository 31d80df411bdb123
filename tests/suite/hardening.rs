//! Readers of strangers' files never panic: seeded mutations (truncation, bit flips, byte
//! overwrites, spliced chunks) of a real model-file header and of real PNG/JPEG images go through
//! `WeightFile::open` + `get` and `load_rgb`; each must return a value or a clear error.
//! 10 000 cases per reader, 3 000 whole checkpoints (each a 340 KB file written and opened;
//! `RLIPV2_FUZZ_CASES` sets every count higher). The pickle reader's fuzz is in convert.rs.

use std::path::Path;

use rlipv2::io::image::load_rgb;
use rlipv2::io::weights::WeightFile;
use rlipv2::seeded::Rng;

fn cases() -> usize {
    std::env::var("RLIPV2_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

/// Whole mutated checkpoints: fewer by default (CI time: 10 000 took 22 s of the suite).
fn checkpoint_cases() -> usize {
    std::env::var("RLIPV2_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000)
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
    let views = [
        (
            "w.weight",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![8, 8], bytemuck::cast_slice(&a))
                .unwrap(),
        ),
        (
            "w.bias",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], bytemuck::cast_slice(&b))
                .unwrap(),
        ),
    ];
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

/// A valid `rlipv2 op ms_deform_attn` input: two levels, 6 queries, 2 heads of 8 channels.
fn msda_input() -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let (s, q, m, d, l, p) = (26usize, 6usize, 2usize, 8usize, 2usize, 2usize);
    let mut rng = Rng::new(5);
    let value = rng.fill(s * m * d, -1.0, 1.0);
    let loc = rng.fill(q * m * l * p * 2, -0.1, 1.1);
    let w = rng.fill(q * m * l * p, 0.0, 0.5);
    let shapes: Vec<i64> = vec![4, 5, 2, 3];
    let start: Vec<i64> = vec![0, 20];
    let views = [
        ("value", TensorView::new(Dtype::F32, vec![1, s, m, d], bytemuck::cast_slice(&value)).unwrap()),
        ("spatial_shapes", TensorView::new(Dtype::I64, vec![l, 2], bytemuck::cast_slice(&shapes)).unwrap()),
        ("level_start_index", TensorView::new(Dtype::I64, vec![l], bytemuck::cast_slice(&start)).unwrap()),
        (
            "sampling_locations",
            TensorView::new(Dtype::F32, vec![1, q, m, l, p, 2], bytemuck::cast_slice(&loc)).unwrap(),
        ),
        ("attention_weights", TensorView::new(Dtype::F32, vec![1, q, m, l, p], bytemuck::cast_slice(&w)).unwrap()),
    ];
    safetensors::tensor::serialize(views, None).unwrap()
}

#[test]
fn mutated_op_inputs_never_panic() {
    use rlipv2::backend::{open, BackendKind, Ops};
    use rlipv2::problem::DType;
    let dir = tempfile::tempdir().unwrap();
    let base = msda_input();
    let path = dir.path().join("in.safetensors");
    std::fs::write(&path, &base).unwrap();
    let cpu = open(BackendKind::Cpu).unwrap();
    // the intact file reads and runs
    let f = rlipv2::io::read_ms_deform_attn(&path).unwrap();
    assert_eq!(cpu.ms_deform_attn(&f.problem, &f.input(), DType::F32).unwrap().len(), 6 * 16);
    let mut rng = Rng::new(77);
    let (mut ran, mut refused) = (0, 0);
    for _ in 0..cases() {
        // mutate anywhere: header (names, dtypes, shapes, offsets) and data (values, level table)
        std::fs::write(&path, mutate(&base, &mut rng, base.len())).unwrap();
        match rlipv2::io::read_ms_deform_attn(&path) {
            Ok(f) => {
                // what the reader accepts is consistent: every backend input check passes or errs cleanly
                match cpu.ms_deform_attn(&f.problem, &f.input(), DType::F32) {
                    Ok(out) => assert_eq!(out.len(), f.problem.output_len()),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
                ran += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("in.safetensors") || e.to_string().contains("ms_deform_attn"), "{e}");
                refused += 1;
            }
        }
    }
    println!("{} mutated op inputs: {ran} read and ran, {refused} refused, 0 panics", cases());
}

#[test]
fn mutated_checkpoint_zips_never_panic() {
    use rlipv2::io::pth::{state_dict, Checkpoint};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = std::fs::read(root.join("tests/fixtures/official_format_r50_parseda_v2_q128.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.pth");
    let mut rng = Rng::new(99);
    let (mut opened, mut refused) = (0, 0);
    // the zip structure lives at both ends: local headers and data.pkl at the start, the central
    // directory (1011 entries: names, sizes, offsets) at the end
    let tail = 1011 * 64 + 22;
    for i in 0..checkpoint_cases() {
        let mut p = base.clone();
        if i % 2 == 0 {
            p = mutate(&p, &mut rng, 4096);
        } else {
            let cut = p.len() - tail.min(p.len());
            let mut end = mutate(&p[cut..], &mut rng, tail);
            p.truncate(cut);
            p.append(&mut end);
        }
        std::fs::write(&path, &p).unwrap();
        match Checkpoint::open(&path) {
            Ok(ck) => {
                opened += 1;
                if let Some(model) = ck.root.get("model") {
                    if let Ok(tensors) = state_dict(&path, &model) {
                        for (name, t) in tensors.iter().take(8) {
                            let _ = ck.read(name, t);
                        }
                    }
                }
            }
            Err(e) => {
                assert!(e.to_string().contains("c.pth"), "{e}");
                refused += 1;
            }
        }
    }
    println!("{} mutated checkpoints: {opened} opened, {refused} refused, 0 panics", checkpoint_cases());
}

/// A safetensors header written by hand (the safetensors crate cannot write these).
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn duplicate_tensor_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.safetensors");
    // two tensors both called `w`: whichever one a map kept, the other's bytes would be unaccounted for
    let header = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    std::fs::write(&path, raw_safetensors(header, &[0u8; 8])).unwrap();
    let e = WeightFile::open(&path).err().expect("a file with a duplicate name is refused").to_string();
    assert!(e.contains("dup.safetensors"), "{e}");
    let e = rlipv2::io::read_ms_deform_attn(&path).err().expect("refused by the op reader too").to_string();
    assert!(e.contains("dup.safetensors"), "{e}");
}

#[test]
fn a_zip_entry_declaring_more_bytes_than_the_file_holds_is_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut zip = std::fs::read(root.join("tests/fixtures/official_format_r50_parseda_v2_q128.pth")).unwrap();
    // the central-directory record of data.pkl: sizes at +20 (compressed) and +24, name at +46
    let at = (0..zip.len() - 46)
        .find(|&i| {
            zip[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] && {
                let n = u16::from_le_bytes([zip[i + 28], zip[i + 29]]) as usize;
                zip[i + 46..i + 46 + n].ends_with(b"data.pkl")
            }
        })
        .expect("data.pkl in the central directory");
    for off in [20, 24] {
        zip[at + off..at + off + 4].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.pth");
    std::fs::write(&path, &zip).unwrap();
    let e = rlipv2::io::pth::Checkpoint::open(&path).err().expect("refused").to_string();
    assert!(e.contains("bomb.pth"), "{e}");
    println!("{e}");
}
