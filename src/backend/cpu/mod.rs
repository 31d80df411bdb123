//! Fast native CPU backend. Building blocks and ALIF ops live in `dense` and `fusion`; this file
//! holds `ms_deform_attn`: rayon over (b, q) rows; for each head the D channels of a tap are
//! contiguous in `value [B,S,M,D]`, so the inner loop is a straight multiply-add over a slice
//! that the compiler vectorizes. Softmax and location arithmetic of the fused form are done per
//! head in registers, never stored.
//!
//! f16/bf16: `value` is rounded to the dtype on upload and held as f32 (the CPU has no 16-bit
//! float arithmetic worth using); accumulation is f32 and the output is rounded to the dtype.

mod conv;
mod dense;
mod fusion;

use rayon::prelude::*;

use super::reference::round_to;
use super::{BackendKind, HostInputs, HostKernels, Prepared};
use crate::error::Result;
use crate::problem::ms_deform_attn::MAX_POINTS;
use crate::problem::Conv2dProblem;
use crate::problem::{
    AttentionProblem, BertLayerWeights, DType, Form, GatedCrossAttnProblem, GatedCrossAttnWeights, GemmProblem,
    LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, RefKind, SoftmaxProblem, SparseFusionProblem,
};

/// The native CPU backend: rayon over rows/queries, the `gemm` crate, AVX2+FMA where present.
pub struct CpuBackend {
    threads: usize,
}

impl CpuBackend {
    /// The backend on rayon's global pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        CpuBackend { threads: rayon::current_num_threads() }
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
        vec![
            ("threads", self.threads.to_string()),
            ("ms_deform_attn", format!("rayon over queries, compile-time channels, {simd} path")),
            ("gemm, conv2d", "the gemm crate (packed SIMD); conv2d as banded im2col + gemm".into()),
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
        compute(problem, input, dtype, &mut out);
        Ok(out)
    }

    fn gemm(&self, p: &GemmProblem, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
        Ok(dense::linear(p.m, p.k, p.n, x, weight, bias, p.act))
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
        conv::conv2d_into(p, x, weight, bias, acc, residual);
        Ok(())
    }
    fn layer_norm(&self, p: &LayerNormProblem, x: &[f32], gamma: &[f32], beta: &[f32]) -> Result<Vec<f32>> {
        Ok(dense::layer_norm(p, x, gamma, beta))
    }
    fn softmax(&self, p: &SoftmaxProblem, x: &[f32]) -> Result<Vec<f32>> {
        Ok(dense::softmax(p.width, x))
    }
    fn attention(
        &self,
        p: &AttentionProblem,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        mask: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        Ok(dense::attention(p, q, k, v, mask))
    }
    fn gated_cross_attn(
        &self,
        p: &GatedCrossAttnProblem,
        v: &[f32],
        pos: &[f32],
        l: &[f32],
        w: &GatedCrossAttnWeights,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(fusion::gated_cross_attn(p, v, pos, l, w))
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
        Ok(fusion::sparse_fusion(p, memory, pos, lang, mask, fw, bw))
    }
}

impl Prepared for CpuRun {
    fn enqueue(&mut self) -> Result<()> {
        compute(&self.problem, &self.inputs.input(), self.dtype, &mut self.out);
        Ok(())
    }
    fn output(&mut self) -> Result<Vec<f32>> {
        Ok(self.out.clone())
    }
}

/// `out [B,Q,M·D]` of `input` (value already in the dtype's precision), rows in parallel.
fn compute(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, dtype: DType, out: &mut [f32]) {
    let row_len = pr.heads * pr.channels;
    out.par_chunks_mut(row_len).with_min_len(8).enumerate().for_each(|(bq, row)| {
        match pr.channels {
            16 => rows::<16>(pr, input, bq, row),
            32 => rows::<32>(pr, input, bq, row),
            64 => rows::<64>(pr, input, bq, row),
            _ => rows::<0>(pr, input, bq, row),
        }
        if dtype != DType::F32 {
            row.iter_mut().for_each(|x| *x = round_to(*x, dtype));
        }
    });
}

/// One output row `[M·D]` of `bq = b·Q + q`. `D` > 0 fixes the channel count at compile time
/// (the tap loop then unrolls into SIMD registers); `D` = 0 reads it from the problem. On x86-64
/// with AVX2+FMA the same body is compiled a second time for those instructions.
fn rows<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features this function is compiled for (checked above).
        return unsafe { rows_avx2::<D>(pr, input, bq, row) };
    }
    rows_body::<D>(pr, input, bq, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    rows_body::<D>(pr, input, bq, row)
}

#[inline(always)]
fn rows_body<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, row: &mut [f32]) {
    for m in 0..pr.heads {
        let acc = &mut row[m * pr.channels..(m + 1) * pr.channels];
        if D > 0 {
            let mut local = [0f32; D];
            head::<D>(pr, input, bq, m, &mut local);
            acc.copy_from_slice(&local);
        } else {
            acc.fill(0.0);
            head::<D>(pr, input, bq, m, acc);
        }
    }
}

/// Accumulates head `m` of row `bq = b·Q + q` into `acc [D]`.
#[inline(always)]
fn head<const D: usize>(pr: &MsDeformAttnProblem, input: &MsDeformAttnInput, bq: usize, m: usize, acc: &mut [f32]) {
    let (l_n, p_n, d_n) = (pr.num_levels(), pr.points, pr.channels);
    let lp = l_n * p_n;
    let s0 = (bq * pr.heads + m) * lp; // first sample of this head
    let b = bq / pr.queries;
    let mut aw = [0f32; MAX_POINTS];
    let mut xy = [[0f32; 2]; MAX_POINTS];
    let value = input.value();
    match *input {
        MsDeformAttnInput::Official { sampling_locations, attention_weights, .. } => {
            aw[..lp].copy_from_slice(&attention_weights[s0..s0 + lp]);
            for (i, c) in xy[..lp].iter_mut().enumerate() {
                *c = [sampling_locations[2 * (s0 + i)], sampling_locations[2 * (s0 + i) + 1]];
            }
        }
        MsDeformAttnInput::Fused { reference, sampling_offsets, attention_logits, .. } => {
            let logits = &attention_logits[s0..s0 + lp];
            let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for (a, &z) in aw[..lp].iter_mut().zip(logits) {
                *a = (z - mx).exp();
                sum += *a;
            }
            let inv = 1.0 / sum;
            aw[..lp].iter_mut().for_each(|a| *a *= inv);
            let kind = match pr.form {
                Form::Fused(k) => k,
                Form::Official => RefKind::Points,
            };
            let rd = kind.dim();
            for l in 0..l_n {
                let r = &reference[(bq * l_n + l) * rd..(bq * l_n + l + 1) * rd];
                let lv = pr.levels[l];
                for p in 0..p_n {
                    let i = l * p_n + p;
                    let (ox, oy) = (sampling_offsets[2 * (s0 + i)], sampling_offsets[2 * (s0 + i) + 1]);
                    xy[i] = match kind {
                        RefKind::Points => [r[0] + ox / lv.w as f32, r[1] + oy / lv.h as f32],
                        RefKind::Boxes => [r[0] + ox / p_n as f32 * r[2] * 0.5, r[1] + oy / p_n as f32 * r[3] * 0.5],
                    };
                }
            }
        }
    }
    for l in 0..l_n {
        let lv = pr.levels[l];
        let (h, w) = (lv.h as f32, lv.w as f32);
        for p in 0..p_n {
            let i = l * p_n + p;
            let x = xy[i][0] * w - 0.5;
            let y = xy[i][1] * h - 0.5;
            if !(y > -1.0 && x > -1.0 && y < h && x < w) {
                continue;
            }
            let (y0f, x0f) = (y.floor(), x.floor());
            let (ly, lx) = (y - y0f, x - x0f);
            let (y0, x0) = (y0f as isize, x0f as isize);
            let a = aw[i];
            let corners = [
                (y0, x0, (1.0 - ly) * (1.0 - lx)),
                (y0, x0 + 1, (1.0 - ly) * lx),
                (y0 + 1, x0, ly * (1.0 - lx)),
                (y0 + 1, x0 + 1, ly * lx),
            ];
            for (yy, xx, cw) in corners {
                if yy < 0 || xx < 0 || yy >= lv.h as isize || xx >= lv.w as isize {
                    continue;
                }
                let tok = lv.start + yy as usize * lv.w + xx as usize;
                let base = ((b * pr.tokens + tok) * pr.heads + m) * d_n;
                let c = a * cw;
                if D > 0 {
                    let v: &[f32; D] = value[base..base + D].try_into().expect("D channels");
                    for (o, &x) in acc.iter_mut().zip(v) {
                        *o += c * x;
                    }
                } else {
                    for (o, &x) in acc.iter_mut().zip(&value[base..base + d_n]) {
                        *o += c * x;
                    }
                }
            }
        }
    }
}
