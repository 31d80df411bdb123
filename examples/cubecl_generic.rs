//! The cubecl `ms_deform_attn` kernel called generically over a cubecl `Runtime`, on the caller's
//! own client and buffers: the same function runs on cubecl's wgpu runtime and, built with
//! `--features cuda` on a machine with a driver, on its CUDA runtime.
//!
//! Run: `cargo run --release --example cubecl_generic [--features cuda]`

use cubecl::prelude::*;
use rlipv2::backend::cubecl::{launch_ms_deform_attn, MsDeformAttnHandles};
use rlipv2::problem::{DType, Form, MsDeformAttnProblem, RefKind};

/// Encoder self-attention in the fused form (reference points, raw offsets and logits) on any
/// cubecl runtime; returns the largest difference from the f64 oracle.
fn run<R: Runtime>(client: &ComputeClient<R>) -> Result<f64, rlipv2::Error> {
    let levels = [(24, 40), (12, 20), (6, 10), (3, 5)];
    let s: usize = levels.iter().map(|(h, w)| h * w).sum();
    let pr = MsDeformAttnProblem::new(1, s, 8, 32, 4, &levels, Form::Fused(RefKind::Points));
    let data = rlipv2::seeded::MsDeformAttnData::random(&pr, 2);
    let up = |x: &[f32]| client.create_from_slice(bytemuck::cast_slice(x));
    let h = MsDeformAttnHandles {
        value: up(&data.value),
        reference: Some(up(&data.a)),
        sampling: up(&data.b),
        attention: up(&data.c),
        output: client.empty(pr.output_len() * 4),
    };
    launch_ms_deform_attn(client, &pr, DType::F32, &h)?;
    let bytes = client
        .read_one(h.output.clone())
        .map_err(|e| rlipv2::Error::Device { backend: "cubecl".into(), reason: format!("{e:?}") })?;
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    let want = rlipv2::reference::ms_deform_attn::ms_deform_attn::<f64>(&pr, &data.input());
    Ok(got.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max))
}

/// Runs [`run`] on `R` if rlipv2's own probe finds the device (cubecl panics without one).
fn check<R: Runtime>(kind: rlipv2::backend::BackendKind) -> Result<(), Box<dyn std::error::Error>> {
    if let Err(e) = rlipv2::backend::open(kind) {
        println!("SKIP {kind}: {e}");
        return Ok(());
    }
    let worst = run(&R::client(&Default::default()))?;
    println!("{kind}: max |Δ| vs the f64 oracle = {worst:.2e}");
    if worst > 1e-4 {
        return Err(format!("{kind}: max |Δ| {worst:.2e} is over 1e-4").into());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    check::<cubecl::wgpu::WgpuRuntime>(rlipv2::backend::BackendKind::CubeclWgpu)?;
    #[cfg(feature = "cuda")]
    check::<cubecl::cuda::CudaRuntime>(rlipv2::backend::BackendKind::CubeclCuda)?;
    Ok(())
}
