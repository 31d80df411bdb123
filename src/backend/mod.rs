//! Layer 3: backends. One trait, implemented by the naive `reference`, the fast native `cpu`,
//! `wgpu` (raw WGSL from `shaders/`) and `cubecl` (kernels from `kernels/`, on its wgpu and CUDA
//! runtimes). Public entry points validate; backends' `prepare_valid` assumes valid input.

/// The resident-op methods of a GPU backend ([`Backend::owner_id`] … [`Backend::sparse_fusion_t`]),
/// delegated to its inherent `*_tensor` methods and its `id` / `uploaded()`.
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
macro_rules! resident_ops {
    () => {
        fn owner_id(&self) -> u64 {
            self.id
        }
        fn uploaded_bytes(&self) -> Option<u64> {
            Some(self.uploaded())
        }
        fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor> {
            self.bind_tensor(what, t)
        }
        fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
            self.download_tensor(t)
        }
        fn gemm_t_valid(
            &self,
            p: &GemmProblem,
            x: &Tensor,
            weight: &Tensor,
            bias: Option<&Tensor>,
            residual: Option<&Tensor>,
        ) -> Result<Tensor> {
            self.gemm_tensor(p, x, weight, bias, residual)
        }
        fn add_t_valid(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
            self.add_tensor(a, b)
        }
        fn layer_norm_t_valid(
            &self,
            p: &LayerNormProblem,
            x: &Tensor,
            gamma: &Tensor,
            beta: &Tensor,
        ) -> Result<Tensor> {
            self.layer_norm_tensor(p, x, gamma, beta)
        }
        fn ms_deform_attn_t_valid(
            &self,
            pr: &MsDeformAttnProblem,
            value: &Tensor,
            reference: &Tensor,
            offsets: &Tensor,
            logits: &Tensor,
        ) -> Result<Tensor> {
            self.ms_deform_attn_tensor(pr, value, reference, offsets, logits)
        }
        fn slice_t_valid(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
            self.slice_tensor(t, start, len)
        }
        fn write_t_valid(&self, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
            self.write_tensor(dst, at, src)
        }
        fn bind_sparse_fusion(
            &self,
            p: &SparseFusionProblem,
            fw: &GatedCrossAttnWeights,
            bw: &BertLayerWeights,
        ) -> Result<Option<Tensor>> {
            self.bind_round_weights(p, fw, bw).map(Some)
        }
        fn sparse_fusion_t_valid(
            &self,
            p: &SparseFusionProblem,
            memory: &mut Tensor,
            pos: &Tensor,
            lang: &Tensor,
            fw: &GatedCrossAttnWeights,
            bw: &BertLayerWeights,
            bound: Option<&Tensor>,
        ) -> Result<Tensor> {
            let _ = (fw, bw); // already laid out in `bound` (see `Backend::sparse_fusion_t`)
            self.sparse_fusion_tensor(p, memory, pos, lang, bound)
        }
        fn empty_t_valid(&self, len: usize) -> Result<Tensor> {
            self.empty_tensor(len)
        }
        fn conv2d_t_valid(
            &self,
            p: &crate::problem::Conv2dProblem,
            x: &Tensor,
            weight: &Tensor,
            bias: &Tensor,
            residual: Option<Tensor>,
        ) -> Result<Tensor> {
            self.conv2d_tensor(p, x, weight, bias, residual)
        }
        /// Host to host through the device's conv kernel (inputs uploaded, the output read back).
        fn conv2d_valid(
            &self,
            p: &crate::problem::Conv2dProblem,
            x: &[f32],
            weight: &[f32],
            bias: &[f32],
            residual: Option<&[f32]>,
        ) -> Result<Vec<f32>> {
            let t = |v: &[f32]| Tensor::host(v.to_vec());
            let y = self.conv2d_tensor(p, &t(x), &t(weight), &t(bias), residual.map(t))?;
            self.download_tensor(&y)
        }
        fn max_pool_t_valid(&self, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
            self.max_pool_tensor(x, planes, h, w)
        }
        fn group_norm_t_valid(
            &self,
            s: &crate::backend::image::GroupNormShape,
            x: Tensor,
            gamma: &Tensor,
            beta: &Tensor,
        ) -> Result<Tensor> {
            self.group_norm_tensor(s, x, gamma, beta)
        }
        fn to_tokens_t_valid(
            &self,
            tokens: &mut Tensor,
            row0: usize,
            level: &Tensor,
            c: usize,
            plane: usize,
        ) -> Result<()> {
            self.to_tokens_tensor(tokens, row0, level, c, plane)
        }
        fn mul_t_valid(&self, a: &Tensor, b: &Tensor, act: crate::problem::Activation) -> Result<Tensor> {
            self.mul_tensor(a, b, act)
        }
        fn attention_t_valid(
            &self,
            p: &crate::problem::AttentionProblem,
            q: &Tensor,
            k: &Tensor,
            v: &Tensor,
        ) -> Result<Tensor> {
            self.attention_tensor(p, q, k, v)
        }
    };
}

pub mod compose;
pub mod cpu;
#[cfg(any(feature = "cubecl-wgpu", feature = "cuda"))]
pub mod cubecl;
#[cfg(any(feature = "wgpu", feature = "cubecl-wgpu", feature = "cuda"))]
pub(crate) mod fusion_plan;
pub mod image;
pub mod reference;
pub mod tensor;
#[cfg(feature = "wgpu")]
pub mod wgpu;

pub use tensor::Tensor;

use crate::error::{Error, Result};
use crate::problem::gemm::check_len;
use crate::problem::{
    AttentionProblem, BertLayerWeights, Conv2dProblem, DType, GatedCrossAttnProblem, GatedCrossAttnWeights,
    GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, SoftmaxProblem, SparseFusionProblem,
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
    /// Command batches submitted to the device queue so far, where the backend counts them.
    fn submission_count(&self) -> Option<u64> {
        None
    }
    /// Op outputs so far that took a dropped tensor's device buffer instead of a new allocation,
    /// where the backend recycles buffers.
    fn recycled_outputs(&self) -> Option<u64> {
        None
    }
    /// Whether this backend can run `ms_deform_attn` in `dtype`.
    fn supports(&self, dtype: DType) -> Result<()>;

    /// Uploads inputs and builds the kernel. Inputs are valid (see [`Backend::prepare_ms_deform_attn`]).
    fn prepare_valid<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>>;

    /// Validates the problem and inputs, then uploads them and builds the kernel.
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        problem.validate()?;
        input.check(problem)?;
        self.supports(dtype)?;
        self.prepare_valid(problem, input, dtype)
    }

    /// Runs `ms_deform_attn` once, host to host. Returns `[B,Q,M·D]` as f32.
    fn ms_deform_attn(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        problem.validate()?;
        input.check(problem)?;
        self.supports(dtype)?;
        self.ms_deform_attn_valid(problem, input, dtype)
    }
    /// [`Backend::ms_deform_attn`] after the inputs were checked: by default a prepared run.
    fn ms_deform_attn_valid(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
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
    fn prepare_gemm<'a>(
        &'a self,
        p: &GemmProblem,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Box<dyn Prepared + 'a>> {
        p.check(x, weight, bias)?;
        self.prepare_gemm_valid(p, x, weight, bias)
    }
    /// [`Backend::prepare_gemm`] after the inputs were checked.
    fn prepare_gemm_valid<'a>(
        &'a self,
        _p: &GemmProblem,
        _x: &[f32],
        _weight: &[f32],
        _bias: Option<&[f32]>,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::gemm::OP))
    }

    /// `y = act(conv2d(x, W) + b [+ residual])`, NCHW (see [`Conv2dProblem`]).
    fn conv2d(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        p.check(x, weight, bias, residual)?;
        self.conv2d_valid(p, x, weight, bias, residual)
    }
    /// Without a conv kernel of its own, a backend runs `conv2d` through its `gemm` (host im2col
    /// bands: correct, not fast; see [`compose::conv2d`]).
    fn conv2d_valid(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        compose::conv2d(self, p, x, weight, bias, residual)
    }

    /// `acc ← act(conv2d(x, W) + b + acc)`: [`Backend::conv2d`] with the residual's buffer reused
    /// for the output, so a bottleneck's last conv keeps no third feature map alive.
    fn conv2d_accumulate(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        acc: &mut Vec<f32>,
    ) -> Result<()> {
        p.check(x, weight, bias, Some(acc))?;
        self.conv2d_accumulate_valid(p, x, weight, bias, acc)
    }
    /// [`Backend::conv2d_accumulate`] after the inputs were checked; by default a new output
    /// replaces `acc`.
    fn conv2d_accumulate_valid(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        acc: &mut Vec<f32>,
    ) -> Result<()> {
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
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        p.check(q, k, v, mask)?;
        self.attention_valid(p, q, k, v, mask)
    }
    /// [`Backend::attention`] after the inputs were checked.
    fn attention_valid(
        &self,
        _p: &AttentionProblem,
        _q: &[f32],
        _k: &[f32],
        _v: &[f32],
        _mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::attention::OP))
    }

    /// ALIF gated bi-directional cross-attention: returns `(v' [B,Nv,Cv], l' [B,T,Cl])`.
    fn gated_cross_attn(
        &self,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        p.check(v, pos, l, w)?;
        self.gated_cross_attn_valid(p, v, pos, l, w)
    }
    /// [`Backend::gated_cross_attn`] after the inputs were checked.
    fn gated_cross_attn_valid(
        &self,
        _p: &GatedCrossAttnProblem,
        _v: &[f32],
        _pos: &[f32],
        _l: &[f32],
        _w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        Err(unsupported(self.kind(), crate::problem::gated_cross_attn::OP))
    }

    /// One ALIF round: fuses `memory [B,S,C]`'s last level in place, returns the new language
    /// state `[B,T,768]`. `mask [B,T]`: 1 = label, 0 = padding (none = all valid).
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion(
        &self,
        p: &SparseFusionProblem,
        memory: &mut [f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Vec<f32>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.sparse_fusion_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// A `sparse_fusion` round kept on the device (inputs and weights uploaded once) for repeated,
    /// timed runs: `run` re-fuses the already fused rows (same work), `output` is the language
    /// state. Backends without a device-resident round answer `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion<'a>(
        &'a self,
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.prepare_sparse_fusion_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// The same round op by op (LayerNorm, GEMM, attention once per direction, adds, … about two
    /// dozen launches over separate buffers), resident like [`Backend::prepare_sparse_fusion`]:
    /// the side-by-side baseline of the fused round. Backends without one answer `Unsupported`.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_unfused<'a>(
        &'a self,
        p: &SparseFusionProblem,
        memory: &[f32],
        pos: &[f32],
        lang: &[f32],
        mask: Option<&[f32]>,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        p.check(memory, pos, lang, mask, fw, bw)?;
        self.prepare_sparse_fusion_unfused_valid(p, memory, pos, lang, mask, fw, bw)
    }
    /// [`Backend::prepare_sparse_fusion_unfused`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_unfused_valid<'a>(
        &'a self,
        _p: &SparseFusionProblem,
        _memory: &[f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }
    /// [`Backend::prepare_sparse_fusion`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn prepare_sparse_fusion_valid<'a>(
        &'a self,
        _p: &SparseFusionProblem,
        _memory: &[f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Box<dyn Prepared + 'a>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }

    /// [`Backend::sparse_fusion`] after the inputs were checked.
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion_valid(
        &self,
        _p: &SparseFusionProblem,
        _memory: &mut [f32],
        _pos: &[f32],
        _lang: &[f32],
        _mask: Option<&[f32]>,
        _fw: &GatedCrossAttnWeights,
        _bw: &BertLayerWeights,
    ) -> Result<Vec<f32>> {
        Err(unsupported(self.kind(), crate::problem::sparse_fusion::OP))
    }

    // Resident ops: the same ops on [`Tensor`]s, so that a graph keeps its weights and
    // activations where the backend computes. Host backends keep the defaults (host tensors,
    // shared without copies, run through the host-to-host ops); GPU backends override them to
    // record work on their device without waiting.

    /// Instance id of this backend's device tensors; 0 where it computes on host tensors.
    fn owner_id(&self) -> u64 {
        0
    }
    /// Bytes copied from the host to the device so far, where the backend counts them.
    fn uploaded_bytes(&self) -> Option<u64> {
        None
    }
    /// `t` where this backend computes: host backends share the host tensor (no copy), GPU
    /// backends upload it (the graph binds its weights once per backend).
    fn bind(&self, what: &str, t: &Tensor) -> Result<Tensor> {
        host(self.kind(), what, t)?;
        Ok(t.clone())
    }
    /// The values of `t`, waiting for the work that writes it.
    fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        Ok(host(self.kind(), "tensor", t)?.to_vec())
    }

    /// A tensor of `len` elements whose values the caller writes before reading them (zeros on
    /// the host backends).
    fn empty_t(&self, len: usize) -> Result<Tensor> {
        if len > crate::problem::ms_deform_attn::MAX_ELEMENTS {
            return Err(Error::limit(
                "empty",
                "len",
                format!("{len} elements, more than {}", crate::problem::ms_deform_attn::MAX_ELEMENTS),
            ));
        }
        self.empty_t_valid(len)
    }
    /// [`Backend::empty_t`] after the length was checked.
    fn empty_t_valid(&self, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(vec![0.0; len]))
    }
    /// Elements `start .. start + len` of `t` as a new tensor.
    fn slice_t(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        if start.checked_add(len).is_none_or(|end| end > t.len()) {
            return Err(Error::limit("slice", "range", format!("{start}..+{len} of a {}-element tensor", t.len())));
        }
        self.slice_t_valid(t, start, len)
    }
    /// [`Backend::slice_t`] after the range was checked.
    fn slice_t_valid(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        Ok(Tensor::host(host(self.kind(), "tensor", t)?[start..start + len].to_vec()))
    }
    /// Writes `src` over `dst` from element `at` on.
    fn write_t(&self, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        if at.checked_add(src.len()).is_none_or(|end| end > dst.len()) {
            return Err(Error::limit(
                "write",
                "range",
                format!("{at}..+{} of a {}-element tensor", src.len(), dst.len()),
            ));
        }
        self.make_resident("dst", dst)?;
        self.write_t_valid(dst, at, src)
    }
    /// [`Backend::write_t`] after the range was checked.
    fn write_t_valid(&self, dst: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
        let k = self.kind();
        let src = host(k, "src", src)?;
        dst.as_host_mut().ok_or_else(|| foreign(k, "dst"))?[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }

    /// [`Backend::conv2d`] on tensors. `residual` is consumed: a host backend accumulates the
    /// output into its buffer (no third feature map).
    fn conv2d_t(
        &self,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::conv2d::OP;
        p.validate()?;
        check_len(OP, "x", &p.input_shape(), x.len())?;
        check_len(OP, "weight", &p.weight_shape(), weight.len())?;
        check_len(OP, "bias", &[p.out_c], bias.len())?;
        if let Some(r) = &residual {
            check_len(OP, "residual", &p.output_shape(), r.len())?;
        }
        self.conv2d_t_valid(p, x, weight, bias, residual)
    }
    /// [`Backend::conv2d_t`] after the lengths were checked.
    fn conv2d_t_valid(
        &self,
        p: &Conv2dProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<Tensor>,
    ) -> Result<Tensor> {
        let k = self.kind();
        let (x, w, b) = (host(k, "x", x)?, host(k, "weight", weight)?, host(k, "bias", bias)?);
        match residual {
            Some(r) => {
                let mut acc = r.into_host().map_err(|_| foreign(k, "residual"))?;
                self.conv2d_accumulate_valid(p, x, w, b, &mut acc)?;
                Ok(Tensor::host(acc))
            }
            None => Ok(Tensor::host(self.conv2d_valid(p, x, w, b, None)?)),
        }
    }

    /// 3×3 max pooling, stride 2, padding 1, of `planes` planes `h × w` (see [`image::pool_out`]).
    fn max_pool_t(&self, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        if h == 0 || w == 0 {
            return Err(Error::limit("max_pool", "x", "empty planes"));
        }
        check_len("max_pool", "x", &[planes, h, w], x.len())?;
        self.max_pool_t_valid(x, planes, h, w)
    }
    /// [`Backend::max_pool_t`] after the lengths were checked.
    fn max_pool_t_valid(&self, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        Ok(Tensor::host(image::max_pool_3x3_s2(host(self.kind(), "x", x)?, planes, h, w)))
    }

    /// GroupNorm of `x [B, C, plane]` with per-channel `gamma`, `beta`.
    fn group_norm_t(&self, s: &image::GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        s.check(x.len(), gamma.len(), beta.len())?;
        self.group_norm_t_valid(s, x, gamma, beta)
    }
    /// [`Backend::group_norm_t`] after the lengths were checked; host backends normalize in place.
    fn group_norm_t_valid(
        &self,
        s: &image::GroupNormShape,
        x: Tensor,
        gamma: &Tensor,
        beta: &Tensor,
    ) -> Result<Tensor> {
        let k = self.kind();
        let mut v = x.into_host().map_err(|_| foreign(k, "x"))?;
        image::group_norm(&mut v, s, host(k, "gamma", gamma)?, host(k, "beta", beta)?);
        Ok(Tensor::host(v))
    }

    /// Writes `level [C, plane]` transposed into rows `row0 ..` of `tokens [S, C]`.
    fn to_tokens_t(&self, tokens: &mut Tensor, row0: usize, level: &Tensor, c: usize, plane: usize) -> Result<()> {
        check_len("to_tokens", "level", &[c, plane], level.len())?;
        if c == 0 || tokens.len() % c != 0 || row0 + plane > tokens.len() / c {
            return Err(Error::limit(
                "to_tokens",
                "tokens",
                format!("rows {row0}..{} of a {}-element tensor {c} wide", row0 + plane, tokens.len()),
            ));
        }
        self.make_resident("tokens", tokens)?;
        self.to_tokens_t_valid(tokens, row0, level, c, plane)
    }
    /// [`Backend::to_tokens_t`] after the lengths were checked.
    fn to_tokens_t_valid(
        &self,
        tokens: &mut Tensor,
        row0: usize,
        level: &Tensor,
        c: usize,
        plane: usize,
    ) -> Result<()> {
        let k = self.kind();
        let level = host(k, "level", level)?;
        image::to_tokens(tokens.as_host_mut().ok_or_else(|| foreign(k, "tokens"))?, row0, level, c, plane);
        Ok(())
    }

    /// [`Backend::gemm`] on tensors, plus an optional `residual [M,N]` added after the activation.
    fn gemm_t(
        &self,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::gemm::OP;
        p.validate()?;
        check_len(OP, "x", &[p.m, p.k], x.len())?;
        check_len(OP, "weight", &[p.n, p.k], weight.len())?;
        if p.bias != bias.is_some() {
            return Err(Error::limit(
                OP,
                "bias",
                format!("the problem {} a bias", if p.bias { "has" } else { "has no" }),
            ));
        }
        if let Some(b) = bias {
            check_len(OP, "bias", &[p.n], b.len())?;
        }
        if let Some(r) = residual {
            check_len(OP, "residual", &[p.m, p.n], r.len())?;
        }
        self.gemm_t_valid(p, x, weight, bias, residual)
    }
    /// [`Backend::gemm_t`] after the lengths were checked.
    fn gemm_t_valid(
        &self,
        p: &GemmProblem,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let k = self.kind();
        let b = bias.map(|b| host(k, "bias", b)).transpose()?;
        let mut y = self.gemm_valid(p, host(k, "x", x)?, host(k, "weight", weight)?, b)?;
        if let Some(r) = residual {
            y.iter_mut().zip(host(k, "residual", r)?).for_each(|(y, r)| *y += r);
        }
        Ok(Tensor::host(y))
    }

    /// Elementwise `a + b` (equal lengths).
    fn add_t(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_len("add", "b", &[a.len()], b.len())?;
        self.add_t_valid(a, b)
    }
    /// [`Backend::add_t`] after the lengths were checked.
    fn add_t_valid(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let k = self.kind();
        Ok(Tensor::host(host(k, "a", a)?.iter().zip(host(k, "b", b)?).map(|(a, b)| a + b).collect()))
    }

    /// Elementwise `act(a · b)` (equal lengths).
    fn mul_t(&self, a: &Tensor, b: &Tensor, act: crate::problem::Activation) -> Result<Tensor> {
        check_len("mul", "b", &[a.len()], b.len())?;
        self.mul_t_valid(a, b, act)
    }
    /// [`Backend::mul_t`] after the lengths were checked.
    fn mul_t_valid(&self, a: &Tensor, b: &Tensor, act: crate::problem::Activation) -> Result<Tensor> {
        let k = self.kind();
        Ok(Tensor::host(host(k, "a", a)?.iter().zip(host(k, "b", b)?).map(|(a, b)| act.apply(a * b)).collect()))
    }

    /// [`Backend::attention`] on tensors, no mask.
    fn attention_t(&self, p: &AttentionProblem, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        const OP: &str = crate::problem::attention::OP;
        if [p.batch, p.heads, p.q_len, p.k_len, p.head_dim].contains(&0) {
            return Err(Error::limit(OP, "B, H, Lq, Lk, Dh", format!("all must be ≥ 1: {p:?}")));
        }
        let w = p.heads * p.head_dim;
        check_len(OP, "q", &[p.batch, p.q_len, w], q.len())?;
        check_len(OP, "k", &[p.batch, p.k_len, w], k.len())?;
        check_len(OP, "v", &[p.batch, p.k_len, w], v.len())?;
        self.attention_t_valid(p, q, k, v)
    }
    /// [`Backend::attention_t`] after the lengths were checked.
    fn attention_t_valid(&self, p: &AttentionProblem, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let kind = self.kind();
        Ok(Tensor::host(self.attention_valid(
            p,
            host(kind, "q", q)?,
            host(kind, "k", k)?,
            host(kind, "v", v)?,
            None,
        )?))
    }

    /// [`Backend::layer_norm`] on tensors.
    fn layer_norm_t(&self, p: &LayerNormProblem, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        const OP: &str = crate::problem::layer_norm::OP;
        check_len(OP, "x", &[p.rows, p.width], x.len())?;
        check_len(OP, "gamma", &[p.width], gamma.len())?;
        check_len(OP, "beta", &[p.width], beta.len())?;
        self.layer_norm_t_valid(p, x, gamma, beta)
    }
    /// [`Backend::layer_norm_t`] after the lengths were checked.
    fn layer_norm_t_valid(&self, p: &LayerNormProblem, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let k = self.kind();
        Ok(Tensor::host(self.layer_norm(p, host(k, "x", x)?, host(k, "gamma", gamma)?, host(k, "beta", beta)?)?))
    }

    /// [`Backend::ms_deform_attn`] on tensors, fused form, f32: `value`, `reference`,
    /// `sampling_offsets`, `attention_logits` as in [`MsDeformAttnInput::Fused`].
    fn ms_deform_attn_t(
        &self,
        pr: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::ms_deform_attn::OP;
        pr.validate()?;
        let crate::problem::Form::Fused(kind) = pr.form else {
            return Err(Error::limit(OP, "form", "tensors run the fused form (reference, offsets, logits)"));
        };
        for (what, shape, t) in [
            ("value", pr.value_shape(), value),
            ("reference", pr.reference_shape(kind), reference),
            ("sampling_offsets", pr.locations_shape(), offsets),
            ("attention_logits", pr.logits_shape(), logits),
        ] {
            check_len(OP, what, &shape, t.len())?;
        }
        self.ms_deform_attn_t_valid(pr, value, reference, offsets, logits)
    }
    /// [`Backend::ms_deform_attn_t`] after the lengths were checked.
    fn ms_deform_attn_t_valid(
        &self,
        pr: &MsDeformAttnProblem,
        value: &Tensor,
        reference: &Tensor,
        offsets: &Tensor,
        logits: &Tensor,
    ) -> Result<Tensor> {
        let k = self.kind();
        let input = MsDeformAttnInput::Fused {
            value: host(k, "value", value)?,
            reference: host(k, "reference", reference)?,
            sampling_offsets: host(k, "sampling_offsets", offsets)?,
            attention_logits: host(k, "attention_logits", logits)?,
        };
        Ok(Tensor::host(self.ms_deform_attn_valid(pr, &input, DType::F32)?))
    }

    /// The weights of one `sparse_fusion` round laid out for this backend's fused kernels and
    /// uploaded once (`p` gives the widths; its token counts do not matter). `None` where the
    /// backend reads the weights from the host structs ([`Backend::sparse_fusion_t`] takes both).
    fn bind_sparse_fusion(
        &self,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        let _ = (p, fw, bw);
        Ok(None)
    }
    /// [`Backend::sparse_fusion`] on tensors (every label valid): fuses `memory`'s last level in
    /// place and returns the new language state. `bound`: this round's
    /// [`Backend::bind_sparse_fusion`] (without it the weights are bound for this call only).
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion_t(
        &self,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
        bound: Option<&Tensor>,
    ) -> Result<Tensor> {
        const OP: &str = crate::problem::sparse_fusion::OP;
        p.validate()?;
        let (b, c) = (p.fusion.batch, p.fusion.v_dim);
        check_len(OP, "memory", &[b, p.tokens, c], memory.len())?;
        check_len(OP, "pos", &[b, p.tokens, c], pos.len())?;
        check_len(OP, "lang", &[b, p.fusion.t, p.fusion.l_dim], lang.len())?;
        for (name, shape, got) in fw.tensors(&p.fusion).into_iter().chain(bw.tensors(&p.lang)) {
            check_len(OP, name, &shape, got.len())?;
        }
        self.make_resident("memory", memory)?;
        let made;
        let bound = match bound {
            Some(b) => Some(b),
            None => {
                made = self.bind_sparse_fusion(p, fw, bw)?;
                made.as_ref()
            }
        };
        self.sparse_fusion_t_valid(p, memory, pos, lang, fw, bw, bound)
    }

    /// Replaces a tensor that an op writes in place by its copy on this backend when it lives
    /// elsewhere (a host tensor given to a GPU backend); a host backend refuses a device tensor.
    fn make_resident(&self, what: &str, t: &mut Tensor) -> Result<()> {
        if t.owner() != self.owner_id() {
            *t = self.bind(what, t)?;
        }
        Ok(())
    }
    /// [`Backend::sparse_fusion_t`] after the lengths were checked.
    #[allow(clippy::too_many_arguments)]
    fn sparse_fusion_t_valid(
        &self,
        p: &SparseFusionProblem,
        memory: &mut Tensor,
        pos: &Tensor,
        lang: &Tensor,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
        _bound: Option<&Tensor>,
    ) -> Result<Tensor> {
        let k = self.kind();
        let (pos, lang) = (host(k, "pos", pos)?, host(k, "lang", lang)?);
        let memory = memory.as_host_mut().ok_or_else(|| foreign(k, "memory"))?;
        Ok(Tensor::host(self.sparse_fusion_valid(p, memory, pos, lang, None, fw, bw)?))
    }
}

/// The host values of `t`, for a backend that computes on host tensors.
fn host<'t>(kind: BackendKind, what: &str, t: &'t Tensor) -> Result<&'t [f32]> {
    t.as_host().ok_or_else(|| foreign(kind, what))
}

fn foreign(kind: BackendKind, what: &str) -> Error {
    Error::Device {
        backend: kind.name().into(),
        reason: format!("tensor `{what}` is a device tensor of another backend; download it first"),
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
