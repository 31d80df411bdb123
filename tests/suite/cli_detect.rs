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
/// format: converted with baked labels, described by `info --weights`, and detected on. (Its
/// fidelity to the official model is tests/detect_graph.rs; this is the path a user takes.)
#[test]
fn parsed_checkpoint_converts_describes_and_detects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let tok = char_tokenizer(dir.path());
    let model = dir.path().join("parsed.safetensors");
    let c = bin()
        .arg("convert")
        .arg(root.join("tests/fixtures/official_format_r50_parsed_v2_q200.pth"))
        .arg(&model)
        .arg("--tokenizer")
        .arg(&tok)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&c.stdout);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert!(stdout.contains("RLIP_ParSeD_v2 resnet50, 200 queries, FFN 1024"), "{stdout}");
    let info = bin().args(["info", "--weights"]).arg(&model).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success()
            && text.contains("RLIP_ParSeD_v2 (deformable decoders), resnet50, 200 queries (100 pairs), HICO-DET head"),
        "{text}"
    );
    let image = dir.path().join("a.png");
    std::fs::copy(root.join("tests/fixtures/images/rgb_400x20.png"), &image).unwrap();
    let out = dir.path().join("out");
    let d = bin()
        .args(["detect", "--backend", "cpu", "--format", "jsonl", "--top-k", "5", "--weights"])
        .arg(&model)
        .arg(&image)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let line = std::fs::read_to_string(out.join("detections.jsonl")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        (doc["model"]["variant"].as_str(), doc["model"]["queries"].as_u64()),
        (Some("RLIP_ParSeD_v2"), Some(200))
    );
    let dets = doc["detections"].as_array().unwrap();
    assert!(!dets.is_empty() && dets.len() <= 5, "{line}");
    assert!(dets.iter().all(|d| d["pair"].as_u64().unwrap() < 100), "{line}");
}
