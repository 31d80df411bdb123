//! Layer 3: backends: the naive `reference`, the fast native `cpu`, `wgpu` (raw WGSL from
//! `shaders/`) and `cubecl` (kernels from `kernels/`, on its wgpu and CUDA runtimes). A
//! [`Backend`] is a [`Device`] plus each op's kernel trait (in `ops/<op>/kernel.rs`, implemented
//! for every backend in that folder); the public entry points ([`Ops`]) validate, then call the
//! kernel method with a [`Checked`].

pub mod compose;
pub mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
pub mod cubecl;
mod device;
mod entry;
/// The ALIF arena contract (slots, job flags), shared with the kernels and the WGSL.
#[allow(dead_code)] // a host-only build uses none of it
pub(crate) mod fusion_layout;
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) mod fusion_plan;
mod host;
pub mod op_time;
pub use crate::ops::image;
pub mod reference;
pub mod tensor;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use device::{Checked, Device};
pub use entry::Ops;
pub use host::HostKernels;
pub(crate) use host::{foreign_tensor, host_values};

pub use crate::ops::attention::AttentionKernel;
pub use crate::ops::conv2d::Conv2dKernel;
pub use crate::ops::elementwise::ElementwiseKernel;
pub use crate::ops::gated_cross_attn::GatedCrossAttnKernel;
pub use crate::ops::gemm::GemmKernel;
pub use crate::ops::image::ImageKernel;
pub use crate::ops::layer_norm::LayerNormKernel;
pub use crate::ops::ms_deform_attn::MsdaKernel;
pub use crate::ops::ms_deform_attn_backward::MsdaBackwardKernel;
pub use crate::ops::softmax::SoftmaxKernel;
pub use crate::ops::sparse_fusion::SparseFusionKernel;
pub use crate::ops::window_attention::WindowAttentionKernel;
pub use tensor::Tensor;

use crate::error::{Error, Result};
use crate::problem::{MsDeformAttnInput, MsDeformAttnProblem};

/// Every backend this crate knows, compiled in or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The naive f64 oracle ([`crate::reference`]) as a backend.
    Reference,
    /// Native host code ([`cpu::CpuBackend`]).
    Cpu,
    /// Raw WGSL from `shaders/` on wgpu ([`wgpu::WgpuBackend`]).
    Wgpu,
    /// The cubecl kernels on cubecl's wgpu runtime.
    CubeclWgpu,
    /// The cubecl kernels on cubecl's CUDA runtime (feature `cuda`).
    CubeclCuda,
}

impl BackendKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [BackendKind; 5] =
        [BackendKind::Reference, BackendKind::Cpu, BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda];

    /// The name used on the command line and in reports (`cubecl-wgpu`, …).
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Reference => "reference",
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::CubeclWgpu => "cubecl-wgpu",
            BackendKind::CubeclCuda => "cubecl-cuda",
        }
    }

    /// The kind named `s` (see [`BackendKind::name`]); an unknown name lists the valid ones.
    pub fn parse(s: &str) -> Result<Self> {
        BackendKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| Error::UnknownBackend(s.to_string()))
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An op with its inputs resident on the backend's device, ready to run repeatedly.
pub trait Prepared {
    /// Queues one launch of the op without waiting (host backends compute right away).
    fn enqueue(&mut self) -> Result<()>;
    /// Waits until every queued launch has finished on the device.
    fn wait(&mut self) -> Result<()> {
        Ok(())
    }
    /// Launches the op and waits until the device has finished it.
    fn run(&mut self) -> Result<()> {
        self.enqueue()?;
        self.wait()
    }
    /// Reads the output of the last run back to the host, as f32.
    fn output(&mut self) -> Result<Vec<f32>>;
    /// One run, host to host: [`Prepared::run`] then [`Prepared::output`] (the one-shot op of a
    /// backend whose only launch path is the prepared one).
    fn run_once(&mut self) -> Result<Vec<f32>> {
        self.run()?;
        self.output()
    }
    /// Names of the launches of one run, where they can be queued one at a time (a per-launch
    /// profile of a multi-launch op); empty when the op is one launch or not split.
    fn stages(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Queues launch `i` of [`Prepared::stages`] alone.
    fn enqueue_stage(&mut self, _i: usize) -> Result<()> {
        self.enqueue()
    }
}

/// A device plus the kernels for it: the [`Device`] and each op's kernel trait (defined, with
/// every backend's implementation, in the op's folder `ops/<op>/`). Any type with all of them is
/// a `Backend`; a backend that lacks one does not compile where it is opened. Call the ops
/// through [`Ops`], which validates; the kernel methods need its [`Checked`]. Host backends get
/// the kernel traits from [`HostKernels`].
pub trait Backend:
    Device
    + MsdaKernel
    + MsdaBackwardKernel
    + GemmKernel
    + ElementwiseKernel
    + LayerNormKernel
    + SoftmaxKernel
    + AttentionKernel
    + WindowAttentionKernel
    + Conv2dKernel
    + ImageKernel
    + GatedCrossAttnKernel
    + SparseFusionKernel
{
}

impl<T> Backend for T where
    T: Device
        + MsdaKernel
        + MsdaBackwardKernel
        + GemmKernel
        + ElementwiseKernel
        + LayerNormKernel
        + SoftmaxKernel
        + AttentionKernel
        + WindowAttentionKernel
        + Conv2dKernel
        + ImageKernel
        + GatedCrossAttnKernel
        + SparseFusionKernel
{
}

/// Opens one backend by kind. A backend that is not compiled in or finds no device is an
/// `Err(BackendUnavailable)` with the reason, never a panic.
pub fn open(kind: BackendKind) -> Result<Box<dyn Backend>> {
    let opened = open_kind(kind);
    match &opened {
        Ok(b) => {
            tracing::info!(backend = %kind, device = %b.device(), "backend opened");
            for (what, variant) in b.details() {
                tracing::info!(backend = %kind, "{what}: {variant}");
            }
        }
        Err(e) => tracing::info!(backend = %kind, "backend unavailable: {e}"),
    }
    opened
}

fn open_kind(kind: BackendKind) -> Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Reference => Ok(Box::new(reference::ReferenceBackend)),
        BackendKind::Cpu => Ok(Box::new(cpu::CpuBackend::new())),
        BackendKind::Wgpu => {
            #[cfg(feature = "wgpu")]
            return Ok(Box::new(wgpu::WgpuBackend::new()?));
            #[cfg(not(feature = "wgpu"))]
            return Err(not_compiled(kind, "wgpu"));
        }
        BackendKind::CubeclWgpu => {
            #[cfg(feature = "cubecl-wgpu")]
            return Ok(Box::new(cubecl::CubeclBackend::<::cubecl::wgpu::WgpuRuntime>::new_wgpu()?));
            #[cfg(not(feature = "cubecl-wgpu"))]
            return Err(not_compiled(kind, "cubecl-wgpu"));
        }
        BackendKind::CubeclCuda => {
            #[cfg(feature = "cuda")]
            return Ok(Box::new(cubecl::CubeclBackend::<::cubecl::cuda::CudaRuntime>::new_cuda()?));
            #[cfg(not(feature = "cuda"))]
            return Err(not_compiled(kind, "cuda"));
        }
    }
}

#[allow(dead_code)]
fn not_compiled(kind: BackendKind, feature: &str) -> Error {
    Error::BackendUnavailable {
        backend: kind.name().into(),
        reason: format!("built without the `{feature}` cargo feature"),
    }
}

/// Opens a backend by name; `auto` picks CUDA if a driver works, else a wgpu adapter that is a
/// real GPU, else the native cpu backend (a software Vulkan adapter such as lavapipe is slower
/// than the cpu backend). Returns the backend and a sentence saying why it was picked.
pub fn select(name: &str) -> Result<(Box<dyn Backend>, String)> {
    let picked = select_inner(name);
    if let Ok((_, why)) = &picked {
        tracing::info!("backend choice: {why}");
    }
    picked
}

/// [`select`] with `gemm` and `conv2d` products at `precision`. bf16 runs on the cpu backend
/// (AVX512-BF16 where the CPU has it), so `auto` picks cpu for it and another name is refused.
pub fn select_at(name: &str, precision: crate::problem::Precision) -> Result<(Box<dyn Backend>, String)> {
    if precision == crate::problem::Precision::F32 {
        return select(name);
    }
    let kind = if name == "auto" { BackendKind::Cpu } else { BackendKind::parse(name)? };
    if kind != BackendKind::Cpu {
        return Err(Error::Unsupported {
            op: "precision",
            backend: kind.name().into(),
            reason: format!(
                "--precision {precision} runs on the cpu backend only; pass --backend cpu or --precision f32"
            ),
        });
    }
    let b = cpu::CpuBackend::with_precision(precision);
    let how = if name == "auto" { "auto: the backend with bf16 products" } else { "asked for by name" };
    let why = format!(
        "cpu on {}, {precision} products ({how}; {})",
        Device::device(&b),
        crate::ops::gemm::bf16::kernel_name()
    );
    tracing::info!("backend choice: {why}");
    Ok((Box::new(b), why))
}

fn select_inner(name: &str) -> Result<(Box<dyn Backend>, String)> {
    if name != "auto" {
        let kind = BackendKind::parse(name)?;
        let b = open(kind).map_err(|e| match e {
            // say what would work instead
            Error::BackendUnavailable { backend, reason } => {
                let here: Vec<&str> = BackendKind::ALL
                    .into_iter()
                    .filter(|&k| k != kind && open_kind(k).is_ok())
                    .map(|k| k.name())
                    .collect();
                Error::BackendUnavailable {
                    backend,
                    reason: format!("{reason} (available here: {}, or auto)", here.join(", ")),
                }
            }
            other => other,
        })?;
        let why = format!("{} on {} (asked for by name)", kind, b.device());
        return Ok((b, why));
    }
    let mut notes = Vec::new();
    match open(BackendKind::CubeclCuda) {
        Ok(b) => {
            let why = format!("cubecl-cuda on {}: a CUDA driver is present", b.device());
            return Ok((b, why));
        }
        Err(e) => notes.push(format!("no CUDA ({e})")),
    }
    for kind in [BackendKind::Wgpu, BackendKind::CubeclWgpu] {
        match open(kind) {
            Ok(b) => {
                if is_software_adapter(&b.device()) {
                    notes.push(format!("{kind} found only a software adapter ({})", b.device()));
                    break;
                }
                let why = format!("{kind} on {}: a hardware GPU adapter; {}", b.device(), notes.join("; "));
                return Ok((b, why));
            }
            Err(e) => notes.push(format!("{e}")),
        }
    }
    let b = open(BackendKind::Cpu)?;
    let why = format!("cpu on {}: {}", b.device(), notes.join("; "));
    Ok((b, why))
}

/// How long a wait for a device may take before it is reported as hung or lost
/// (`RLIPV2_GPU_TIMEOUT_S`, default 600 s: a slow software adapter finishes well within it).
pub fn gpu_timeout() -> std::time::Duration {
    let s = std::env::var("RLIPV2_GPU_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(600.0);
    std::time::Duration::from_secs_f64(s)
}

/// Output tile edge of the GPU GEMM and conv kernels for a `rows × cols` output: 128 (each
/// invocation an 8×8 block) where the output holds at least 32 such tiles and both sides fill
/// one (the encoder's products, most of the backbone), else 64 (a 4×4 block: more workgroups for
/// the decoders' 64–200-row products). `RLIPV2_GEMM_TILE=64` or `128` forces one, to time the
/// two side by side on a device.
pub fn gemm_tile(rows: usize, cols: usize) -> usize {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let forced = *FORCED.get_or_init(|| match std::env::var("RLIPV2_GEMM_TILE").ok()?.as_str() {
        "64" => Some(64),
        "128" => Some(128),
        other => {
            tracing::warn!("RLIPV2_GEMM_TILE={other} ignored (64 or 128)");
            None
        }
    });
    forced.unwrap_or(if rows.min(cols) >= 128 && rows * cols >= 32 * 128 * 128 { 128 } else { 64 })
}

/// Names of CPU-emulated adapters (Mesa lavapipe/llvmpipe, SwiftShader, WARP).
pub fn is_software_adapter(device: &str) -> bool {
    let d = device.to_ascii_lowercase();
    ["llvmpipe", "lavapipe", "swiftshader", "software", "warp", "cpu"].iter().any(|s| d.contains(s))
}

/// Host-resident copy of an op's inputs, for backends that compute on the host.
pub(crate) struct HostInputs {
    form: crate::problem::Form,
    pub value: Vec<f32>,
    tensors: [Vec<f32>; 3],
}

impl HostInputs {
    /// Copies `input`, with `value` mapped through `value_map` (e.g. rounding to f16).
    pub fn new(
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        value_map: impl Fn(f32) -> f32 + Sync,
    ) -> Self {
        use rayon::prelude::*;
        let value = input.value().par_iter().map(|&x| value_map(x)).collect();
        let tensors = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
                [sampling_locations.to_vec(), attention_weights.to_vec(), Vec::new()]
            }
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
                [reference.to_vec(), sampling_offsets.to_vec(), attention_logits.to_vec()]
            }
        };
        HostInputs { form: problem.form, value, tensors }
    }

    pub fn input(&self) -> MsDeformAttnInput<'_> {
        let [a, b, c] = &self.tensors;
        match self.form {
            crate::problem::Form::Official => {
                MsDeformAttnInput::Official { value: &self.value, sampling_locations: a, attention_weights: b }
            }
            crate::problem::Form::Fused(_) => {
                MsDeformAttnInput::Fused { value: &self.value, reference: a, sampling_offsets: b, attention_logits: c }
            }
        }
    }
}

/// Packs f32 values into the byte layout the shader reads for `dtype`.
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) fn pack(values: &[f32], dtype: crate::problem::DType) -> Vec<u8> {
    use crate::problem::DType;
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::F16 => {
            let h: Vec<half::f16> = values.iter().map(|&x| half::f16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::Bf16 => {
            let h: Vec<half::bf16> = values.iter().map(|&x| half::bf16::from_f32(x)).collect();
            bytemuck::cast_slice(&h).to_vec()
        }
    }
}

/// Inverse of [`pack`].
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) fn unpack(bytes: &[u8], dtype: crate::problem::DType) -> Vec<f32> {
    use crate::problem::DType;
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(bytes),
        DType::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(bytes).into_iter().map(|x| x.to_f32()).collect(),
        DType::Bf16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(bytes).into_iter().map(|x| x.to_f32()).collect(),
    }
}
