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

#[test]
fn logging_is_quiet_by_default_and_names_backend_and_kernels_at_info() {
    let quiet = std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2"))
        .arg("backends")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let quiet = String::from_utf8_lossy(&quiet.stderr);
    assert!(!quiet.contains(" INFO ") && !quiet.contains("backend opened"), "{quiet}");
    let backends = std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2"))
        .arg("backends")
        .env("RUST_LOG", "rlipv2=info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&backends.stderr);
    assert!(log.contains("backend opened") && log.contains("backend=cpu"), "{log}");
    assert!(log.contains("ms_deform_attn: rayon over queries"), "the cpu kernel variant at info: {log}");
    assert!(log.contains("backend choice: "), "what auto picks and why: {log}");
}

#[test]
fn every_subcommand_help_says_what_and_gives_an_example() {
    let subcommands: [&[&str]; 13] = [
        &["bench", "render"],
        &[],
        &["op"],
        &["op", "ms_deform_attn"],
        &["op", "gated_cross_attn"],
        &["op", "sparse_fusion"],
        &["bench"],
        &["bench", "suite"],
        &["bench", "sparse_fusion"],
        &["bench", "ms_deform_attn"],
        &["backends"],
        &["info"],
        &["detect"],
    ];
    for sub in subcommands.iter().copied().chain([&["convert"][..]]) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlipv2")).args(sub).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub:?}");
        if sub.is_empty() || (sub.len() == 1 && ["op", "bench"].contains(&sub[0])) {
            assert!(help.contains("Commands:"), "{sub:?}: {help}");
        }
        assert!(
            sub.is_empty() || help.contains("Example: rlipv2 ") || help.contains("Example: RUST_LOG"),
            "{sub:?} --help has no example:\n{help}"
        );
    }
}

#[test]
fn an_absent_backend_lists_the_available_ones() {
    match rlipv2::backend::select("cubecl-cuda") {
        Ok((b, _)) => println!("SKIP: cubecl-cuda is present here ({})", b.device()),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("cubecl-cuda") && e.contains("available here: reference, cpu") && e.contains("or auto"),
                "{e}"
            );
        }
    }
}

#[test]
fn info_describes_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::common::converted_fixture(dir.path());
    let file = rlipv2::io::weights::WeightFile::open(&model).unwrap();
    let variant = &file.metadata[rlipv2::convert::META_VARIANT];
    assert!(
        variant.starts_with("RLIP_ParSeDA_v2 (DAB decoders), resnet50, 128 queries") && variant.contains("HICO-DET"),
        "{variant}"
    );
    let bin = env!("CARGO_BIN_EXE_rlipv2");
    let out = std::process::Command::new(bin).args(["info", "--weights"]).arg(&model).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(variant.as_str()) && text.contains("hico, vcoco baked"), "{text}");
    let out = std::process::Command::new(bin).args(["info", "--json", "--weights"]).arg(&model).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["config"]["num_queries"].as_u64(), v["tensors"].as_u64()), (Some(128), Some(1008)));
    // a safetensors file that is not a model, and a file that is not safetensors
    let plain = dir.path().join("plain.safetensors");
    let data = [0u8; 4];
    let t = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    safetensors::tensor::serialize_to_file([("x", t)], None, &plain).unwrap();
    for (f, says) in [
        (plain, "not a model file written by `rlipv2 convert`"),
        (dir.path().join("none.safetensors"), "none.safetensors"),
    ] {
        let out = std::process::Command::new(bin).args(["info", "--weights"]).arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
}
