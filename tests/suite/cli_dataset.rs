//! Dataset runs of `rlipv2 detect`: bad files are reported and skipped, `--shard K/N` splits a
//! directory into disjoint parts whose union is the single-process run, `--resume` finishes a
//! killed run without redoing or losing an image; and the output and failure records underneath.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rlipv2::dataset::{Failures, Output as Sink, Shard};

fn detect(model: &Path, images: &Path, out: &Path, extra: &[&str]) -> Command {
    detect_files(model, &[images], out, extra)
}

fn detect_files(model: &Path, images: &[&Path], out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlipv2"));
    c.arg("detect").arg("--weights").arg(model).args(images).args(["--backend", "cpu", "--format", "jsonl", "--out"]);
    c.arg(out).args(extra);
    c
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_string).collect()).unwrap_or_default()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two valid images, and beside them an empty file, a truncated PNG, text named .jpg and a note.
/// The images are 400×20: pre-processing makes them 1333×67, a fifth of the work of a photo.
fn dataset(dir: &Path) -> PathBuf {
    let d = dir.join("imgs");
    std::fs::create_dir(&d).unwrap();
    for (name, seed) in [("a.png", 1u32), ("b.png", 2)] {
        let data = (0..400 * 20 * 3)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761).wrapping_add(seed << 20) >> 24) as u8)
            .collect();
        let img = rlipv2::model::preprocess::RgbImage { width: 400, height: 20, data };
        rlipv2::io::draw::save_png(&img, &d.join(name)).unwrap();
    }
    std::fs::write(d.join("empty.png"), b"").unwrap();
    let png = std::fs::read(d.join("a.png")).unwrap();
    std::fs::write(d.join("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(d.join("text.jpg"), b"not a jpeg").unwrap();
    std::fs::write(d.join("notes.txt"), b"ignored").unwrap();
    d
}

#[test]
fn bad_files_are_skipped_shards_partition_and_a_killed_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::converted_fixture(dir.path());
    let imgs = dataset(dir.path());

    // one process: every valid image, every bad one listed with its reason, non-zero exit
    let full = dir.path().join("full");
    let o = detect(&model, &imgs, &full, &[]).output().unwrap();
    let err = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("done: 2 images, failed: 3, passed over: 1"), "{err}");
    let all = lines(&full.join("detections.jsonl"));
    assert_eq!(all.len(), 2);
    for l in &all {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["width"].as_u64().is_some() && v["model"]["variant"] == "RLIP_ParSeDA_v2", "{l}");
        assert_eq!(v["post"]["top_k"], 100);
    }
    let failed: Vec<serde_json::Value> =
        lines(&full.join("failures.jsonl")).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut names: Vec<&str> =
        failed.iter().map(|f| f["image"].as_str().unwrap().rsplit('/').next().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["empty.png", "text.jpg", "truncated.png"]);
    assert!(failed.iter().all(|f| !f["error"].as_str().unwrap().is_empty()));
    // --fail-fast stops at the first bad file
    let ff = dir.path().join("ff");
    let o =
        detect_files(&model, &[&imgs.join("empty.png"), &imgs.join("a.png")], &ff, &["--fail-fast"]).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("empty.png") && !text(&o).contains("done:"), "{}", text(&o));
    assert!(lines(&ff.join("detections.jsonl")).is_empty(), "a.png was not run");

    // V-COCO: every query pair is written too (what `eval vcoco` scores), 29 verb sigmoids each
    let vc = dir.path().join("vcoco");
    let o = detect_files(&model, &[&imgs.join("a.png")], &vc, &["--labels", "vcoco"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_str(&lines(&vc.join("detections.jsonl"))[0]).unwrap();
    let pairs = doc["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 64, "N/2 pairs of the 128-query model");
    assert!(pairs
        .iter()
        .all(|p| p["verb_scores"].as_array().unwrap().len() == 29 && p["object_score"].as_f64().is_some()));
    assert!(all.iter().all(|l| !l.contains("\"pairs\"")), "HICO documents carry no pairs");

    // three shards: disjoint, and their union is the single run, byte for byte after sorting
    let sharded = dir.path().join("sharded");
    let mut union = Vec::new();
    let mut failed_union = 0;
    for k in 0..3 {
        let o = detect(&model, &imgs, &sharded, &["--shard", &format!("{k}/3")]).output().unwrap();
        let part = lines(&sharded.join(format!("detections-{k}-of-3.jsonl")));
        let bad = lines(&sharded.join(format!("failures-{k}-of-3.jsonl"))).len();
        assert_eq!(o.status.success(), bad == 0, "{}", text(&o));
        failed_union += bad;
        union.extend(part);
    }
    let (mut want, mut got) = (all.clone(), union.clone());
    want.sort();
    got.sort();
    assert_eq!(got, want, "the shards' union is the single-process run");
    assert_eq!(failed_union, 3);

    // kill a run after its first image, then resume it: every image once
    let valid = dir.path().join("valid");
    std::fs::create_dir(&valid).unwrap();
    for f in ["a.png", "b.png"] {
        std::fs::copy(imgs.join(f), valid.join(f)).unwrap();
    }
    let run = dir.path().join("killed");
    let out = run.join("detections.jsonl");
    let mut child = detect(&model, &valid, &run, &[]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t = std::time::Instant::now();
    while lines(&out).is_empty() && t.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines(&out).len();
    assert_eq!(before, 1, "killed after the first image");
    let o = detect(&model, &valid, &run, &[]).output().unwrap();
    assert!(!o.status.success() && text(&o).contains("--resume"), "no silent appending: {}", text(&o));
    let o = detect(&model, &valid, &run, &["--resume"]).output().unwrap();
    let err = text(&o);
    assert!(o.status.success() && err.contains("resuming: 1 of 2") && err.contains("done: 1 images"), "{err}");
    let mut got = lines(&out);
    got.sort();
    let mut want: Vec<String> =
        all.iter().map(|l| l.replace(imgs.to_str().unwrap(), valid.to_str().unwrap())).collect();
    want.sort();
    assert_eq!(got, want, "nothing lost, nothing twice");
}

#[test]
fn shard_split_is_stable_and_checked() {
    let names: Vec<String> = (0..3000).map(|i| format!("HICO_test2015_{i:08}.jpg")).collect();
    let shards: Vec<Shard> = (0..3).map(|k| format!("{k}/3").parse().unwrap()).collect();
    for n in &names {
        assert_eq!(shards.iter().filter(|s| s.holds(n)).count(), 1, "{n} in exactly one shard");
    }
    // balanced to a few percent, and a file's shard does not depend on the rest of the listing
    for s in &shards {
        let c = names.iter().filter(|n| s.holds(n)).count();
        assert!((900..1100).contains(&c), "{c}");
    }
    assert!(shards[0].holds("HICO_test2015_00000000.jpg") == shards[0].holds(&names[0]));
    for bad in ["3/3", "1", "a/3", "0/0", "-1/3"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
}

#[test]
fn outputs_know_what_is_done_and_drop_a_cut_line() {
    let dir = tempfile::tempdir().unwrap();
    // per-image files: complete documents count, a stray temporary file does not
    let mut per = Sink::per_image(dir.path());
    per.write(&serde_json::json!({"image": "x/a.jpg", "detections": []})).unwrap();
    std::fs::write(dir.path().join(".b.json.tmp-1"), b"{").unwrap();
    assert_eq!(per.done().unwrap(), ["a".to_string()].into());
    // JSON Lines: a last line cut by a kill is dropped on resume, then appending goes on cleanly
    let path = dir.path().join("d.jsonl");
    std::fs::write(&path, "{\"image\": \"p/a.png\"}\n{\"image\": \"p/b.p").unwrap();
    assert!(Sink::lines(&path, false).is_err(), "an existing file needs --resume");
    let (mut sink, cut) = Sink::lines(&path, true).unwrap();
    assert_eq!(cut, 16);
    assert_eq!(sink.done().unwrap(), ["a".to_string()].into());
    sink.write(&serde_json::json!({"image": "p/b.png"})).unwrap();
    assert_eq!(lines(&path), ["{\"image\": \"p/a.png\"}", "{\"image\":\"p/b.png\"}"]);
    // failures: a fresh record per run, created on the first failure
    let fpath = dir.path().join("failures.jsonl");
    std::fs::write(&fpath, "old\n").unwrap();
    let mut f = Failures::new(fpath.clone()).unwrap();
    assert!(!fpath.exists());
    f.add(Path::new("x.png"), "cannot decode").unwrap();
    assert_eq!(lines(&fpath), ["{\"error\":\"cannot decode\",\"image\":\"x.png\"}"]);
}
