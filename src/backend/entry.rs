//! The public entry points of every op: each validates its inputs against the op's problem, then
//! calls the backend's kernel method for it (`launch_<name>`, declared in `ops/<op>/kernel.rs`)
//! with a [`Checked`]. `Ops` is implemented once for every [`Backend`] and cannot be implemented
//! again, so no backend can skip or change the validation.

use super::image::GroupNormShape;
use super::op_time::{timed, OpKind};
use super::{Backend, Checked, Prepared, Tensor};
use crate::error::{Error, Result};
use crate::problem::gemm::check_len;
use crate::problem::WindowAttentionProblem;
use crate::problem::{
    Activation, AttentionProblem, BertLayerWeights, Conv2dProblem, DType, Form, GatedCrossAttnProblem,
    GatedCrossAttnWeights, GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, MsdaGrads,
    SoftmaxProblem, SparseFusionProblem,
};

const OK: Checked = Checked(());

/// Validated ops on any [`Backend`] (import it to call them: `use rlipv2::backend::Ops`).
#[allow(clippy::too_many_arguments)] // the ALIF rounds' inputs
pub trait Ops: Backend {
    /// Whether this backend can run `ms_deform_attn` in `dtype`.
    fn supports(&self, dtype: DType) -> Result<()> {
        self.msda_supports(dtype)
    }

    /// Validates the problem and inputs, then uploads them and builds the kernel.
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        problem.validate()?;
        input.check(problem)?;
        self.msda_supports(dtype)?;
        self.launch_prepare_ms_deform_attn(OK, problem, input, dtype)
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
        self.msda_supports(dtype)?;
        self.launch_ms_deform_attn(OK, problem, input, dtype)
    }

    /// The gradients of [`Ops::ms_deform_attn`] at `input` for `grad_output [B,Q,M·D]` (f32), host
    /// to host: `value` in `dtype`'s precision, f32 accumulation, f32 gradients in the layouts of
    /// [`MsdaGrads`]. Deterministic: the same call gives the same bits, whatever the threads.
    fn ms_deform_attn_backward(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        problem.validate()?;
        input.check(problem)?;
        crate::ops::ms_deform_attn_backward::check_grad_output(problem, grad_output.len())?;
        self.msda_supports(dtype)?;
        self.launch_ms_deform_attn_backward(OK, problem, input, grad_output, dtype)
    }

    /// [`Ops::ms_deform_attn`] on tensors, fused form, f32: `value`, `reference`,
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
        let Form::Fused(kind) = pr.form else {
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
        timed(OpKind::MsDeformAttn, || self.launch_ms_deform_attn_t(OK, pr, value, reference, offsets, logits))
    }

    /// `y [M,N] = act(x [M,K]·Wᵀ + b)`, `W [N,K]`, host to host: [`Ops::gemm_t`] on the bound
    /// inputs, the output read back.
    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        p.check(x, weight, bias)?;
        let y = self.launch_gemm_t(OK, p, &host(x), &host(weight), bias.map(host).as_ref(), None)?;
        y.into_vec(self)
    }

    /// [`Ops::gemm`] with its inputs bound to the backend once, for repeated, timed runs of
    /// [`Ops::gemm_t`] (the bench suite's GEMM cell).
    fn prepare_gemm<'a>(
        &'a self,
        p: &GemmProblem,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<Box<dyn Prepared + 'a>> {
        p.check(x, weight, bias)?;
        let (x, w) = (self.bind("x", &host(x))?, self.bind("weight", &host(weight))?);
        let b = bias.map(|b| self.bind("bias", &host(b))).transpose()?;
        let p = *p;
        Ok(Box::new(Repeated::new(self, move |be: &'a Self| be.launch_gemm_t(OK, &p, &x, &w, b.as_ref(), None))))
    }

    /// `y = act(conv2d(x, W) + b [+ residual])`, NCHW (see [`Conv2dProblem`]), host to host:
    /// [`Ops::conv2d_t`] on the bound inputs, the output read back.
    fn conv2d(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        residual: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        p.check(x, weight, bias, residual)?;
        let y = self.launch_conv2d_t(OK, p, &host(x), &host(weight), &host(bias), residual.map(host))?;
        y.into_vec(self)
    }

    /// `acc ← act(conv2d(x, W) + b + acc)`: [`Ops::conv2d`] with the residual's buffer reused
    /// for the output on the host backends, so a bottleneck's last conv keeps no third map alive.
    fn conv2d_accumulate(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        acc: &mut Vec<f32>,
    ) -> Result<()> {
        p.check(x, weight, bias, Some(acc))?;
        let residual = Tensor::host(std::mem::take(acc));
        let y = self.launch_conv2d_t(OK, p, &host(x), &host(weight), &host(bias), Some(residual))?;
        *acc = y.into_vec(self)?;
        Ok(())
    }

    /// Row LayerNorm of `x [R,C]`, host to host.
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
        p.check(x, gamma, beta)?;
        self.launch_layer_norm_t(OK, p, &host(x), &host(gamma), &host(beta))?.into_vec(self)
    }

    /// Row softmax of `x [R,C]`, host to host.
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>> {
        p.check(x)?;
        self.launch_softmax_t(OK, p, &host(x))?.into_vec(self)
    }

    /// Multi-head attention on packed `[B,L,H·Dh]` projections, optional additive key mask
    /// `[B,Lk]`, host to host.
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        p.check(q, k, v, mask)?;
        let y = self.launch_attention_t(OK, p, &host(q), &host(k), &host(v), mask.map(host).as_ref())?;
        y.into_vec(self)
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
        self.launch_gated_cross_attn(OK, p, v, pos, l, w)
    }

    /// One ALIF round: fuses `memory [B,S,C]`'s last level in place, returns the new language
    /// state `[B,T,768]`. `mask [B,T]`: 1 = label, 0 = padding (none = all valid).
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
        self.launch_sparse_fusion(OK, p, memory, pos, lang, mask, fw, bw)
    }

    /// A `sparse_fusion` round kept on the device (inputs and weights uploaded once) for repeated,
    /// timed runs: `run` re-fuses the already fused rows (same work), `output` is the language
    /// state. Backends without a device-resident round answer `Unsupported`.
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
        self.launch_prepare_sparse_fusion(OK, p, memory, pos, lang, mask, fw, bw)
    }

    /// The same round op by op (LayerNorm, GEMM, attention once per direction, adds, … about two
    /// dozen launches over separate buffers), resident like [`Ops::prepare_sparse_fusion`]: the
    /// side-by-side baseline of the fused round. Backends without one answer `Unsupported`.
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
        self.launch_prepare_sparse_fusion_unfused(OK, p, memory, pos, lang, mask, fw, bw)
    }

    // Resident ops: the same ops on [`Tensor`]s, so that a graph keeps its weights and
    // activations where the backend computes.

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
        self.empty_tensor(OK, len)
    }

    /// Elements `start .. start + len` of `t` as a new tensor.
    fn slice_t(&self, t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
        if start.checked_add(len).is_none_or(|end| end > t.len()) {
            return Err(Error::limit("slice", "range", format!("{start}..+{len} of a {}-element tensor", t.len())));
        }
        self.slice_tensor(OK, t, start, len)
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
        self.write_tensor(OK, dst, at, src)
    }

    /// [`Ops::conv2d`] on tensors. `residual` is consumed: a host backend accumulates the output
    /// into its buffer (no third feature map).
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
        timed(OpKind::Conv2d, || self.launch_conv2d_t(OK, p, x, weight, bias, residual))
    }

    /// 3×3 max pooling, stride 2, padding 1, of `planes` planes `h × w` (see [`super::image::pool_out`]).
    fn max_pool_t(&self, x: &Tensor, planes: usize, h: usize, w: usize) -> Result<Tensor> {
        if h == 0 || w == 0 {
            return Err(Error::limit("max_pool", "x", "empty planes"));
        }
        check_len("max_pool", "x", &[planes, h, w], x.len())?;
        self.launch_max_pool_t(OK, x, planes, h, w)
    }

    /// GroupNorm of `x [B, C, plane]` with per-channel `gamma`, `beta`.
    fn group_norm_t(&self, s: &GroupNormShape, x: Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        s.check(x.len(), gamma.len(), beta.len())?;
        self.launch_group_norm_t(OK, s, x, gamma, beta)
    }

    /// Swin's patch merging gather: tokens `x [h·w, C]` → `[⌈h/2⌉·⌈w/2⌉, 4C]`
    /// ([`crate::backend::image::patch_merge`]).
    fn patch_merge_t(&self, x: &Tensor, h: usize, w: usize, c: usize) -> Result<Tensor> {
        check_len("patch_merge", "x", &[h, w, c], x.len())?;
        if h == 0 || w == 0 || c == 0 {
            return Err(Error::limit("patch_merge", "x", format!("{h}×{w} map of {c} channels")));
        }
        self.launch_patch_merge_t(OK, x, h, w, c)
    }

    /// Writes `level [C, plane]` transposed into rows `row0 ..` of `tokens [S, C]`.
    fn to_tokens_t(&self, tokens: &mut Tensor, row0: usize, level: &Tensor, c: usize, plane: usize) -> Result<()> {
        check_len("to_tokens", "level", &[c, plane], level.len())?;
        if c == 0 || !tokens.len().is_multiple_of(c) || row0 + plane > tokens.len() / c {
            return Err(Error::limit(
                "to_tokens",
                "tokens",
                format!("rows {row0}..{} of a {}-element tensor {c} wide", row0 + plane, tokens.len()),
            ));
        }
        self.make_resident("tokens", tokens)?;
        self.launch_to_tokens_t(OK, tokens, row0, level, c, plane)
    }

    /// [`Ops::gemm`] on tensors, plus an optional `residual [M,N]` added after the activation.
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
        timed(OpKind::Gemm, || self.launch_gemm_t(OK, p, x, weight, bias, residual))
    }

    /// Elementwise `a + b` (equal lengths).
    fn add_t(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_len("add", "b", &[a.len()], b.len())?;
        self.launch_add_t(OK, a, b)
    }

    /// Elementwise `act(a · b)` (equal lengths).
    fn mul_t(&self, a: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
        check_len("mul", "b", &[a.len()], b.len())?;
        self.launch_mul_t(OK, a, b, act)
    }

    /// Swin's (shifted-)window attention of `qkv [H·W, 3C]` (`bias [3C]`: the qkv projection's
    /// bias, what the window padding holds) with the relative position bias `table [(2w−1)²,
    /// heads]` → `[H·W, C]` (see [`crate::ops::window_attention`]).
    fn window_attention_t(
        &self,
        p: &WindowAttentionProblem,
        qkv: &Tensor,
        bias: &Tensor,
        table: &Tensor,
    ) -> Result<Tensor> {
        p.check_lens(qkv.len(), bias.len(), table.len())?;
        timed(OpKind::Attention, || self.launch_window_attention_t(OK, p, qkv, bias, table))
    }

    /// [`Ops::attention`] on tensors.
    fn attention_t(
        &self,
        p: &AttentionProblem,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        p.check_lens(q.len(), k.len(), v.len(), mask.map(Tensor::len))?;
        timed(OpKind::Attention, || self.launch_attention_t(OK, p, q, k, v, mask))
    }

    /// [`Ops::layer_norm`] on tensors.
    fn layer_norm_t(&self, p: &LayerNormProblem, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        const OP: &str = crate::problem::layer_norm::OP;
        check_len(OP, "x", &[p.rows, p.width], x.len())?;
        check_len(OP, "gamma", &[p.width], gamma.len())?;
        check_len(OP, "beta", &[p.width], beta.len())?;
        self.launch_layer_norm_t(OK, p, x, gamma, beta)
    }

    /// [`Ops::softmax`] on tensors.
    fn softmax_t(&self, p: &SoftmaxProblem, x: &Tensor) -> Result<Tensor> {
        check_len(crate::problem::softmax::OP, "x", &[p.rows, p.width], x.len())?;
        self.launch_softmax_t(OK, p, x)
    }

    /// The weights of one `sparse_fusion` round laid out for this backend's fused kernels and
    /// uploaded once (`p` gives the widths; its token counts do not matter). `None` where the
    /// backend reads the weights from the host structs ([`Ops::sparse_fusion_t`] takes both).
    fn bind_sparse_fusion(
        &self,
        p: &SparseFusionProblem,
        fw: &GatedCrossAttnWeights,
        bw: &BertLayerWeights,
    ) -> Result<Option<Tensor>> {
        check_weights(p, fw, bw)?;
        self.launch_bind_sparse_fusion(OK, p, fw, bw)
    }

    /// [`Ops::sparse_fusion`] on tensors (every label valid): fuses `memory`'s last level in
    /// place and returns the new language state. `bound`: this round's
    /// [`Ops::bind_sparse_fusion`] (without it the weights are bound for this call only).
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
        check_weights(p, fw, bw)?;
        self.make_resident("memory", memory)?;
        let made;
        let bound = match bound {
            Some(b) => Some(b),
            None => {
                made = self.launch_bind_sparse_fusion(OK, p, fw, bw)?;
                made.as_ref()
            }
        };
        timed(OpKind::Fusion, || self.launch_sparse_fusion_t(OK, p, memory, pos, lang, fw, bw, bound))
    }

    /// Replaces a tensor that an op writes in place by its copy on this backend when it lives
    /// elsewhere (a host tensor given to a GPU backend); a host backend refuses a device tensor.
    fn make_resident(&self, what: &str, t: &mut Tensor) -> Result<()> {
        if t.owner() != self.owner_id() {
            *t = self.bind(what, t)?;
        }
        Ok(())
    }
}

impl<B: Backend + ?Sized> Ops for B {}

/// A host tensor holding a copy of `v` (bound to the backend by the op that reads it).
fn host(v: &[f32]) -> Tensor {
    Tensor::host(v.to_vec())
}

/// An op on inputs bound once, run again on every [`Prepared::enqueue`]; the output of the last
/// run is kept for [`Prepared::output`]. This is how every backend times a tensor op: the same
/// launch path as the graph's, nothing uploaded per run.
struct Repeated<'a, B: ?Sized, F> {
    be: &'a B,
    run: F,
    last: Option<Tensor>,
}

impl<'a, B: Backend + ?Sized, F: FnMut(&'a B) -> Result<Tensor>> Repeated<'a, B, F> {
    fn new(be: &'a B, run: F) -> Self {
        Repeated { be, run, last: None }
    }
}

impl<'a, B: Backend + ?Sized, F: FnMut(&'a B) -> Result<Tensor>> Prepared for Repeated<'a, B, F> {
    fn enqueue(&mut self) -> Result<()> {
        // the previous output is dropped first, so a recycling backend reuses its buffer
        self.last = None;
        self.last = Some((self.run)(self.be)?);
        Ok(())
    }
    fn wait(&mut self) -> Result<()> {
        self.be.wait()
    }
    fn output(&mut self) -> Result<Vec<f32>> {
        match &self.last {
            Some(t) => self.be.download(t),
            None => Err(Error::limit("prepared op", "output", "read before the first run")),
        }
    }
}

/// Every weight of an ALIF round has its problem's shape.
fn check_weights(p: &SparseFusionProblem, fw: &GatedCrossAttnWeights, bw: &BertLayerWeights) -> Result<()> {
    for (name, shape, got) in fw.tensors(&p.fusion).into_iter().chain(bw.tensors(&p.lang)) {
        check_len(crate::problem::sparse_fusion::OP, name, &shape, got.len())?;
    }
    Ok(())
}
