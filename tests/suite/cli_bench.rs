//! `rlipv2 bench suite`: every op × backend × dtype in one run, written as bench.json, bench.md
//! and an SVG chart; `--compare` against an earlier bench.json; end-to-end detect with a model
//! file; a bad `--compare` file fails before any timing and writes nothing.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlipv2"))
}

fn required(name: &str) -> bool {
    std::env::var("RLIPV2_REQUIRE_BACKENDS").is_ok_and(|v| v.split(',').any(|b| b.trim() == name))
}

#[test]
fn suite_writes_json_markdown_chart_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let out = bin()
        .args(["bench", "suite", "--quick", "--repeat", "1", "--dtypes", "f32", "--backends", "cpu,wgpu", "--out"])
        .arg(&first)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("bench.json")).unwrap()).unwrap();
    let records = report["records"].as_array().unwrap();
    // 9 ms_deform_attn cells (3 forms, 3 query counts, 3 image sizes) + gemm, gated_cross_attn,
    // sparse_fusion; × 2 backends, f32
    assert_eq!(records.len(), 12 * 2);
    for op in [
        "ms_deform_attn/official",
        "ms_deform_attn/fused-points",
        "ms_deform_attn/fused-boxes",
        "gemm",
        "gated_cross_attn",
        "sparse_fusion/fused",
    ] {
        assert!(records.iter().any(|r| r["op"] == op), "{op} missing");
    }
    for r in records {
        let timed = r["median_ms"].as_f64().is_some_and(|m| m > 0.0);
        if r["backend"] == "cpu" || required(r["backend"].as_str().unwrap()) {
            assert!(timed, "not timed: {r}");
        } else if !timed {
            println!("SKIP {}: {}", r["backend"], r["skipped"]);
        }
    }
    let md = std::fs::read_to_string(first.join("bench.md")).unwrap();
    assert!(md.contains("## gemm — rlipv2") && md.contains("| cpu | f32 |"), "{md}");
    let svg = std::fs::read_to_string(first.join("bench.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("cpu/f32") && svg.contains("speed-up vs cpu"),
        "{}",
        &svg[..svg.len().min(400)]
    );

    // second run: cpu only, with detect end to end, compared against the first
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = crate::common::converted_fixture(dir.path());
    let second = dir.path().join("second");
    let out = bin()
        .args(["bench", "suite", "--quick", "--repeat", "1", "--dtypes", "f32", "--backends", "cpu", "--weights"])
        .arg(&model)
        .arg("--image")
        .arg(root.join("tests/fixtures/images/rgb_400x20.png"))
        .arg("--compare")
        .arg(first.join("bench.json"))
        .arg("--out")
        .arg(&second)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("bench.json")).unwrap()).unwrap();
    let detect = report["records"].as_array().unwrap().iter().find(|r| r["op"] == "detect").expect("a detect record");
    assert!(detect["median_ms"].as_f64().is_some_and(|m| m > 0.0), "{detect}");
    let change = stdout.split("change vs").nth(1).expect("a comparison");
    let gemm_cpu = change.lines().find(|l| l.starts_with("gemm") && l.contains(" cpu ")).expect("gemm cpu row");
    assert!(gemm_cpu.trim_end().ends_with('%'), "{gemm_cpu}");
    assert!(change.lines().any(|l| l.contains(" wgpu ") && l.trim_end().ends_with("gone")), "{change}");
    assert!(change.lines().any(|l| l.starts_with("detect") && l.trim_end().ends_with("added")), "{change}");

    // the report re-rendered from its JSON alone: same tables
    let rendered = dir.path().join("rendered");
    let out =
        bin().args(["bench", "render"]).arg(second.join("bench.json")).arg("--out").arg(&rendered).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(rendered.join("bench.md")).unwrap(),
        std::fs::read_to_string(second.join("bench.md")).unwrap()
    );
    assert!(std::fs::read_to_string(rendered.join("bench.svg")).unwrap().starts_with("<svg"));

    // a --compare file that is not a bench.json: error naming it, before timing, nothing written
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema\": 1}").unwrap();
    let third = dir.path().join("third");
    let out = bin()
        .args(["bench", "suite", "--quick", "--backends", "cpu", "--compare"])
        .arg(&bad)
        .arg("--out")
        .arg(&third)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("bad.json") && stderr.contains("not a bench.json"), "{stderr}");
    assert!(!third.exists());
    // so does a missing model file for the detect cell
    let out = bin()
        .args(["bench", "suite", "--quick", "--backends", "cpu", "--weights"])
        .arg(dir.path().join("none.safetensors"))
        .arg("--image")
        .arg(root.join("tests/fixtures/images/rgb_400x20.png"))
        .arg("--out")
        .arg(&third)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("none.safetensors"), "{stderr}");
    assert!(!third.exists());
}

/// The backward cells run only when named, both forms on every backend asked for (an
/// unavailable one is a skipped record that says so, never a silent gap).
#[test]
fn suite_times_the_backward_when_asked() {
    let records = quick_suite_records(&["--ops", "ms_deform_attn_backward"]);
    assert_eq!(records.len(), 2 * 2, "official and fused-points, × 2 backends: {records:?}");
    for r in records {
        assert!(r["op"].as_str().unwrap().starts_with("ms_deform_attn_backward/"), "{r}");
        if r["backend"] == "cpu" || required("wgpu") {
            assert!(r["median_ms"].as_f64().is_some_and(|m| m > 0.0), "not timed: {r}");
        } else {
            println!("SKIP {}: {}", r["backend"], r["skipped"]);
        }
    }
    // (a default run leaves them out: `suite_writes_json_markdown_chart_and_compares` counts its cells)
}

/// `--precision bf16`: the gemm cells run bf16 products on cpu (their records say bf16), and a
/// backend without bf16 is a skipped record that says so.
#[test]
fn suite_times_bf16_products_on_cpu_and_skips_them_elsewhere() {
    let records = quick_suite_records(&["--ops", "gemm", "--precision", "bf16"]);
    assert!(records.iter().any(|r| r["backend"] == "cpu"), "{records:?}");
    for r in records {
        assert_eq!(r["dtype"], "bf16", "{r}");
        if r["backend"] == "cpu" {
            assert!(r["median_ms"].as_f64().is_some_and(|m| m > 0.0), "not timed: {r}");
        } else {
            assert!(r["skipped"].as_str().unwrap().contains("--precision bf16 runs on the cpu backend only"), "{r}");
        }
    }
}

/// `bench suite --quick --repeat 1 --backends cpu,wgpu` with `extra` arguments, checked to
/// succeed: the records of its bench.json.
fn quick_suite_records(extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["bench", "suite", "--quick", "--repeat", "1", "--backends", "cpu,wgpu"])
        .args(extra)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bench.json")).unwrap()).unwrap();
    report["records"].as_array().unwrap().clone()
}
