//! The entry points for callers that own their device and buffers refuse what does not fit the
//! problem (too-small buffers, a missing reference, an invalid problem) with an error naming the
//! tensor, before anything is dispatched.

use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};

fn problem(form: Form) -> MsDeformAttnProblem {
    MsDeformAttnProblem::new(1, 10, 2, 8, 2, &[(4, 5), (2, 3)], form)
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_encode_checks_buffers() {
    use rlipv2::backend::wgpu::{MsDeformAttnBuffers, WgpuBackend};
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let Ok(adapter) = pollster::block_on(instance.request_adapter(&Default::default())) else {
        assert!(
            !std::env::var("RLIPV2_REQUIRE_BACKENDS").unwrap_or_default().contains("wgpu"),
            "wgpu is required here"
        );
        println!("SKIP wgpu: no adapter");
        return;
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();
    let be = WgpuBackend::from_device(adapter.get_info(), device.clone(), queue).unwrap();
    let buf = |bytes: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let pr = problem(Form::Official);
    let (value, samp, attn, out) = (
        buf((pr.tokens * 16 * 4) as u64),
        buf((pr.samples() * 8) as u64),
        buf((pr.samples() * 4) as u64),
        buf((pr.output_len() * 4) as u64),
    );
    let small = buf(16);
    let mut enc = device.create_command_encoder(&Default::default());
    let ok = MsDeformAttnBuffers { value: &value, sampling: &samp, attention: &attn, reference: None, output: &out };
    be.encode_ms_deform_attn(&mut enc, &pr, DType::F32, &ok).unwrap();
    let short_out = MsDeformAttnBuffers { output: &small, ..ok };
    let e = be.encode_ms_deform_attn(&mut enc, &pr, DType::F32, &short_out).unwrap_err().to_string();
    assert!(e.contains("output") && e.contains("16 bytes"), "{e}");
    let fused = problem(Form::Fused(RefKind::Boxes));
    let e = be.encode_ms_deform_attn(&mut enc, &fused, DType::F32, &ok).unwrap_err().to_string();
    assert!(e.contains("reference"), "{e}");
    let e = be.encode_ms_deform_attn(&mut enc, &pr, DType::Bf16, &ok).unwrap_err().to_string();
    assert!(e.contains("bf16"), "{e}");
    let bad = MsDeformAttnProblem::new(1, 10, 2, 12, 2, &[(4, 5), (2, 3)], Form::Official);
    assert!(be
        .encode_ms_deform_attn(&mut enc, &bad, DType::F32, &ok)
        .unwrap_err()
        .to_string()
        .contains("multiple of 8"));
}

#[cfg(feature = "cubecl-wgpu")]
#[test]
fn cubecl_launch_checks_handles() {
    use cubecl::prelude::*;
    use rlipv2::backend::cubecl::{launch_ms_deform_attn, MsDeformAttnHandles};
    if let Err(e) = rlipv2::backend::open(rlipv2::backend::BackendKind::CubeclWgpu) {
        assert!(
            !std::env::var("RLIPV2_REQUIRE_BACKENDS").unwrap_or_default().contains("cubecl-wgpu"),
            "cubecl-wgpu is required here: {e}"
        );
        println!("SKIP cubecl-wgpu: {e}");
        return;
    }
    let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
    let pr = problem(Form::Fused(RefKind::Points));
    let h = MsDeformAttnHandles {
        value: client.empty(pr.tokens * 16 * 4),
        sampling: client.empty(pr.samples() * 8),
        attention: client.empty(pr.samples() * 4),
        reference: None,
        output: client.empty(pr.output_len() * 4),
    };
    let e = launch_ms_deform_attn(&client, &pr, DType::F32, &h).unwrap_err().to_string();
    assert!(e.contains("reference"), "{e}");
    let h = MsDeformAttnHandles { reference: Some(client.empty(4)), ..h };
    let e = launch_ms_deform_attn(&client, &pr, DType::F32, &h).unwrap_err().to_string();
    assert!(e.contains("reference") && e.contains("4 bytes"), "{e}");
    let h = MsDeformAttnHandles { reference: Some(client.empty(pr.queries * 2 * 2 * 4)), ..h };
    launch_ms_deform_attn(&client, &pr, DType::F32, &h).unwrap();
}
