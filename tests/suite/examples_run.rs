//! The `examples/` programs build with `cargo test` and run here: the kernels on the caller's own
//! wgpu device, the cubecl kernel generic over a runtime, and detect from Rust. A backend named in
//! RLIPV2_REQUIRE_BACKENDS must really run (an example's `SKIP` line fails the test then).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/examples/<name>`: cargo builds the examples next to the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} not built (cargo test builds examples)", path.display());
    path
}

fn required(name: &str) -> bool {
    std::env::var("RLIPV2_REQUIRE_BACKENDS").is_ok_and(|v| v.split(',').any(|b| b.trim() == name))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    print!("{stdout}");
    stdout
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_own_device_example_matches_the_oracle() {
    let out = run(&mut Command::new(example("wgpu_own_device")));
    if out.contains("SKIP") {
        assert!(!required("wgpu"), "wgpu is required here: {out}");
    } else {
        assert!(out.contains("caller's device") && out.contains("max |Δ|"), "{out}");
    }
}

#[cfg(feature = "cubecl-wgpu")]
#[test]
fn cubecl_generic_example_matches_the_oracle() {
    let out = run(&mut Command::new(example("cubecl_generic")));
    if required("cubecl-wgpu") {
        assert!(out.contains("cubecl-wgpu: max |Δ|"), "{out}");
    }
}

#[test]
fn detect_example_prints_triplets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::converted_fixture(dir.path());
    let out = run(Command::new(example("detect"))
        .arg(&model)
        .arg(root.join("tests/fixtures/images/rgb_400x20.png"))
        .arg("cpu"));
    assert!(out.contains("backend: cpu") && out.contains("detections in"), "{out}");
    assert!(out.lines().filter(|l| l.contains("person ")).count() >= 1, "{out}");
    // a missing argument is a usage error, not a panic
    let bad = Command::new(example("detect")).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("usage"));
}
