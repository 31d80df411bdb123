//! The fast native CPU backend: each op's cpu code lives in its folder (`ops/<op>/cpu.rs`);
//! this file makes them a [`HostKernels`] backend.

use super::reference::round_to;
use super::{BackendKind, HostInputs, HostKernels, Prepared};
use crate::error::Result;
use crate::ops;
use crate::problem::Conv2dProblem;
use crate::problem::WindowAttentionProblem;
use crate::problem::{
    AttentionProblem, BertLayerWeights, DType, GatedCrossAttnProblem, GatedCrossAttnWeights, GemmProblem,
    LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, MsdaGrads, Precision, SoftmaxProblem,
    SparseFusionProblem,
};

/// The native CPU backend: rayon over rows/queries, the `gemm` crate (AVX-512 or AVX2+FMA,
/// chosen at run time), our AVX2 row kernels, and an opt-in bf16 GEMM.
pub struct CpuBackend {
    threads: usize,
    precision: Precision,
}

impl CpuBackend {
    /// The backend on rayon's global pool (`RAYON_NUM_THREADS` sets its size), f32 throughout.
    pub fn new() -> Self {
        Self::with_precision(Precision::F32)
    }
    /// The same with `gemm` and `conv2d` products at `precision` (the other ops stay f32).
    pub fn with_precision(precision: Precision) -> Self {
        CpuBackend { threads: rayon::current_num_threads(), precision }
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

struct CpuRun {
    problem: MsDeformAttnProblem,
    inputs: HostInputs,
    dtype: DType,
    out: Vec<f32>,
}

impl HostKernels for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }
    fn device(&self) -> String {
        format!("host CPU, {} threads", self.threads)
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        #[cfg(target_arch = "x86_64")]
        let simd = if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            "AVX2 + FMA"
        } else {
            "portable"
        };
        #[cfg(not(target_arch = "x86_64"))]
        let simd = "portable";
        #[cfg(target_arch = "x86_64")]
        let gemm = if std::arch::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if simd != "portable" {
            "AVX2 + FMA"
        } else {
            "portable"
        };
        #[cfg(not(target_arch = "x86_64"))]
        let gemm = "portable";
        vec![
            ("threads", self.threads.to_string()),
            ("ms_deform_attn", format!("rayon over queries, compile-time channels, {simd} path")),
            ("gemm, conv2d", format!("the gemm crate ({gemm} f32 microkernels); conv2d as banded im2col + gemm")),
            (
                "precisions",
                format!(
                    "f32 (default); bf16 by --precision bf16: {}; this backend runs {}",
                    ops::gemm::bf16::kernel_name(),
                    self.precision
                ),
            ),
            ("ALIF ops", "one score matrix per head for both directions; GEMMs through the gemm crate".into()),
        ]
    }
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        let inputs = HostInputs::new(problem, input, |x| round_to(x, dtype));
        Ok(Box::new(CpuRun { problem: problem.clone(), inputs, dtype, out: vec![0.0; problem.output_len()] }))
    }

    /// One-shot f32 runs read the caller's slices directly (no copies: the encoder's inputs are
    /// ≈ 45 MB at 800×1066); other dtypes round `value` in a prepared copy first.
    fn ms_deform_attn(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        if dtype != DType::F32 {
            return HostKernels::prepare_ms_deform_attn(self, problem, input, dtype)?.run_once();
        }
        let mut out = vec![0.0; problem.output_len()];
        ops::ms_deform_attn::cpu::compute(problem, input, dtype, &mut out);
        Ok(out)
    }

    fn ms_deform_attn_backward(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        Ok(ops::ms_deform_attn_backward::cpu::backward(problem, input, grad_output, dtype))
    }
    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        Ok(ops::gemm::cpu::linear(p.m, p.k, p.n, x, weight, bias, p.act, self.precision))
    }
    fn conv2d_into(
        &self,
        p: &Conv2dProblem,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        acc: &mut Vec<f32>,
        residual: bool,
    ) -> Result<()> {
        ops::conv2d::cpu::conv2d_into(p, x, weight, bias, acc, residual, self.precision);
        Ok(())
    }
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
        Ok(ops::layer_norm::cpu::layer_norm(p, x, gamma, beta))
    }
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>> {
        Ok(ops::softmax::cpu::softmax(p.width, x))
    }
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        Ok(ops::attention::cpu::attention(p, q, k, v, mask))
    }
    fn window_attention(
        &self,
        p: &WindowAttentionProblem,
        qkv: &[f32],
        bias: &[f32],
        table: &[f32],
    ) -> Result<Vec<f32>> {
        Ok(ops::window_attention::cpu::window_attention(p, qkv, bias, table))
    }
    fn gated_cross_attn(
        &self,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(ops::gated_cross_attn::cpu::gated_cross_attn(p, v, pos, l, w))
    }
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
        Ok(ops::sparse_fusion::cpu::sparse_fusion(p, memory, pos, lang, mask, fw, bw))
    }
}

impl Prepared for CpuRun {
    fn enqueue(&mut self) -> Result<()> {
        ops::ms_deform_attn::cpu::compute(&self.problem, &self.inputs.input(), self.dtype, &mut self.out);
        Ok(())
    }
    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(self.out.clone())
    }
}
