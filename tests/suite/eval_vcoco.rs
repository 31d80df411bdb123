//! `rlipv2 eval vcoco` against the official evaluation: `tests/fixtures/vcoco_eval` is a
//! synthetic V-COCO set (tools/official_vcoco_eval.py) — unlabelled persons, ignored, degenerate
//! and clipped COCO boxes, persons without role objects, `missing objects` pairs, scores masked
//! to 0 by the valid-pair matrix (ties everywhere), an image without detections — with the
//! numbers of the official export (generate_vcoco_official.py) scored by the official
//! `vsrl_eval.py`. And NumPy's argsort, whose tie order those numbers depend on.

use std::path::{Path, PathBuf};
use std::process::Command;

use rlipv2::eval::{detections, vcoco};
use rlipv2::model::labels::LabelSet;
use rlipv2::model::npsort;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vcoco_eval")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn close(got: f64, want: &serde_json::Value, what: &str) {
    match want.as_f64() {
        Some(w) => assert!((got - w).abs() <= 1e-6, "{what}: {got} vs official {w}"),
        None => assert!(got.is_nan(), "{what}: {got}, official NaN"),
    }
}

#[test]
fn argsort_is_numpys() {
    let golden = json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npsort_golden.json"));
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 30);
    for (i, c) in cases.iter().enumerate() {
        let v: Vec<f32> =
            c["values"].as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32)).collect();
        let want: Vec<usize> = c["argsort"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(npsort::argsort(&v), want, "case {i} ({} values)", v.len());
    }
}

#[test]
fn every_ap_matches_the_official_evaluator() {
    let want = json(&dir().join("expected.json"));
    let names: Vec<&str> = want["verb_classes"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(names, vcoco::VERB_CLASSES, "the official export's verb classes");
    let ann = dir().join("annotations");
    let gt = vcoco::read_annotations(
        &ann.join("vcoco_test.json"),
        &ann.join("instances_vcoco_all_2014.json"),
        &ann.join("vcoco_test.ids"),
    )
    .unwrap();
    let correct = vcoco::read_correct_mat(&ann.join("corre_vcoco.npy")).unwrap();
    let set = LabelSet::builtin("vcoco").unwrap();
    let mut found = detections::read(&dir().join("detections"), &set).unwrap();
    let pairs: Vec<_> =
        gt.images.iter().map(|g| found.remove(&detections::stem(&g.file_name)).unwrap().pairs.unwrap()).collect();
    assert!(pairs.iter().any(Vec::is_empty), "an image without detections");
    let r = vcoco::evaluate(&gt, &pairs, &correct, set.objects.len() - 1).unwrap();
    for (i, a) in want["actions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(r.actions[i].name, a["action"].as_str().unwrap());
        close(r.agent_ap[i] as f64, &a["agent_ap"], &format!("{} agent", r.actions[i].name));
        for k in 0..2 {
            close(r.role_ap_1[i][k] as f64, &a["role_ap_1"][k], &format!("{} role {k} scenario 1", r.actions[i].name));
            close(r.role_ap_2[i][k] as f64, &a["role_ap_2"][k], &format!("{} role {k} scenario 2", r.actions[i].name));
        }
    }
    close(r.agent_map(), &want["agent AP"], "agent AP");
    close(r.role_map(1), &want["role AP scenario 1"], "role AP scenario 1");
    close(r.role_map(2), &want["role AP scenario 2"], "role AP scenario 2");
    close(r.role_map_without_point(1).unwrap(), &want["role AP scenario 1 without point"], "s1 without point");
    close(r.role_map_without_point(2).unwrap(), &want["role AP scenario 2 without point"], "s2 without point");
    // the scenarios differ on this set (persons without role objects), and ties were plenty
    assert!((r.role_map(1) - r.role_map(2)).abs() > 1e-3);
    assert!(want["set"]["zero_scores"].as_u64().unwrap() > 100);
}

fn rlipv2(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rlipv2")).args(args).output().unwrap()
}

#[test]
fn cli_prints_the_official_numbers_and_refuses_what_it_cannot_score() {
    let want = json(&dir().join("expected.json"));
    let (ann, det) = (dir().join("annotations"), dir().join("detections"));
    let out = rlipv2(&[
        "eval",
        "vcoco",
        "--annotations",
        ann.to_str().unwrap(),
        "--detections",
        det.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["agent AP", "role AP scenario 1", "role AP scenario 2", "role AP scenario 1 without point"] {
        close(got[k].as_f64().unwrap(), &want[k], k);
    }
    let text =
        rlipv2(&["eval", "vcoco", "--annotations", ann.to_str().unwrap(), "--detections", det.to_str().unwrap()]);
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains(&format!("{:8.4}", 100.0 * want["role AP scenario 1"].as_f64().unwrap())), "{t}");

    // HICO detections (no pairs), a wrong split file, a missing matrix
    let hico = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hico_eval/detections");
    let out =
        rlipv2(&["eval", "vcoco", "--annotations", ann.to_str().unwrap(), "--detections", hico.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--labels vcoco"), "{err}");
    let t = tempfile::tempdir().unwrap();
    for f in ["vcoco_test.json", "instances_vcoco_all_2014.json", "corre_vcoco.npy"] {
        std::fs::copy(ann.join(f), t.path().join(f)).unwrap();
    }
    std::fs::write(t.path().join("vcoco_test.ids"), "1000\n").unwrap();
    let out =
        rlipv2(&["eval", "vcoco", "--annotations", t.path().to_str().unwrap(), "--detections", det.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("vcoco_test.ids") && err.contains("not the"), "{err}");
    std::fs::copy(ann.join("vcoco_test.ids"), t.path().join("vcoco_test.ids")).unwrap();
    std::fs::remove_file(t.path().join("corre_vcoco.npy")).unwrap();
    let out =
        rlipv2(&["eval", "vcoco", "--annotations", t.path().to_str().unwrap(), "--detections", det.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--correct-mat"), "{err}");
    std::fs::write(t.path().join("corre_vcoco.npy"), b"\x93NUMPY\x01\x00").unwrap();
    let out =
        rlipv2(&["eval", "vcoco", "--annotations", t.path().to_str().unwrap(), "--detections", det.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("corre_vcoco.npy"), "{err}");
}
