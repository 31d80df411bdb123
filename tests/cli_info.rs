//! `rlipv2 info`: every backend listed as available (with device and details) or not (with why),
//! the features and what `auto` picks; `--json` is machine-readable.

#[test]
fn info_lists_every_backend() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2")).args(["info", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backends = v["backends"].as_array().unwrap();
    let names: Vec<&str> = backends.iter().map(|b| b["backend"].as_str().unwrap()).collect();
    assert_eq!(names, ["reference", "cpu", "wgpu", "cubecl-wgpu", "cubecl-cuda"]);
    for b in backends {
        if b["available"].as_bool().unwrap() {
            assert!(b["device"].as_str().is_some_and(|d| !d.is_empty()));
        } else {
            assert!(b["why"].as_str().is_some_and(|w| !w.is_empty()));
        }
    }
    assert_eq!(backends[1]["available"], true);
    assert!(backends[1]["details"]["threads"].as_str().is_some());
    assert!(v["auto"].as_str().is_some_and(|a| !a.is_empty()));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}
