//! Every WGSL shader parses and validates with naga, for every override combination the
//! backends use, and emits MSL (Metal), HLSL (DX12) and SPIR-V (Vulkan) — portability is checked
//! without that hardware.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn compile_all_targets(name: &str, src: &str, overrides: &[(&str, f64)]) {
    let module =
        naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: parse: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validate: {e:?}"));
    let constants: naga::back::PipelineConstants = overrides.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
        .unwrap_or_else(|e| panic!("{name} {overrides:?}: overrides: {e:?}"));
    let (module, info) = (module.into_owned(), info.into_owned());

    for ep in &module.entry_points {
        // MSL: one binding map per entry point, buffers in binding order.
        let mut resources = msl::EntryPointResources::default();
        for (h, var) in module.global_variables.iter() {
            if let Some(b) = &var.binding {
                let _ = h;
                resources.resources.insert(*b, msl::BindTarget { buffer: Some(b.binding as u8), ..Default::default() });
            }
        }
        resources.sizes_buffer = Some(30);
        let mut per_ep = msl::EntryPointResourceMap::default();
        per_ep.insert(ep.name.clone(), resources);
        let opts = msl::Options {
            lang_version: (2, 4),
            per_entry_point_map: per_ep,
            fake_missing_bindings: false,
            ..Default::default()
        };
        let pipe = msl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())), ..Default::default() };
        let (msl_src, _) = msl::write_string(&module, &info, &opts, &pipe)
            .unwrap_or_else(|e| panic!("{name}/{}: MSL: {e:?}", ep.name));
        assert!(msl_src.contains(&ep.name), "{name}: MSL lacks entry point {}", ep.name);
    }

    let mut hlsl_src = String::new();
    let hlsl_opts = hlsl::Options { fake_missing_bindings: true, ..Default::default() };
    let hlsl_pipe = hlsl::PipelineOptions::default();
    let mut w = hlsl::Writer::new(&mut hlsl_src, &hlsl_opts, &hlsl_pipe);
    w.write(&module, &info, None).unwrap_or_else(|e| panic!("{name}: HLSL: {e:?}"));
    assert!(hlsl_src.contains("numthreads"), "{name}: HLSL has no compute entry point");

    let words = spv::write_vec(&module, &info, &spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e:?}"));
    assert_eq!(words[0], 0x0723_0203, "{name}: SPIR-V magic");
}

/// The override combinations each shader is used with (a shader without overrides: one, empty).
fn override_sets(name: &str) -> Vec<Vec<(&'static str, f64)>> {
    match name {
        "ms_deform_attn.wgsl" => [0.0, 1.0]
            .into_iter()
            .flat_map(|half| {
                [2.0, 4.0].map(|ref_dim| {
                    vec![("WG", 128.0), ("HALF", half), ("REF_DIM", ref_dim), ("LEVELS", 4.0), ("POINTS", 4.0)]
                })
            })
            .collect(),
        "ms_deform_attn_backward.wgsl" => [0.0, 1.0]
            .into_iter()
            .flat_map(|half| {
                [0.0, 2.0, 4.0].map(|ref_dim| {
                    vec![("WG", 64.0), ("HALF", half), ("REF_DIM", ref_dim), ("LEVELS", 4.0), ("POINTS", 4.0)]
                })
            })
            .collect(),
        _ => vec![vec![]],
    }
}

#[test]
fn every_shader_validates_and_emits_msl_hlsl_spirv() {
    for (name, src) in rlipv2::shaders::ALL {
        for set in override_sets(name) {
            compile_all_targets(name, src, &set);
        }
    }
}
