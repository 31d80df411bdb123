//! Raw wgpu backend: the WGSL of `shaders/` on Vulkan, Metal, DX12 or GL, whatever adapter wgpu
//! finds (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME` narrow the choice). f16 storage uses WGSL's
//! `pack2x16float`/`unpack2x16float`, so it needs no optional device feature.

mod fusion;
mod pool;
mod resident;
mod wait;

pub use crate::ops::ms_deform_attn::wgpu::MsDeformAttnBuffers;
pub(crate) use resident::{Entry, TENSOR_USAGE};
pub(crate) use wait::block_on;
#[cfg(target_arch = "wasm32")]
pub use wait::set_event_loop_yield;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::util::DeviceExt;

use super::{BackendKind, Checked, Device, Tensor};
use crate::error::{Error, Result};
use pool::PooledBuffer;

/// A pipeline specialized by override constants: (entry point, the constants' values in the
/// order given). Entry point names are unique across the specialized modules.
type SpecializedKey = (&'static str, Vec<u32>);

/// The raw-WGSL backend on one wgpu device (its own, or the caller's: [`WgpuBackend::from_device`]).
pub struct WgpuBackend {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) module: wgpu::ShaderModule,
    pub(crate) msda_backward: wgpu::ShaderModule,
    pub(crate) gemm: wgpu::ShaderModule,
    pub(crate) layer_norm: wgpu::ShaderModule,
    pub(crate) softmax: wgpu::ShaderModule,
    pub(crate) attention: wgpu::ShaderModule,
    pub(crate) window_attention: wgpu::ShaderModule,
    pub(crate) patch_merge: wgpu::ShaderModule,
    pub(crate) elementwise: wgpu::ShaderModule,
    pub(crate) fusion: wgpu::ShaderModule,
    pub(crate) conv2d: wgpu::ShaderModule,
    pub(crate) max_pool: wgpu::ShaderModule,
    pub(crate) group_norm: wgpu::ShaderModule,
    pub(crate) to_tokens: wgpu::ShaderModule,
    /// Pipelines of every module but `ms_deform_attn.wgsl` by "file.entry", built on first use.
    pub(crate) pipelines: std::sync::Mutex<std::collections::HashMap<&'static str, wgpu::ComputePipeline>>,
    /// Pipelines of the modules specialized by override constants (`ms_deform_attn.wgsl`,
    /// `ms_deform_attn_backward.wgsl`), by entry point and constants.
    pub(crate) specialized: std::sync::Mutex<std::collections::HashMap<SpecializedKey, wgpu::ComputePipeline>>,
    /// Workgroup size of the backward kernels (see [`WgpuBackend::set_backward_workgroup`]).
    pub(crate) backward_workgroup: std::sync::atomic::AtomicU32,
    /// Compute dispatches recorded so far (every kernel launch of this backend).
    pub(crate) dispatches: AtomicU64,
    /// Bytes copied from the host into device buffers so far.
    pub(crate) uploaded: AtomicU64,
    /// Command buffers submitted to the queue so far.
    pub(crate) submissions: AtomicU64,
    /// Resident work recorded but not yet submitted (see [`WgpuBackend::record`]).
    pending: std::sync::Mutex<Pending>,
    /// Buffers of dropped tensors, for the next outputs of their sizes.
    pub(crate) pool: std::sync::Arc<pool::BufferPool>,
    /// One zero bound wherever a kernel's optional input is absent.
    pub(crate) placeholder: wgpu::Buffer,
    /// Owner id of this instance's device tensors.
    pub(crate) id: u64,
    /// Error scopes the browser has yet to answer (see `wait.rs`).
    #[cfg(target_arch = "wasm32")]
    deferred: std::sync::Mutex<Vec<wait::Deferred>>,
}

/// Resident ops append their passes and copies to one command encoder, submitted every
/// [`FLUSH_EVERY`] commands and before anything waits or reads back: a graph pays a queue
/// submission (and its driver round trip) per batch instead of per op, and the device still gets
/// work while the host records the rest.
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// Labels of the commands in `encoder`, for an error found when it is finished.
    labels: Vec<&'static str>,
}

/// Commands per submitted batch: enough to amortise a submission, few enough that the device
/// starts on the first ops of a stage while the host records its last.
const FLUSH_EVERY: usize = 32;

pub(crate) fn unavailable(reason: impl Into<String>) -> Error {
    Error::BackendUnavailable { backend: crate::backend::BackendKind::Wgpu.name().into(), reason: reason.into() }
}

pub(crate) fn device_err(reason: impl std::fmt::Display) -> Error {
    Error::Device { backend: crate::backend::BackendKind::Wgpu.name().into(), reason: reason.to_string() }
}

#[cfg(not(target_arch = "wasm32"))]
fn poll_err(e: wgpu::PollError) -> Error {
    match e {
        wgpu::PollError::Timeout => device_err(format!(
            "the device did not finish within {:?} (hung or lost; RLIPV2_GPU_TIMEOUT_S sets the limit)",
            super::gpu_timeout()
        )),
        other => device_err(other),
    }
}

impl WgpuBackend {
    /// Opens the adapter wgpu picks (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME` narrow it) with its full limits.
    pub fn new() -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapter = block_on(wgpu::util::initialize_adapter_from_env_or_default(&instance, None))?
            .map_err(|e| unavailable(format!("no wgpu adapter: {e}")))?;
        let info = adapter.get_info();
        let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rlipv2"),
            // enabled where present so that `info` reports them; no shader relies on them
            required_features: adapter.features() & (wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP),
            required_limits: adapter.limits(),
            ..Default::default()
        }))?
        .map_err(|e| unavailable(format!("{}: request_device failed: {e}", info.name)))?;
        device.on_uncaptured_error(std::sync::Arc::new(|e| tracing::error!("wgpu: uncaptured error: {e}")));
        // a lost device (driver reset, GPU removed) is reported; later polls and maps then fail
        // with an error instead of waiting forever
        device.set_device_lost_callback(|reason, msg| tracing::error!("wgpu: device lost ({reason:?}): {msg}"));
        Self::from_device(info, device, queue)
    }

    /// The backend on the caller's own device and queue (no second device): compiles the WGSL
    /// there. `info` names the adapter in reports. Use [`WgpuBackend::encode_ms_deform_attn`] to
    /// record the op into the caller's command encoder on the caller's buffers.
    pub fn from_device(info: wgpu::AdapterInfo, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let limits = device.limits();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("ms_deform_attn.wgsl"),
            source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(crate::shaders::MS_DEFORM_ATTN)),
        });
        if let Some(e) = block_on(scope.pop())? {
            return Err(unavailable(format!("ms_deform_attn.wgsl does not compile on {}: {e}", info.name)));
        }
        let compile = |name: &str, src: &'static str, checked: bool| -> Result<wgpu::ShaderModule> {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(src)),
            };
            let m = if checked {
                device.create_shader_module(desc)
            } else {
                // SAFETY: sparse_fusion.wgsl indexes one arena only at offsets the round's plan
                // allocated (`backend::fusion_plan`: every region sized from the validated
                // problem), and guards every row/column/key loop by the planned extents. Per-access
                // bounds checks made its launches up to 5.5× slower on an H200, 1.4× on lavapipe.
                unsafe {
                    device.create_shader_module_trusted(
                        desc,
                        wgpu::ShaderRuntimeChecks { bounds_checks: false, ..wgpu::ShaderRuntimeChecks::unchecked() },
                    )
                }
            };
            match block_on(scope.pop())? {
                Some(e) => Err(unavailable(format!("{name} does not compile on {}: {e}", info.name))),
                None => Ok(m),
            }
        };
        let msda_backward = compile("ms_deform_attn_backward.wgsl", crate::shaders::MS_DEFORM_ATTN_BACKWARD, true)?;
        let gemm = compile("gemm.wgsl", crate::shaders::GEMM, true)?;
        let layer_norm = compile("layer_norm.wgsl", crate::shaders::LAYER_NORM, true)?;
        let softmax = compile("softmax.wgsl", crate::shaders::SOFTMAX, true)?;
        let attention = compile("attention.wgsl", crate::shaders::ATTENTION, true)?;
        let window_attention = compile("window_attention.wgsl", crate::shaders::WINDOW_ATTENTION, true)?;
        let patch_merge = compile("patch_merge.wgsl", crate::shaders::PATCH_MERGE, true)?;
        let elementwise = compile("elementwise.wgsl", crate::shaders::ELEMENTWISE, true)?;
        let fusion = compile("sparse_fusion.wgsl", crate::shaders::SPARSE_FUSION, false)?;
        let conv2d = compile("conv2d.wgsl", crate::shaders::CONV2D, true)?;
        let max_pool = compile("max_pool.wgsl", crate::shaders::MAX_POOL, true)?;
        let group_norm = compile("group_norm.wgsl", crate::shaders::GROUP_NORM, true)?;
        let to_tokens = compile("to_tokens.wgsl", crate::shaders::TO_TOKENS, true)?;
        let placeholder = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("absent input"),
            contents: bytemuck::cast_slice(&[0f32]),
            usage: wgpu::BufferUsages::STORAGE,
        });
        Ok(WgpuBackend {
            device,
            queue,
            info,
            limits,
            module,
            msda_backward,
            gemm,
            layer_norm,
            softmax,
            attention,
            window_attention,
            patch_merge,
            elementwise,
            fusion,
            conv2d,
            max_pool,
            group_norm,
            to_tokens,
            pipelines: Default::default(),
            specialized: Default::default(),
            backward_workgroup: std::sync::atomic::AtomicU32::new(64),
            dispatches: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            pending: Default::default(),
            pool: Default::default(),
            placeholder,
            id: crate::backend::tensor::new_owner_id(),
            #[cfg(target_arch = "wasm32")]
            deferred: Default::default(),
        })
    }

    /// The pipeline of `entry` in `module`, cached under `key`.
    pub(crate) fn pipeline(
        &self,
        module: &wgpu::ShaderModule,
        key: &'static str,
        entry: &'static str,
    ) -> Result<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().map_err(|_| device_err("pipeline cache poisoned"))?;
        Ok(cache
            .entry(key)
            .or_insert_with(|| {
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(key),
                    layout: None,
                    module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .clone())
    }

    /// The pipeline of `entry` in `module` with the override `constants` (cached by entry and
    /// values; a shader that does not compile for them is an error).
    pub(crate) fn specialized_pipeline(
        &self,
        module: &wgpu::ShaderModule,
        entry: &'static str,
        constants: &[(&'static str, u32)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = (entry, constants.iter().map(|c| c.1).collect::<Vec<_>>());
        let mut cache = self.specialized.lock().map_err(|_| device_err("pipeline cache poisoned"))?;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        tracing::debug!(entry, ?constants, "specialized pipeline");
        let values: Vec<(&str, f64)> = constants.iter().map(|&(k, v)| (k, v as f64)).collect();
        let described = format!("building the {entry} pipeline for {constants:?}");
        let pipeline = self.scoped(
            wgpu::ErrorFilter::Validation,
            || {
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions { constants: &values, ..Default::default() },
                    cache: None,
                })
            },
            move |e| device_err(format!("{described}: {e}")),
        )?;
        cache.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A 2-D grid of `wg`-wide workgroups covering `total` invocations: (x, y); the shader's
    /// invocation index is `gid.y · x · wg + gid.x`.
    pub(crate) fn invocation_grid(&self, op: &'static str, total: u64, wg: u32) -> Result<(u32, u32)> {
        let workgroups = total.div_ceil(wg as u64).max(1);
        let max_x = self.limits.max_compute_workgroups_per_dimension as u64;
        let gx = workgroups.min(max_x);
        let gy = workgroups.div_ceil(gx);
        if gy > max_x {
            return Err(Error::Unsupported {
                op,
                backend: crate::backend::BackendKind::Wgpu.name().into(),
                reason: format!("{total} invocations exceed the adapter's dispatch limit"),
            });
        }
        Ok((gx as u32, gy as u32))
    }

    /// Sets the workgroup size of the `ms_deform_attn_backward` kernels (default 64; 1 up to the
    /// adapter's invocations per workgroup). The gradients are bit-identical for every size —
    /// the knob exists so that promise can be tested, and tuned per device.
    pub fn set_backward_workgroup(&self, size: u32) -> Result<()> {
        let max = self.limits.max_compute_invocations_per_workgroup.min(self.limits.max_compute_workgroup_size_x);
        if size == 0 || size > max {
            return Err(Error::limit(
                "ms_deform_attn_backward",
                "workgroup size",
                format!("{size}: {} supports 1..={max}", self.info.name),
            ));
        }
        self.backward_workgroup.store(size, Ordering::Relaxed);
        Ok(())
    }

    /// Records one dispatch in `pass` and counts it.
    pub(crate) fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: (u32, u32),
    ) {
        self.dispatch3(pass, pipeline, bind, (groups.0, groups.1, 1));
    }

    /// [`Self::dispatch`] on a 3-D grid.
    pub(crate) fn dispatch3(
        &self,
        pass: &mut wgpu::ComputePass,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        groups: (u32, u32, u32),
    ) {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// The pipeline of `entry` in `module` (cached under `key`) bound to the uniform `params` at
    /// binding 0, `inputs` at bindings 1.. and `out` at binding 5 (the layout of every op module
    /// but `ms_deform_attn.wgsl` and `sparse_fusion.wgsl`).
    pub(crate) fn bind_module(
        &self,
        module: &wgpu::ShaderModule,
        key: &'static str,
        entry: &'static str,
        params: &[u8],
        inputs: &[&wgpu::Buffer],
        out: &wgpu::Buffer,
    ) -> Result<(wgpu::ComputePipeline, wgpu::BindGroup)> {
        let pipeline = self.pipeline(module, key, entry)?;
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        for (i, buf) in inputs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: 1 + i as u32, resource: buf.as_entire_binding() });
        }
        entries.push(wgpu::BindGroupEntry { binding: 5, resource: out.as_entire_binding() });
        let bind = self.bind_group(&pipeline, entry, &entries)?;
        Ok((pipeline, bind))
    }

    /// A bind group of `pipeline`'s layout over `entries` (labelled `entry`); a binding the
    /// layout refuses is an error naming `entry` (see [`WgpuBackend::scoped`]).
    pub(crate) fn bind_group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entry: &'static str,
        entries: &[wgpu::BindGroupEntry],
    ) -> Result<wgpu::BindGroup> {
        self.scoped(
            wgpu::ErrorFilter::Validation,
            || {
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(entry),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries,
                })
            },
            move |e| device_err(format!("binding {entry}: {e}")),
        )
    }

    /// Records `commands` (a compute pass or copies, labelled `label`) after the resident work
    /// already recorded; submits the batch when it holds [`FLUSH_EVERY`] commands.
    pub(crate) fn record(&self, label: &'static str, commands: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let mut pending = self.pending.lock().map_err(|_| device_err("command recorder poisoned"))?;
        let enc = pending.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("rlipv2 batch") })
        });
        commands(enc);
        pending.labels.push(label);
        if pending.labels.len() >= FLUSH_EVERY {
            self.submit_pending(&mut pending)?;
        }
        Ok(())
    }

    /// Submits the recorded work (if any); the index to wait for.
    pub(crate) fn flush(&self) -> Result<Option<wgpu::SubmissionIndex>> {
        let mut pending = self.pending.lock().map_err(|_| device_err("command recorder poisoned"))?;
        self.submit_pending(&mut pending)
    }

    fn submit_pending(&self, pending: &mut Pending) -> Result<Option<wgpu::SubmissionIndex>> {
        let Some(enc) = pending.encoder.take() else {
            return Ok(None);
        };
        let labels = std::mem::take(&mut pending.labels);
        // encoding errors (a bad binding, a copy out of range) surface when the encoder is finished
        let idx = self.scoped(
            wgpu::ErrorFilter::Validation,
            || self.queue.submit([enc.finish()]),
            move |e| device_err(format!("batch of {} ({}): {e}", labels.len(), labels.join(", "))),
        )?;
        self.submissions.fetch_add(1, Ordering::Relaxed);
        Ok(Some(idx))
    }

    /// Submits the recorded work and waits for the device to finish everything submitted.
    pub(crate) fn wait_idle(&self) -> Result<()> {
        let idx = self.flush()?;
        self.wait_submitted(idx)
    }

    /// Reads `bytes` of `buf` from byte `offset` (both multiples of 4) as f32.
    pub(crate) fn read_f32(&self, buf: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<f32>> {
        self.read_bytes(buf, offset, bytes).map(|b| bytemuck::pod_collect_to_vec(&b))
    }

    /// Copies `bytes` of `buf` from byte `offset` to the host.
    pub(crate) fn read_bytes(&self, buf: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let staging = self.oom_checked("readback", bytes, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            })
        })?;
        self.record("readback", |enc| enc.copy_buffer_to_buffer(buf, offset, &staging, 0, bytes))?;
        let idx = self.flush()?;
        self.map_read(&staging, idx)
    }

    /// A 2-D grid of `n` one-per-row workgroups: (x, y, grid_x).
    pub(crate) fn row_grid(&self, n: usize) -> (u32, u32, u32) {
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        let x = n.clamp(1, max);
        (x as u32, n.div_ceil(x) as u32, x as u32)
    }

    /// A buffer holding `contents` for `op` (size checked against the adapter first).
    pub(crate) fn buffer(
        &self,
        op: &'static str,
        what: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.check_size(op, what, contents.len() as u64)?;
        self.uploaded.fetch_add(contents.len() as u64, Ordering::Relaxed);
        self.oom_checked(what, contents.len() as u64, || {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(what), contents, usage })
        })
    }

    /// An uninitialised `bytes`-long buffer (size checked against the adapter first).
    pub(crate) fn empty(
        &self,
        op: &'static str,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.check_size(op, what, bytes)?;
        self.oom_checked(what, bytes, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// Runs an allocation inside an out-of-memory error scope: a device that cannot hold the
    /// buffer gives an error naming it instead of an uncaptured error later.
    pub(crate) fn oom_checked(
        &self,
        what: &str,
        bytes: u64,
        alloc: impl FnOnce() -> wgpu::Buffer,
    ) -> Result<wgpu::Buffer> {
        let (what, name) = (what.to_string(), self.info.name.clone());
        self.scoped(wgpu::ErrorFilter::OutOfMemory, alloc, move |e| {
            device_err(format!("out of device memory allocating `{what}` ({bytes} bytes) on {name}: {e}"))
        })
    }

    pub(crate) fn check_size(&self, op: &'static str, what: &str, bytes: u64) -> Result<()> {
        let max = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(Error::Unsupported {
                op,
                backend: crate::backend::BackendKind::Wgpu.name().into(),
                reason: format!("tensor `{what}` needs {bytes} bytes, but {} binds at most {max} bytes per buffer; split the batch or queries", self.info.name),
            });
        }
        Ok(())
    }
}

impl Device for WgpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Wgpu
    }
    fn device(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name, self.info.backend, self.info.device_type, self.info.driver, self.info.driver_info
        )
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        let l = &self.limits;
        vec![
            (
                "device type",
                format!(
                    "{:?}{}",
                    self.info.device_type,
                    if self.info.device_type == wgpu::DeviceType::Cpu {
                        " (software adapter: `auto` prefers the cpu backend)"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "max buffer",
                format!(
                    "{} MiB (storage binding {} MiB)",
                    l.max_buffer_size >> 20,
                    l.max_storage_buffer_binding_size >> 20
                ),
            ),
            (
                "workgroup storage",
                format!(
                    "{} KiB, {} invocations",
                    l.max_compute_workgroup_storage_size >> 10,
                    l.max_compute_invocations_per_workgroup
                ),
            ),
            ("features", {
                let f = self.device.features();
                format!("shader-f16 {}, subgroups {} (neither is needed: f16 is packed in u32, reductions use workgroup memory)", f.contains(wgpu::Features::SHADER_F16), f.contains(wgpu::Features::SUBGROUP))
            }),
            ("ms_deform_attn", "shaders/ms_deform_attn.wgsl (official and fused forms; f16 via pack2x16float)".into()),
            ("ALIF ops", "shaders/sparse_fusion.wgsl: gated_cross_attn 3 launches, sparse_fusion 8".into()),
            ("conv2d", "conv2d.wgsl implicit GEMM (64- or 128-wide output tiles, see backend::gemm_tile)".into()),
        ]
    }
    fn dispatch_count(&self) -> Option<u64> {
        Some(self.dispatches.load(Ordering::Relaxed))
    }
    fn submission_count(&self) -> Option<u64> {
        Some(self.submissions.load(Ordering::Relaxed))
    }
    fn recycled_outputs(&self) -> Option<u64> {
        Some(self.pool.reused())
    }
    fn uploaded_bytes(&self) -> Option<u64> {
        Some(self.uploaded())
    }
    fn owner_id(&self) -> u64 {
        self.id
    }
    /// `t` as a device tensor of this instance (uploaded if it is a host tensor).
    fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        if t.as_host().is_none() {
            self.tensor_buffer(t, what)?;
            return Ok(t.clone());
        }
        // bound tensors (weights) are freed with their last handle, not pooled
        Ok(Tensor::device(self.id, t.len(), PooledBuffer::new(self.resident("bind", what, t)?, None)))
    }
    /// The values of `t`, after the work that writes it has finished.
    fn wait(&self) -> Result<()> {
        self.wait_idle()
    }
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        if let Some(v) = t.as_host() {
            return Ok(v.to_vec());
        }
        if t.is_empty() {
            return Ok(Vec::new());
        }
        self.read_f32(self.tensor_buffer(t, "tensor")?, 0, (t.len() * 4) as u64)
    }
    fn empty_tensor(&self, _: Checked, len: usize) -> Result<Tensor> {
        Ok(self.output("empty", len)?.1)
    }
    fn slice_tensor(&self, _: Checked, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        let src = self.resident("slice", "tensor", t)?;
        let (dst, tensor) = self.output("slice", len)?;
        self.copy(&src, start, &dst, 0, len)?;
        Ok(tensor)
    }
    fn write_tensor(&self, _: Checked, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let d = self.resident("write", "dst", dst)?;
        let s = self.resident("write", "src", src)?;
        self.copy(&s, 0, &d, at, src.len())
    }
}
