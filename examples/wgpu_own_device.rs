//! `ms_deform_attn` on a wgpu device the caller already owns (as a framework or renderer would):
//! the kernel is recorded into the caller's command encoder, on the caller's buffers, with no
//! second device and no copies. Checked against the f64 reference oracle.
//!
//! Run: `cargo run --release --example wgpu_own_device` (any Vulkan/Metal/DX12 adapter; on a
//! machine without one it says so and exits 0).

use rlipv2::backend::wgpu::{MsDeformAttnBuffers, WgpuBackend};
use rlipv2::problem::{DType, Form, MsDeformAttnProblem};
use wgpu::util::DeviceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller's own device and queue.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let Ok(adapter) = pollster::block_on(instance.request_adapter(&Default::default())) else {
        println!("SKIP: no wgpu adapter on this machine");
        return Ok(());
    };
    let (device, queue) = pollster::block_on(
        adapter.request_device(&wgpu::DeviceDescriptor { required_limits: adapter.limits(), ..Default::default() }),
    )?;

    // rlipv2 on that same device (wgpu handles are cheap clones of one device).
    let kernels = WgpuBackend::from_device(adapter.get_info(), device.clone(), queue.clone())?;

    // A decoder-like problem: 300 queries over the four RLIPv2 levels of a 400×667 image.
    let pr = MsDeformAttnProblem::new(1, 300, 8, 32, 4, &[(50, 84), (25, 42), (13, 21), (7, 11)], Form::Official);
    let data = rlipv2::seeded::MsDeformAttnData::random(&pr, 1);
    let storage = wgpu::BufferUsages::STORAGE;
    let upload = |label, data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: storage,
        })
    };
    let value = upload("value", &data.value);
    let locations = upload("sampling_locations", &data.a);
    let weights = upload("attention_weights", &data.b);
    let out_bytes = (pr.output_len() * 4) as u64;
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("output"),
        size: out_bytes,
        usage: storage | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: out_bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });

    // The caller's encoder: our dispatch, then the caller's own copy, one submit.
    let mut encoder = device.create_command_encoder(&Default::default());
    let bufs = MsDeformAttnBuffers {
        value: &value,
        sampling: &locations,
        attention: &weights,
        reference: None,
        output: &output,
    };
    kernels.encode_ms_deform_attn(&mut encoder, &pr, DType::F32, &bufs)?;
    encoder.copy_buffer_to_buffer(&output, 0, &readback, 0, out_bytes);
    queue.submit([encoder.finish()]);
    readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map readback"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&readback.slice(..).get_mapped_range());

    let want = rlipv2::reference::ms_deform_attn::ms_deform_attn::<f64>(&pr, &data.input());
    let worst = got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max);
    println!(
        "ms_deform_attn on {} (caller's device): {} outputs, max |Δ| vs the f64 oracle = {worst:.2e}",
        adapter.get_info().name,
        got.len()
    );
    if worst > 1e-4 {
        return Err(format!("max |Δ| {worst:.2e} is over 1e-4").into());
    }
    Ok(())
}
