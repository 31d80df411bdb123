//! The browser page (`web/`) in a real browser: Debian's chromium, headless, on its software
//! WebGPU adapter, driven like a visitor by `web/tests/drive.mjs` (playwright-core; it downloads
//! no browser). Checked here against the native build:
//! - `ms_deform_attn` in the page (the `wgpu` backend's WGSL on WebGPU) against the oracle under
//!   the tolerance policy, and against the native cpu backend, on the page's own seeded inputs;
//! - `detect` in the page (file pickers, the button) on the converted fixture: the native cpu
//!   backend's document (same triplets in the same order, scores and boxes within tolerance);
//! - the screenshot of the page's canvas: where the native drawing of those triplets changes
//!   the image (box edges, link, caption), the screenshot has the drawing's pixels;
//! - in a chromium without WebGPU, the page says so instead of failing silently.
//!
//! Needs `web/pkg` (`web/build.sh`), node with `web/node_modules` (`npm install` in `web/`) and
//! chromium (`$RLIPV2_CHROMIUM` or /usr/bin/chromium). Without them: `SKIP browser: <why>`;
//! with `browser` in `RLIPV2_REQUIRE_BACKENDS` (CI) their absence fails.

use std::path::Path;
use std::process::Command;

use rlipv2::backend::cpu::CpuBackend;
use rlipv2::backend::Ops;
use rlipv2::dataset::{Post, RunInfo};
use rlipv2::detect::{Detector, Profile};
use rlipv2::io::weights::WeightFile;
use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};
use rlipv2::seeded::MsDeformAttnData;
use serde_json::{json, Value};

use crate::common::{assert_agree, assert_close, expected, formula_model, tolerance, Case};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Why the page cannot be driven here, if it cannot.
fn missing() -> Option<String> {
    let web = root().join("web");
    if !web.join("pkg/rlipv2_web_bg.wasm").is_file() {
        return Some("web/pkg is not built (web/build.sh)".into());
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return Some("no node on PATH".into());
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        return Some("web/node_modules lacks playwright-core (npm install in web/)".into());
    }
    let chromium = std::env::var("RLIPV2_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).is_file() {
        return Some(format!("no chromium at {chromium}"));
    }
    None
}

fn browser_or_skip() -> bool {
    let Some(why) = missing() else {
        return true;
    };
    crate::common::skip("browser", why);
    false
}

fn drive(out: &Path, extra: &[&std::ffi::OsStr]) {
    let t = std::time::Instant::now();
    let r = Command::new("node")
        .arg(root().join("web/tests/drive.mjs"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    println!("{stdout}{stderr}drive: {:.1} s", t.elapsed().as_secs_f64());
    assert!(r.status.success(), "the page failed: {stderr}");
}

/// Pixel `i` of `im` (RGB).
fn px(im: &rlipv2::io::image::RgbImage, i: usize) -> &[u8] {
    &im.data[3 * i..3 * i + 3]
}

fn f32s(path: &Path) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(&std::fs::read(path).unwrap())
}

/// The page's seeded cases: the forms, one level of 1×1, odd sizes, and the bench's `small`.
fn specs() -> Vec<(&'static str, Value)> {
    vec![
        (
            "tiny_official",
            json!({"queries": 3, "heads": 1, "channels": 16, "points": 1, "levels": [[3, 4]], "form": "official", "seed": 1, "repeat": 1}),
        ),
        (
            "odd_points_1x1_level",
            json!({"queries": 97, "heads": 8, "channels": 32, "points": 4, "levels": [[7, 9], [4, 5], [1, 1]], "form": "points", "seed": 2, "repeat": 1}),
        ),
        (
            "boxes_d16",
            json!({"queries": 50, "heads": 8, "channels": 16, "points": 4, "levels": [[10, 12], [5, 6], [3, 3], [2, 2]], "form": "boxes", "seed": 4, "repeat": 1}),
        ),
        ("bench_small_points", json!({"case": "small", "form": "points", "seed": 6, "repeat": 2})),
    ]
}

fn problem_of(answer: &Value) -> MsDeformAttnProblem {
    let p = &answer["problem"];
    let n = |k: &str| p[k].as_u64().unwrap() as usize;
    let levels = crate::common::json_levels(&p["levels"]);
    let form = match p["form"].as_str().unwrap() {
        "official" => Form::Official,
        "points" => Form::Fused(RefKind::Points),
        _ => Form::Fused(RefKind::Boxes),
    };
    MsDeformAttnProblem::new(1, n("queries"), n("heads"), n("channels"), n("points"), &levels, form)
}

#[test]
fn browser_page_matches_native_backends() {
    if !browser_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // the fixture's architecture with fewer layers (2 encoder layers and their fusion round, one
    // layer per decoder: the software adapter runs a full-depth forward for minutes) and formula
    // weights, whose triplets have distinct scores (the fixture's constant weights tie them all)
    let model = formula_model(dir.path(), "small", |c| {
        c.enc_layers = 2;
        c.dec_layers = 1;
    });
    // 1000×25: pre-processed to 1333×33 (a short forward), drawn at twice the size of its strokes
    let image = dir.path().join("wide.png");
    let data = (0..1000 * 25 * 3).map(|i| ((i * 37 + i / 3000 * 11) % 251) as u8).collect();
    let img = rlipv2::model::preprocess::RgbImage { width: 1000, height: 25, data };
    rlipv2::io::draw::save_png(&img, &image).unwrap();
    let specs = specs();
    let cases = dir.path().join("msda.json");
    std::fs::write(&cases, serde_json::to_string(&specs.iter().map(|s| &s.1).collect::<Vec<_>>()).unwrap()).unwrap();
    let out = dir.path().join("out");
    drive(
        &out,
        &[
            "--msda".as_ref(),
            cases.as_os_str(),
            "--model".as_ref(),
            model.as_os_str(),
            "--image".as_ref(),
            image.as_os_str(),
        ],
    );

    // a browser without WebGPU (chromium without --enable-unsafe-webgpu, no adapter here) is told so
    let said = std::fs::read_to_string(out.join("no-webgpu.txt")).unwrap();
    assert!(said.contains("WebGPU") && said.ends_with("\nerror"), "the page without WebGPU said: {said}");

    // ms_deform_attn: the page's output against the oracle and the native cpu backend
    let cpu = CpuBackend::new();
    for (i, (name, _)) in specs.iter().enumerate() {
        let answer: Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("msda-{i}.json"))).unwrap()).unwrap();
        let pr = problem_of(&answer);
        let t = |n: &str| f32s(&out.join(format!("msda-{i}-{n}.f32")));
        let data = MsDeformAttnData { value: t("value"), a: t("a"), b: t("b"), c: t("c"), form: pr.form };
        let page = t("output");
        let case = Case { name, problem: pr, data };
        let exp = expected(&case, DType::F32);
        let tol = tolerance(DType::F32);
        assert_close("browser wgpu (WebGPU)", &case, &page, &exp, &tol);
        let native = cpu.ms_deform_attn(&case.problem, &case.data.input(), DType::F32).unwrap();
        assert_agree("browser wgpu vs native cpu", &case, &page, &native, &exp, &tol);
        println!(
            "msda {name}: page {:.3} ms (min of {}), max |page − native cpu| {:.2e}",
            answer["ms_min"].as_f64().unwrap(),
            answer["ms_all"].as_array().unwrap().len(),
            page.iter().zip(&native).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
        );
    }

    // detect: the page's document against the native cpu backend's
    let page: Value = serde_json::from_slice(&std::fs::read(out.join("detect.json")).unwrap()).unwrap();
    let file = WeightFile::open(&model).unwrap();
    let det = Detector::load(&file, &model).unwrap();
    let labels = det.labels(&file, &model, det.label_set("model").unwrap(), None, &cpu).unwrap();
    let post = Post::new(10, 0.0, false);
    let (dets, _) = det.detect_with_pairs(&cpu, &img, &labels, &post.config(), &mut Profile::default()).unwrap();
    let run = RunInfo::new("wgpu", post, &model, &det.config);
    let native = run.document("wide.png", &img, &labels, &dets, None);
    for key in ["image", "width", "height", "labels", "backend", "model"] {
        assert_eq!(page[key], native[key], "detect document: `{key}`");
    }
    let page_post: Post = serde_json::from_value(page["post"].clone()).unwrap();
    assert_eq!(&page_post, run.post(), "detect document: `post`");
    let (pd, nd) = (page["detections"].as_array().unwrap(), native["detections"].as_array().unwrap());
    assert_eq!(pd.len(), nd.len(), "detections kept");
    assert!(!nd.is_empty(), "the fixture detects something");
    let size = img.width.max(img.height) as f64;
    for (rank, (p, n)) in pd.iter().zip(nd).enumerate() {
        for key in ["verb", "object", "pair"] {
            assert_eq!(p[key], n[key], "detection #{} `{key}`: page {p} native {n}", rank + 1);
        }
        let (ps, ns) = (p["score"].as_f64().unwrap(), n["score"].as_f64().unwrap());
        assert!((ps - ns).abs() <= 1e-4 * ns.abs().max(1e-3), "detection #{} score: page {ps} native {ns}", rank + 1);
        for b in ["subject_box", "object_box"] {
            for (x, y) in p[b].as_array().unwrap().iter().zip(n[b].as_array().unwrap()) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-4 * size, "detection #{} {b}: page {x} native {y}", rank + 1);
            }
        }
    }
    println!("detect in the page: {} s, stages {}", page["seconds"], page["stages"]);

    // kept for a look (the page as a visitor sees it, and its canvas)
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for f in ["page.png", "canvas.png", "detect.json"] {
        std::fs::copy(out.join(f), keep.join(format!("browser-{f}"))).unwrap();
    }
    println!("screenshots: {}", keep.join("browser-page.png").display());

    // the canvas: the native drawing of the kept triplets (5 drawn, the page's default)
    let shot = rlipv2::io::image::load_rgb(&out.join("canvas.png")).unwrap();
    assert_eq!((shot.width, shot.height), (img.width, img.height), "canvas screenshot size");
    let shown: Vec<_> = run.post().kept(&dets).into_iter().take(5).cloned().collect();
    let drawn = rlipv2::io::draw::annotate(&img, &shown, &labels.set, 5);
    let marked: Vec<usize> = (0..img.width * img.height).filter(|&i| px(&drawn, i) != px(&img, i)).collect();
    let hit = marked.iter().filter(|&&i| px(&shot, i) == px(&drawn, i)).count();
    let b = &shown[0].subject_box;
    assert!(
        marked.len() as f32 >= (b[2] - b[0]).max(1.0),
        "the drawing marks at least one box edge ({} pixels)",
        marked.len()
    );
    assert!(
        hit * 100 >= marked.len() * 98,
        "the screenshot shows {hit} of the {} pixels the drawing marks",
        marked.len()
    );
    let elsewhere = (0..img.width * img.height).filter(|&i| px(&shot, i) != px(&drawn, i)).count();
    assert!(elsewhere * 100 <= img.width * img.height, "{elsewhere} screenshot pixels differ from the native drawing");
    println!("canvas: {hit} of {} drawn pixels as drawn natively, {elsewhere} pixels differ in all", marked.len());
}
