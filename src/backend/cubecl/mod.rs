//! cubecl backend: the `#[cube]` kernels of `kernels/`, generic over the cubecl runtime
//! (`WgpuRuntime` → WGSL on Vulkan/Metal/DX12; `CudaRuntime` → CUDA C++ via NVRTC).
//!
//! cubecl reports some device failures by panicking in its server thread (no CUDA driver, an
//! allocation larger than the device allows). Opening a client is probed first and wrapped in
//! `catch_unwind`; sizes are checked against the device limits before any allocation.

mod fusion;
mod resident;

pub use crate::ops::ms_deform_attn::cubecl::{launch_ms_deform_attn, MsDeformAttnHandles};
pub use crate::ops::ms_deform_attn_backward::cubecl::{launch_ms_deform_attn_backward, MsDeformAttnBackwardHandles};
pub(crate) use resident::{arg, Buf};

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{BackendKind, Checked, Device, Tensor};
use crate::error::{Error, Result};
use crate::kernels::dense;
use crate::problem::ms_deform_attn::OP;
use crate::problem::{DType, GemmProblem};

/// Channels each unit accumulates per tap.
pub(crate) const UNIT_CHANNELS: usize = 8;
pub(crate) const CUBE: u32 = 128;

/// The cubecl backend on runtime `R` (wgpu or CUDA); counts its kernel launches.
pub struct CubeclBackend<R: Runtime> {
    pub(crate) client: ComputeClient<R>,
    pub(crate) kind: BackendKind,
    pub(crate) device: String,
    /// Kernel launches so far (see [`crate::backend::Device::dispatch_count`]).
    pub(crate) launches: AtomicU64,
    /// Units per cube of the backward kernels (see [`CubeclBackend::set_backward_cube`]).
    pub(crate) backward_cube: std::sync::atomic::AtomicU32,
    /// Bytes copied from the host into device buffers so far (parameter blocks aside).
    pub(crate) uploaded: AtomicU64,
    /// Owner id of this instance's device tensors.
    pub(crate) id: u64,
    pub(crate) _r: PhantomData<R>,
}

/// Enqueues `dense::gemm` with the tile of [`crate::backend::gemm_tile`] for `p`:
/// `y = act(x·wᵀ + b) [+ r]`.
///
/// # Safety
/// `x`, `w` and `y` hold m·k, n·k and m·n values; `b` n values when `has_bias`, `r` m·n when `has_res`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn launch_gemm<R: Runtime>(
    client: &ComputeClient<R>,
    p: &GemmProblem,
    x: ArrayArg<R>,
    w: ArrayArg<R>,
    b: ArrayArg<R>,
    r: ArrayArg<R>,
    y: ArrayArg<R>,
    has_bias: bool,
    has_res: bool,
) {
    let tile = super::gemm_tile(p.m, p.n);
    let cubes = CubeCount::Static(p.n.div_ceil(tile) as u32, p.m.div_ceil(tile) as u32, 1);
    let (m, k, n, act) = (p.m as u32, p.k as u32, p.n as u32, p.act.code());
    // SAFETY: the caller's lengths; the kernel bounds-checks rows, columns and k
    unsafe {
        dense::gemm::launch_unchecked::<R>(
            client,
            cubes,
            CubeDim::new_1d(256),
            x,
            w,
            b,
            r,
            y,
            m,
            k,
            n,
            tile,
            has_bias,
            act,
            has_res,
        )
    }
}

pub(crate) fn catch<T>(what: &str, backend: BackendKind, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "cubecl panicked".into());
        Error::BackendUnavailable { backend: backend.name().into(), reason: format!("{what}: {msg}") }
    })
}

#[cfg(feature = "cubecl-wgpu")]
impl CubeclBackend<cubecl::wgpu::WgpuRuntime> {
    /// The cubecl wgpu runtime on the default adapter (`CUBECL_WGPU_DEFAULT_DEVICE` overrides).
    pub fn new_wgpu() -> Result<Self> {
        use cubecl::wgpu::{AutoGraphicsApi, WgpuDevice, WgpuRuntime};
        use std::sync::OnceLock;
        // A device's server can be initialised once per process; remember the outcome.
        static SETUP: OnceLock<Result<String, String>> = OnceLock::new();
        let kind = BackendKind::CubeclWgpu;
        let device = WgpuDevice::DefaultDevice;
        let setup = SETUP.get_or_init(|| {
            let has_adapter = {
                let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
                    backends: ::wgpu::Backends::from_env().unwrap_or(::wgpu::Backends::all()),
                    ..::wgpu::InstanceDescriptor::new_without_display_handle()
                });
                pollster::block_on(instance.request_adapter(&Default::default())).is_ok()
            };
            if !has_adapter {
                return Err("no wgpu adapter".into());
            }
            catch("wgpu setup", kind, || cubecl::wgpu::init_setup::<AutoGraphicsApi>(&device, Default::default()))
                .map(|s| {
                    let i = s.adapter.get_info();
                    format!("{} ({:?}, {:?}, driver {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info)
                })
                .map_err(|e| e.to_string())
        });
        let name = setup.clone().map_err(|reason| Error::BackendUnavailable { backend: kind.name().into(), reason })?;
        let client = catch("client", kind, || WgpuRuntime::client(&device))?;
        Ok(CubeclBackend {
            client,
            kind,
            device: name,
            launches: AtomicU64::new(0),
            backward_cube: std::sync::atomic::AtomicU32::new(CUBE),
            uploaded: AtomicU64::new(0),
            id: crate::backend::tensor::new_owner_id(),
            _r: PhantomData,
        })
    }
}

#[cfg(feature = "cuda")]
impl CubeclBackend<cubecl::cuda::CudaRuntime> {
    /// The cubecl CUDA runtime on GPU 0. Without a driver this is a clean `BackendUnavailable`.
    pub fn new_cuda() -> Result<Self> {
        use cubecl::cuda::{CudaDevice, CudaRuntime};
        let kind = BackendKind::CubeclCuda;
        // SAFETY: loading the driver library runs its initialisers only; nothing else is called.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| Error::BackendUnavailable {
            backend: kind.name().into(),
            reason: format!("no CUDA driver: {e}"),
        })?;
        drop(lib);
        let device = CudaDevice { index: 0 };
        let client = catch("CUDA client", kind, || CudaRuntime::client(&device))?;
        catch("CUDA sync", kind, || pollster::block_on(client.sync()))?
            .map_err(|e| Error::BackendUnavailable { backend: kind.name().into(), reason: format!("{e:?}") })?;
        Ok(CubeclBackend {
            client,
            kind,
            device: "CUDA device 0".into(),
            launches: AtomicU64::new(0),
            backward_cube: std::sync::atomic::AtomicU32::new(CUBE),
            uploaded: AtomicU64::new(0),
            id: crate::backend::tensor::new_owner_id(),
            _r: PhantomData,
        })
    }
}

impl<R: Runtime> CubeclBackend<R> {
    pub(crate) fn supports_type(&self, dtype: DType) -> bool {
        let features = &self.client.properties().features;
        match dtype {
            DType::F32 => true,
            DType::F16 => features.supports_type(cubecl::ir::FloatKind::F16),
            DType::Bf16 => features.supports_type(cubecl::ir::FloatKind::BF16),
        }
    }

    pub(crate) fn upload(&self, what: &str, bytes: &[u8]) -> Result<Handle> {
        let max = self.client.properties().memory.max_page_size;
        if bytes.len() as u64 > max {
            return Err(Error::Unsupported {
                op: OP,
                backend: self.kind.name().into(),
                reason: format!("tensor `{what}` needs {} bytes, but the device allocates at most {max} bytes per buffer; split the batch or queries", bytes.len()),
            });
        }
        self.uploaded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(self.client.create_from_slice(bytes))
    }
}

impl<R: Runtime> CubeclBackend<R> {
    /// Sets the units per cube of the `ms_deform_attn_backward` kernels (default 128; 1 up to
    /// the device's units per cube). The gradients are bit-identical for every size — the knob
    /// exists so that promise can be tested, and tuned per device.
    pub fn set_backward_cube(&self, units: u32) -> Result<()> {
        let max = self.client.properties().hardware.max_units_per_cube;
        if units == 0 || units > max {
            return Err(Error::limit(
                "ms_deform_attn_backward",
                "units per cube",
                format!("{units}: {} supports 1..={max}", self.device),
            ));
        }
        self.backward_cube.store(units, Ordering::Relaxed);
        Ok(())
    }

    /// The bytes of `handle`, read back once the work writing it is done; a failure names
    /// `what`.
    pub(crate) fn read_bytes(&self, what: &str, handle: Handle) -> Result<impl std::ops::Deref<Target = [u8]>> {
        let kind = self.kind;
        catch("read", kind, || self.client.read_one(handle))?
            .map_err(|e| Error::Device { backend: kind.name().into(), reason: format!("{what}: {e:?}") })
    }

    pub(crate) fn count_launch(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    /// A 2-D grid of `n` cubes, numbered `y · count_x + x` by the kernels.
    pub(crate) fn row_cubes(&self, n: usize) -> CubeCount {
        let max = (self.client.properties().hardware.max_cube_count.0 as usize).clamp(1, 65535);
        let x = n.clamp(1, max);
        CubeCount::Static(x as u32, n.div_ceil(x) as u32, 1)
    }

    pub(crate) fn f32_out(&self, op: &'static str, len: usize) -> Result<Handle> {
        let bytes = len.max(1) * 4;
        if bytes as u64 > self.client.properties().memory.max_page_size {
            return Err(Error::Unsupported {
                op,
                backend: self.kind.name().into(),
                reason: format!("output needs {bytes} bytes, more than the device allocates per buffer"),
            });
        }
        Ok(self.client.empty(bytes))
    }

    /// Waits for every launch queued from this thread (cubecl keeps one stream per thread, so
    /// the wait must run here: it is not bounded by a timeout the way wgpu's are). A panic in
    /// cubecl's server becomes an error naming `what`.
    pub(crate) fn sync(&self, what: &str) -> Result<()> {
        let kind = self.kind;
        catch("sync", kind, || pollster::block_on(self.client.sync()))?
            .map_err(|e| Error::Device { backend: kind.name().into(), reason: format!("{what}: {e:?}") })
    }
}

/// Puts the real op name on an upload error raised with the MSDA op name.
pub(crate) fn retag(e: Error, op: &'static str) -> Error {
    match e {
        Error::Unsupported { backend, reason, .. } => Error::Unsupported { op, backend, reason },
        other => other,
    }
}

impl<R: Runtime> Device for CubeclBackend<R> {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn device(&self) -> String {
        self.device.clone()
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let props = self.client.properties();
        let hw = &props.hardware;
        let vector = if hw.max_vector_size >= 8 { "8-wide f16/bf16 loads" } else { "4-wide pairs" };
        vec![
            ("max buffer", format!("{} MiB", props.memory.max_page_size >> 20)),
            (
                "vectors",
                format!(
                    "up to {} lanes; f16 {}, bf16 {}",
                    hw.max_vector_size,
                    self.supports_type(DType::F16),
                    self.supports_type(DType::Bf16)
                ),
            ),
            (
                "subgroups",
                if props.features.plane.is_empty() {
                    "no plane ops (the kernels do not need them)".into()
                } else {
                    format!("{:?}", props.features.plane)
                },
            ),
            ("ms_deform_attn", format!("kernels/ms_deform_attn.rs, P unrolled, {vector}")),
            ("ALIF ops", "kernels/sparse_fusion.rs: gated_cross_attn 3 launches, sparse_fusion 8".into()),
            ("conv2d", "kernels/image.rs implicit GEMM (64- or 128-wide output tiles, see backend::gemm_tile)".into()),
        ]
    }
    fn dispatch_count(&self) -> Option<u64> {
        Some(self.launches.load(Ordering::Relaxed))
    }
    fn submission_count(&self) -> Option<u64> {
        None
    }
    fn recycled_outputs(&self) -> Option<u64> {
        None
    }
    fn uploaded_bytes(&self) -> Option<u64> {
        Some(self.uploaded())
    }
    fn owner_id(&self) -> u64 {
        self.id
    }
    fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        if t.as_host().is_none() {
            t.buffer::<Handle>(self.id, self.kind.name(), what)?;
            return Ok(t.clone());
        }
        Ok(Tensor::device(self.id, t.len(), self.resident("bind", what, t)?.0))
    }
    fn wait(&self) -> Result<()> {
        self.sync("wait")
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        if let Some(v) = t.as_host() {
            return Ok(v.to_vec());
        }
        if t.is_empty() {
            return Ok(Vec::new());
        }
        let h = t.buffer::<Handle>(self.id, self.kind.name(), "tensor")?.clone();
        self.sync("download")?;
        let bytes = self.read_bytes("download", h)?;
        let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        v.truncate(t.len());
        Ok(v)
    }
    fn empty_tensor(&self, _: Checked, len: usize) -> Result<Tensor> {
        Ok(Tensor::device(self.id, len, self.f32_out("empty", len)?))
    }
    fn slice_tensor(&self, _: Checked, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let src = self.resident("slice", "tensor", t)?;
        let y = self.out("slice", len)?;
        self.copy(&src, start, &y, 0, len)?;
        Ok(self.tensor(y))
    }
    fn write_tensor(&self, _: Checked, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let (d, s) = (self.resident("write", "dst", dst)?, self.resident("write", "src", src)?);
        self.copy(&s, 0, &d, at, s.1.min(src.len()))
    }
}
