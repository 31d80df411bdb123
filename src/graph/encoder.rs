//! The ALIF encoder (spec §2.5): before layers 0, interval, 2·interval, … one `sparse_fusion`
//! round (VLFuse on the last level, in place, then the extra RoBERTa layer over the labels), and
//! six post-norm deformable encoder layers:
//! `x = LN1(x + out_proj(MSDA(x + pos, ref, value_proj(x))))`, `x = LN2(x + W2·relu(W1·x))`.
//! Batch 1, unpadded (valid ratios 1).

use super::front::Tokens;
use crate::backend::Backend;
use crate::error::Result;
use crate::problem::{Activation, BertLayerProblem, DType, Form, GatedCrossAttnProblem, Gate, GemmProblem, LayerNormProblem, MsDeformAttnInput, MsDeformAttnProblem, OwnedWeights, RefKind, SparseFusionProblem};

const D: usize = 256;
const HEADS: usize = 8;
const POINTS: usize = 4;
const LN_EPS: f32 = 1e-5;
/// Token rows per FFN block.
const FFN_ROWS: usize = 2048;

/// Names of an encoder layer's tensors after `transformer.encoder.layers.{i}.`, in load order.
const LAYER_NAMES: [&str; 16] = [
    "self_attn.sampling_offsets.weight",
    "self_attn.sampling_offsets.bias",
    "self_attn.attention_weights.weight",
    "self_attn.attention_weights.bias",
    "self_attn.value_proj.weight",
    "self_attn.value_proj.bias",
    "self_attn.output_proj.weight",
    "self_attn.output_proj.bias",
    "norm1.weight",
    "norm1.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm2.weight",
    "norm2.bias",
];

/// The 6-layer deformable encoder with its three `sparse_fusion` rounds (ALIF).
pub struct Encoder {
    levels: usize,
    ffn: usize,
    fusion_interval: usize,
    gate: Gate,
    layers: Vec<Vec<Vec<f32>>>,
    /// (VLFuse weights, RoBERTa-layer weights) per round.
    rounds: Vec<(OwnedWeights, OwnedWeights)>,
}

impl Encoder {
    /// Loads `layers` encoder layers and `layers / fusion_interval` fusion rounds through
    /// `get(name, shape)` with full state-dict names.
    pub fn load(layers: usize, levels: usize, ffn: usize, fusion_interval: usize, gate: Gate, mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>) -> Result<Self> {
        let taps = HEADS * levels * POINTS;
        let shapes: [Vec<usize>; 16] = [vec![2 * taps, D], vec![2 * taps], vec![taps, D], vec![taps], vec![D, D], vec![D], vec![D, D], vec![D], vec![D], vec![D], vec![ffn, D], vec![ffn], vec![D, ffn], vec![D], vec![D], vec![D]];
        let mut ls = Vec::with_capacity(layers);
        for i in 0..layers {
            ls.push(LAYER_NAMES.iter().zip(&shapes).map(|(n, s)| get(&format!("transformer.encoder.layers.{i}.{n}"), s)).collect::<Result<Vec<_>>>()?);
        }
        let mut rounds = Vec::new();
        for r in 0..layers / fusion_interval {
            let mut fw = OwnedWeights::default();
            for (n, s) in GatedCrossAttnProblem::rlipv2(1, 1, 1).weight_shapes() {
                fw.tensors.push(get(&format!("transformer.encoder.VLFuse_layers.{r}.{n}"), &s)?);
                fw.names.push(n);
            }
            let mut bw = OwnedWeights::default();
            for (n, s) in BertLayerProblem::roberta_base(1, 1).weight_shapes() {
                bw.tensors.push(get(&format!("transformer.encoder.roberta_layers.{r}.{n}"), &s)?);
                bw.names.push(n);
            }
            rounds.push((fw, bw));
        }
        Ok(Encoder { levels, ffn, fusion_interval, gate, layers: ls, rounds })
    }

    /// `(memory [S, 256], the language state after each round [T, 768])` for tokens and the label
    /// embeddings `lang [T, 768]`. The memory is built in `tokens.src`'s buffer, which is taken.
    pub fn forward(&self, be: &dyn Backend, tokens: &mut Tokens, lang: &[f32]) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
        let s = tokens.src.len() / D;
        let t = lang.len() / 768;
        let last = *tokens.level_start.last().unwrap_or(&0);
        // reference points: each token's own centre, the same for every level (valid ratios 1)
        let mut reference = Vec::with_capacity(s * self.levels * 2);
        for &(h, w) in &tokens.shapes {
            for i in 0..h {
                for j in 0..w {
                    let r = [(j as f32 + 0.5) / w as f32, (i as f32 + 0.5) / h as f32];
                    for _ in 0..self.levels {
                        reference.extend_from_slice(&r);
                    }
                }
            }
        }
        let msda = MsDeformAttnProblem::new(1, s, HEADS, D / HEADS, POINTS, &tokens.shapes, Form::Fused(RefKind::Points));
        let mut x = std::mem::take(&mut tokens.src);
        let mut lang = lang.to_vec();
        let mut states = Vec::new();
        for (i, w) in self.layers.iter().enumerate() {
            if i % self.fusion_interval == 0 {
                let (fw, bw) = &self.rounds[i / self.fusion_interval];
                let mut p = SparseFusionProblem::rlipv2(1, s, last, t);
                p.fusion.gate = self.gate;
                lang = be.sparse_fusion(&p, &mut x, &tokens.pos, &lang, None, &fw.as_fusion(), &bw.as_bert())?;
                states.push(lang.clone());
            }
            x = self.layer(be, w, &x, &tokens.pos, &reference, &msda)?;
        }
        Ok((x, states))
    }

    fn layer(&self, be: &dyn Backend, w: &[Vec<f32>], x: &[f32], pos: &[f32], reference: &[f32], msda: &MsDeformAttnProblem) -> Result<Vec<f32>> {
        let s = x.len() / D;
        let taps = HEADS * self.levels * POINTS;
        let lin = |inp: &[f32], k: usize, n: usize, wi: usize, act: Activation| be.gemm(&GemmProblem::linear(s, k, n).with_act(act), inp, &w[wi], Some(&w[wi + 1]));
        // each [S, ·] buffer is dropped as soon as it is consumed: at 800×1066 one is 18 MB
        let query: Vec<f32> = x.iter().zip(pos).map(|(a, b)| a + b).collect();
        let offsets = lin(&query, D, 2 * taps, 0, Activation::None)?;
        let logits = lin(&query, D, taps, 2, Activation::None)?;
        drop(query);
        let value = lin(x, D, D, 4, Activation::None)?;
        let input = MsDeformAttnInput::Fused { value: &value, reference, sampling_offsets: &offsets, attention_logits: &logits };
        let sampled = be.ms_deform_attn(msda, &input, DType::F32)?;
        drop((value, offsets, logits));
        let mut res = lin(&sampled, D, D, 6, Activation::None)?;
        drop(sampled);
        res.iter_mut().zip(x).for_each(|(r, a)| *r += a);
        let ln = LayerNormProblem { rows: s, width: D, eps: LN_EPS };
        let x = be.layer_norm(&ln, &res, &w[8], &w[9])?;
        drop(res);
        // FFN in row blocks: the [S, FFN] hidden would be 146 MB at 800×1066
        let mut res = Vec::with_capacity(x.len());
        for rows in x.chunks(FFN_ROWS * D) {
            let r = rows.len() / D;
            let h = be.gemm(&GemmProblem::linear(r, D, self.ffn).with_act(Activation::Relu), rows, &w[10], Some(&w[11]))?;
            let y = be.gemm(&GemmProblem::linear(r, self.ffn, D), &h, &w[12], Some(&w[13]))?;
            res.extend(rows.iter().zip(&y).map(|(a, b)| a + b));
        }
        be.layer_norm(&ln, &res, &w[14], &w[15])
    }
}
