//! Layer 3: backends. One trait, implemented by the naive `reference`, the fast native `cpu`,
//! `wgpu` (raw WGSL from `shaders/`) and `cubecl` (kernels from `kernels/`, on its wgpu and CUDA
//! runtimes). Public entry points validate; backends' `prepare_valid` assumes valid input.

pub mod compose;
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) mod fusion_plan;
pub mod cpu;
pub mod reference;
#[cfg(feature = "wgpu")]
pub mod wgpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
pub mod cubecl;

use crate::error::{Error, Result};
use crate::problem::{
    AttentionProblem, Conv2dProblem, DType, GatedCrossAttnProblem, GatedCrossAttnWeights, GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, SoftmaxProblem, BertLayerWeights, SparseFusionProblem,
};

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
    pub const ALL: [BackendKind; 5] = [BackendKind::Reference, BackendKind::Cpu, BackendKind::Wgpu, BackendKind::CubeclWgpu, BackendKind::CubeclCuda];

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

/// A device plus the kernels for it.
pub trait Backend {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Adapter / device name and, where known, driver.
    fn device(&self) -> String;
    /// What `rlipv2 info` reports beyond the device name: limits that matter to the kernels and
    /// the kernel variant each op uses here, as (key, value) lines.
    fn details(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Kernel launches (compute dispatches) recorded so far, where the backend counts them.
    fn dispatch_count(&self) -> Option<u64> {
        None
    }
    /// Whether this backend can run `ms_deform_attn` in `dtype`.
    fn supports(&self, dtype: DType) -> Result<()>;

    /// Uploads inputs and builds the kernel. Inputs are valid (see [`Backend::prepare_ms_deform_attn`]).
    fn prepare_valid<'a>(&'a self, problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Box<dyn Prepared + 'a>>;

    /// Validates the problem and inputs, then uploads them and builds the kernel.
    fn prepare_ms_deform_attn<'a>(&'a self, problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Box<dyn Prepared + 'a>> {
        problem.validate()?;
        input.check(problem)?;
        self.supports(dtype)?;
        self.prepare_valid(problem, input, dtype)
    }

    /// Runs `ms_deform_attn` once, host to host. Returns `[B,Q,M·D]` as f32.
    fn ms_deform_attn(&self, problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Vec<f32>> {
        problem.validate()?;
        input.check(problem)?;
        self.supports(dtype)?;
        self.ms_deform_attn_valid(problem, input, dtype)
    }
    /// [`Backend::ms_deform_attn`] after the inputs were checked: by default a prepared run.
    fn ms_deform_attn_valid(&self, problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Vec<f32>> {
        let mut prepared = self.prepare_valid(problem, input, dtype)?;
        prepared.run()?;
        prepared.output()
    }

    // Building blocks and ALIF ops (f32, host to host). Each public method validates, then calls
    // its `*_valid` twin; a backend that lacks an op keeps the default `Unsupported`.

    /// `y [M,N] = act(x [M,K]·Wᵀ + b)`, `W [N,K]`.
    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        p.check(x, weight, bias)?;
        self.gemm_valid(p, x, weight, bias)
    }
    /// [`Backend::gemm`] after the inputs were checked; backends override this one.
    fn gemm_valid(&self, _p: &GemmProblem, _x: &[f32], _weight: &[f32], _bias: Option<&[f32]>) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::gemm::OP))
    }

    /// [`Backend::gemm`] with its inputs kept on the device for repeated, timed runs (the
    /// resident baseline of the bench suite). Host backends answer `Unsupported`: their
    /// host-to-host call is already resident.
    fn prepare_gemm<'a>(&'a self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Box<dyn Prepared + 'a>> {
        p.check(x, weight, bias)?;
        self.prepare_gemm_valid(p, x, weight, bias)
    }
    /// [`Backend::prepare_gemm`] after the inputs were checked.
    fn prepare_gemm_valid<'a>(&'a self, _p: &GemmProblem, _x: &[f32], _weight: &[f32], _bias: Option<&[f32]>) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::gemm::OP))
    }

    /// `y = act(conv2d(x, W) + b [+ residual])`, NCHW (see [`Conv2dProblem`]).
    fn conv2d(&self, p: &Conv2dProblem, x: &[f32], weight: &[f32], bias: &[f32], residual: Option<&[f32]>) -> Result<Vec<f32>> {
        p.check(x, weight, bias, residual)?;
        self.conv2d_valid(p, x, weight, bias, residual)
    }
    /// Without a conv kernel of its own, a backend runs `conv2d` through its `gemm` (host im2col
    /// bands: correct, not fast; see [`compose::conv2d`]).
    fn conv2d_valid(&self, p: &Conv2dProblem, x: &[f32], weight: &[f32], bias: &[f32], residual: Option<&[f32]>) -> Result<Vec<f32>> {
        compose::conv2d(self, p, x, weight, bias, residual)
    }

    /// `acc ← act(conv2d(x, W) + b + acc)`: [`Backend::conv2d`] with the residual's buffer reused
    /// for the output, so a bottleneck's last conv keeps no third feature map alive.
    fn conv2d_accumulate(&self, p: &Conv2dProblem, x: &[f32], weight: &[f32], bias: &[f32], acc: &mut Vec<f32>) -> Result<()> {
        p.check(x, weight, bias, Some(acc))?;
        self.conv2d_accumulate_valid(p, x, weight, bias, acc)
    }
    /// [`Backend::conv2d_accumulate`] after the inputs were checked; by default a new output
    /// replaces `acc`.
    fn conv2d_accumulate_valid(&self, p: &Conv2dProblem, x: &[f32], weight: &[f32], bias: &[f32], acc: &mut Vec<f32>) -> Result<()> {
        *acc = self.conv2d_valid(p, x, weight, bias, Some(acc))?;
        Ok(())
    }

    /// Row LayerNorm of `x [R,C]`.
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
        p.check(x, gamma, beta)?;
        self.layer_norm_valid(p, x, gamma, beta)
    }
    /// [`Backend::layer_norm`] after the inputs were checked.
    fn layer_norm_valid(&self, _p: &LayerNormProblem, _x: &[f32], _gamma: &[f32], _beta: &[f32]) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::layer_norm::OP))
    }

    /// Row softmax of `x [R,C]`.
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>> {
        p.check(x)?;
        self.softmax_valid(p, x)
    }
    /// [`Backend::softmax`] after the inputs were checked.
    fn softmax_valid(&self, _p: &SoftmaxProblem, _x: &[f32]) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::softmax::OP))
    }

    /// Multi-head attention on packed `[B,L,H·Dh]` projections, optional additive key mask `[B,Lk]`.
    fn attention(&self, p: &AttentionProblem, q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>) -> Result<Vec<f32>> {
        p.check(q, k, v, mask)?;
        self.attention_valid(p, q, k, v, mask)
    }
    /// [`Backend::attention`] after the inputs were checked.
    fn attention_valid(&self, _p: &AttentionProblem, _q: &[f32], _k: &[f32], _v: &[f32], _mask: Option<&[f32]>) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::attention::OP))
    }

    /// ALIF gated bi-directional cross-attention: returns `(v' [B,Nv,Cv], l' [B,T,Cl])`.
    fn gated_cross_attn(&self, p: &GatedCrossAttnProblem, v: &[f32], pos: &[f32], l: &[f32], w: &GatedCrossAttnWeights) -> Result<(Vec<f32>, Vec<f32>)> {
        p.check(v, pos, l, w)?;
        self.gated_cross_attn_valid(p, v, pos, l, w)
    }
    /// [`Backend::gated_cross_attn`] after the inputs were checked.
    fn gated_cross_attn_valid(&self, _p: &GatedCrossAttnProblem, _v: &[f32], _pos: &[f32], _l: &[f32], _w: &GatedCrossAttnWeights) -> Result<(Vec<f32>, Vec<f32>)> {
        Err(unsupported(self.kind(), crate::problem::gated_cross_attn::OP))
    }

    /// One ALIF round: fuses `memory [B,S,C]`'s last level in place, returns the new language
    /// state `[B,T,768]`. `mask [B,T]`: 1 = label, 0 = padding (none = all valid).
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion(&self, p: &SparseFusionProblem, memory: &mut [f32], pos: &[f32], lang: &[f32], mask: Option<&[f32]>, fw: &GatedCrossAttnWeights, bw: &BertLayerWeights) -> Result<Vec<f32>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.sparse_fusion_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// A `sparse_fusion` round kept on the device (inputs and weights uploaded once) for repeated,
    /// timed runs: `run` re-fuses the already fused rows (same work), `output` is the language
    /// state. Backends without a device-resident round answer `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion<'a>(&'a self, p: &SparseFusionProblem, memory: &[f32], pos: &[f32], lang: &[f32], mask: Option<&[f32]>, fw: &GatedCrossAttnWeights, bw: &BertLayerWeights) -> Result<Box<dyn Prepared + 'a>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.prepare_sparse_fusion_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// The same round op by op (LayerNorm, GEMM, attention once per direction, adds, … about two
    /// dozen launches over separate buffers), resident like [`Backend::prepare_sparse_fusion`]:
    /// the side-by-side baseline of the fused round. Backends without one answer `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_unfused<'a>(&'a self, p: &SparseFusionProblem, memory: &[f32], pos: &[f32], lang: &[f32], mask: Option<&[f32]>, fw: &GatedCrossAttnWeights, bw: &BertLayerWeights) -> Result<Box<dyn Prepared + 'a>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.prepare_sparse_fusion_unfused_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// [`Backend::prepare_sparse_fusion_unfused`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_unfused_valid<'a>(&'a self, _p: &SparseFusionProblem, _memory: &[f32], _pos: &[f32], _lang: &[f32], _mask: Option<&[f32]>, _fw: &GatedCrossAttnWeights, _bw: &BertLayerWeights) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }
    /// [`Backend::prepare_sparse_fusion`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_valid<'a>(&'a self, _p: &SparseFusionProblem, _memory: &[f32], _pos: &[f32], _lang: &[f32], _mask: Option<&[f32]>, _fw: &GatedCrossAttnWeights, _bw: &BertLayerWeights) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }

    /// [`Backend::sparse_fusion`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion_valid(&self, _p: &SparseFusionProblem, _memory: &mut [f32], _pos: &[f32], _lang: &[f32], _mask: Option<&[f32]>, _fw: &GatedCrossAttnWeights, _bw: &BertLayerWeights) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }
}

fn unsupported(kind: BackendKind, op: &'static str) -> Error {
    Error::Unsupported { op, backend: kind.name().into(), reason: "not implemented on this backend yet".into() }
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
    Error::BackendUnavailable { backend: kind.name().into(), reason: format!("built without the `{feature}` cargo feature") }
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

fn select_inner(name: &str) -> Result<(Box<dyn Backend>, String)> {
    if name != "auto" {
        let kind = BackendKind::parse(name)?;
        let b = open(kind).map_err(|e| match e {
            // say what would work instead
            Error::BackendUnavailable { backend, reason } => {
                let here: Vec<&str> = BackendKind::ALL.into_iter().filter(|&k| k != kind && open_kind(k).is_ok()).map(|k| k.name()).collect();
                Error::BackendUnavailable { backend, reason: format!("{reason} (available here: {}, or auto)", here.join(", ")) }
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
    let s = std::env::var("RLIPV2_GPU_TIMEOUT_S").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(600.0);
    std::time::Duration::from_secs_f64(s)
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
    pub fn new(problem: &MsDeformAttnProblem, input: &MsDeformAttnInput, value_map: impl Fn(f32) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let value = input.value().par_iter().map(|&x| value_map(x)).collect();
        let tensors = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => [sampling_locations.to_vec(), attention_weights.to_vec(), Vec::new()],
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => [reference.to_vec(), sampling_offsets.to_vec(), attention_logits.to_vec()],
        };
        HostInputs { form: problem.form, value, tensors }
    }

    pub fn input(&self) -> MsDeformAttnInput<'_> {
        let [a, b, c] = &self.tensors;
        match self.form {
            crate::problem::Form::Official => MsDeformAttnInput::Official { value: &self.value, sampling_locations: a, attention_weights: b },
            crate::problem::Form::Fused(_) => MsDeformAttnInput::Fused { value: &self.value, reference: a, sampling_offsets: b, attention_logits: c },
        }
    }
}

/// Packs f32 values into the byte layout the shader reads for `dtype`.
pub(crate) fn pack(values: &[f32], dtype: DType) -> Vec<u8> {
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
pub(crate) fn unpack(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(bytes),
        DType::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(bytes).into_iter().map(|x| x.to_f32()).collect(),
        DType::Bf16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(bytes).into_iter().map(|x| x.to_f32()).collect(),
    }
}

