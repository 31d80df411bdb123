//! Device faults become errors: a device that does not finish within the timeout (hung or lost)
//! is an error naming the limit, not a hang; the op CLI then exits non-zero with no output file.

use std::process::Command;

#[cfg(feature = "wgpu")]
#[test]
fn a_device_that_does_not_finish_in_time_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // cubecl waits are not bounded: its streams are per thread, so the wait cannot move to a
    // watchdog thread (see README, "Logging and device faults")
    for backend in ["wgpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_rlipv2"))
            .args([
                "bench",
                "ms_deform_attn",
                "--backends",
                backend,
                "--case",
                "small",
                "--repeat",
                "1",
                "--dtypes",
                "f32",
            ])
            .env("RLIPV2_GPU_TIMEOUT_S", "0.000001")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{backend} ")))
            .unwrap_or_else(|| panic!("a {backend} row: {stdout}"));
        if row.contains("not available") {
            assert!(
                !std::env::var("RLIPV2_REQUIRE_BACKENDS").unwrap_or_default().split(',').any(|b| b == backend),
                "{backend} is required: {row}"
            );
            println!("SKIP {backend}: {row}");
            continue;
        }
        assert!(row.contains("did not finish within") && row.contains("RLIPV2_GPU_TIMEOUT_S"), "{row}");
    }
}
