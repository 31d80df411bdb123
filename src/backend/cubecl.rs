//! cubecl backend: the `#[cube]` kernels of `kernels/`, generic over the cubecl runtime
//! (`WgpuRuntime` → WGSL on Vulkan/Metal/DX12; `CudaRuntime` → CUDA C++ via NVRTC).
//!
//! cubecl reports some device failures by panicking in its server thread (no CUDA driver, an
//! allocation larger than the device allows). Opening a client is probed first and wrapped in
//! `catch_unwind`; sizes are checked against the device limits before any allocation.

use std::marker::PhantomData;

use cubecl::prelude::*;
use cubecl::server::Handle;

use super::{Backend, BackendKind, Prepared};
use crate::error::{Error, Result};
use crate::kernels::ms_deform_attn::ms_deform_attn;
use crate::problem::ms_deform_attn::OP;
use crate::problem::{DType, Form, MsDeformAttnInput, MsDeformAttnProblem, RefKind};

/// Channels each unit accumulates per tap.
const UNIT_CHANNELS: usize = 8;
const CUBE: u32 = 128;

pub struct CubeclBackend<R: Runtime> {
    client: ComputeClient<R>,
    kind: BackendKind,
    device: String,
    _r: PhantomData<R>,
}

fn catch<T>(what: &str, backend: BackendKind, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "cubecl panicked".into());
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
                let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor { backends: ::wgpu::Backends::from_env().unwrap_or(::wgpu::Backends::all()), ..::wgpu::InstanceDescriptor::new_without_display_handle() });
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
        Ok(CubeclBackend { client, kind, device: name, _r: PhantomData })
    }
}

#[cfg(feature = "cuda")]
impl CubeclBackend<cubecl::cuda::CudaRuntime> {
    /// The cubecl CUDA runtime on GPU 0. Without a driver this is a clean `BackendUnavailable`.
    pub fn new_cuda() -> Result<Self> {
        use cubecl::cuda::{CudaDevice, CudaRuntime};
        let kind = BackendKind::CubeclCuda;
        // SAFETY: loading the driver library runs its initialisers only; nothing else is called.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| Error::BackendUnavailable { backend: kind.name().into(), reason: format!("no CUDA driver: {e}") })?;
        drop(lib);
        let device = CudaDevice { index: 0 };
        let client = catch("CUDA client", kind, || CudaRuntime::client(&device))?;
        catch("CUDA sync", kind, || pollster::block_on(client.sync()))?.map_err(|e| Error::BackendUnavailable { backend: kind.name().into(), reason: format!("{e:?}") })?;
        Ok(CubeclBackend { client, kind, device: "CUDA device 0".into(), _r: PhantomData })
    }
}

impl<R: Runtime> CubeclBackend<R> {
    fn supports_type(&self, dtype: DType) -> bool {
        let features = &self.client.properties().features;
        match dtype {
            DType::F32 => true,
            DType::F16 => features.supports_type(cubecl::ir::FloatKind::F16),
            DType::Bf16 => features.supports_type(cubecl::ir::FloatKind::BF16),
        }
    }

    fn upload(&self, what: &str, bytes: &[u8]) -> Result<Handle> {
        let max = self.client.properties().memory.max_page_size;
        if bytes.len() as u64 > max {
            return Err(Error::Unsupported {
                op: OP,
                backend: self.kind.name().into(),
                reason: format!("tensor `{what}` needs {} bytes, but the device allocates at most {max} bytes per buffer; split the batch or queries", bytes.len()),
            });
        }
        Ok(self.client.create_from_slice(bytes))
    }
}

struct CubeclRun<'a, R: Runtime> {
    be: &'a CubeclBackend<R>,
    value: (Handle, usize),
    shapes: (Handle, usize),
    samp: (Handle, usize),
    attn: (Handle, usize),
    refp: (Handle, usize),
    out: (Handle, usize),
    dims: [u32; 6],
    points: usize,
    vector: usize,
    form: Form,
    dtype: DType,
    cubes: CubeCount,
}

impl<R: Runtime> Backend for CubeclBackend<R> {
    fn kind(&self) -> BackendKind {
        self.kind
    }
    fn device(&self) -> String {
        self.device.clone()
    }
    fn supports(&self, dtype: DType) -> Result<()> {
        if !self.supports_type(dtype) {
            return Err(Error::Unsupported { op: OP, backend: self.kind.name().into(), reason: format!("{} has no {dtype} support", self.device) });
        }
        Ok(())
    }
    fn prepare_valid<'a>(&'a self, pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType) -> Result<Box<dyn Prepared + 'a>> {
        // 8 channels per unit: one 16-byte load for f16/bf16 where the device has 8-wide vectors,
        // else two 4-wide loads (D is a multiple of 8).
        let max_vec = self.client.properties().hardware.max_vector_size as usize;
        let vector = if dtype != DType::F32 && max_vec >= 8 { 8 } else { 4 };
        let groups = pr.channels / UNIT_CHANNELS;
        let total = pr.batch * pr.queries * pr.heads * groups;
        let cubes_needed = total.div_ceil(CUBE as usize) as u32;
        let max = self.client.properties().hardware.max_cube_count.0.min(65535);
        let cubes = CubeCount::Static(cubes_needed.min(max), cubes_needed.div_ceil(max), 1);
        let shapes: Vec<u32> = pr.levels.iter().flat_map(|l| [l.h as u32, l.w as u32, l.start as u32]).collect();
        let value_bytes = super::pack(input.value(), dtype);
        let (samp, attn, refp): (&[f32], &[f32], &[f32]) = match *input {
            MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => (sampling_locations, attention_weights, &[0.0]),
            MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => (sampling_offsets, attention_logits, reference),
        };
        let up = |what: &str, data: &[f32]| -> Result<(Handle, usize)> { Ok((self.upload(what, bytemuck::cast_slice(data))?, data.len())) };
        let out_len = pr.output_len();
        let out_bytes = out_len * dtype.size();
        if out_bytes as u64 > self.client.properties().memory.max_page_size {
            return Err(Error::Unsupported { op: OP, backend: self.kind.name().into(), reason: format!("output needs {out_bytes} bytes, more than the device allocates per buffer") });
        }
        Ok(Box::new(CubeclRun {
            be: self,
            value: (self.upload("value", &value_bytes)?, input.value().len() / vector),
            shapes: (self.upload("spatial_shapes", bytemuck::cast_slice(&shapes))?, shapes.len()),
            samp: up("sampling", samp)?,
            attn: up("attention", attn)?,
            refp: up("reference", refp)?,
            out: (self.client.empty(out_bytes), out_len / vector),
            dims: [pr.queries as u32, pr.heads as u32, groups as u32, pr.tokens as u32, pr.num_levels() as u32, total as u32],
            points: pr.points,
            vector,
            form: pr.form,
            dtype,
            cubes,
        }))
    }
}

impl<R: Runtime> CubeclRun<'_, R> {
    fn launch<F: Float + CubeElement>(&self) {
        let arg = |h: &(Handle, usize)| unsafe { ArrayArg::from_raw_parts(h.0.clone(), h.1) };
        let [queries, heads, groups, tokens, levels, total] = self.dims;
        let (fused, boxes) = match self.form {
            Form::Official => (false, false),
            Form::Fused(k) => (true, k == RefKind::Boxes),
        };
        // SAFETY: every array length was derived from the validated problem, and the kernel
        // bounds-checks its unit index against `total`.
        unsafe {
            ms_deform_attn::launch_unchecked::<F, R>(
                &self.be.client,
                self.cubes.clone(),
                CubeDim::new_1d(CUBE),
                self.vector,
                arg(&self.value),
                arg(&self.shapes),
                arg(&self.samp),
                arg(&self.attn),
                arg(&self.refp),
                arg(&self.out),
                queries,
                heads,
                groups,
                tokens,
                levels,
                total,
                self.points,
                self.vector == 4,
                fused,
                boxes,
            )
        }
    }
}

impl<R: Runtime> Prepared for CubeclRun<'_, R> {
    fn enqueue(&mut self) -> Result<()> {
        catch("launch", self.be.kind, || match self.dtype {
            DType::F32 => self.launch::<f32>(),
            DType::F16 => self.launch::<half::f16>(),
            DType::Bf16 => self.launch::<half::bf16>(),
        })
    }

    fn wait(&mut self) -> Result<()> {
        let kind = self.be.kind;
        catch("sync", kind, || pollster::block_on(self.be.client.sync()))?.map_err(|e| Error::Device { backend: kind.name().into(), reason: format!("{e:?}") })
    }

    fn output(&mut self) -> Result<Vec<f32>> {
        let kind = self.be.kind;
        let bytes = catch("read", kind, || self.be.client.read_one(self.out.0.clone()))?.map_err(|e| Error::Device { backend: kind.name().into(), reason: format!("{e:?}") })?;
        Ok(super::unpack(&bytes, self.dtype))
    }
}
