//! The oracle as a backend: f64 accumulation, output rounded to the run's dtype. Slow; for
//! checking other backends and external harnesses, not for speed.

use super::{BackendKind, HostInputs, HostKernels, Prepared};
use crate::error::Result;
use crate::problem::Conv2dProblem;
use crate::problem::WindowAttentionProblem;
use crate::problem::{
    AttentionProblem, BertLayerWeights, DType, GatedCrossAttnProblem, GatedCrossAttnWeights, GemmProblem,
    LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, MsdaGrads, SoftmaxProblem, SparseFusionProblem,
};
use crate::reference::{self as oracle, lift, ms_deform_attn::ms_deform_attn};

fn lower(x: Vec<f64>) -> Vec<f32> {
    x.into_iter().map(|v| v as f32).collect()
}

/// The f64 reference oracle as a backend (slow; the definition of correct).
pub struct ReferenceBackend;

struct ReferenceRun {
    problem: MsDeformAttnProblem,
    /// Inputs with `value` already rounded to the run's dtype.
    inputs: HostInputs,
    dtype: DType,
    out: Vec<f32>,
}

impl HostKernels for ReferenceBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Reference
    }
    fn device(&self) -> String {
        "host (naive f64 oracle)".into()
    }
    fn details(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn prepare_ms_deform_attn<'a>(
        &'a self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Box<dyn Prepared + 'a>> {
        let inputs = HostInputs::new(problem, input, |x| round_to(x, dtype));
        Ok(Box::new(ReferenceRun { problem: problem.clone(), inputs, dtype, out: Vec::new() }))
    }

    fn ms_deform_attn(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        dtype: DType,
    ) -> Result<Vec<f32>> {
        HostKernels::prepare_ms_deform_attn(self, problem, input, dtype)?.run_once()
    }
    fn ms_deform_attn_backward(
        &self,
        problem: &MsDeformAttnProblem,
        input: &MsDeformAttnInput,
        grad_output: &[f32],
        dtype: DType,
    ) -> Result<MsdaGrads> {
        let inputs = HostInputs::new(problem, input, |x| round_to(x, dtype));
        let (v, s, a) = oracle::ms_deform_attn_backward::backward::<f64>(problem, &inputs.input(), grad_output);
        Ok(MsdaGrads { value: lower(v), sampling: lower(s), attention: lower(a) })
    }
    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        Ok(lower(oracle::gemm::gemm::<f64>(p, &lift(x), weight, bias)))
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
        let r = residual.then(|| lift::<f64>(acc));
        *acc = lower(oracle::conv2d::conv2d::<f64>(p, &lift(x), weight, bias, r.as_deref()));
        Ok(())
    }
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
        Ok(lower(oracle::layer_norm::layer_norm::<f64>(p, &lift(x), gamma, beta)))
    }
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>> {
        Ok(lower(oracle::softmax::softmax::<f64>(p, &lift(x))))
    }
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        Ok(lower(oracle::attention::attention::<f64>(p, &lift(q), &lift(k), &lift(v), mask)))
    }
    fn window_attention(
        &self,
        p: &WindowAttentionProblem,
        qkv: &[f32],
        bias: &[f32],
        table: &[f32],
    ) -> Result<Vec<f32>> {
        Ok(lower(oracle::window_attention::window_attention::<f64>(p, &lift(qkv), &lift(bias), &lift(table))))
    }
    fn gated_cross_attn(
        &self,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (a, b) = oracle::gated_cross_attn::gated_cross_attn::<f64>(p, &lift(v), &lift(pos), &lift(l), w);
        Ok((lower(a), lower(b)))
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
        let mut mem = lift::<f64>(memory);
        let out = oracle::sparse_fusion::sparse_fusion::<f64>(p, &mut mem, &lift(pos), &lift(lang), mask, fw, bw);
        memory.iter_mut().zip(mem).for_each(|(d, s)| *d = s as f32);
        Ok(lower(out))
    }
}

impl Prepared for ReferenceRun {
    fn enqueue(&mut self) -> Result<()> {
        self.out = ms_deform_attn::<f64>(&self.problem, &self.inputs.input())
            .into_iter()
            .map(|x| round_to(x as f32, self.dtype))
            .collect();
        Ok(())
    }
    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(self.out.clone())
    }
}

/// Rounds an f32 to the nearest value representable in `dtype`.
pub fn round_to(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::F32 => x,
        DType::F16 => half::f16::from_f32(x).to_f32(),
        DType::Bf16 => half::bf16::from_f32(x).to_f32(),
    }
}
