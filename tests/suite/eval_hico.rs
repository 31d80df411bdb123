//! `rlipv2 eval hico` against the official evaluator: `tests/fixtures/hico_eval` is a synthetic
//! set (tools/official_hico_eval.py) with rare, non-rare and unlisted triplets, a duplicated
//! ground-truth HOI, a non-person subject, pairs suppressed by triplet NMS, boxes at IoU 0.5
//! exactly, an image without ground-truth boxes and one without detections; `expected.json` holds
//! the official `HICOEvaluator`'s numbers on the same files for the Default setting and the
//! UC-RF, UC-NF and UO splits.

use std::path::{Path, PathBuf};
use std::process::Command;

use rlipv2::eval::{detections, hico};
use rlipv2::model::labels::LabelSet;
use rlipv2::model::postprocess::Detection;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hico_eval")
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap()
}

const KEYS: [&str; 4] = ["mAP", "mAP rare", "mAP non-rare", "mean max recall"];

fn close(got: f64, want: &serde_json::Value, what: &str) {
    match want.as_f64() {
        Some(w) => assert!((got - w).abs() <= 1e-9, "{what}: {got} vs official {w}"),
        None => assert!(got.is_nan(), "{what}: {got}, official NaN"),
    }
}

#[test]
fn every_setting_matches_the_official_evaluator() {
    let want = expected();
    let set = LabelSet::builtin("hico").unwrap();
    let gts = hico::read_annotations(&dir().join("annotations/test_hico.json")).unwrap();
    let mut found = detections::read(&dir().join("detections"), &set).unwrap();
    let dets: Vec<Vec<Detection>> =
        gts.iter().map(|g| found.remove(&detections::stem(&g.file_name)).unwrap().detections).collect();
    assert!(found.is_empty());
    let stats = &want["set"];
    assert!(stats["pairs at IoU 0.5 exactly"].as_u64().unwrap() > 0);
    assert!(stats["detections after NMS"].as_u64() < stats["detections after top-100"].as_u64());
    for (name, split) in [
        ("default", hico::rare_split(&hico::read_annotations(&dir().join("annotations/trainval_hico.json")).unwrap())),
        ("uc-rf", hico::unseen_split(hico::ZeroShot::UcRf, &dir().join("annotations/hoi_list_new.json")).unwrap()),
        ("uc-nf", hico::unseen_split(hico::ZeroShot::UcNf, &dir().join("annotations/hoi_list_new.json")).unwrap()),
        ("uo", hico::unseen_split(hico::ZeroShot::Uo, &dir().join("annotations/hoi_list_new.json")).unwrap()),
    ] {
        let w = &want[name];
        assert_eq!(split.rare.len() as u64, w["rare_triplets"].as_u64().unwrap(), "{name}");
        assert_eq!(split.non_rare.len() as u64, w["non_rare_triplets"].as_u64().unwrap(), "{name}");
        let r = hico::evaluate(&gts, &dets, &split);
        assert_eq!(r.triplets.len() as u64, w["test_triplets"].as_u64().unwrap(), "{name}");
        for (k, got) in KEYS.iter().zip([r.map, r.map_rare, r.map_non_rare, r.mean_max_recall]) {
            close(got, &w[*k], &format!("{name} {k}"));
        }
    }
    // the set reaches the corners: rare and non-rare test triplets, one in neither split
    let r = hico::evaluate(
        &gts,
        &dets,
        &hico::rare_split(&hico::read_annotations(&dir().join("annotations/trainval_hico.json")).unwrap()),
    );
    assert!(r.triplets.iter().any(|t| t.rare == Some(true)) && r.triplets.iter().any(|t| t.rare == Some(false)));
    assert!(r.triplets.iter().any(|t| t.rare.is_none()));
    assert!(r.images_matched < r.images);
}

fn rlipv2(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rlipv2")).args(args).output().unwrap()
}

#[test]
fn cli_prints_the_official_numbers() {
    let want = expected();
    let (ann, det) = (dir().join("annotations"), dir().join("detections"));
    for (name, extra) in [("default", vec![]), ("uc-rf", vec!["--zero-shot", "uc-rf"])] {
        let mut args = vec![
            "eval",
            "hico",
            "--annotations",
            ann.to_str().unwrap(),
            "--detections",
            det.to_str().unwrap(),
            "--json",
        ];
        args.extend(extra);
        let out = rlipv2(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for k in KEYS {
            close(got[k].as_f64().unwrap_or(f64::NAN), &want[name][k], &format!("cli {name} {k}"));
        }
        assert_eq!(got["triplets"].as_array().unwrap().len() as u64, want[name]["test_triplets"].as_u64().unwrap());
    }
    // the table, in percent; a test_hico.json path works as well as its directory
    let out = rlipv2(&[
        "eval",
        "hico",
        "--annotations",
        ann.join("test_hico.json").to_str().unwrap(),
        "--detections",
        det.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let full = format!("{:8.4}", 100.0 * want["default"]["mAP"].as_f64().unwrap());
    assert!(out.status.success() && text.contains("mAP (Full)") && text.contains(&full), "{text}");
}

/// A copy of the fixture to break.
fn scratch() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for sub in ["annotations", "detections"] {
        std::fs::create_dir(t.path().join(sub)).unwrap();
        for e in std::fs::read_dir(dir().join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), t.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    t
}

fn eval_in(t: &Path, extra: &[&str]) -> (bool, String) {
    let (ann, det) = (t.join("annotations"), t.join("detections"));
    let mut args = vec!["eval", "hico", "--annotations", ann.to_str().unwrap(), "--detections", det.to_str().unwrap()];
    args.extend(extra);
    let out = rlipv2(&args);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_detections_are_an_error_unless_allowed() {
    let t = scratch();
    std::fs::remove_file(t.path().join("detections/HICO_test2015_00000007.json")).unwrap();
    let (ok, err) = eval_in(t.path(), &[]);
    assert!(!ok && err.contains("no detections for 1 of 10") && err.contains("HICO_test2015_00000007.jpg"), "{err}");
    let (ok, err) = eval_in(t.path(), &["--allow-missing"]);
    assert!(ok, "{err}");
    // detect's failure record beside the results is not a detection document
    std::fs::write(t.path().join("detections/failures.jsonl"), "{\"error\":\"cannot decode\",\"image\":\"x.png\"}\n")
        .unwrap();
    let (ok, err) = eval_in(t.path(), &["--allow-missing"]);
    assert!(ok, "{err}");
}

#[test]
fn bad_files_get_clear_errors() {
    let t = scratch();
    let test = t.path().join("annotations/test_hico.json");
    let good = std::fs::read_to_string(&test).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: [(&str, Edit, &str); 4] = [
        ("category", Box::new(|v| v[0]["annotations"][0]["category_id"] = 12.into()), "category_id 12 is not one of"),
        ("subject", Box::new(|v| v[0]["hoi_annotation"][0]["subject_id"] = 40.into()), "subject_id 40 is not a box"),
        ("verb", Box::new(|v| v[0]["hoi_annotation"][0]["category_id"] = 118.into()), "verb category_id 118"),
        ("bbox", Box::new(|v| v[1]["annotations"][0]["bbox"] = serde_json::json!([1, 2, 3])), "3 coordinates"),
    ];
    for (what, edit, says) in cases {
        let mut broken = v.clone();
        edit(&mut broken);
        std::fs::write(&test, serde_json::to_vec(&broken).unwrap()).unwrap();
        let (ok, err) = eval_in(t.path(), &[]);
        assert!(!ok && err.contains(says) && err.contains("test_hico.json"), "{what}: {err}");
    }
    std::fs::write(&test, b"{not json").unwrap();
    let (ok, err) = eval_in(t.path(), &[]);
    assert!(!ok && err.contains("not HICO-DET annotations"), "{err}");
    std::fs::write(&test, good).unwrap();

    // detections: another label set, an unknown verb, no trainval file for the rare split
    let one = t.path().join("detections/HICO_test2015_00000001.json");
    let doc = std::fs::read_to_string(&one).unwrap();
    std::fs::write(&one, doc.replace("\"labels\":\"hico\"", "\"labels\":\"vcoco\"")).unwrap();
    let (ok, err) = eval_in(t.path(), &[]);
    assert!(!ok && err.contains("--labels vcoco") && err.contains("HICO_test2015_00000001.json"), "{err}");
    let mut d: serde_json::Value = serde_json::from_str(&doc).unwrap();
    d["detections"][0]["verb"] = "juggle".into();
    std::fs::write(&one, serde_json::to_vec(&d).unwrap()).unwrap();
    let (ok, err) = eval_in(t.path(), &[]);
    assert!(!ok && err.contains("unknown verb `juggle`"), "{err}");
    std::fs::write(&one, doc).unwrap();
    std::fs::remove_file(t.path().join("annotations/trainval_hico.json")).unwrap();
    let (ok, err) = eval_in(t.path(), &[]);
    assert!(!ok && err.contains("trainval_hico.json") && err.contains("--trainval"), "{err}");
    // a zero-shot split needs only the HOI list; NF warns about detections without --person-only
    let (ok, err) = eval_in(t.path(), &["--zero-shot", "uc-nf"]);
    assert!(ok, "{err}");
}

#[test]
fn nf_zero_shot_warns_about_detections_of_every_subject() {
    let (ok, err) = eval_in(&dir(), &["--zero-shot", "nf"]);
    assert!(ok && err.contains("no --person-only"), "{err}");
    let (ok, err) = eval_in(&dir(), &[]);
    assert!(ok && !err.contains("warning"), "{err}");
}

fn det(sub: [f32; 4], obj: [f32; 4], object_label: usize, verb: usize, score: f32) -> Detection {
    Detection { pair: 0, subject_box: sub, object_box: obj, object_label, subject_label: 0, verb, score }
}

/// The AP arithmetic on sets small enough to count by hand.
#[test]
fn ap_by_hand() {
    let p = [0.0, 0.0, 9.0, 9.0];
    let o = [20.0, 20.0, 29.0, 29.0];
    // one image, ten instances of (person, bicycle, verb 3): 3 true positives reach recall
    // exactly 0.3, which is below the fourth threshold 0.30000000000000004 → AP = 3/11
    let gt =
        hico::GtImage { file_name: "a.jpg".into(), boxes: vec![p, o], labels: vec![0, 1], hois: vec![(0, 1, 3); 10] };
    // duplicates are matched once: the first detection takes the HOI, the others are FPs
    // (recall 0.1 reaches the thresholds 0 and 0.1) …
    let dets = vec![det(p, o, 1, 3, 0.9), det(p, o, 1, 3, 0.8), det(p, o, 1, 3, 0.7)];
    let r = hico::evaluate(std::slice::from_ref(&gt), std::slice::from_ref(&dets), &hico::Split::default());
    assert!((r.map - 2.0 / 11.0).abs() < 1e-15, "{}", r.map);
    // … so three true positives need three distinct ground-truth pairs
    let mut gt3 = gt.clone();
    gt3.boxes = vec![p, o, p, o, p, o];
    gt3.labels = vec![0, 1, 0, 1, 0, 1];
    gt3.boxes[2] = [100.0, 0.0, 109.0, 9.0];
    gt3.boxes[3] = [120.0, 20.0, 129.0, 29.0];
    gt3.boxes[4] = [200.0, 0.0, 209.0, 9.0];
    gt3.boxes[5] = [220.0, 20.0, 229.0, 29.0];
    gt3.hois = vec![(0, 1, 3), (2, 3, 3), (4, 5, 3)];
    gt3.hois.extend(vec![(0, 1, 3); 7]); // 10 instances, 7 of them duplicates of the first
    let dets3 = vec![
        det(p, o, 1, 3, 0.9),
        det(gt3.boxes[2], gt3.boxes[3], 1, 3, 0.8),
        det(gt3.boxes[4], gt3.boxes[5], 1, 3, 0.7),
    ];
    let r = hico::evaluate(std::slice::from_ref(&gt3), std::slice::from_ref(&dets3), &hico::Split::default());
    assert!((r.map - 3.0 / 11.0).abs() < 1e-15, "{}", r.map);
    assert!((r.mean_max_recall - 0.3).abs() < 1e-15);
    // IoU 0.5 exactly matches (the top half of a 10×10 box): +1-pixel areas 50 / 100
    let half = det([0.0, 0.0, 9.0, 4.0], o, 1, 3, 0.9);
    let r = hico::evaluate(std::slice::from_ref(&gt), &[vec![half]], &hico::Split::default());
    assert!((r.map - 2.0 / 11.0).abs() < 1e-15, "{}", r.map);
    // a wrong object label or a triplet absent from the test set is not a true positive
    let r = hico::evaluate(std::slice::from_ref(&gt), &[vec![det(p, o, 2, 3, 0.9)]], &hico::Split::default());
    assert_eq!(r.map, 0.0);
    assert!(r.map_rare.is_nan(), "no triplet in an empty split: NaN as np.mean([]) gives");
}
