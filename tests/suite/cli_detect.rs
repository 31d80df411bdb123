//! `rlipv2 detect` from the command line: a checkpoint in the official format is converted with
//! baked label embeddings, then detect writes one JSON per image with boxes in original-image
//! pixels, labels from the set and scores, and an annotated PNG; bad inputs fail with a message and no output.
//! (The fixture's weights are constant, so the detections say nothing about quality: fidelity is
//! tests/detect_graph.rs.)

use std::path::Path;
use std::process::Command;

use crate::common::char_tokenizer;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlipv2"))
}

#[test]
fn detect_writes_json_per_image_and_fails_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let tok = char_tokenizer(dir.path());
    let model = crate::common::converted_fixture(dir.path());
    let images = dir.path().join("imgs");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(root.join("tests/fixtures/images/rgb_400x20.png"), images.join("a.png")).unwrap();
    std::fs::write(images.join("notes.txt"), "ignored").unwrap();
    let out = dir.path().join("out");
    let d = bin()
        .args([
            "detect".as_ref(),
            "--weights".as_ref(),
            model.as_os_str(),
            images.as_os_str(),
            "--backend".as_ref(),
            "cpu".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
            "--top-k".as_ref(),
            "5".as_ref(),
            "--profile".as_ref(),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&d.stdout), String::from_utf8_lossy(&d.stderr));
    assert!(d.status.success(), "{stderr}");
    assert!(stdout.contains("backbone + projections") && stdout.contains("total"), "{stdout}");
    // the op table: the encoder's time is mostly its linear layers and MSDA, the backbone's conv2d
    let row = |stage: &str| -> Vec<f64> {
        let table = stdout.split("ms by op").nth(1).unwrap_or_else(|| panic!("no op table: {stdout}"));
        let line = table.lines().find(|l| l.trim_start().starts_with(stage)).unwrap();
        line.trim_start()[stage.len()..].split_whitespace().map(|v| v.parse().unwrap()).collect()
    };
    let (backbone, encoder) = (row("backbone + projections"), row("encoder + fusion"));
    assert!(backbone[0] > 0.0 && encoder[1] > 0.0 && encoder[2] > 0.0 && encoder[3] > 0.0, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("a.json")).unwrap()).unwrap();
    assert_eq!(
        (doc["width"].as_u64(), doc["height"].as_u64(), doc["labels"].as_str()),
        (Some(400), Some(20), Some("hico"))
    );
    let dets = doc["detections"].as_array().unwrap();
    assert!(!dets.is_empty() && dets.len() <= 5);
    let hico = rlipv2::model::labels::LabelSet::builtin("hico").unwrap();
    for d in dets {
        assert!(
            hico.objects.contains(&d["object"].as_str().unwrap().to_string())
                && hico.verbs.contains(&d["verb"].as_str().unwrap().to_string())
        );
        assert_eq!(d["subject_box"].as_array().unwrap().len(), 4);
        assert!(d["score"].as_f64().unwrap() >= 0.0);
    }
    // the annotated image, at the original size
    let png = rlipv2::io::image::load_rgb(&out.join("a.png")).unwrap();
    assert_eq!((png.width, png.height), (400, 20));
    // a custom label set needs the tokenizer; a missing weights file and a non-image fail cleanly
    let custom = dir.path().join("labels.json");
    std::fs::write(&custom, r#"{"objects": ["person", "cup"], "verbs": ["hold", "drink with"]}"#).unwrap();
    let e = bin()
        .args([
            "detect".as_ref(),
            "--weights".as_ref(),
            model.as_os_str(),
            images.join("a.png").as_os_str(),
            "--labels".as_ref(),
            custom.as_os_str(),
            "--backend".as_ref(),
            "cpu".as_ref(),
            "--out".as_ref(),
            dir.path().join("o2").as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--tokenizer"));
    // with the tokenizer it is encoded by the model's text encoder once, then read from the cache
    let run_custom = |out: &str| {
        bin()
            .args([
                "detect".as_ref(),
                "--weights".as_ref(),
                model.as_os_str(),
                images.join("a.png").as_os_str(),
                "--labels".as_ref(),
                custom.as_os_str(),
                "--tokenizer".as_ref(),
                tok.as_os_str(),
                "--backend".as_ref(),
                "cpu".as_ref(),
                "--out".as_ref(),
                dir.path().join(out).as_os_str(),
            ])
            .output()
            .unwrap()
    };
    let first = run_custom("c1");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stderr).contains("encoding 5 texts"));
    let second = run_custom("c2");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("5 texts from the cache"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let read = |out: &str| std::fs::read_to_string(dir.path().join(out).join("a.json")).unwrap();
    assert_eq!(read("c1"), read("c2"));
    let doc: serde_json::Value = serde_json::from_str(&read("c1")).unwrap();
    assert!(doc["detections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| ["hold", "drink with"].contains(&d["verb"].as_str().unwrap())));
    let e = bin()
        .args([
            "detect".as_ref(),
            "--weights".as_ref(),
            dir.path().join("absent.safetensors").as_os_str(),
            images.join("a.png").as_os_str(),
            "--out".as_ref(),
            dir.path().join("o3").as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("absent.safetensors"));
    let e = bin()
        .args([
            "detect".as_ref(),
            "--weights".as_ref(),
            model.as_os_str(),
            images.join("notes.txt").as_os_str(),
            "--backend".as_ref(),
            "cpu".as_ref(),
            "--out".as_ref(),
            dir.path().join("o4").as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("notes.txt"));
    assert!(!dir.path().join("o4").join("notes.json").exists());
}

/// An RLIP_ParSeD_v2 checkpoint (deformable decoders, 200 queries, FFN 1024) in the official
/// format: converted, described by `info --weights`, and detected on. (Its fidelity to the
/// official model is tests/detect_graph.rs; this is the path a user takes.)
#[test]
fn parsed_checkpoint_converts_describes_and_detects() {
    let dir = tempfile::tempdir().unwrap();
    let (model, converted, info) = convert_and_describe(dir.path(), "official_format_r50_parsed_v2_q200.pth");
    assert!(converted.contains("RLIP_ParSeD_v2 resnet50, 200 queries, FFN 1024"), "{converted}");
    assert!(
        info.contains("RLIP_ParSeD_v2 (deformable decoders), resnet50, 200 queries (100 pairs), HICO-DET head"),
        "{info}"
    );
    let labels = small_labels(dir.path());
    let doc =
        detect_line(dir.path(), &model, &["--top-k".as_ref(), "5".as_ref(), "--labels".as_ref(), labels.as_os_str()]);
    assert_eq!(
        (doc["model"]["variant"].as_str(), doc["model"]["queries"].as_u64()),
        (Some("RLIP_ParSeD_v2"), Some(200))
    );
    let dets = doc["detections"].as_array().unwrap();
    assert!(!dets.is_empty() && dets.len() <= 5, "{doc}");
    assert!(dets.iter().all(|d| d["pair"].as_u64().unwrap() < 100), "{doc}");
}

/// `detect --batch 2` pads the two images to their largest pre-processed height and width (here
/// 400×20 → 67×1340 and 400×19 → 63×1326, canvas 67×1340), as an official batch of two does:
/// the image that fills the canvas gives what it gives alone, the padded one what
/// `Detector::detect_in` gives on that canvas (the padded forward's fidelity to the official
/// batched one is tests/detect_graph.rs), and `--profile` reports images/second.
#[test]
fn detect_batch_pads_each_image_to_the_batch_canvas() {
    use rlipv2::detect::{batch_canvas, Detector, Profile};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // the fixture's constant weights make every output insensitive to padding: the image-path
    // weights are replaced by the tests' formula weights (labels and metadata kept)
    let model = crate::common::formula_model(dir.path(), "formula", |_| {});
    let images = dir.path().join("imgs");
    std::fs::create_dir(&images).unwrap();
    std::fs::copy(root.join("tests/fixtures/images/rgb_400x20.png"), images.join("a.png")).unwrap();
    let data = (0..400 * 19 * 3).map(|i| ((i * 37 + i / 1200 * 11) % 251) as u8).collect();
    let b = rlipv2::model::preprocess::RgbImage { width: 400, height: 19, data };
    rlipv2::io::draw::save_png(&b, &images.join("b.png")).unwrap();
    let run = |batch: &str| -> (Vec<serde_json::Value>, String) {
        let out = dir.path().join(format!("out{batch}"));
        let d = bin()
            .args(["detect", "--backend", "cpu", "--format", "jsonl", "--profile", "--batch", batch, "--weights"])
            .arg(&model)
            .arg(&images)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
        let text = std::fs::read_to_string(out.join("detections.jsonl")).unwrap();
        let mut docs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        docs.sort_by_key(|d| d["image"].as_str().unwrap().to_string());
        (docs, String::from_utf8_lossy(&d.stdout).into_owned())
    };
    let (batched, stdout) = run("2");
    assert!(
        stdout.contains("throughput: 2 images in") && stdout.contains("images/s (padded in batches of 2)"),
        "{stdout}"
    );
    // each image's result is the library's: a alone (it fills the canvas), b on the canvas
    let file = rlipv2::io::weights::WeightFile::open(&model).unwrap();
    let det = Detector::load(&file, &model).unwrap();
    let be = rlipv2::backend::open(rlipv2::backend::BackendKind::Cpu).unwrap();
    let set = rlipv2::model::labels::LabelSet::builtin("hico").unwrap();
    let labels = det.labels(&file, &model, set, None, be.as_ref()).unwrap();
    let imgs = [images.join("a.png"), images.join("b.png")].map(|p| rlipv2::io::image::load_rgb(&p).unwrap());
    let canvas = batch_canvas(&imgs);
    assert_eq!(canvas, Some((67, 1340)));
    let post = rlipv2::model::postprocess::PostConfig::default();
    let records = |img: &rlipv2::model::preprocess::RgbImage, canvas| {
        let (dets, _) = det.detect_in(be.as_ref(), img, canvas, &labels, &post, &mut Profile::default()).unwrap();
        serde_json::Value::from(dets.iter().map(|d| d.record(&labels.set)).collect::<Vec<_>>())
    };
    assert_eq!(batched[0]["detections"], records(&imgs[0], None), "a fills the canvas: padding must not touch it");
    let padded = records(&imgs[1], canvas);
    assert_eq!(batched[1]["detections"], padded);
    assert_ne!(padded, records(&imgs[1], None), "b is padded: its result must change");
}

/// A V-COCO fine-tuned checkpoint (`fine_tune_RLIP_ParSeDA_v2_vcoco.sh` args: dataset_file vcoco,
/// 81 object and 29 verb classes, 200 queries) in the official format: `info` names its head and
/// `detect` without `--labels` uses that head's labels and writes every pair for `eval vcoco`.
#[test]
fn vcoco_checkpoint_detects_with_its_own_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _, info) = convert_and_describe(dir.path(), "official_format_r50_parseda_v2_vcoco_q200.pth");
    assert!(info.contains("RLIP_ParSeDA_v2 (DAB decoders), resnet50, 200 queries (100 pairs), V-COCO head"), "{info}");
    let doc = detect_line(dir.path(), &model, &["--top-k".as_ref(), "3".as_ref()]);
    assert_eq!(doc["labels"].as_str(), Some("vcoco"), "{doc}");
    assert_eq!(doc["pairs"].as_array().map(Vec::len), Some(100), "every query pair, for eval vcoco");
    // --precision bf16 (cpu only) runs and writes its records (their fidelity: tests/suite/bf16.rs);
    // another backend is refused
    let bf16_dir = dir.path().join("bf16");
    std::fs::create_dir(&bf16_dir).unwrap();
    let bf16 =
        detect_line(&bf16_dir, &model, &["--top-k".as_ref(), "3".as_ref(), "--precision".as_ref(), "bf16".as_ref()]);
    assert_eq!(bf16["pairs"].as_array().map(Vec::len), Some(100), "{bf16}");
    assert_eq!(bf16["detections"].as_array().map(Vec::len), doc["detections"].as_array().map(Vec::len));
    let refused = bin()
        .args(["detect", "--backend", "wgpu", "--precision", "bf16", "--weights"])
        .arg(&model)
        .arg(dir.path().join("a.png"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && e.contains("--precision bf16 runs on the cpu backend only"), "{e}");
}

/// An RLIP_ParSeDA_v2 Swin-T checkpoint in the official format (`--backbone swin_tiny`):
/// converted (no labels baked), described by `info`, detected on with (a few) labels encoded by
/// the file's own text encoder. (Its fidelity: tests/detect_graph.rs, tests/image_front.rs.)
#[test]
fn swin_tiny_checkpoint_converts_describes_and_detects() {
    let dir = tempfile::tempdir().unwrap();
    let (model, converted, info) = convert_and_describe(dir.path(), "official_format_swint_parseda_v2_q128.pth");
    assert!(converted.contains("RLIP_ParSeDA_v2 swin_tiny, 128 queries"), "{converted}");
    assert!(info.contains("RLIP_ParSeDA_v2 (DAB decoders), swin_tiny, 128 queries"), "{info}");
    let labels = small_labels(dir.path());
    let doc =
        detect_line(dir.path(), &model, &["--top-k".as_ref(), "3".as_ref(), "--labels".as_ref(), labels.as_os_str()]);
    assert_eq!(doc["model"]["backbone"].as_str(), Some("swin_tiny"), "{doc}");
    assert!(!doc["detections"].as_array().unwrap().is_empty(), "{doc}");
}

/// Open Images labels: `--labels` takes the official categories dict (`{"obj", "rel"}`, texts
/// verbatim) and detect then classifies each subject (a `subject` in every record); `--labels oi`
/// alone says where the texts come from (they are not in the official repo).
#[test]
fn open_images_labels_classify_subjects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let tok = char_tokenizer(dir.path());
    let model = crate::common::converted_fixture(dir.path());
    let dict = dir.path().join("OI_SGG_trainval_test_categories_dict.json");
    std::fs::write(&dict, r#"{"obj": ["Man", "Woman", "Guitar", "Table"], "rel": ["plays", "at", "holds"]}"#).unwrap();
    let image = dir.path().join("a.png");
    std::fs::copy(root.join("tests/fixtures/images/rgb_400x20.png"), &image).unwrap();
    let out = dir.path().join("out");
    let run = |labels: &std::ffi::OsStr| {
        bin()
            .args(["detect", "--backend", "cpu", "--format", "jsonl", "--top-k", "4", "--weights"])
            .arg(&model)
            .arg(&image)
            .arg("--labels")
            .arg(labels)
            .arg("--tokenizer")
            .arg(&tok)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let d = run(dict.as_os_str());
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let line = std::fs::read_to_string(out.join("detections.jsonl")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let dets = doc["detections"].as_array().unwrap();
    assert!(!dets.is_empty());
    for d in dets {
        let subject = d["subject"].as_str().unwrap();
        assert!(["Man", "Woman", "Guitar", "Table"].contains(&subject), "{d}");
        assert!(["plays", "at", "holds"].contains(&d["verb"].as_str().unwrap()), "{d}");
    }
    let e = run("oi".as_ref());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("convert_OI_annotations.py") && err.contains("categories_dict"),
        "{err}"
    );
}

/// A small custom label set (five texts to encode, where hico's 198 would cost the tests seconds).
fn small_labels(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("small_labels.json");
    std::fs::write(&path, r#"{"objects": ["person", "cup"], "verbs": ["hold", "drink with"]}"#).unwrap();
    path
}

/// `rlipv2 convert tests/fixtures/FIXTURE` (no labels baked) into `dir`, then `info --weights`:
/// (the model file, convert's stdout, info's stdout), both commands checked to succeed.
fn convert_and_describe(dir: &Path, fixture: &str) -> (std::path::PathBuf, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = dir.join("model.safetensors");
    let c = bin().arg("convert").arg(root.join("tests/fixtures").join(fixture)).arg(&model).output().unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let info = bin().args(["info", "--weights"]).arg(&model).output().unwrap();
    assert!(info.status.success(), "{}", String::from_utf8_lossy(&info.stderr));
    let text = |o: &[u8]| String::from_utf8_lossy(o).into_owned();
    (model, text(&c.stdout), text(&info.stdout))
}

/// `rlipv2 detect --backend cpu --format jsonl` of the 400×20 fixture image with `model`, labels
/// encoded through the char tokenizer, and `extra` arguments: the image's JSON line.
fn detect_line(dir: &Path, model: &Path, extra: &[&std::ffi::OsStr]) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let image = dir.join("a.png");
    std::fs::copy(root.join("tests/fixtures/images/rgb_400x20.png"), &image).unwrap();
    let out = dir.join("out");
    let d = bin()
        .args(["detect", "--backend", "cpu", "--format", "jsonl", "--weights"])
        .arg(model)
        .arg(&image)
        .args(extra)
        .arg("--tokenizer")
        .arg(char_tokenizer(dir))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let line = std::fs::read_to_string(out.join("detections.jsonl")).unwrap();
    serde_json::from_str(line.trim()).unwrap()
}
